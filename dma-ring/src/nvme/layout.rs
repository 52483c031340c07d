//! NVMe queue entry layouts (NVMe Base Specification 2.0).

use bitflags::bitflags;
use static_assertions::{assert_eq_size, const_assert_eq};
use zerocopy::{FromBytes, IntoBytes};

/// A submission queue entry: NVMe base spec 2.0 §4.2, Figure 87 "Common
/// Command Format" (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct NvmeCommand {
    /// Command dword 0: opcode (7:0), fused (9:8), PSDT (15:14), command
    /// identifier (31:16). The ring fills in the identifier.
    pub cdw0: u32,
    /// Namespace identifier.
    pub nsid: u32,
    /// Command dword 2.
    pub cdw2: u32,
    /// Command dword 3.
    pub cdw3: u32,
    /// Metadata pointer.
    pub mptr: u64,
    /// Data pointer: PRP entry 1 (or the first half of an SGL descriptor).
    pub prp1: u64,
    /// Data pointer: PRP entry 2 (or the second half of an SGL descriptor).
    pub prp2: u64,
    /// Command dwords 10 to 15.
    pub cdw10: [u32; 6],
}

assert_eq_size!(NvmeCommand, [u8; 64]);
const_assert_eq!(core::mem::offset_of!(NvmeCommand, nsid), 4);
const_assert_eq!(core::mem::offset_of!(NvmeCommand, mptr), 16);
const_assert_eq!(core::mem::offset_of!(NvmeCommand, prp1), 24);
const_assert_eq!(core::mem::offset_of!(NvmeCommand, prp2), 32);
const_assert_eq!(core::mem::offset_of!(NvmeCommand, cdw10), 40);

/// I/O command set opcodes (NVM Command Set spec 1.0, Figure 16) and a few
/// admin ones (base spec 2.0, Figure 84).
pub mod opcode {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
    /// Admin: create I/O submission queue.
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Admin: create I/O completion queue.
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Admin: identify.
    pub const IDENTIFY: u8 = 0x06;
}

impl NvmeCommand {
    /// A command with `opcode` and every other field zero.
    pub const fn new(opcode: u8) -> Self {
        Self {
            cdw0: opcode as u32,
            nsid: 0,
            cdw2: 0,
            cdw3: 0,
            mptr: 0,
            prp1: 0,
            prp2: 0,
            cdw10: [0; 6],
        }
    }

    /// The opcode.
    #[inline]
    pub const fn opcode(&self) -> u8 {
        self.cdw0 as u8
    }

    /// The command identifier.
    #[inline]
    pub const fn cid(&self) -> u16 {
        (self.cdw0 >> 16) as u16
    }

    /// Sets the command identifier.
    #[inline]
    pub fn set_cid(&mut self, cid: u16) {
        self.cdw0 = (self.cdw0 & 0xffff) | (u32::from(cid) << 16);
    }

    /// Command dword 0 and NSID as word 0 (see [`to_words`](Self::to_words))
    /// with the command identifier replaced by `cid`.
    #[inline]
    pub const fn word0_with_cid(word0: u64, cid: u16) -> u64 {
        (word0 & !(0xffff << 16)) | (cid as u64) << 16
    }

    /// The entry as the eight little-endian 64-bit words it occupies.
    #[inline]
    pub const fn to_words(&self) -> [u64; 8] {
        let d = &self.cdw10;
        [
            self.cdw0 as u64 | (self.nsid as u64) << 32,
            self.cdw2 as u64 | (self.cdw3 as u64) << 32,
            self.mptr,
            self.prp1,
            self.prp2,
            d[0] as u64 | (d[1] as u64) << 32,
            d[2] as u64 | (d[3] as u64) << 32,
            d[4] as u64 | (d[5] as u64) << 32,
        ]
    }

    /// The entry from its eight words (what a device model reads).
    #[inline]
    pub const fn from_words(w: [u64; 8]) -> Self {
        Self {
            cdw0: w[0] as u32,
            nsid: (w[0] >> 32) as u32,
            cdw2: w[1] as u32,
            cdw3: (w[1] >> 32) as u32,
            mptr: w[2],
            prp1: w[3],
            prp2: w[4],
            cdw10: [
                w[5] as u32,
                (w[5] >> 32) as u32,
                w[6] as u32,
                (w[6] >> 32) as u32,
                w[7] as u32,
                (w[7] >> 32) as u32,
            ],
        }
    }
}

/// A completion queue entry: NVMe base spec 2.0 §4.2.1, Figure 89 "Common
/// Completion Queue Entry Layout" (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct NvmeCompletion {
    /// Dword 0, command specific.
    pub dw0: u32,
    /// Dword 1, command specific.
    pub dw1: u32,
    /// SQ head pointer (dword 2, 15:0): where the controller's SQ head is.
    pub sq_head: u16,
    /// SQ identifier (dword 2, 31:16).
    pub sq_id: u16,
    /// Command identifier (dword 3, 15:0).
    pub cid: u16,
    /// Phase tag (dword 3 bit 16) and status field (31:17).
    pub status: NvmeStatus,
}

