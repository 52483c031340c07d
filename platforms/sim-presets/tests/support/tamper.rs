//! A virtio-mmio register window that lies, for the virtio drivers'
//! bring-up and shutdown error tests.

use std::cell::Cell;
use std::rc::Rc;

use dma_drivers::virtio::spec::{DeviceStatus, Features};
use dma_drivers::virtio::transport::RegisterIo;
use dma_sim::virtio::{regs, Backend, VirtioMmio};
use dma_sim_presets::SimVirtioWindow;

/// What the window lies about; shared by its clones, so a test can
/// change it while a driver holds the window.
#[derive(Debug, Default)]
pub struct Lies {
    /// Feature bits hidden from the driver.
    pub hide: Cell<u64>,
    /// Status reads lose `FEATURES_OK` (a device refusing the features).
    pub refuse_features: Cell<bool>,
    /// `QueueReady` reads 0 (a device that does not take the queue).
    pub never_ready: Cell<bool>,
    /// A non-zero status reads with `DEVICE_NEEDS_RESET`.
    pub needs_reset: Cell<bool>,
    /// Status never reads 0 (a reset that never finishes).
    pub stuck: Cell<bool>,
}

/// A register window over a simulated virtio-mmio device that tells the
/// driver what [`Lies`] says.
#[derive(Debug)]
pub struct Tamper<B> {
    inner: SimVirtioWindow<B>,
    selected: Rc<Cell<u32>>,
    /// The lies, shared by every clone.
    pub lies: Rc<Lies>,
}

impl<B> Clone for Tamper<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            selected: self.selected.clone(),
            lies: self.lies.clone(),
        }
    }
}

impl<B: Backend> Tamper<B> {
    /// A window onto `dev` hiding `hide`, and refusing the features if
    /// `refuse_features`.
    pub fn new(dev: &VirtioMmio<B>, hide: Features, refuse_features: bool) -> Self {
        let lies = Lies::default();
        lies.hide.set(hide.bits());
        lies.refuse_features.set(refuse_features);
        Self {
            inner: SimVirtioWindow::new(dev),
            selected: Rc::new(Cell::new(0)),
            lies: Rc::new(lies),
        }
    }

    fn status(&self, mut v: u32) -> u32 {
        let lies = &self.lies;
        if lies.refuse_features.get() {
            v &= !u32::from(DeviceStatus::FEATURES_OK.bits());
        }
        if lies.needs_reset.get() && v != 0 {
            v |= u32::from(DeviceStatus::DEVICE_NEEDS_RESET.bits());
        }
        if lies.stuck.get() {
            v |= u32::from(DeviceStatus::ACKNOWLEDGE.bits());
        }
        v
    }
}

impl<B: Backend> RegisterIo for Tamper<B> {
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn read8(&self, offset: usize) -> u8 {
        self.inner.read8(offset)
    }
    fn read16(&self, offset: usize) -> u16 {
        self.inner.read16(offset)
    }
    fn read32(&self, offset: usize) -> u32 {
        let v = self.inner.read32(offset);
        match offset {
            regs::DEVICE_FEATURES => {
                v & !((self.lies.hide.get() >> (32 * self.selected.get())) as u32)
            }
            regs::STATUS => self.status(v),
            regs::QUEUE_READY if self.lies.never_ready.get() => 0,
            _ => v,
        }
    }
    fn write8(&self, offset: usize, value: u8) {
        self.inner.write8(offset, value);
    }
    fn write16(&self, offset: usize, value: u16) {
        self.inner.write16(offset, value);
    }
    fn write32(&self, offset: usize, value: u32) {
        if offset == regs::DEVICE_FEATURES_SEL {
            self.selected.set(value.min(1));
        }
        self.inner.write32(offset, value);
    }
}
