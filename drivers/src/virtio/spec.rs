//! The driver's side of the Virtual I/O Device specification 1.2: feature
//! bits (§6, §5.1.3, §5.2.3), device status (§2.1), the virtio-pci
//! capabilities and common configuration structure (§4.1.4), the
//! virtio-mmio register block (§4.2.2), and the virtio-blk (§5.2) and
//! virtio-net (§5.1) structures a driver exchanges with the device.
//!
//! Every structure is little-endian on the wire (virtio 1.x has no legacy
//! endianness), laid out `#[repr(C)]` with its size and offsets asserted
//! against the spec's tables. The register blocks are tock-registers
//! structs; the transports take their offsets from them
//! ([`mmio_reg`], [`common_reg`]), so each offset is written once.

use bitflags::bitflags;
use core::mem::{offset_of, size_of};
use static_assertions::const_assert_eq;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use zerocopy::{FromBytes, Immutable, IntoBytes};

bitflags! {
    /// Feature bits (§6 device-independent bits; device-specific bits are
    /// named by device, [`blk_features`] and [`net_features`], because
    /// bits 0 to 23 mean different things per device type).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Features: u64 {
        /// Bit 28: descriptors may point at tables of descriptors (§2.7.5.3).
        const INDIRECT_DESC = 1 << 28;
        /// Bit 29: `used_event` / `avail_event` suppress notifications
        /// (§2.7.7, §2.7.10).
        const EVENT_IDX = 1 << 29;
        /// Bit 32: the device follows virtio 1.x (no legacy interface).
        const VERSION_1 = 1 << 32;
        /// Bit 33: the device reaches memory through the platform's DMA
        /// translation (an IOMMU); without it, it uses physical addresses.
        const ACCESS_PLATFORM = 1 << 33;
        /// Bit 34: packed virtqueues (§2.8).
        const RING_PACKED = 1 << 34;
        /// Bit 35: buffers are used in the order they were made available.
        const IN_ORDER = 1 << 35;
        /// Bit 36: the driver must use the platform's memory barriers.
        const ORDER_PLATFORM = 1 << 36;
        /// Bit 37: single-root I/O virtualization.
        const SR_IOV = 1 << 37;
        /// Bit 38: notifications carry extra data.
        const NOTIFICATION_DATA = 1 << 38;
        /// Bit 39: notifications use a device-supplied value.
        const NOTIF_CONFIG_DATA = 1 << 39;
        /// Bit 40: queues can be reset one by one (§2.6.1).
        const RING_RESET = 1 << 40;
    }
}

/// virtio-blk feature bits (§5.2.3).
pub mod blk_features {
    use super::Features;
    /// Bit 1: `size_max` is the largest segment the device takes.
    pub const SIZE_MAX: Features = Features::from_bits_retain(1 << 1);
    /// Bit 2: `seg_max` is the most segments per request.
    pub const SEG_MAX: Features = Features::from_bits_retain(1 << 2);
    /// Bit 4: `geometry` is valid.
    pub const GEOMETRY: Features = Features::from_bits_retain(1 << 4);
    /// Bit 5: the disk is read-only.
    pub const RO: Features = Features::from_bits_retain(1 << 5);
    /// Bit 6: `blk_size` is valid.
    pub const BLK_SIZE: Features = Features::from_bits_retain(1 << 6);
    /// Bit 9: the `FLUSH` request exists.
    pub const FLUSH: Features = Features::from_bits_retain(1 << 9);
    /// Bit 10: `topology` is valid.
    pub const TOPOLOGY: Features = Features::from_bits_retain(1 << 10);
    /// Bit 11: the cache mode is in `writeback`.
    pub const CONFIG_WCE: Features = Features::from_bits_retain(1 << 11);
    /// Bit 12: several request queues.
    pub const MQ: Features = Features::from_bits_retain(1 << 12);
    /// Bit 13: the `DISCARD` request exists.
    pub const DISCARD: Features = Features::from_bits_retain(1 << 13);
    /// Bit 14: the `WRITE_ZEROES` request exists.
    pub const WRITE_ZEROES: Features = Features::from_bits_retain(1 << 14);
}

