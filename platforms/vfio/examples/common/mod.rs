//! What the examples share: an NVMe controller opened through VFIO, and
//! the two ways the reference driver can wait for it.

#![allow(dead_code)] // each example uses a different part

use std::time::{Duration, Instant};

use dma_core::DeviceConstraints;
use dma_drivers::nvme::Controller;
use dma_drivers::{DriverError, Wait};
use dma_vfio::{Bar, Interrupt, VfioDevice, VfioError, VfioPlatform};

/// An NVMe controller bound to vfio-pci, ready for the driver.
pub struct Nvme {
    /// The MSI-X vector 0 eventfd (the admin queue's interrupt).
    pub irq: Interrupt,
    /// The platform (drops before the device: unmaps what is left).
    pub platform: VfioPlatform,
    /// BAR0, the controller's registers.
    pub bar: Bar,
    /// The device.
    pub device: VfioDevice,
}

impl Nvme {
    /// Opens the controller at `address` and lets it master the bus.
    pub fn open(address: &str) -> Result<Self, VfioError> {
        let device = VfioDevice::open(address)?;
        device.enable_bus_master()?;
        let bar = device.map_bar(0)?;
        let platform = VfioPlatform::new(&device, DeviceConstraints::UNCONSTRAINED)?;
        let irq = device.enable_msix(0)?;
        Ok(Self {
            irq,
            platform,
            bar,
            device,
        })
    }

    /// The controller behind BAR0, for one driver session at a time.
    pub fn controller(&self) -> Result<Controller<'_>, DriverError> {
        // SAFETY: the BAR is BAR0 of an NVMe controller, mapped read-write
        // (device memory) for as long as `self` lives; the examples run one
        // driver session at a time, so nothing else drives it meanwhile.
        unsafe { Controller::new(self.bar.as_ptr(), self.bar.len()) }
    }
}

/// Waits by blocking on the controller's interrupt, up to `timeout` per
/// wait; counts the interrupts it saw.
pub struct IrqWait<'a> {
    irq: &'a Interrupt,
    timeout: Duration,
    deadline: Instant,
    /// Interrupts delivered so far.
    pub fired: u64,
}

impl<'a> IrqWait<'a> {
    /// Waits on `irq`.
    pub fn new(irq: &'a Interrupt, timeout: Duration) -> Self {
        Self {
            irq,
            timeout,
            deadline: Instant::now() + timeout,
            fired: 0,
        }
    }
}

impl Wait for IrqWait<'_> {
    fn begin(&mut self) {
        self.deadline = Instant::now() + self.timeout;
    }

    fn pause(&mut self) -> bool {
        let left = self.deadline.saturating_duration_since(Instant::now());
        // Completions the controller posts without an interrupt (I/O
        // queues created with interrupts off) are found by the driver's
        // next poll, so never block long.
        self.fired += self
            .irq
            .wait(left.min(Duration::from_millis(2)))
            .unwrap_or(0);
        Instant::now() < self.deadline
    }
}

/// Waits by spinning, up to `timeout` per wait.
pub struct Polled {
    timeout: Duration,
    deadline: Instant,
}

impl Polled {
    /// Spins for at most `timeout` per wait.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            deadline: Instant::now() + timeout,
        }
    }
}

impl Wait for Polled {
    fn begin(&mut self) {
        self.deadline = Instant::now() + self.timeout;
    }

    fn pause(&mut self) -> bool {
        std::hint::spin_loop();
        Instant::now() < self.deadline
    }
}
