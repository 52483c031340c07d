//! The reference NVMe block driver (`dma_drivers::nvme`) on the sim: the
//! same driver source a board runs, reaching the simulated controller's
//! register block through [`controller`].
//!
//! What it does and how is documented in `dma_drivers::nvme`; here it runs on a non-coherent machine with the checker on:
//!
//! # Example
//!
//! ```
//! use dma_core::{DeviceConstraints, DmaBuf};
//! use dma_sim::drivers::nvme::{controller, prp_pools, NvmeBlockDriver, NvmeDriverConfig};
//! use dma_sim::drivers::Stepping;
//! use dma_sim::nvme::{NvmeConfig, NvmeController};
//! use dma_sim::{Sim, SimConfig};
//!
//! let sim = Sim::new(SimConfig::non_coherent().seed(42))?;
//! let dev = sim.add_device("nvme0");
//! let platform = dma_check::Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
//! let ctrl = NvmeController::new(sim.bus(dev), NvmeConfig::default())?;
//! let regs = ctrl.registers(); // the register block in RAM
//! let regs = controller(&regs)?; // the BAR, as the driver sees it
//!
//! let pools = prp_pools(&platform)?; // PRP list memory
//! let mut disk = NvmeBlockDriver::start(&regs, &platform, &pools, Stepping::new(ctrl), NvmeDriverConfig::default())?;
//! assert_eq!(disk.identity().block_size, 512);
//!
//! let mut out = DmaBuf::for_device(&platform, 8192)?; // 16 blocks, PRP1 + PRP2
//! out.copy_from_slice(&[0xa5; 8192]);
//! let out = disk.write(100, out)?;       // mapped (cleaned), written, unmapped
//! disk.flush()?;
//! let back = disk.read(100, DmaBuf::for_device(&platform, 8192)?)?; // invalidated on unmap
//! assert_eq!(back[..], out[..]);
//! disk.shutdown()?;
//! assert!(sim.reports().is_empty() && platform.reports().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use dma_drivers::nvme::Controller;
pub use dma_drivers::nvme::{
    prp_pools, IoCompletion, IoOp, NvmeBlockDriver, NvmeDriverConfig, NvmeDriverStats,
    NvmeIdentity, IO_QID, NSID, PAGE_SIZE,
};
use dma_drivers::DriverError;

use crate::mmio::Mmio;
use crate::nvme::NvmeRegisters;

/// The shared driver's view of a simulated controller's register block:
/// the block is laid out as BAR0 (registers, then doorbells from 0x1000).
///
/// # Errors
///
/// [`DriverError::Unsupported`] when the model's CAP lacks what the
/// driver needs (the NVM command set, 4 KiB pages).
pub fn controller(regs: &Mmio<NvmeRegisters>) -> Result<Controller<'_>, DriverError> {
    let bar = core::ptr::NonNull::from(&**regs).cast::<u8>();
    // SAFETY: the block is a boxed `#[repr(C)]` struct of tock-registers
    // cells, `size_of::<NvmeRegisters>()` bytes with BAR0's layout (the
    // properties at 0x00..0x38, doorbells from 0x1000), kept alive by the
    // borrowed `Mmio` for the controller's lifetime. Its cells are
    // `UnsafeCell`s, so writing through a pointer derived from `&` is
    // allowed, and the device model reaches them only with volatile
    // accesses of whole registers, as hardware would.
    unsafe { Controller::new(bar, core::mem::size_of::<NvmeRegisters>()) }
}