/// virtio-net feature bits (§5.1.3).
pub mod net_features {
    use super::Features;
    /// Bit 0: the device checksums partially checksummed frames.
    pub const CSUM: Features = Features::from_bits_retain(1 << 0);
    /// Bit 1: the driver takes partially checksummed frames.
    pub const GUEST_CSUM: Features = Features::from_bits_retain(1 << 1);
    /// Bit 3: `mtu` is valid.
    pub const MTU: Features = Features::from_bits_retain(1 << 3);
    /// Bit 5: `mac` is valid.
    pub const MAC: Features = Features::from_bits_retain(1 << 5);
    /// Bit 15: received frames may span several buffers.
    pub const MRG_RXBUF: Features = Features::from_bits_retain(1 << 15);
    /// Bit 16: `status` is valid.
    pub const STATUS: Features = Features::from_bits_retain(1 << 16);
    /// Bit 17: a control virtqueue exists.
    pub const CTRL_VQ: Features = Features::from_bits_retain(1 << 17);
    /// Bit 22: several queue pairs.
    pub const MQ: Features = Features::from_bits_retain(1 << 22);
}

bitflags! {
    /// The device status field (§2.1).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct DeviceStatus: u8 {
        /// The guest found the device.
        const ACKNOWLEDGE = 1;
        /// The guest knows how to drive it.
        const DRIVER = 2;
        /// The driver is set up and ready.
        const DRIVER_OK = 4;
        /// Feature negotiation is complete (the device clears it on
        /// re-read when it refuses the driver's subset).
        const FEATURES_OK = 8;
        /// The device hit an error and must be reset.
        const DEVICE_NEEDS_RESET = 64;
        /// The driver gave up on the device.
        const FAILED = 128;
    }
}

/// Device type ids (§5).
pub mod device_id {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
}

// ---- virtio over PCI (§4.1) --------------------------------------------

/// PCI vendor id of virtio devices (§4.1.2).
pub const PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern (virtio 1.x) PCI device ids are `0x1040 + device type` (§4.1.2).
pub const PCI_MODERN_DEVICE_BASE: u16 = 0x1040;
/// PCI capability id of vendor-specific capabilities, which carry the
/// virtio structures (§4.1.4).
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// Offset of the capabilities pointer in a type 0 PCI header.
pub const PCI_CAPABILITY_LIST: u16 = 0x34;
/// Offset of the status register; bit 4 says a capability list exists.
pub const PCI_STATUS: u16 = 0x06;
/// `PCI_STATUS` bit 4: the capability list exists.
pub const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
/// Offset of the subsystem device id in a type 0 header (a transitional
/// virtio device's type, §4.1.2.1).
pub const PCI_SUBSYSTEM_ID: u16 = 0x2e;
/// Offset of BAR0 in a type 0 header; BAR n is at `+ 4 n`.
pub const PCI_BAR0: u16 = 0x10;
/// `queue_msix_vector` / `config_msix_vector` value for "no vector".
pub const NO_VECTOR: u16 = 0xffff;

/// `cfg_type` of a virtio PCI capability (§4.1.4).
pub mod cfg_type {
    /// Common configuration (§4.1.4.3).
    pub const COMMON: u8 = 1;
    /// Notifications (§4.1.4.4).
    pub const NOTIFY: u8 = 2;
    /// ISR status (§4.1.4.5).
    pub const ISR: u8 = 3;
    /// Device-specific configuration (§4.1.4.6).
    pub const DEVICE: u8 = 4;
    /// PCI configuration access (§4.1.4.8).
    pub const PCI: u8 = 5;
    /// Shared memory region (§4.1.4.7).
    pub const SHARED_MEMORY: u8 = 8;
    /// Vendor-specific data (§4.1.4.9).
    pub const VENDOR: u8 = 9;
}

/// `struct virtio_pci_cap` (§4.1.4): where one virtio structure lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct PciCap {
    /// [`PCI_CAP_ID_VNDR`].
    pub cap_vndr: u8,
    /// Offset of the next capability (0: last).
    pub cap_next: u8,
    /// Length of this capability, at least 16.
    pub cap_len: u8,
    /// Which structure ([`cfg_type`]).
    pub cfg_type: u8,
    /// Which BAR holds it (0 to 5).
    pub bar: u8,
    /// Distinguishes several capabilities of one type.
    pub id: u8,
    /// Padding.
    pub padding: [u8; 2],
    /// Offset of the structure in the BAR (le32).
    pub offset: u32,
    /// Length of the structure in bytes (le32).
    pub length: u32,
}

