//! NIC descriptor layouts: the Intel 8254x family's legacy receive and
//! transmit descriptors (PCI/PCI-X Family of Gigabit Ethernet Controllers
//! Software Developer's Manual, §3.2.3 and §3.3.3), which QEMU's e1000 and
//! many simple NICs share. 16 bytes each, little-endian.

use bitflags::bitflags;
use static_assertions::{assert_eq_size, const_assert_eq};
use zerocopy::{FromBytes, IntoBytes};

/// A receive descriptor (SDM §3.2.3, Table 3-1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct RxDesc {
    /// Buffer address.
    pub addr: u64,
    /// Bytes the device wrote (write-back).
    pub length: u16,
    /// Packet checksum (write-back).
    pub checksum: u16,
    /// Status (write-back): [`RxStatus`].
    pub status: u8,
    /// Errors (write-back): [`RxErrors`].
    pub errors: u8,
    /// VLAN tag (write-back).
    pub special: u16,
}

/// A legacy transmit descriptor (SDM §3.3.3, Table 3-10).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct TxDesc {
    /// Buffer address.
    pub addr: u64,
    /// Bytes to send from this buffer.
    pub length: u16,
    /// Checksum offset.
    pub cso: u8,
    /// Command: [`TxCommand`].
    pub cmd: u8,
    /// Status (write-back): [`TxStatus`].
    pub status: u8,
    /// Checksum start.
    pub css: u8,
    /// VLAN tag.
    pub special: u16,
}

assert_eq_size!(RxDesc, [u8; 16]);
assert_eq_size!(TxDesc, [u8; 16]);
const_assert_eq!(core::mem::offset_of!(RxDesc, length), 8);
const_assert_eq!(core::mem::offset_of!(RxDesc, checksum), 10);
const_assert_eq!(core::mem::offset_of!(RxDesc, status), STATUS_OFFSET);
const_assert_eq!(core::mem::offset_of!(RxDesc, errors), 13);
const_assert_eq!(core::mem::offset_of!(RxDesc, special), 14);
const_assert_eq!(core::mem::offset_of!(TxDesc, length), 8);
const_assert_eq!(core::mem::offset_of!(TxDesc, cso), 10);
const_assert_eq!(core::mem::offset_of!(TxDesc, cmd), 11);
const_assert_eq!(core::mem::offset_of!(TxDesc, status), STATUS_OFFSET);
const_assert_eq!(core::mem::offset_of!(TxDesc, css), 13);

/// Bytes per descriptor.
pub const DESC_SIZE: usize = 16;

/// Offset of the status byte; the driver polls the 16-bit word there
/// (status in the low byte, errors or CSS in the high byte).
pub const STATUS_OFFSET: usize = 12;

bitflags! {
    /// Receive status (SDM Table 3-2).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct RxStatus: u8 {
        /// Descriptor done: the device wrote the packet and this entry.
        const DD = 1 << 0;
        /// End of packet.
        const EOP = 1 << 1;
        /// Ignore checksum indication.
        const IXSM = 1 << 2;
        /// Packet is 802.1Q tagged.
        const VP = 1 << 3;
        /// TCP checksum calculated.
        const TCPCS = 1 << 5;
        /// IP checksum calculated.
        const IPCS = 1 << 6;
        /// Passed in-exact filter.
        const PIF = 1 << 7;
    }
}

bitflags! {
    /// Receive errors (SDM Table 3-3).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct RxErrors: u8 {
        /// CRC or alignment error.
        const CE = 1 << 0;
        /// Symbol error.
        const SE = 1 << 1;
        /// Sequence error.
        const SEQ = 1 << 2;
        /// Carrier extension error.
        const CXE = 1 << 4;
        /// TCP/UDP checksum error.
        const TCPE = 1 << 5;
        /// IP checksum error.
        const IPE = 1 << 6;
        /// RX data error.
        const RXE = 1 << 7;
    }
}

bitflags! {
    /// Transmit command (SDM Table 3-11).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct TxCommand: u8 {
        /// End of packet.
        const EOP = 1 << 0;
        /// Insert FCS.
        const IFCS = 1 << 1;
        /// Insert checksum.
        const IC = 1 << 2;
        /// Report status: write back DD when done.
        const RS = 1 << 3;
        /// Descriptor extension (0 for legacy).
        const DEXT = 1 << 5;
        /// VLAN packet enable.
        const VLE = 1 << 6;
        /// Interrupt delay enable.
        const IDE = 1 << 7;
    }
}

bitflags! {
    /// Transmit status (SDM Table 3-12).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct TxStatus: u8 {
        /// Descriptor done.
        const DD = 1 << 0;
        /// Excess collisions.
        const EC = 1 << 1;
        /// Late collision.
        const LC = 1 << 2;
        /// Transmit underrun.
        const TU = 1 << 3;
    }
}
