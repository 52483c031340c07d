//! virtio over PCI, the modern interface (§4.1): the virtio structures
//! are found by walking the vendor-specific capabilities in PCI
//! configuration space (§4.1.4), each pointing into a BAR.

use super::{QueueAreas, RegisterIo, Transport};
use crate::virtio::spec::{
    cfg_type, common_reg, DeviceStatus, Features, NO_VECTOR, PCI_CAPABILITY_LIST, PCI_CAP_ID_VNDR,
    PCI_MODERN_DEVICE_BASE, PCI_STATUS, PCI_STATUS_CAP_LIST, PCI_SUBSYSTEM_ID, PCI_VENDOR_ID,
};
use crate::virtio::spec::{PciCap, PciNotifyCap};
use crate::DriverError;
use core::mem::size_of;

/// Reads of a PCI function's configuration space (ECAM, a VFIO region,
/// port I/O): what the capability walk needs. Only aligned 32-bit reads
/// are required; narrower ones are taken from them.
pub trait PciConfigSpace {
    /// The aligned dword at `offset` (a multiple of 4, below 4096).
    fn read32(&self, offset: u16) -> u32;

    /// The byte at `offset`.
    fn read8(&self, offset: u16) -> u8 {
        (self.read32(offset & !3) >> (8 * (offset & 3))) as u8
    }

    /// The 16-bit word at `offset` (2-aligned).
    fn read16(&self, offset: u16) -> u16 {
        (self.read32(offset & !3) >> (8 * (offset & 2))) as u16
    }
}

impl<C: PciConfigSpace + ?Sized> PciConfigSpace for &C {
    fn read32(&self, offset: u16) -> u32 {
        (**self).read32(offset)
    }
}

/// The virtio device type of a PCI function (§4.1.2): device id `0x1040 +
/// type` for a modern device, the subsystem device id for a transitional
/// one (0x1000 to 0x103f).
///
/// # Errors
///
/// [`DriverError::Unsupported`] for a function that is not virtio.
pub fn device_type(config: &impl PciConfigSpace) -> Result<u32, DriverError> {
    let ids = config.read32(0);
    let (vendor, device) = (ids as u16, (ids >> 16) as u16);
    if vendor != PCI_VENDOR_ID {
        return Err(DriverError::Unsupported(
            "a virtio PCI function (vendor 0x1af4)",
        ));
    }
    match device {
        0x1040..=0x107f => Ok(u32::from(device - PCI_MODERN_DEVICE_BASE)),
        0x1000..=0x103f => Ok(u32::from(config.read16(PCI_SUBSYSTEM_ID))),
        _ => Err(DriverError::Unsupported(
            "a virtio PCI device id (0x1000 to 0x107f)",
        )),
    }
}

/// Where one virtio structure lives: BAR, offset and length (a decoded
/// `virtio_pci_cap`), plus the notify multiplier for the notify one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapLocation {
    /// BAR index (0 to 5).
    pub bar: u8,
    /// Offset of the structure in the BAR.
    pub offset: u32,
    /// Length of the structure.
    pub length: u32,
    /// `notify_off_multiplier` (notify capability only, else 0).
    pub notify_off_multiplier: u32,
}

/// The virtio structures a function's capabilities point at (§4.1.4):
/// the first of each type with a valid BAR, as §4.1.4.1 advises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioPciCaps {
    /// Common configuration (required).
    pub common: Option<CapLocation>,
    /// Notifications (required).
    pub notify: Option<CapLocation>,
    /// ISR status.
    pub isr: Option<CapLocation>,
    /// Device-specific configuration.
    pub device: Option<CapLocation>,
}

/// A field's offset in a capability structure, as a config-space offset.
macro_rules! field {
    ($t:ty, $f:ident) => {
        core::mem::offset_of!($t, $f) as u16
    };
}

/// The most capabilities walked: a config space of 4096 bytes holds at
/// most this many 4-byte-aligned ones in the first 256 bytes, so a longer
/// walk is a loop in the list.
const MAX_CAPS: usize = 48;