/// `struct virtio_pci_notify_cap` (§4.1.4.4): the notify capability with
/// the multiplier of each queue's `queue_notify_off`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct PciNotifyCap {
    /// The capability.
    pub cap: PciCap,
    /// Bytes per `queue_notify_off` unit (le32; 0: one address for all).
    pub notify_off_multiplier: u32,
}

const_assert_eq!(size_of::<PciCap>(), 16);
const_assert_eq!(offset_of!(PciCap, cfg_type), 3);
const_assert_eq!(offset_of!(PciCap, bar), 4);
const_assert_eq!(offset_of!(PciCap, offset), 8);
const_assert_eq!(offset_of!(PciCap, length), 12);
const_assert_eq!(size_of::<PciNotifyCap>(), 20);
const_assert_eq!(offset_of!(PciNotifyCap, notify_off_multiplier), 16);

register_structs! {
    /// `struct virtio_pci_common_cfg` (§4.1.4.3). 64-bit fields are
    /// accessed as two 32-bit halves, which §4.1.3.1 allows.
    pub CommonCfg {
        /// Which 32 feature bits `device_feature` shows.
        (0x00 => pub device_feature_select: ReadWrite<u32>),
        /// The device's feature bits, the word selected.
        (0x04 => pub device_feature: ReadOnly<u32>),
        /// Which 32 feature bits `driver_feature` takes.
        (0x08 => pub driver_feature_select: ReadWrite<u32>),
        /// The driver's accepted feature bits, the word selected.
        (0x0c => pub driver_feature: ReadWrite<u32>),
        /// MSI-X vector for configuration changes.
        (0x10 => pub config_msix_vector: ReadWrite<u16>),
        /// Number of virtqueues the device has.
        (0x12 => pub num_queues: ReadOnly<u16>),
        /// [`DeviceStatus`]; writing 0 resets the device.
        (0x14 => pub device_status: ReadWrite<u8>),
        /// Changes whenever the device configuration changes.
        (0x15 => pub config_generation: ReadOnly<u8>),
        /// Which queue the `queue_*` fields address.
        (0x16 => pub queue_select: ReadWrite<u16>),
        /// The selected queue's size: the maximum on reset (0: no such
        /// queue); the driver may write a smaller one.
        (0x18 => pub queue_size: ReadWrite<u16>),
        /// MSI-X vector of the selected queue.
        (0x1a => pub queue_msix_vector: ReadWrite<u16>),
        /// Write 1 to enable the selected queue.
        (0x1c => pub queue_enable: ReadWrite<u16>),
        /// The selected queue's notify offset, in multiplier units.
        (0x1e => pub queue_notify_off: ReadOnly<u16>),
        /// Descriptor area address, low half.
        (0x20 => pub queue_desc_lo: ReadWrite<u32>),
        /// Descriptor area address, high half.
        (0x24 => pub queue_desc_hi: ReadWrite<u32>),
        /// Driver area address, low half.
        (0x28 => pub queue_driver_lo: ReadWrite<u32>),
        /// Driver area address, high half.
        (0x2c => pub queue_driver_hi: ReadWrite<u32>),
        /// Device area address, low half.
        (0x30 => pub queue_device_lo: ReadWrite<u32>),
        /// Device area address, high half.
        (0x34 => pub queue_device_hi: ReadWrite<u32>),
        /// With `NOTIF_CONFIG_DATA`: the value to notify with.
        (0x38 => pub queue_notif_config_data: ReadOnly<u16>),
        /// With `RING_RESET`: resets the selected queue.
        (0x3a => pub queue_reset: ReadWrite<u16>),
        (0x3c => @END),
    }
}

const_assert_eq!(size_of::<CommonCfg>(), 0x3c);

