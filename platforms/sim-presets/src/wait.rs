//! Waiters for drivers on the sim: stepping a device model, or spinning.

use dma_drivers::Wait;
use dma_sim::{Device, Step};
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
/// another thread ([`DeviceThread`](dma_sim::DeviceThread)) or real hardware
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