assert_eq_size!(NvmeCompletion, [u8; 16]);
const_assert_eq!(core::mem::offset_of!(NvmeCompletion, sq_head), 8);
const_assert_eq!(core::mem::offset_of!(NvmeCompletion, sq_id), 10);
const_assert_eq!(core::mem::offset_of!(NvmeCompletion, cid), 12);
const_assert_eq!(core::mem::offset_of!(NvmeCompletion, status), STATUS_OFFSET);

/// Byte offset of the phase/status word inside a completion entry: the
/// flag the driver polls.
pub const STATUS_OFFSET: usize = 14;

impl NvmeCompletion {
    /// The entry as two little-endian 64-bit words.
    #[inline]
    pub const fn to_words(&self) -> [u64; 2] {
        [
            self.dw0 as u64 | (self.dw1 as u64) << 32,
            self.sq_head as u64
                | (self.sq_id as u64) << 16
                | (self.cid as u64) << 32
                | (self.status.0 as u64) << 48,
        ]
    }

    /// The entry from its two words.
    #[inline]
    pub const fn from_words(w: [u64; 2]) -> Self {
        Self {
            dw0: w[0] as u32,
            dw1: (w[0] >> 32) as u32,
            sq_head: w[1] as u16,
            sq_id: (w[1] >> 16) as u16,
            cid: (w[1] >> 32) as u16,
            status: NvmeStatus((w[1] >> 48) as u16),
        }
    }
}

bitflags! {
    /// The single-bit fields of the phase/status word (the upper half of
    /// completion dword 3; base spec 2.0 Figure 92 "Status Field").
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct NvmeStatusBits: u16 {
        /// Phase tag: inverted by the controller on each pass of the queue.
        const PHASE = 1 << 0;
        /// More: more status information in the error log.
        const MORE = 1 << 14;
        /// Do not retry.
        const DNR = 1 << 15;
    }
}

/// The phase tag and status field, as the upper 16 bits of dword 3.
#[repr(transparent)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes)]
pub struct NvmeStatus(pub u16);

impl NvmeStatus {
    /// Successful completion, phase 0.
    pub const SUCCESS: Self = Self(0);

    /// A status with code type `sct` (3 bits) and code `sc`.
    pub const fn new(sct: u8, sc: u8) -> Self {
        Self(((sct as u16 & 0x7) << 9) | ((sc as u16) << 1))
    }

    /// The phase tag.
    #[inline]
    pub const fn phase(self) -> bool {
        self.0 & 1 != 0
    }

    /// The same status with phase tag `phase`.
    #[inline]
    pub const fn with_phase(self, phase: bool) -> Self {
        Self((self.0 & !1) | phase as u16)
    }

    /// Status code (SC).
    pub const fn code(self) -> u8 {
        (self.0 >> 1) as u8
    }

    /// Status code type (SCT): 0 generic, 1 command specific, 2 media, ...
    pub const fn code_type(self) -> u8 {
        ((self.0 >> 9) & 0x7) as u8
    }

    /// The single-bit fields.
    pub const fn bits(self) -> NvmeStatusBits {
        NvmeStatusBits::from_bits_truncate(self.0)
    }

    /// Whether the command succeeded (generic type, code 0).
    pub const fn is_success(self) -> bool {
        self.code() == 0 && self.code_type() == 0
    }
}

impl core::fmt::Debug for NvmeStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "NvmeStatus(sct {}, sc {:#x}, phase {})",
            self.code_type(),
            self.code(),
            self.phase() as u8
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_match_the_byte_layout() {
        let mut c = NvmeCommand::new(opcode::READ);
        c.set_cid(0xbeef);
        c.nsid = 1;
        c.prp1 = 0x1000;
        c.cdw10 = [1, 2, 3, 4, 5, 6];
        assert_eq!(NvmeCommand::from_words(c.to_words()), c);
        let mut other = c;
        other.set_cid(0x1234);
        assert_eq!(
            NvmeCommand::word0_with_cid(c.to_words()[0], 0x1234),
            other.to_words()[0]
        );
        // CID lives in bytes 2..4 of the entry.
        let bytes = c.to_words()[0].to_le_bytes();
        assert_eq!(u16::from_le_bytes([bytes[2], bytes[3]]), 0xbeef);
        let e = NvmeCompletion {
            dw0: 7,
            dw1: 8,
            sq_head: 9,
            sq_id: 1,
            cid: 0x1234,
            status: NvmeStatus::new(1, 0x80).with_phase(true),
        };
        assert_eq!(NvmeCompletion::from_words(e.to_words()), e);
        let w1 = e.to_words()[1].to_le_bytes();
        assert_eq!(
            u16::from_le_bytes([w1[6], w1[7]]) & 1,
            1,
            "phase is bit 16 of dword 3"
        );
    }

    #[test]
    fn status_fields() {
        let s = NvmeStatus::new(2, 0x81).with_phase(true);
        assert!(s.phase());
        assert_eq!(s.code_type(), 2);
        assert_eq!(s.code(), 0x81);
        assert!(!s.is_success());
        assert!(NvmeStatus::SUCCESS.with_phase(true).is_success());
        assert!(NvmeStatus(1 << 15).bits().contains(NvmeStatusBits::DNR));
    }
}