/// Byte offsets of the [`CommonCfg`] fields the transport uses, taken
/// from the struct.
pub mod common_reg {
    use super::CommonCfg;
    use core::mem::offset_of;
    /// `device_feature_select`.
    pub const DEVICE_FEATURE_SELECT: usize = offset_of!(CommonCfg, device_feature_select);
    /// `device_feature`.
    pub const DEVICE_FEATURE: usize = offset_of!(CommonCfg, device_feature);
    /// `driver_feature_select`.
    pub const DRIVER_FEATURE_SELECT: usize = offset_of!(CommonCfg, driver_feature_select);
    /// `driver_feature`.
    pub const DRIVER_FEATURE: usize = offset_of!(CommonCfg, driver_feature);
    /// `config_msix_vector`.
    pub const CONFIG_MSIX_VECTOR: usize = offset_of!(CommonCfg, config_msix_vector);
    /// `num_queues`.
    pub const NUM_QUEUES: usize = offset_of!(CommonCfg, num_queues);
    /// `device_status`.
    pub const DEVICE_STATUS: usize = offset_of!(CommonCfg, device_status);
    /// `config_generation`.
    pub const CONFIG_GENERATION: usize = offset_of!(CommonCfg, config_generation);
    /// `queue_select`.
    pub const QUEUE_SELECT: usize = offset_of!(CommonCfg, queue_select);
    /// `queue_size`.
    pub const QUEUE_SIZE: usize = offset_of!(CommonCfg, queue_size);
    /// `queue_msix_vector`.
    pub const QUEUE_MSIX_VECTOR: usize = offset_of!(CommonCfg, queue_msix_vector);
    /// `queue_enable`.
    pub const QUEUE_ENABLE: usize = offset_of!(CommonCfg, queue_enable);
    /// `queue_notify_off`.
    pub const QUEUE_NOTIFY_OFF: usize = offset_of!(CommonCfg, queue_notify_off);
    /// `queue_desc` (low half; the high half follows).
    pub const QUEUE_DESC: usize = offset_of!(CommonCfg, queue_desc_lo);
    /// `queue_driver` (low half; the high half follows).
    pub const QUEUE_DRIVER: usize = offset_of!(CommonCfg, queue_driver_lo);
    /// `queue_device` (low half; the high half follows).
    pub const QUEUE_DEVICE: usize = offset_of!(CommonCfg, queue_device_lo);
    /// Bytes of the structure the driver needs.
    pub const SIZE: usize = core::mem::size_of::<CommonCfg>();
}

// ---- virtio over MMIO (§4.2) -------------------------------------------

/// `MagicValue`: "virt" little-endian (§4.2.2).
pub const MMIO_MAGIC: u32 = 0x7472_6976;
/// `Version` of the modern virtio-mmio interface (§4.2.2; 1 is legacy).
pub const MMIO_VERSION: u32 = 2;