impl VirtioPciCaps {
    /// Walks the capability list of `config`.
    ///
    /// # Errors
    ///
    /// [`DriverError::Unsupported`] when the function has no capability
    /// list, the list loops or leaves the header, or a virtio capability
    /// is too short.
    pub fn find(config: &impl PciConfigSpace) -> Result<Self, DriverError> {
        if config.read16(PCI_STATUS) & PCI_STATUS_CAP_LIST == 0 {
            return Err(DriverError::Unsupported(
                "a PCI capability list (is this a modern virtio-pci function?)",
            ));
        }
        let mut caps = Self::default();
        let mut ptr = u16::from(config.read8(PCI_CAPABILITY_LIST) & 0xfc);
        for _ in 0..MAX_CAPS {
            if ptr == 0 {
                return Ok(caps);
            }
            if !(0x40..=0xfc).contains(&ptr) {
                return Err(DriverError::Unsupported(
                    "a PCI capability list inside the device-specific header (0x40..0x100)",
                ));
            }
            if config.read8(ptr + field!(PciCap, cap_vndr)) == PCI_CAP_ID_VNDR {
                caps.take(config, ptr)?;
            }
            ptr = u16::from(config.read8(ptr + field!(PciCap, cap_next)) & 0xfc);
        }
        Err(DriverError::Unsupported(
            "a PCI capability list that ends (it loops)",
        ))
    }

    /// Records the virtio capability at `ptr` if its type is still free.
    fn take(&mut self, config: &impl PciConfigSpace, ptr: u16) -> Result<(), DriverError> {
        let cap_len = config.read8(ptr + field!(PciCap, cap_len));
        let kind = config.read8(ptr + field!(PciCap, cfg_type));
        let bar = config.read8(ptr + field!(PciCap, bar));
        if bar > 5 {
            return Ok(()); // reserved BAR values: skip (§4.1.4.1)
        }
        let slot = match kind {
            cfg_type::COMMON => &mut self.common,
            cfg_type::NOTIFY => &mut self.notify,
            cfg_type::ISR => &mut self.isr,
            cfg_type::DEVICE => &mut self.device,
            _ => return Ok(()),
        };
        if slot.is_some() {
            return Ok(());
        }
        let needed = if kind == cfg_type::NOTIFY {
            size_of::<PciNotifyCap>()
        } else {
            size_of::<PciCap>()
        } as u8;
        if cap_len < needed || ptr + u16::from(needed) > 0x100 {
            return Err(DriverError::Unsupported(
                "virtio PCI capabilities of the length §4.1.4 gives them",
            ));
        }
        *slot = Some(CapLocation {
            bar,
            offset: config.read32(ptr + field!(PciCap, offset)),
            length: config.read32(ptr + field!(PciCap, length)),
            notify_off_multiplier: if kind == cfg_type::NOTIFY {
                config.read32(ptr + field!(PciNotifyCap, notify_off_multiplier))
            } else {
                0
            },
        });
        Ok(())
    }
}

/// A part of a register window: `len` bytes from `base`. Accesses past
/// its end read as all ones and write nothing, like the window's own.
#[derive(Clone, Debug)]
pub struct Region<R> {
    io: R,
    base: usize,
    len: usize,
}

impl<R: RegisterIo> Region<R> {
    /// `len` bytes at `base` in `io`.
    ///
    /// # Errors
    ///
    /// [`DriverError::Unsupported`] when they do not fit in `io`.
    pub fn new(io: R, base: usize, len: usize) -> Result<Self, DriverError> {
        if base.checked_add(len).is_none_or(|end| end > io.size()) {
            return Err(DriverError::Unsupported(
                "virtio structures inside their BAR (a capability points past its end)",
            ));
        }
        Ok(Self { io, base, len })
    }

    fn at(&self, offset: usize, width: usize) -> Option<usize> {
        let end = offset.checked_add(width)?;
        (end <= self.len).then_some(self.base + offset)
    }
}

impl<R: RegisterIo> RegisterIo for Region<R> {
    fn size(&self) -> usize {
        self.len
    }
    fn read8(&self, offset: usize) -> u8 {
        self.at(offset, 1).map_or(u8::MAX, |o| self.io.read8(o))
    }
    fn read16(&self, offset: usize) -> u16 {
        self.at(offset, 2).map_or(u16::MAX, |o| self.io.read16(o))
    }
    fn read32(&self, offset: usize) -> u32 {
        self.at(offset, 4).map_or(u32::MAX, |o| self.io.read32(o))
    }
    fn write8(&self, offset: usize, value: u8) {
        if let Some(o) = self.at(offset, 1) {
            self.io.write8(o, value);
        }
    }
    fn write16(&self, offset: usize, value: u16) {
        if let Some(o) = self.at(offset, 2) {
            self.io.write16(o, value);
        }
    }
    fn write32(&self, offset: usize, value: u32) {
        if let Some(o) = self.at(offset, 4) {
            self.io.write32(o, value);
        }
    }
}

