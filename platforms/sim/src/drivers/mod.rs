//! Reference drivers: how the crate family fits together in a real driver.
//!
//! Two complete, polled drivers written the way a driver author would
//! write them against real hardware, generic over any platform
//! `P: DmaMap + DmaAlloc` (a direct backend, an IOMMU, a bounce layer,
//! `dma-check`'s [`Checked`] wrapper around any of them):
//!
//! - [`nvme::NvmeBlockDriver`] (the `dma-drivers` crate's, the same source
//!   a board runs; [`nvme::controller`] shows it the sim's register block as
//!   a BAR): controller bring-up, an admin queue pair, Identify, I/O queue creation, and
//!   read, write and flush of arbitrary buffers: each buffer becomes a
//!   `dma-sg` table mapped through the platform, encoded as PRP1/PRP2 or a
//!   chained PRP list in pool memory, and handed to `dma-ring`'s NVMe queue
//!   pair, which owns it until its completion comes back.
//! - [`nic::NicDriver`]: `dma-ring`'s RX and TX descriptor rings on an
//!   e1000-style NIC: RX buffers mapped once and recycled with partial
//!   syncs, TX frames mapped per packet, descriptor-done completions.
//!
//! Every step a buffer takes is one crate's job: **map** (`dma-core`,
//! `dma-sg`) → **encode** (`dma-sg`) → **submit** (`dma-ring`: descriptor,
//! write barrier, doorbell) → device DMA → **complete** (`dma-ring`: flag,
//! read barrier, validated entry, the buffer handed back) → **sync for the
//! CPU and unmap** (`dma-core`). The drivers do no cache maintenance, barrier
//! or address arithmetic of their own.
//!
//! [`pitfall`] holds a third, deliberately small driver in two variants
//! that differ by one line, a missing `sync_for_device`: the bug the
//! non-coherent sim catches on every seed and an x86 machine never shows.
//!
//! # Waiting for the device
//!
//! A polled driver waits by polling; what happens between two polls is the
//! environment's business, so the drivers take a [`Wait`] (`dma-drivers`'
//! trait): [`Stepping`]
//! runs a simulated device one step per pause (deterministic tests),
//! [`Spin`] spins a bounded number of times (a device on another thread,
//! or real hardware without a timer). A wait that gives up is a
//! [`DriverError::Timeout`], never a hang.
//!
//! # Running them on every preset
//!
//! [`Preset`] names the sim's three machines and [`Preset::run`] builds
//! one with the checker on and hands its platform to a [`PresetRun`], so a
//! test or demo body is written once, generically, and runs on all three:
//!
//! ```
//! use dma_core::{DmaAlloc, DmaMap, DeviceConstraints};
//! use dma_check::Checked;
//! use dma_sim::drivers::{nvme, Preset, PresetRun, Stepping};
//! use dma_sim::nvme::{NvmeConfig, NvmeController};
//! use dma_sim::{DeviceId, Sim};
//!
//! struct WriteThenRead;
//! impl PresetRun for WriteThenRead {
//!     type Output = Vec<u8>;
//!     fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> Self::Output {
//!         let ctrl = NvmeController::new(sim.bus(dev), NvmeConfig::default()).unwrap();
//!         let regs = ctrl.registers();
//!         let regs = nvme::controller(&regs).unwrap();
//!         let pools = nvme::prp_pools(p).unwrap();
//!         let config = nvme::NvmeDriverConfig::default();
//!         let mut disk = nvme::NvmeBlockDriver::start(&regs, p, &pools, Stepping::new(ctrl), config).unwrap();
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
//! [`Checked`]: dma_check::Checked

pub mod nic;
pub mod nvme;
pub mod pitfall;
mod preset;

pub use dma_drivers::{DriverError, Refused, Wait};
pub use preset::{Outcome, Preset, PresetRun};

use crate::{Device, Step};

/// Waits by stepping a simulated device: each pause is one
/// [`Device::step`], and a device that stays idle for `idle_limit` steps
/// in a row while the driver waits has dropped something (a lost
/// completion): the wait gives up.
///
/// The driver's thread runs the device, so a run is deterministic for a
/// seed. The device stays reachable through [`device_mut`](Self::device_mut)
/// (to inject faults, feed frames, look at the disk).
#[derive(Debug)]
pub struct Stepping<D: Device> {
    device: D,
    idle_limit: u32,
    idle: u32,
}

impl<D: Device> Stepping<D> {
    /// Steps `device`, giving up after 8 idle steps in a row.
    pub fn new(device: D) -> Self {
        Self::with_idle_limit(device, 8)
    }

    /// Steps `device`, giving up after `idle_limit` idle steps in a row.
    pub fn with_idle_limit(device: D, idle_limit: u32) -> Self {
        Self {
            device,
            idle_limit,
            idle: 0,
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, to inject faults or feed it input.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Gives the device back.
    pub fn into_inner(self) -> D {
        self.device
    }
}

impl<D: Device> Wait for Stepping<D> {
    fn begin(&mut self) {
        self.idle = 0;
    }

    fn pause(&mut self) -> bool {
        match self.device.step() {
            Step::Progress => {
                self.idle = 0;
                true
            }
            Step::Idle => {
                self.idle += 1;
                self.idle <= self.idle_limit
            }
        }
    }
}

/// Waits by spinning, at most `limit` pauses per wait: for a device on
/// another thread ([`DeviceThread`](crate::DeviceThread)) or real hardware
/// polled without a timer.
#[derive(Clone, Copy, Debug)]
pub struct Spin {
    limit: u64,
    spent: u64,
}

impl Spin {
    /// Gives up after `limit` pauses in one wait.
    pub const fn new(limit: u64) -> Self {
        Self { limit, spent: 0 }
    }
}

impl Wait for Spin {
    fn begin(&mut self) {
        self.spent = 0;
    }

    fn pause(&mut self) -> bool {
        self.spent += 1;
        if self.spent % 64 == 0 {
            std::thread::yield_now();
        } else {
            core::hint::spin_loop();
        }
        self.spent <= self.limit
    }
}
