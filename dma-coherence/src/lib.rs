//! Cache maintenance and barriers for DMA on coherent and non-coherent CPUs.
//!
//! On a non-coherent CPU (many ARM and RISC-V SoCs) a device reads stale RAM
//! unless the CPU cleaned its cache first, and the CPU reads stale lines
//! unless it invalidated them after the device wrote. This crate provides
//! - [`CacheMaintenance`], clean / invalidate / clean+invalidate by address
//!   range and the line size, with [`HardwareCoherent`], the no-op policy
//!   for coherent hardware, and one implementation per architecture in
//!   [`arch`]: `clwb`/`clflushopt`/`clflush` on x86_64, `dc cvac`/`ivac`/
//!   `civac` on aarch64, Zicbom's `cbo.*` on riscv64;
//! - the [`plan`] of which operation each direction needs at each
//!   [`SyncPoint`] (NetBSD's PREREAD/PREWRITE/POSTREAD/POSTWRITE with Linux
//!   arm64's choices), and [`sync`] to carry it out;
//! - the [partial-cache-line policy](partial_lines): a buffer the device
//!   writes must own its lines whole, or mapping it is refused;
//! - the [physical-backend core](physical) the direct, IOMMU and bounce
//!   backends share: map checks, syncs and the argument that no byte outside
//!   a mapping changes;
//! - [`RecordingCache`], a non-coherent policy for tests that records
//!   instead of maintaining;
//! - [`barrier`]s named for what they order.
//!
//! Every piece of inline assembly is behind `cfg(target_arch)`, so the crate
//! builds for every target; elsewhere only [`HardwareCoherent`] and the
//! portable parts exist.
//!
//! # Partial cache lines
//!
//! A buffer the device writes (`FromDevice`, `Bidirectional`) must start
//! and end on a cache-line boundary on a non-coherent platform, because
//! invalidating a line it shares with other data loses the CPU's writes to
//! that data, and cleaning the line first writes stale buffer bytes over
//! the device's. [`require_whole_lines`] refuses such a mapping with
//! `ErrorKind::Misaligned`; `DmaBuf::for_device` with a length that is a
//! multiple of `DmaMap::dma_alignment` makes buffers that pass, and the
//! bounce backend serves the rest. See [`partial_lines`].
//!
//! # Example
//!
//! ```
//! use dma_core::{DmaAttrs, DmaDirection};
//! use dma_coherence::{plan, sync, CacheOp, HardwareCoherent, SyncPoint};
//!
//! // What a receive buffer needs before the CPU reads it:
//! assert_eq!(plan(DmaDirection::FromDevice, SyncPoint::ForCpu), Some(CacheOp::Invalidate));
//!
//! // On coherent hardware the sync compiles to nothing.
//! let buf = [0u8; 64];
//! // SAFETY: the range is a live local array that this code owns.
//! unsafe {
//!     sync(&HardwareCoherent, buf.as_ptr() as usize, buf.len(),
//!          DmaDirection::FromDevice, SyncPoint::ForCpu, DmaAttrs::empty(), false)
//! };
//! ```
//!
//! On an aarch64 SoC whose devices do not snoop, the same sync cleans or
//! invalidates with `dc` instructions:
//!
//! ```
//! # #[cfg(target_arch = "aarch64")] {
//! use dma_coherence::{arch::aarch64::Aarch64Maintenance, CacheMaintenance};
//! let cache = Aarch64Maintenance::probe(); // line size from CTR_EL0
//! let buf = [0u8; 256];
//! // SAFETY: the buffer is live and ours; clean changes no data.
//! unsafe { cache.clean(buf.as_ptr() as usize, buf.len()) };
//! assert!(cache.line_size().is_power_of_two());
//! # }
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod arch;
pub mod barrier;
mod maintenance;
pub mod partial_lines;
pub mod physical;
mod plan;
pub mod recording;

pub use maintenance::{cache_lines, CacheLines, CacheMaintenance, HardwareCoherent};
pub use partial_lines::require_whole_lines;
pub use physical::{check_span, coherent_cacheability, PhysicalCore};
pub use plan::{bus_dma_ops, plan, plan_ops, sync, BusDmaOps, CacheOp, SyncPoint};
pub use recording::RecordingCache;
