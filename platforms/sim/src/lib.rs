//! Mock DMA hardware: find cache-coherency and IOMMU bugs in `cargo test`.
//!
//! A [`Sim`] is a simulated machine:
//! - **memory with two views.** The CPU's view is the host memory a driver
//!   touches through its pointers; the device's view is RAM. On a coherent
//!   machine they are the same bytes. On a non-coherent one the sim keeps
//!   RAM separately, at cache-line granularity (32, 64 or 128 bytes), for
//!   every live mapping: clean copies the CPU's lines to RAM, invalidate
//!   reloads them, and a seeded evictor writes dirty lines back at
//!   arbitrary moments. A missing sync gives wrong data, the same way for
//!   the same seed.
//! - **a bug detector** ([`Report`]): the device reading lines the CPU
//!   wrote but did not clean, or never cleaned since mapping; the CPU
//!   taking back lines the device wrote but not invalidating them; either
//!   side touching bytes the other owns (CPU accesses are seen through the
//!   safe types' [`cpu_access`](dma_core::DmaMap::cpu_access) hook); a
//!   dirty line written back over the device's data; a platform configured
//!   coherent for a device that does not snoop, and cacheable coherent
//!   memory; and every refused device access, naming the region that
//!   holds, last held or lies nearest to the address. The catalogue of
//!   classes, detected and not, is docs/bug-catalogue.md.
//! - **an IOMMU** ([`iommu`]) walking Arm VMSAv8-64 stage-1 tables in sim
//!   memory, with an IOTLB, recording [`Fault`]s (each also a report) and
//!   dropping the access.
//! - **devices doing real DMA** through a [`Bus`]: a memory-to-memory
//!   engine ([`dma_engine`]), an NVMe-like controller ([`nvme`]), a NIC
//!   ([`nic`]) and virtio-mmio block and network devices ([`virtio`]),
//!   stepped one unit of work at a time ([`Device::step`]) or run on
//!   their own thread ([`DeviceThread`]), with fault injection.
//!
//! The crate is the machine and its device models, nothing else. Each
//! model keeps its own reading of its device's spec, deliberately written
//! apart from the driver side in `dma-drivers`: an independent model
//! cross-checks the driver, so a misread register or descriptor on either
//! side fails a test instead of agreeing with itself. Running drivers on
//! these machines with `dma-check` on (the presets as a test runner,
//! waiters that step a device, the register blocks as a driver sees them)
//! is the `dma-sim-presets` crate.
//!
//! The presets compose the real backends with the sim's [`PhysMemory`]
//! ([`SimMemory`]) and [`CacheMaintenance`](dma_coherence::CacheMaintenance)
//! ([`SimCache`]): [`Sim::coherent_platform`] is
//! `DirectPlatform::x86_coherent`, [`Sim::non_coherent_platform`] is
//! `DirectPlatform<SimMemory, SimCache>`, [`Sim::iommu_platform`] is
//! `dma-iommu`'s `IommuPlatform` translating through the sim's IOMMU
//! ([`SimIommu`]), each inside a [`SimPlatform`]
//! that tells the machine what the device may reach. Devices can touch
//! nothing else: any other access is a recorded bus error, which is what
//! makes the sim sound and lets tests assert that nothing outside a
//! mapping was written.
//!
//! # Example: a forgotten sync, caught
//!
//! ```
//! use dma_core::{DeviceConstraints, StreamingMapping, ToDevice};
//! use dma_sim::{ReportKind, Sim, SimConfig};
//!
//! // No evictions, so the stale read is certain (the report is certain anyway).
//! let sim = Sim::new(SimConfig::non_coherent().seed(1).eviction_per_mille(0))?;
//! let dev = sim.add_device("tx");
//! let platform = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
//! let mut tx = StreamingMapping::<_, ToDevice, _>::map(&platform, vec![0u8; 128])?;
//! tx.write(0, b"hello")?; // the CPU writes the mapped buffer...
//! // ...and forgets tx.sync_for_device(). The device reads stale RAM:
//! let mut seen = [0u8; 5];
//! sim.bus(dev).read(tx.dma_addr(), &mut seen)?;
//! assert_ne!(&seen, b"hello");
//! let reports = sim.take_reports();
//! assert_eq!(reports[0].kind, ReportKind::DeviceReadUncleaned);
//! println!("{}", reports[0]); // names the mapping, the line and the fix
//! # Ok::<(), dma_core::Error>(())
//! ```
//!
//! The same code on `SimConfig::coherent()` reads `hello` and reports
//! nothing.
//!
//! [`PhysMemory`]: dma_core::PhysMemory

mod bus;
mod cache;
mod config;
mod device;
pub mod dma_engine;
mod fault;
mod host;
pub mod iommu;
mod machine;
mod memory;
mod mmio;
pub mod nic;
pub mod nvme;
mod physmap;
mod platform;
mod replay;
mod report;
mod rng;
mod shadow;
mod sim;
mod smmu;
mod sorted;
pub mod virtio;
mod xlate;

pub use bus::Bus;
pub use cache::SimCache;
pub use config::SimConfig;
pub use device::{run_until_idle, Device, DeviceThread, Injection, Step};
pub use fault::{Access, DeviceId, Fault, FaultKind};
pub use machine::Translation;
pub use memory::SimMemory;
pub use mmio::{Mmio, RegisterBlock};
pub use platform::SimPlatform;
pub use replay::SEED_VAR;
pub use report::{RegionInfo, Report, ReportKind};
pub use sim::{CoherentPlatform, NonCoherentPlatform, Sim, SimStats};
pub use smmu::{IommuTranslatedPlatform, SimIommu};
