//! A virtio-mmio register window that lies, for the virtio drivers'
//! bring-up error tests.

use std::cell::Cell;
use std::rc::Rc;

use dma_drivers::virtio::spec::{DeviceStatus, Features};
use dma_drivers::virtio::transport::RegisterIo;
use dma_sim::virtio::{regs, Backend, VirtioMmio};
use dma_sim_presets::SimVirtioWindow;

/// A register window that lies: hides feature bits, or drops
/// `FEATURES_OK` from status reads (a device refusing the features).
#[derive(Debug)]
pub struct Tamper<B> {
    inner: SimVirtioWindow<B>,
    hide: u64,
    refuse_features: bool,
    selected: Rc<Cell<u32>>,
}

impl<B> Clone for Tamper<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            hide: self.hide,
            refuse_features: self.refuse_features,
            selected: self.selected.clone(),
        }
    }
}

impl<B: Backend> Tamper<B> {
    pub fn new(dev: &VirtioMmio<B>, hide: Features, refuse_features: bool) -> Self {
        Self {
            inner: SimVirtioWindow::new(dev),
            hide: hide.bits(),
            refuse_features,
            selected: Rc::new(Cell::new(0)),
        }
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
            regs::DEVICE_FEATURES => v & !((self.hide >> (32 * self.selected.get())) as u32),
            regs::STATUS if self.refuse_features => v & !(DeviceStatus::FEATURES_OK.bits() as u32),
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