/// A modern virtio-pci device: its common configuration, notify and
/// device configuration regions, each a [`Region`] of a BAR window `R`.
#[derive(Clone, Debug)]
pub struct PciTransport<R> {
    device_type: u32,
    common: Region<R>,
    notify: Region<R>,
    notify_off_multiplier: u32,
    device: Option<Region<R>>,
}

impl<R: RegisterIo + Clone> PciTransport<R> {
    /// Finds the virtio structures through `config`'s capabilities and
    /// reaches them through `bar`, which gives the register window of a
    /// BAR by index (the board assigned the BARs and enabled memory
    /// decoding and bus mastering in the command register).
    ///
    /// # Example
    ///
    /// A board with ECAM and BARs it assigned itself (QEMU `virt`: the
    /// virtio structures of `virtio-blk-pci` are all in BAR4):
    ///
    /// ```no_run
    /// use core::ptr::NonNull;
    /// use dma_drivers::virtio::transport::pci::{PciConfigSpace, PciTransport};
    /// use dma_drivers::virtio::transport::MmioWindow;
    ///
    /// /// One function's 4 KiB of ECAM.
    /// struct Ecam(NonNull<u8>);
    ///
    /// impl PciConfigSpace for Ecam {
    ///     fn read32(&self, offset: u16) -> u32 {
    ///         // SAFETY: the 4 KiB ECAM window of this function is mapped as
    ///         // Device memory, and `offset` is an aligned dword below 4096.
    ///         unsafe { self.0.as_ptr().add(usize::from(offset)).cast::<u32>().read_volatile() }
    ///     }
    /// }
    ///
    /// fn bring_up(ecam: NonNull<u8>, bar4: NonNull<u8>) -> Result<(), dma_drivers::DriverError> {
    ///     let config = Ecam(ecam);
    ///     // SAFETY: the board assigned BAR4 (0x4000 bytes) at `bar4`, mapped it as
    ///     // Device memory and enabled memory decoding and bus mastering.
    ///     let window = unsafe { MmioWindow::new(bar4, 0x4000) };
    ///     let transport = PciTransport::new(&config, |bar| (bar == 4).then_some(window))?;
    ///     // ... VirtioBlk::start(transport, platform, wait, VirtioOptions::default())
    ///     # let _ = transport;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`DriverError::Unsupported`] when the common or notify capability
    /// is missing, a capability names a BAR `bar` cannot give, or points
    /// past the BAR's end, or the common configuration is too short.
    pub fn new(
        config: &impl PciConfigSpace,
        mut bar: impl FnMut(u8) -> Option<R>,
    ) -> Result<Self, DriverError> {
        let device_type = device_type(config)?;
        let caps = VirtioPciCaps::find(config)?;
        let mut region = |cap: CapLocation| {
            let io = bar(cap.bar).ok_or(DriverError::Unsupported(
                "the BAR a virtio capability names (not given by the board)",
            ))?;
            Region::new(io, cap.offset as usize, cap.length as usize)
        };
        let common = caps.common.ok_or(DriverError::Unsupported(
            "a virtio common configuration capability",
        ))?;
        let notify = caps
            .notify
            .ok_or(DriverError::Unsupported("a virtio notify capability"))?;
        let common_region = region(common)?;
        if common_region.size() < common_reg::QUEUE_DEVICE + 8 {
            return Err(DriverError::Unsupported(
                "a virtio common configuration structure of at least 0x38 bytes",
            ));
        }
        Ok(Self {
            device_type,
            common: common_region,
            notify: region(notify)?,
            notify_off_multiplier: notify.notify_off_multiplier,
            device: caps.device.map(&mut region).transpose()?,
        })
    }

    fn select(&self, queue: u16) {
        self.common.write16(common_reg::QUEUE_SELECT, queue);
    }

    fn write_addr(&self, low: usize, addr: dma_core::DmaAddr) {
        let a = addr.as_u64();
        self.common.write32(low, a as u32);
        self.common.write32(low + 4, (a >> 32) as u32);
    }