register_structs! {
    /// The virtio-mmio register block (§4.2.2, Table 4.1), up to the
    /// device configuration space at 0x100. Only 32-bit aligned accesses
    /// are allowed here (§4.2.2.2).
    pub MmioRegisters {
        /// [`MMIO_MAGIC`].
        (0x000 => pub magic_value: ReadOnly<u32>),
        /// [`MMIO_VERSION`].
        (0x004 => pub version: ReadOnly<u32>),
        /// Device type ([`device_id`]); 0 means no device here.
        (0x008 => pub device_id: ReadOnly<u32>),
        /// Vendor id.
        (0x00c => pub vendor_id: ReadOnly<u32>),
        /// The device's feature bits, the word selected.
        (0x010 => pub device_features: ReadOnly<u32>),
        /// Which 32 feature bits `device_features` shows.
        (0x014 => pub device_features_sel: WriteOnly<u32>),
        (0x018 => _reserved0),
        /// The driver's accepted feature bits, the word selected.
        (0x020 => pub driver_features: WriteOnly<u32>),
        /// Which 32 feature bits `driver_features` takes.
        (0x024 => pub driver_features_sel: WriteOnly<u32>),
        (0x028 => _reserved1),
        /// Which queue the queue registers address.
        (0x030 => pub queue_sel: WriteOnly<u32>),
        /// Largest size of the selected queue (0: no such queue).
        (0x034 => pub queue_num_max: ReadOnly<u32>),
        /// Size the driver chose for the selected queue.
        (0x038 => pub queue_num: WriteOnly<u32>),
        (0x03c => _reserved2),
        /// The selected queue is ready (write 1 after programming it).
        (0x044 => pub queue_ready: ReadWrite<u32>),
        (0x048 => _reserved3),
        /// Write a queue index: it has new buffers.
        (0x050 => pub queue_notify: WriteOnly<u32>),
        (0x054 => _reserved4),
        /// Why the device interrupted (bit 0 used buffer, bit 1 config).
        (0x060 => pub interrupt_status: ReadOnly<u32>),
        /// Acknowledges the written `interrupt_status` bits.
        (0x064 => pub interrupt_ack: WriteOnly<u32>),
        (0x068 => _reserved5),
        /// [`DeviceStatus`]; writing 0 resets the device.
        (0x070 => pub status: ReadWrite<u32>),
        (0x074 => _reserved6),
        /// Descriptor area address, low half.
        (0x080 => pub queue_desc_low: WriteOnly<u32>),
        /// Descriptor area address, high half.
        (0x084 => pub queue_desc_high: WriteOnly<u32>),
        (0x088 => _reserved7),
        /// Driver area address, low half.
        (0x090 => pub queue_driver_low: WriteOnly<u32>),
        /// Driver area address, high half.
        (0x094 => pub queue_driver_high: WriteOnly<u32>),
        (0x098 => _reserved8),
        /// Device area address, low half.
        (0x0a0 => pub queue_device_low: WriteOnly<u32>),
        /// Device area address, high half.
        (0x0a4 => pub queue_device_high: WriteOnly<u32>),
        (0x0a8 => _reserved9),
        /// Shared memory region select.
        (0x0ac => pub shm_sel: WriteOnly<u32>),
        /// Selected shared memory region length, low half.
        (0x0b0 => pub shm_len_low: ReadOnly<u32>),
        /// Selected shared memory region length, high half.
        (0x0b4 => pub shm_len_high: ReadOnly<u32>),
        /// Selected shared memory region base, low half.
        (0x0b8 => pub shm_base_low: ReadOnly<u32>),
        /// Selected shared memory region base, high half.
        (0x0bc => pub shm_base_high: ReadOnly<u32>),
        /// With `RING_RESET`: resets the selected queue.
        (0x0c0 => pub queue_reset: ReadWrite<u32>),
        (0x0c4 => _reserved10),
        /// Changes whenever the device configuration changes.
        (0x0fc => pub config_generation: ReadOnly<u32>),
        (0x100 => @END),
    }
}

const_assert_eq!(size_of::<MmioRegisters>(), 0x100);

/// Byte offsets of the [`MmioRegisters`] the transport uses, taken from
/// the struct.
pub mod mmio_reg {
    use super::MmioRegisters;
    use core::mem::offset_of;
    /// `MagicValue`.
    pub const MAGIC_VALUE: usize = offset_of!(MmioRegisters, magic_value);
    /// `Version`.
    pub const VERSION: usize = offset_of!(MmioRegisters, version);
    /// `DeviceID`.
    pub const DEVICE_ID: usize = offset_of!(MmioRegisters, device_id);
    /// `DeviceFeatures`.
    pub const DEVICE_FEATURES: usize = offset_of!(MmioRegisters, device_features);
    /// `DeviceFeaturesSel`.
    pub const DEVICE_FEATURES_SEL: usize = offset_of!(MmioRegisters, device_features_sel);
    /// `DriverFeatures`.
    pub const DRIVER_FEATURES: usize = offset_of!(MmioRegisters, driver_features);
    /// `DriverFeaturesSel`.
    pub const DRIVER_FEATURES_SEL: usize = offset_of!(MmioRegisters, driver_features_sel);
    /// `QueueSel`.
    pub const QUEUE_SEL: usize = offset_of!(MmioRegisters, queue_sel);
    /// `QueueNumMax`.
    pub const QUEUE_NUM_MAX: usize = offset_of!(MmioRegisters, queue_num_max);
    /// `QueueNum`.
    pub const QUEUE_NUM: usize = offset_of!(MmioRegisters, queue_num);
    /// `QueueReady`.
    pub const QUEUE_READY: usize = offset_of!(MmioRegisters, queue_ready);
    /// `QueueNotify`.
    pub const QUEUE_NOTIFY: usize = offset_of!(MmioRegisters, queue_notify);
    /// `Status`.
    pub const STATUS: usize = offset_of!(MmioRegisters, status);
    /// `QueueDescLow` (`QueueDescHigh` follows).
    pub const QUEUE_DESC: usize = offset_of!(MmioRegisters, queue_desc_low);
    /// `QueueDriverLow` (`QueueDriverHigh` follows).
    pub const QUEUE_DRIVER: usize = offset_of!(MmioRegisters, queue_driver_low);
    /// `QueueDeviceLow` (`QueueDeviceHigh` follows).
    pub const QUEUE_DEVICE: usize = offset_of!(MmioRegisters, queue_device_low);
    /// `ConfigGeneration`.
    pub const CONFIG_GENERATION: usize = offset_of!(MmioRegisters, config_generation);
    /// Start of the device configuration space.
    pub const CONFIG: usize = core::mem::size_of::<MmioRegisters>();
}

