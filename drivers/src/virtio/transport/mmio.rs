//! virtio over MMIO, version 2 (§4.2): one register window per device,
//! device configuration from 0x100.

use super::{QueueAreas, RegisterIo, Transport};
use crate::virtio::spec::{mmio_reg, DeviceStatus, Features, MMIO_MAGIC, MMIO_VERSION};
use crate::DriverError;

/// A virtio-mmio device behind the register window `R`.
#[derive(Clone, Debug)]
pub struct MmioTransport<R> {
    regs: R,
}

impl<R: RegisterIo + Clone> MmioTransport<R> {
    /// The device behind `regs`, after checking the window (§4.2.3.1.1:
    /// magic, version 2, a device present).
    ///
    /// # Errors
    ///
    /// [`DriverError::Unsupported`] for a window smaller than the
    /// registers, a wrong magic value, a legacy (version 1) interface or
    /// no device (id 0).
    pub fn new(regs: R) -> Result<Self, DriverError> {
        if regs.size() < mmio_reg::CONFIG {
            return Err(DriverError::Unsupported(
                "a virtio-mmio window of at least 0x100 bytes",
            ));
        }
        if regs.read32(mmio_reg::MAGIC_VALUE) != MMIO_MAGIC {
            return Err(DriverError::Unsupported(
                "the virtio-mmio magic value (is this a virtio-mmio window?)",
            ));
        }
        if regs.read32(mmio_reg::VERSION) != MMIO_VERSION {
            return Err(DriverError::Unsupported(
                "virtio-mmio version 2 (legacy version 1 devices are not driven)",
            ));
        }
        if regs.read32(mmio_reg::DEVICE_ID) == 0 {
            return Err(DriverError::Unsupported(
                "a device behind this virtio-mmio window (device id 0)",
            ));
        }
        Ok(Self { regs })
    }

    /// The register window.
    pub fn registers(&self) -> &R {
        &self.regs
    }

    fn write_addr(&self, low: usize, addr: dma_core::DmaAddr) {
        let a = addr.as_u64();
        self.regs.write32(low, a as u32);
        self.regs.write32(low + 4, (a >> 32) as u32);
    }
}

/// Queue notification through `QueueNotify` (§4.2.3.3): the queue index,
/// a 32-bit write.
#[derive(Clone, Debug)]
pub struct MmioNotify<R> {
    regs: R,
}

impl<R: RegisterIo> dma_ring::Doorbell for MmioNotify<R> {
    fn ring(&self, value: u32) {
        self.regs.write32(mmio_reg::QUEUE_NOTIFY, value);
    }
}

impl<R: RegisterIo + Clone> Transport for MmioTransport<R> {
    type Notify = MmioNotify<R>;

    fn device_type(&self) -> u32 {
        self.regs.read32(mmio_reg::DEVICE_ID)
    }

    fn device_features(&self) -> Features {
        let word = |sel| {
            self.regs.write32(mmio_reg::DEVICE_FEATURES_SEL, sel);
            u64::from(self.regs.read32(mmio_reg::DEVICE_FEATURES))
        };
        Features::from_bits_retain(word(0) | word(1) << 32)
    }

    fn set_driver_features(&self, features: Features) {
        let bits = features.bits();
        for (sel, word) in [(0, bits as u32), (1, (bits >> 32) as u32)] {
            self.regs.write32(mmio_reg::DRIVER_FEATURES_SEL, sel);
            self.regs.write32(mmio_reg::DRIVER_FEATURES, word);
        }
    }

