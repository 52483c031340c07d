//! Run `dma-drivers`' reference drivers, or any driver written against the
//! DMA crate family, on `dma-sim`'s machines with the checkers on.
//!
//! `dma-sim` is only the machine and its device models; `dma-drivers` is
//! only the drivers, `no_std`, with no idea what a simulator is. This crate
//! is the small amount of glue a driver author needs between the two, and
//! what a test of a driver on a laptop is written with:
//!
//! - **the register blocks as a driver sees them**: [`nvme_controller`]
//!   hands a simulated NVMe controller's block to `dma-drivers` as its
//!   BAR0, [`nic_registers`] a simulated NIC's, and [`virtio_mmio`] gives
//!   the virtio drivers a transport over a simulated virtio-mmio device
//!   ([`SimVirtioWindow`]: each register access is a call on the model);
//! - **waiting** ([`Wait`], `dma-drivers`' trait): [`Stepping`] runs a
//!   simulated device one step per pause (deterministic tests), [`Spin`]
//!   spins a bounded number of times (a device on another thread, or real
//!   hardware without a timer). A wait that gives up is a
//!   [`DriverError::Timeout`](dma_drivers::DriverError::Timeout), never a
//!   hang;
//! - **the presets**: [`Preset`] names the sim's three machines and
//!   [`Preset::run`] builds one with `dma-check` on and hands its platform
//!   to a [`PresetRun`], so a test body is written once, generically, and
//!   runs on all three; the [`Outcome`] holds what the body returned and
//!   everything the checker and the coherency-bug detector saw.
//!
//! Every step a buffer takes in the drivers is one crate's job: **map**
//! (`dma-core`, `dma-sg`) → **encode** (`dma-sg`) → **submit** (`dma-ring`:
//! descriptor, write barrier, doorbell) → device DMA → **complete**
//! (`dma-ring`: flag, read barrier, validated entry, the buffer handed
//! back) → **sync for the CPU and unmap** (`dma-core`). The drivers do no
//! cache maintenance, barrier or address arithmetic of their own, so the
//! sim checks the crate family as a driver uses it.
//!
//! # Example: one body, every preset
//!
//! ```
//! use dma_core::{DmaAlloc, DmaMap, DeviceConstraints};
//! use dma_check::Checked;
//! use dma_drivers::nvme::{prp_pools, NvmeBlockDriver, NvmeDriverConfig};
//! use dma_sim::nvme::{NvmeConfig, NvmeController};
//! use dma_sim::{DeviceId, Sim};
//! use dma_sim_presets::{nvme_controller, Preset, PresetRun, Stepping};
//!
//! struct WriteThenRead;
//! impl PresetRun for WriteThenRead {
//!     type Output = Vec<u8>;
//!     fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> Self::Output {
//!         let ctrl = NvmeController::new(sim.bus(dev), NvmeConfig::default()).unwrap();
//!         let regs = ctrl.registers();
//!         let regs = nvme_controller(&regs).unwrap();
//!         let pools = prp_pools(p).unwrap();
//!         let config = NvmeDriverConfig::default();
//!         let mut disk = NvmeBlockDriver::start(&regs, p, &pools, Stepping::new(ctrl), config).unwrap();
//!         let mut data = dma_core::DmaBuf::for_device(p, 4096).unwrap();
//!         data.fill(0x5a);
//!         let data = disk.write(8, data).unwrap();
//!         let back = disk.read(8, dma_core::DmaBuf::for_device(p, 4096).unwrap()).unwrap();
//!         assert_eq!(&back[..], &data[..]);
//!         back.to_vec()
//!     }
//! }
//!
//! for preset in Preset::ALL {
//!     let outcome = preset.run(7, DeviceConstraints::UNCONSTRAINED, WriteThenRead)?;
//!     assert!(outcome.clean(), "{preset}: {:?}", outcome.reports);
//!     assert!(outcome.output.iter().all(|&b| b == 0x5a));
//! }
//! # Ok::<(), dma_core::Error>(())
//! ```
//!
//! `cargo xtask demo` runs `examples/demo.rs`: both reference drivers on
//! every preset, then the bugs the sim catches, including a deliberately
//! buggy copy-break transmit path (`examples/support/pitfall.rs`, kept out
//! of every public API).

mod bar;
mod preset;
mod virtio;
mod wait;

pub use bar::{nic_registers, nvme_controller};
pub use dma_drivers::Wait;
pub use preset::{Outcome, Preset, PresetRun};
pub use virtio::{virtio_mmio, SimVirtioWindow};
pub use wait::{Spin, Stepping};