// ---- virtio-blk (§5.2) -------------------------------------------------

/// virtio-blk's sector: the unit of `capacity` and of a request's
/// `sector`, whatever `blk_size` says (§5.2.4, §5.2.6).
pub const SECTOR_SIZE: usize = 512;

/// `struct virtio_blk_config` (§5.2.4), all fields little-endian. Only
/// the fields of negotiated features are valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct BlkConfig {
    /// Size of the disk in 512-byte sectors.
    pub capacity: u64,
    /// With `SIZE_MAX`: largest segment in bytes.
    pub size_max: u32,
    /// With `SEG_MAX`: most segments per request.
    pub seg_max: u32,
    /// With `GEOMETRY`: cylinders.
    pub cylinders: u16,
    /// With `GEOMETRY`: heads.
    pub heads: u8,
    /// With `GEOMETRY`: sectors per track.
    pub sectors: u8,
    /// With `BLK_SIZE`: the optimal block size.
    pub blk_size: u32,
    /// With `TOPOLOGY`: logical blocks per physical block (log2).
    pub physical_block_exp: u8,
    /// With `TOPOLOGY`: offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// With `TOPOLOGY`: suggested minimum I/O size in blocks.
    pub min_io_size: u16,
    /// With `TOPOLOGY`: optimal I/O size in blocks.
    pub opt_io_size: u32,
    /// With `CONFIG_WCE`: writeback (1) or writethrough (0).
    pub writeback: u8,
    /// Unused.
    pub unused0: u8,
    /// With `MQ`: number of request queues.
    pub num_queues: u16,
    /// With `DISCARD`: most sectors per discard segment.
    pub max_discard_sectors: u32,
}

const_assert_eq!(offset_of!(BlkConfig, size_max), 8);
const_assert_eq!(offset_of!(BlkConfig, seg_max), 12);
const_assert_eq!(offset_of!(BlkConfig, cylinders), 16);
const_assert_eq!(offset_of!(BlkConfig, blk_size), 20);
const_assert_eq!(offset_of!(BlkConfig, physical_block_exp), 24);
const_assert_eq!(offset_of!(BlkConfig, opt_io_size), 28);
const_assert_eq!(offset_of!(BlkConfig, writeback), 32);
const_assert_eq!(offset_of!(BlkConfig, num_queues), 34);
const_assert_eq!(offset_of!(BlkConfig, max_discard_sectors), 36);
const_assert_eq!(size_of::<BlkConfig>(), 40);

/// Request types (`struct virtio_blk_req.type`, §5.2.6).
pub mod blk_req {
    /// Read sectors.
    pub const IN: u32 = 0;
    /// Write sectors.
    pub const OUT: u32 = 1;
    /// Flush the volatile write cache.
    pub const FLUSH: u32 = 4;
    /// Read the 20-byte device id.
    pub const GET_ID: u32 = 8;
    /// Discard sectors.
    pub const DISCARD: u32 = 11;
    /// Write zeroes.
    pub const WRITE_ZEROES: u32 = 13;
}

/// Status byte values (`struct virtio_blk_req.status`, §5.2.6).
pub mod blk_status {
    /// Success.
    pub const OK: u8 = 0;
    /// Device or driver error.
    pub const IOERR: u8 = 1;
    /// Unsupported request.
    pub const UNSUPP: u8 = 2;
}

