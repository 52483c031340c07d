//! What the examples share: an NVMe controller opened through VFIO, and
//! the two ways the reference driver can wait for it.

#![allow(dead_code)] // each example uses a different part

use std::time::{Duration, Instant};

use dma_core::DeviceConstraints;
use dma_drivers::nvme::Controller;
use dma_drivers::{DriverError, Wait, Wake};
use dma_vfio::{Bar, Interrupt, VfioDevice, VfioError, VfioPlatform};

/// An NVMe controller bound to vfio-pci, ready for the driver.
pub struct Nvme {
    /// The MSI-X vector 0 eventfd (the admin queue's interrupt).
    pub irq: Interrupt,
    /// The MSI-X vector 1 eventfd, for an interrupt-driven I/O queue.
    pub io_irq: Interrupt,
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
        // The admin queue always signals vector 0 (§3.1.4.10); the I/O
        // queue gets its own, so its eventfd counts only I/O completions.
        let [irq, io_irq] = device.enable_msix_vectors::<2>(0)?;
        Ok(Self {
            irq,
            io_irq,
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

/// Waits by blocking on the controller's interrupts, up to `timeout` per
/// wait: the admin queue's in [`pause`](Wait::pause) (bring-up and admin
/// commands, in short slices: the controller's status registers change
/// without one), and, when given one, the I/O queue's in
/// [`sleep`](Wait::sleep), which makes the driver interrupt-driven.
pub struct IrqWait<'a> {
    admin: &'a Interrupt,
    io: Option<&'a Interrupt>,
    timeout: Duration,
    deadline: Instant,
    /// Admin interrupts delivered to [`pause`](Wait::pause) so far.
    pub fired: u64,
    /// I/O interrupts delivered to [`sleep`](Wait::sleep) so far.
    pub io_fired: u64,
    /// Time spent blocked in [`sleep`](Wait::sleep).
    pub slept: Duration,
}

impl<'a> IrqWait<'a> {
    /// Waits on `admin` only: the I/O queue is polled.
    pub fn new(admin: &'a Interrupt, timeout: Duration) -> Self {
        Self {
            admin,
            io: None,
            timeout,
            deadline: Instant::now() + timeout,
            fired: 0,
            io_fired: 0,
            slept: Duration::ZERO,
        }
    }

    /// Waits on `admin`, and sleeps on `io` for I/O completions (the driver
    /// creates its I/O queue to signal `io`'s vector).
    pub fn interrupt_driven(admin: &'a Interrupt, io: &'a Interrupt, timeout: Duration) -> Self {
        Self {
            io: Some(io),
            ..Self::new(admin, timeout)
        }
    }

    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

impl Wait for IrqWait<'_> {
    fn begin(&mut self) {
        self.deadline = Instant::now() + self.timeout;
    }

    fn pause(&mut self) -> bool {
        // Never block long: CSTS changes raise no interrupt.
        self.fired += self
            .admin
            .wait(self.left().min(Duration::from_millis(2)))
            .unwrap_or(0);
        Instant::now() < self.deadline
    }

    fn interrupt_vector(&self) -> Option<u16> {
        self.io.and_then(|irq| u16::try_from(irq.vector()).ok())
    }

    fn sleep(&mut self) -> Wake {
        let Some(io) = self.io else {
            return if self.pause() {
                Wake::Early
            } else {
                Wake::GaveUp
            };
        };
        let left = self.left();
        if left.is_zero() {
            return Wake::GaveUp;
        }
        let start = Instant::now();
        // Rounded up to whole milliseconds, so the last one still blocks.
        let fired = io.wait(left + Duration::from_micros(999));
        self.slept += start.elapsed();
        match fired {
            Ok(n) if n > 0 => {
                self.io_fired += n;
                Wake::Interrupt
            }
            _ if self.left().is_zero() => Wake::GaveUp,
            _ => Wake::Early,
        }
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