    /// The number of queues the device has.
    pub fn num_queues(&self) -> u16 {
        self.common.read16(common_reg::NUM_QUEUES)
    }
}

/// A queue's notify address (§4.1.4.4): `queue_notify_off *
/// notify_off_multiplier` into the notify region, written with the queue
/// index as 16 bits (§4.1.5.2, without `NOTIFICATION_DATA`).
#[derive(Clone, Debug)]
pub struct PciNotify<R> {
    region: Region<R>,
    offset: usize,
}

impl<R: RegisterIo> dma_ring::Doorbell for PciNotify<R> {
    fn ring(&self, value: u32) {
        self.region.write16(self.offset, value as u16);
    }
}

impl<R: RegisterIo + Clone> Transport for PciTransport<R> {
    type Notify = PciNotify<R>;

    fn device_type(&self) -> u32 {
        self.device_type
    }

    fn device_features(&self) -> Features {
        let word = |sel| {
            self.common.write32(common_reg::DEVICE_FEATURE_SELECT, sel);
            u64::from(self.common.read32(common_reg::DEVICE_FEATURE))
        };
        Features::from_bits_retain(word(0) | word(1) << 32)
    }

    fn set_driver_features(&self, features: Features) {
        let bits = features.bits();
        for (sel, word) in [(0, bits as u32), (1, (bits >> 32) as u32)] {
            self.common.write32(common_reg::DRIVER_FEATURE_SELECT, sel);
            self.common.write32(common_reg::DRIVER_FEATURE, word);
        }
    }

    fn status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_retain(self.common.read8(common_reg::DEVICE_STATUS))
    }

    fn set_status(&self, status: DeviceStatus) {
        self.common.write8(common_reg::DEVICE_STATUS, status.bits());
    }

    fn max_queue_size(&self, queue: u16) -> u16 {
        if queue >= self.num_queues() {
            return 0;
        }
        self.select(queue);
        self.common.read16(common_reg::QUEUE_SIZE).min(32768)
    }

    fn program_queue(&self, queue: u16, size: u16, areas: QueueAreas) {
        self.select(queue);
        self.common.write16(common_reg::QUEUE_SIZE, size);
        // Polled: no MSI-X vector for the queue.
        self.common
            .write16(common_reg::QUEUE_MSIX_VECTOR, NO_VECTOR);
        self.write_addr(common_reg::QUEUE_DESC, areas.desc);
        self.write_addr(common_reg::QUEUE_DRIVER, areas.driver);
        self.write_addr(common_reg::QUEUE_DEVICE, areas.device);
    }

    fn enable_queue(&self, queue: u16) {
        self.select(queue);
        self.common.write16(common_reg::QUEUE_ENABLE, 1);
    }

    fn queue_enabled(&self, queue: u16) -> bool {
        self.select(queue);
        self.common.read16(common_reg::QUEUE_ENABLE) & 1 == 1
    }

    fn notifier(&self, queue: u16) -> Result<PciNotify<R>, DriverError> {
        self.select(queue);
        let off = u64::from(self.common.read16(common_reg::QUEUE_NOTIFY_OFF));
        let offset = off * u64::from(self.notify_off_multiplier);
        if offset + 2 > self.notify.size() as u64 {
            return Err(DriverError::Unsupported(
                "a queue notify address inside the notify region",
            ));
        }
        Ok(PciNotify {
            region: self.notify.clone(),
            offset: offset as usize,
        })
    }

    fn config_generation(&self) -> u32 {
        self.common.read8(common_reg::CONFIG_GENERATION).into()
    }

    fn config_size(&self) -> usize {
        self.device.as_ref().map_or(0, |d| d.size())
    }

    fn read_config_u8(&self, offset: usize) -> u8 {
        self.device.as_ref().map_or(u8::MAX, |d| d.read8(offset))
    }

    fn read_config_u16(&self, offset: usize) -> u16 {
        self.device.as_ref().map_or(u16::MAX, |d| d.read16(offset))
    }

    fn read_config_u32(&self, offset: usize) -> u32 {
        self.device.as_ref().map_or(u32::MAX, |d| d.read32(offset))
    }
}

#[cfg(test)]
mod tests {
    use core::cell::RefCell;

    use super::*;
    use dma_ring::Doorbell;

    /// A BAR in RAM, recording nothing but its bytes.
    struct Bar(RefCell<[u8; 0x4000]>);