    fn status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(self.regs.read32(mmio_reg::STATUS) as u8)
    }

    fn set_status(&self, status: DeviceStatus) {
        self.regs
            .write32(mmio_reg::STATUS, u32::from(status.bits()));
    }

    fn max_queue_size(&self, queue: u16) -> u16 {
        self.regs.write32(mmio_reg::QUEUE_SEL, queue.into());
        if self.regs.read32(mmio_reg::QUEUE_READY) != 0 {
            return 0; // in use: not ours to program (§4.2.3.2 step 2)
        }
        // Sizes beyond a split queue's 32768 are clamped; the spec's
        // packed maximum is the same.
        self.regs.read32(mmio_reg::QUEUE_NUM_MAX).min(32768) as u16
    }

    fn program_queue(&self, queue: u16, size: u16, areas: QueueAreas) {
        self.regs.write32(mmio_reg::QUEUE_SEL, queue.into());
        self.regs.write32(mmio_reg::QUEUE_NUM, size.into());
        self.write_addr(mmio_reg::QUEUE_DESC, areas.desc);
        self.write_addr(mmio_reg::QUEUE_DRIVER, areas.driver);
        self.write_addr(mmio_reg::QUEUE_DEVICE, areas.device);
    }

    fn enable_queue(&self, queue: u16) {
        self.regs.write32(mmio_reg::QUEUE_SEL, queue.into());
        self.regs.write32(mmio_reg::QUEUE_READY, 1);
    }

    fn queue_enabled(&self, queue: u16) -> bool {
        self.regs.write32(mmio_reg::QUEUE_SEL, queue.into());
        self.regs.read32(mmio_reg::QUEUE_READY) & 1 == 1
    }

    fn notifier(&self, _queue: u16) -> Result<MmioNotify<R>, DriverError> {
        Ok(MmioNotify {
            regs: self.regs.clone(),
        })
    }

    fn config_generation(&self) -> u32 {
        self.regs.read32(mmio_reg::CONFIG_GENERATION)
    }

    fn config_size(&self) -> usize {
        self.regs.size() - mmio_reg::CONFIG
    }

    fn read_config_u8(&self, offset: usize) -> u8 {
        self.regs.read8(mmio_reg::CONFIG.saturating_add(offset))
    }

    fn read_config_u16(&self, offset: usize) -> u16 {
        self.regs.read16(mmio_reg::CONFIG.saturating_add(offset))
    }

    fn read_config_u32(&self, offset: usize) -> u32 {
        self.regs.read32(mmio_reg::CONFIG.saturating_add(offset))
    }
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;

    use super::*;

    /// A virtio-mmio window in RAM: the identification registers as
    /// given, a configuration generation that moves on every read when
    /// `churn` is set, and 8 bytes of configuration.
    struct Window {
        magic: u32,
        version: u32,
        device: u32,
        size: usize,
        generation: Cell<u32>,
        churn: bool,
    }

    impl Window {
        fn good() -> Self {
            Self {
                magic: MMIO_MAGIC,
                version: MMIO_VERSION,
                device: 2,
                size: 0x108,
                generation: Cell::new(0),
                churn: false,
            }
        }
    }

    impl RegisterIo for Window {
        fn size(&self) -> usize {
            self.size
        }
        fn read8(&self, offset: usize) -> u8 {
            self.read32(offset & !3) as u8
        }
        fn read16(&self, offset: usize) -> u16 {
            self.read32(offset & !3) as u16
        }
        fn read32(&self, offset: usize) -> u32 {
            if offset.checked_add(4).is_none_or(|end| end > self.size) {
                return u32::MAX;
            }
            match offset {
                mmio_reg::MAGIC_VALUE => self.magic,
                mmio_reg::VERSION => self.version,
                mmio_reg::DEVICE_ID => self.device,
                mmio_reg::CONFIG_GENERATION => {
                    let g = self.generation.get();
                    self.generation.set(g + u32::from(self.churn));
                    g
                }
                o if o >= mmio_reg::CONFIG => 0x40 + o as u32,
                _ => 0,
            }
        }
        fn write8(&self, _: usize, _: u8) {}
        fn write16(&self, _: usize, _: u16) {}
        fn write32(&self, _: usize, _: u32) {}
    }

    fn refused(w: Window) -> &'static str {
        match MmioTransport::new(&w) {
            Err(DriverError::Unsupported(m)) => m,
            other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn windows_that_are_not_modern_virtio_mmio_are_refused() {
        assert!(refused(Window {
            size: 0xfc,
            ..Window::good()
        })
        .contains("0x100"));
        assert!(refused(Window {
            magic: 0x1234,
            ..Window::good()
        })
        .contains("magic"));
        assert!(refused(Window {
            version: 1,
            ..Window::good()
        })
        .contains("version 2"));
        assert!(refused(Window {
            device: 0,
            ..Window::good()
        })
        .contains("device id 0"));
    }

    #[test]
    fn config_reads_retry_a_moving_generation_then_give_up() {
        let w = Window::good();
        let t = MmioTransport::new(&w).unwrap();
        assert_eq!(t.config_size(), 8);
        assert_eq!(t.read_config(|t| t.read_config_u32(4)).unwrap(), 0x144);
        let w = Window {
            churn: true,
            ..Window::good()
        };
        let t = MmioTransport::new(&w).unwrap();
        assert!(matches!(
            t.read_config(|t| t.read_config_u32(0)),
            Err(DriverError::Timeout(_))
        ));
        // Far past the window: all ones, no overflow.
        assert_eq!(t.read_config_u32(usize::MAX), u32::MAX);
    }
}