/// The device-readable head of a block request (§5.2.6): `type`,
/// `reserved`, `sector`, all little-endian.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct BlkReqHeader {
    /// One of [`blk_req`] (le32).
    pub req_type: u32,
    /// Zero.
    pub reserved: u32,
    /// First 512-byte sector (le64); 0 for requests without one.
    pub sector: u64,
}

impl BlkReqHeader {
    /// A request of `req_type` at `sector`, in wire (little-endian) order.
    pub const fn new(req_type: u32, sector: u64) -> Self {
        Self {
            req_type: req_type.to_le(),
            reserved: 0,
            sector: sector.to_le(),
        }
    }
}

const_assert_eq!(size_of::<BlkReqHeader>(), 16);
const_assert_eq!(offset_of!(BlkReqHeader, sector), 8);

// ---- virtio-net (§5.1) -------------------------------------------------

/// `struct virtio_net_hdr` as it is with `VERSION_1` (§5.1.6): 12 bytes,
/// `num_buffers` included even without `MRG_RXBUF`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct NetHeader {
    /// `NEEDS_CSUM` (1), `DATA_VALID` (2), `RSC_INFO` (4).
    pub flags: u8,
    /// Segmentation offload type; `GSO_NONE` (0) without offloads.
    pub gso_type: u8,
    /// Length of the headers to copy for each segment (le16).
    pub hdr_len: u16,
    /// Segment size for offloads (le16).
    pub gso_size: u16,
    /// Where checksumming starts (le16).
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start` (le16).
    pub csum_offset: u16,
    /// Buffers the received frame spans (le16; with `MRG_RXBUF`).
    pub num_buffers: u16,
}

const_assert_eq!(size_of::<NetHeader>(), 12);
const_assert_eq!(offset_of!(NetHeader, hdr_len), 2);
const_assert_eq!(offset_of!(NetHeader, csum_start), 6);
const_assert_eq!(offset_of!(NetHeader, num_buffers), 10);

/// Bytes of [`NetHeader`].
pub const NET_HEADER_SIZE: usize = size_of::<NetHeader>();

/// `struct virtio_net_config` (§5.1.4), up to `mtu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable)]
pub struct NetConfig {
    /// With `MAC`: the station address.
    pub mac: [u8; 6],
    /// With `STATUS`: bit 0 link up, bit 1 announce (le16).
    pub status: u16,
    /// With `MQ`: most queue pairs (le16).
    pub max_virtqueue_pairs: u16,
    /// With `MTU`: the device's MTU (le16).
    pub mtu: u16,
}

const_assert_eq!(offset_of!(NetConfig, status), 6);
const_assert_eq!(offset_of!(NetConfig, max_virtqueue_pairs), 8);
const_assert_eq!(offset_of!(NetConfig, mtu), 10);
const_assert_eq!(size_of::<NetConfig>(), 12);

/// `NetConfig::status` bit 0: the link is up.
pub const NET_S_LINK_UP: u16 = 1;

/// The receive queue of a single-queue-pair device (§5.1.2).
pub const NET_RECEIVEQ: u16 = 0;
/// The transmit queue of a single-queue-pair device (§5.1.2).
pub const NET_TRANSMITQ: u16 = 1;
/// The request queue of a block device (§5.2.2).
pub const BLK_REQUESTQ: u16 = 0;

/// Without `MRG_RXBUF` or any `GUEST_*` offload, each receive buffer must
/// hold a whole 1514-byte frame and its header (§5.1.6.3.1: 1526 bytes).
pub const NET_MIN_RX_BUFFER: usize = 1514 + NET_HEADER_SIZE;

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn blk_header_is_little_endian_on_the_wire() {
        let h = BlkReqHeader::new(blk_req::OUT, 0x0102_0304_0506_0708);
        assert_eq!(
            h.as_bytes(),
            &[1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn register_offsets_follow_the_spec_tables() {
        assert_eq!(
            (mmio_reg::STATUS, mmio_reg::QUEUE_NOTIFY, mmio_reg::CONFIG),
            (0x70, 0x50, 0x100)
        );
        assert_eq!(
            (
                common_reg::DEVICE_STATUS,
                common_reg::QUEUE_NOTIFY_OFF,
                common_reg::QUEUE_DEVICE
            ),
            (0x14, 0x1e, 0x30)
        );
    }
}