    impl RegisterIo for Bar {
        fn size(&self) -> usize {
            0x4000
        }
        fn read8(&self, o: usize) -> u8 {
            self.0.borrow()[o]
        }
        fn read16(&self, o: usize) -> u16 {
            let b = self.0.borrow();
            u16::from_le_bytes([b[o], b[o + 1]])
        }
        fn read32(&self, o: usize) -> u32 {
            let b = self.0.borrow();
            u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
        }
        fn write8(&self, o: usize, v: u8) {
            self.0.borrow_mut()[o] = v;
        }
        fn write16(&self, o: usize, v: u16) {
            self.0.borrow_mut()[o..o + 2].copy_from_slice(&v.to_le_bytes());
        }
        fn write32(&self, o: usize, v: u32) {
            self.0.borrow_mut()[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
    }

    struct Cfg([u8; 256]);

    impl PciConfigSpace for Cfg {
        fn read32(&self, o: u16) -> u32 {
            let o = usize::from(o);
            u32::from_le_bytes([self.0[o], self.0[o + 1], self.0[o + 2], self.0[o + 3]])
        }
    }

    impl Cfg {
        fn cap(&mut self, at: usize, next: u8, kind: u8, bar: u8, offset: u32, len: u32) {
            // As QEMU: 16 bytes, 20 for the notify and PCI-access ones.
            let size = if matches!(kind, cfg_type::NOTIFY | cfg_type::PCI) {
                20
            } else {
                16
            };
            let c = &mut self.0[at..at + size];
            c[..6].copy_from_slice(&[PCI_CAP_ID_VNDR, next, size as u8, kind, bar, 0]);
            c[8..12].copy_from_slice(&offset.to_le_bytes());
            c[12..16].copy_from_slice(&len.to_le_bytes());
            if kind == cfg_type::NOTIFY {
                c[16..20].copy_from_slice(&4u32.to_le_bytes());
            }
        }
    }

    /// QEMU 7.2's virtio-blk-pci layout (docs: /work/shared/qemu-virt.md):
    /// everything in BAR4, caps from 0x40, MSI-X (id 0x11) in the list.
    fn qemu_blk() -> Cfg {
        let mut c = Cfg([0; 256]);
        c.0[0..4].copy_from_slice(&[0xf4, 0x1a, 0x42, 0x10]);
        c.0[6] = 0x10; // status: capability list
        c.0[0x34] = 0x98;
        c.0[0x98..0x9a].copy_from_slice(&[0x11, 0x84]); // MSI-X, then vendor caps
        c.cap(0x84, 0x70, cfg_type::PCI, 0, 0, 0);
        c.cap(0x70, 0x60, cfg_type::NOTIFY, 4, 0x3000, 0x1000);
        c.cap(0x60, 0x50, cfg_type::DEVICE, 4, 0x2000, 0x1000);
        c.cap(0x50, 0x40, cfg_type::ISR, 4, 0x1000, 0x1000);
        c.cap(0x40, 0, cfg_type::COMMON, 4, 0, 0x1000);
        c
    }

    fn bar() -> Bar {
        Bar(RefCell::new([0; 0x4000]))
    }

    #[test]
    fn finds_qemu_layout_and_notifies_at_offset_times_multiplier() {
        let b = bar();
        let t = PciTransport::new(&qemu_blk(), |i| (i == 4).then_some(&b)).unwrap();
        assert_eq!(t.device_type(), crate::virtio::spec::device_id::BLOCK);
        assert_eq!(t.config_size(), 0x1000);
        b.write16(common_reg::NUM_QUEUES, 1);
        b.write16(common_reg::QUEUE_SIZE, 256);
        assert_eq!(t.max_queue_size(0), 256);
        assert_eq!(t.max_queue_size(1), 0, "beyond num_queues");
        b.write16(common_reg::QUEUE_NOTIFY_OFF, 2);
        t.notifier(0).unwrap().ring(0x0102_0007);
        assert_eq!(b.read16(0x3000 + 2 * 4), 7, "queue index as 16 bits");
        b.write32(0x2000, 0x800);
        assert_eq!(t.read_config(|t| t.read_config_u64(0)).unwrap(), 0x800);
        t.set_driver_features(Features::VERSION_1 | Features::EVENT_IDX);
        // The last word written is the high one, selected by 1.
        assert_eq!(b.read32(common_reg::DRIVER_FEATURE_SELECT), 1);
        assert_eq!(b.read32(common_reg::DRIVER_FEATURE), 1);
        t.program_queue(
            0,
            16,
            QueueAreas {
                desc: dma_core::DmaAddr::new(0x1_2345_6000),
                driver: dma_core::DmaAddr::new(0x7000),
                device: dma_core::DmaAddr::new(0x8000),
            },
        );
        assert_eq!(b.read32(common_reg::QUEUE_DESC), 0x2345_6000);
        assert_eq!(b.read32(common_reg::QUEUE_DESC + 4), 1);
        assert_eq!(b.read16(common_reg::QUEUE_SIZE), 16);
        assert_eq!(b.read16(common_reg::QUEUE_MSIX_VECTOR), NO_VECTOR);
        t.set_status(DeviceStatus::ACKNOWLEDGE);
        assert_eq!(b.read8(common_reg::DEVICE_STATUS), 1);
    }

    #[test]
    fn transitional_devices_take_their_type_from_the_subsystem_id() {
        let mut c = qemu_blk();
        c.0[2..4].copy_from_slice(&0x1001u16.to_le_bytes());
        c.0[0x2e] = 2;
        assert_eq!(device_type(&c).unwrap(), 2);
    }

    fn refused(c: &Cfg, b: &Bar) -> &'static str {
        match PciTransport::new(c, |i| (i == 4).then_some(b)) {
            Err(DriverError::Unsupported(m)) => m,
            other => panic!("expected Unsupported, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn malformed_functions_are_refused_with_a_reason() {
        let b = bar();
        let mut c = qemu_blk();
        c.0[0] = 0x86;
        assert!(refused(&c, &b).contains("vendor"));

        let mut c = qemu_blk();
        c.0[2..4].copy_from_slice(&0x1100u16.to_le_bytes());
        assert!(refused(&c, &b).contains("device id"));

        let mut c = qemu_blk();
        c.0[6] = 0;
        assert!(refused(&c, &b).contains("capability list"));

        let mut c = qemu_blk();
        c.0[0x40 + 1] = 0x84; // common -> pci cfg -> notify ... -> common: a loop
        assert!(refused(&c, &b).contains("loops"));

        let mut c = qemu_blk();
        c.0[0x50 + 1] = 0x10; // into the standard header
        assert!(refused(&c, &b).contains("0x40..0x100"));

        let mut c = qemu_blk();
        c.0[0x70 + 3] = cfg_type::VENDOR; // no notify capability
        assert!(refused(&c, &b).contains("notify"));

        let mut c = qemu_blk();
        c.cap(0x60, 0x50, cfg_type::DEVICE, 4, 0x3800, 0x1000); // past BAR4's end
        assert!(refused(&c, &b).contains("BAR"));

        let mut c = qemu_blk();
        c.cap(0x40, 0, cfg_type::COMMON, 2, 0, 0x1000); // a BAR the board has not mapped
        assert!(refused(&c, &b).contains("BAR"));

        let mut c = qemu_blk();
        c.cap(0x40, 0, cfg_type::COMMON, 4, 0, 0x20);
        assert!(refused(&c, &b).contains("0x38"));

        let mut c = qemu_blk();
        c.0[0x70 + 2] = 16; // a notify capability without its multiplier
        assert!(refused(&c, &b).contains("length"));

        let t = PciTransport::new(&qemu_blk(), |i| (i == 4).then_some(&b)).unwrap();
        b.write16(common_reg::QUEUE_NOTIFY_OFF, 0x400); // 0x1000 bytes in: outside
        assert!(matches!(t.notifier(0), Err(DriverError::Unsupported(_))));
    }

    #[test]
    fn regions_read_ones_outside_and_drop_writes() {
        let b = bar();
        let r = Region::new(&b, 0x100, 8).unwrap();
        r.write32(4, 0xdead_beef);
        r.write32(6, 1);
        assert_eq!(
            (r.read32(4), r.read32(6), r.read8(8)),
            (0xdead_beef, u32::MAX, 0xff)
        );
        assert_eq!(b.read32(0x104), 0xdead_beef);
        assert!(Region::new(&b, 0x3ffc, 8).is_err());
        assert!(Region::new(&b, usize::MAX, 2).is_err());
    }
}
