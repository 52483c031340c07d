//! The driver's side of the NVMe specifications: NVMe Base Specification
//! 2.0c (controller properties §3.1.4, admin commands §5) and the NVM
//! Command Set Specification 1.0 (Read, Write, Identify Namespace).
//!
//! Everything a driver needs to talk to a controller that is not queue
//! protocol (which is `dma-ring`'s): the register block at the start of
//! BAR0 and its fields, where each queue's doorbells are for a given
//! `CAP.DSTRD`, the opcodes, the commands the driver builds, and the
//! Identify structures the controller writes, decoded as untrusted input.

use core::time::Duration;

use dma_ring::nvme::{NvmeCommand, NvmeDoorbells};
use dma_ring::{RingError, RingErrorKind};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use crate::DriverError;

/// Register fields (tock-registers generates the `Register` types and
/// value constants; each field is documented where it is defined).
#[allow(missing_docs)]
pub mod fields64 {
    use tock_registers::register_bitfields;

    register_bitfields![u64,
        /// CAP, controller capabilities (§3.1.4.1).
        pub CAP [
            /// Maximum queue entries supported, zero-based.
            MQES OFFSET(0) NUMBITS(16) [],
            /// Contiguous queues required.
            CQR OFFSET(16) NUMBITS(1) [],
            /// Worst-case time to ready, in 500 ms units.
            TO OFFSET(24) NUMBITS(8) [],
            /// Doorbell stride: doorbells are `4 << DSTRD` bytes apart.
            DSTRD OFFSET(32) NUMBITS(4) [],
            /// Command sets supported; bit 0 = NVM.
            CSS OFFSET(37) NUMBITS(8) [],
            /// Minimum memory page size, `2^(12 + MPSMIN)`.
            MPSMIN OFFSET(48) NUMBITS(4) [],
            /// Maximum memory page size, `2^(12 + MPSMAX)`.
            MPSMAX OFFSET(52) NUMBITS(4) []
        ]
    ];
}
pub use fields64::CAP;

/// Register fields (tock-registers generates the `Register` types and
/// value constants; each field is documented where it is defined).
#[allow(missing_docs)]
pub mod fields32 {
    use tock_registers::register_bitfields;

    register_bitfields![u32,
        /// VS, version (§3.1.4.2).
        pub VS [
            /// Tertiary version.
            TER OFFSET(0) NUMBITS(8) [],
            /// Minor version.
            MNR OFFSET(8) NUMBITS(8) [],
            /// Major version.
            MJR OFFSET(16) NUMBITS(16) []
        ],
        /// CC, controller configuration (§3.1.4.5).
        pub CC [
            /// Enable.
            EN OFFSET(0) NUMBITS(1) [],
            /// I/O command set selected: 0 = NVM.
            CSS OFFSET(4) NUMBITS(3) [],
            /// Memory page size, `2^(12 + MPS)`.
            MPS OFFSET(7) NUMBITS(4) [],
            /// Arbitration mechanism: 0 = round robin.
            AMS OFFSET(11) NUMBITS(3) [],
            /// Shutdown notification: 1 normal, 2 abrupt.
            SHN OFFSET(14) NUMBITS(2) [
                None = 0,
                Normal = 1,
                Abrupt = 2
            ],
            /// I/O submission queue entry size, `2^IOSQES` (6: 64 bytes).
            IOSQES OFFSET(16) NUMBITS(4) [],
            /// I/O completion queue entry size, `2^IOCQES` (4: 16 bytes).
            IOCQES OFFSET(20) NUMBITS(4) []
        ],
        /// CSTS, controller status (§3.1.4.6).
        pub CSTS [
            /// Ready.
            RDY OFFSET(0) NUMBITS(1) [],
            /// Controller fatal status.
            CFS OFFSET(1) NUMBITS(1) [],
            /// Shutdown status: 2 = shutdown processing complete.
            SHST OFFSET(2) NUMBITS(2) [
                Normal = 0,
                Occurring = 1,
                Complete = 2
            ]
        ],
        /// AQA, admin queue attributes (§3.1.4.8); sizes are zero-based.
        pub AQA [
            /// Admin submission queue size.
            ASQS OFFSET(0) NUMBITS(12) [],
            /// Admin completion queue size.
            ACQS OFFSET(16) NUMBITS(12) []
        ]
    ];
}
pub use fields32::{AQA, CC, CSTS, VS};

register_structs! {
    /// The controller properties at the start of BAR0 (§3.1.4, Figure 35).
    pub NvmeRegisters {
        /// Controller capabilities.
        (0x00 => pub cap: ReadOnly<u64, CAP::Register>),
        /// Version.
        (0x08 => pub vs: ReadOnly<u32, VS::Register>),
        /// Interrupt mask set.
        (0x0c => pub intms: WriteOnly<u32>),
        /// Interrupt mask clear.
        (0x10 => pub intmc: WriteOnly<u32>),
        /// Controller configuration.
        (0x14 => pub cc: ReadWrite<u32, CC::Register>),
        (0x18 => _reserved0),
        /// Controller status.
        (0x1c => pub csts: ReadOnly<u32, CSTS::Register>),
        /// NVM subsystem reset.
        (0x20 => pub nssr: ReadWrite<u32>),
        /// Admin queue attributes.
        (0x24 => pub aqa: ReadWrite<u32, AQA::Register>),
        /// Admin submission queue base address.
        (0x28 => pub asq: ReadWrite<u64>),
        /// Admin completion queue base address.
        (0x30 => pub acq: ReadWrite<u64>),
        (0x38 => @END),
    }
}

/// Offset of the first doorbell in BAR0 (§3.1.4.22).
pub const DOORBELL_BASE: usize = 0x1000;
/// Submission queue entry size: 64 bytes (`2^6`).
pub const SQE_SIZE_LOG2: u32 = 6;
/// Completion queue entry size: 16 bytes (`2^4`).
pub const CQE_SIZE_LOG2: u32 = 4;
/// The page size the driver sets (CC.MPS = 0): 4 KiB.
pub const PAGE_SIZE: u64 = 4096;

/// The byte offset in BAR0 of queue `qid`'s submission tail doorbell
/// (`completion = false`) or completion head doorbell (`completion = true`):
/// `0x1000 + (2 * qid + completion) * (4 << CAP.DSTRD)` (§3.1.4.22/23).
pub const fn doorbell_offset(qid: u16, completion: bool, dstrd: u8) -> usize {
    DOORBELL_BASE + (2 * qid as usize + completion as usize) * (4usize << dstrd)
}

/// Decoded CAP and VS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Entries a queue may have (MQES + 1).
    pub max_queue_entries: u32,
    /// Queues must be physically contiguous.
    pub contiguous_queues: bool,
    /// Worst-case enable/disable time.
    pub timeout: Duration,
    /// CAP.DSTRD.
    pub doorbell_stride: u8,
    /// Smallest memory page size, bytes.
    pub min_page_size: u64,
    /// Largest memory page size, bytes.
    pub max_page_size: u64,
    /// The NVM command set is supported.
    pub nvm_command_set: bool,
    /// Version as (major, minor, tertiary).
    pub version: (u16, u8, u8),
}

impl Capabilities {
    /// Decodes raw CAP and VS values.
    pub fn decode(cap: u64, vs: u32) -> Self {
        let cap = tock_registers::LocalRegisterCopy::<u64, CAP::Register>::new(cap);
        let vs = tock_registers::LocalRegisterCopy::<u32, VS::Register>::new(vs);
        Self {
            max_queue_entries: cap.read(CAP::MQES) as u32 + 1,
            contiguous_queues: cap.is_set(CAP::CQR),
            // A zero CAP.TO would be a broken controller; still wait 500 ms.
            timeout: Duration::from_millis(500 * cap.read(CAP::TO).max(1)),
            doorbell_stride: cap.read(CAP::DSTRD) as u8,
            min_page_size: 1 << (12 + cap.read(CAP::MPSMIN)),
            max_page_size: 1 << (12 + cap.read(CAP::MPSMAX)),
            nvm_command_set: cap.read(CAP::CSS) & 1 != 0,
            version: (
                vs.read(VS::MJR) as u16,
                vs.read(VS::MNR) as u8,
                vs.read(VS::TER) as u8,
            ),
        }
    }
}

static_assertions::const_assert_eq!(core::mem::size_of::<NvmeRegisters>(), 0x38);

register_structs! {
    /// One queue's doorbell pair when `CAP.DSTRD` is 0: `SQyTDBL` and
    /// `CQyHDBL` (§3.1.4.22-23), for placing over one pair of a doorbell
    /// page (a simulator's, a test's). A driver of a real controller uses
    /// [`NvmeDoorbellArray`], which honours any stride.
    pub NvmeQueueDoorbells {
        /// Submission queue tail doorbell: the new tail.
        (0x0 => pub sq_tail: WriteOnly<u32>),
        /// Completion queue head doorbell: the new head.
        (0x4 => pub cq_head: WriteOnly<u32>),
        (0x8 => @END),
    }
}

static_assertions::const_assert_eq!(core::mem::size_of::<NvmeQueueDoorbells>(), 8);

impl<'a> From<&'a NvmeQueueDoorbells> for NvmeDoorbells<&'a WriteOnly<u32>> {
    fn from(regs: &'a NvmeQueueDoorbells) -> Self {
        Self {
            sq_tail: &regs.sq_tail,
            cq_head: &regs.cq_head,
        }
    }
}

/// The controller's doorbell array from offset `0x1000`, with any
/// doorbell stride `CAP.DSTRD`.
#[derive(Clone, Copy)]
pub struct NvmeDoorbellArray<'a> {
    regs: &'a [WriteOnly<u32>],
    step: usize,
}

impl core::fmt::Debug for NvmeDoorbellArray<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NvmeDoorbellArray")
            .field("doorbells", &self.regs.len())
            .field("step", &self.step)
            .finish()
    }
}

impl<'a> NvmeDoorbellArray<'a> {
    /// Doorbells as `u32` registers starting at `SQ0TDBL`, spaced
    /// `4 << dstrd` bytes apart.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] for a stride above 15 (the field is
    /// 4 bits wide: pass `CAP.DSTRD` as read).
    pub fn new(regs: &'a [WriteOnly<u32>], dstrd: u8) -> Result<Self, DriverError> {
        if dstrd > 15 {
            return Err(DriverError::InvalidArgument(
                "doorbell stride above 15: pass CAP.DSTRD, a 4-bit field",
            ));
        }
        Ok(Self {
            regs,
            step: 1 << dstrd,
        })
    }

    fn get(&self, index: usize) -> Result<&'a WriteOnly<u32>, DriverError> {
        index
            .checked_mul(self.step)
            .and_then(|i| self.regs.get(i))
            .ok_or(DriverError::Ring(RingError::with(
                RingErrorKind::InvalidSize,
                index as u64,
            )))
    }

    /// Submission queue `qid`'s tail doorbell.
    ///
    /// # Errors
    ///
    /// [`DriverError::Ring`] ([`InvalidSize`](RingErrorKind::InvalidSize))
    /// past the array's end: the BAR is too small for that queue.
    pub fn sq_tail(&self, qid: u16) -> Result<&'a WriteOnly<u32>, DriverError> {
        self.get(2 * usize::from(qid))
    }

    /// Completion queue `qid`'s head doorbell.
    ///
    /// # Errors
    ///
    /// As [`sq_tail`](Self::sq_tail).
    pub fn cq_head(&self, qid: u16) -> Result<&'a WriteOnly<u32>, DriverError> {
        self.get(2 * usize::from(qid) + 1)
    }

    /// Both of queue `qid`'s doorbells, as `dma-ring`'s queue pair takes
    /// them.
    ///
    /// # Errors
    ///
    /// As [`sq_tail`](Self::sq_tail).
    pub fn queue(&self, qid: u16) -> Result<NvmeDoorbells<&'a WriteOnly<u32>>, DriverError> {
        Ok(NvmeDoorbells {
            sq_tail: self.sq_tail(qid)?,
            cq_head: self.cq_head(qid)?,
        })
    }
}

/// Admin command opcodes (§5, Figure 84).
pub mod admin_opcode {
    /// Delete I/O Submission Queue (§5.7).
    pub const DELETE_IO_SQ: u8 = 0x00;
    /// Create I/O Submission Queue (§5.5).
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Delete I/O Completion Queue (§5.6).
    pub const DELETE_IO_CQ: u8 = 0x04;
    /// Create I/O Completion Queue (§5.4).
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Identify (§5.17).
    pub const IDENTIFY: u8 = 0x06;
    /// Set Features (§5.27).
    pub const SET_FEATURES: u8 = 0x09;
}

/// NVM command set I/O opcodes (NVM Command Set 1.0, Figure 18).
pub mod io_opcode {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
}

/// Identify CNS values (§5.17.1, Figure 273).
pub mod cns {
    /// Identify Namespace data structure for the NSID.
    pub const NAMESPACE: u8 = 0x00;
    /// Identify Controller data structure.
    pub const CONTROLLER: u8 = 0x01;
}

/// Feature identifier: Number of Queues (§5.27.1.5).
pub const FID_NUMBER_OF_QUEUES: u8 = 0x07;

/// Bytes in an Identify data structure.
pub const IDENTIFY_BYTES: usize = 4096;

/// Create I/O Completion Queue (§5.4): physically contiguous (PC = 1),
/// interrupts disabled (polled).
pub fn create_io_cq(qid: u16, entries: u32, base: u64) -> NvmeCommand {
    create_io_cq_with(qid, entries, base, None)
}

/// Create I/O Completion Queue (§5.4, Figure 151): physically contiguous
/// (CDW11.PC), and with `interrupt` `Some(vector)` interrupts enabled
/// (CDW11.IEN, bit 1) on that vector (CDW11.IV, bits 31:16: the MSI-X
/// table entry). `None` leaves IEN clear (a polled queue).
pub fn create_io_cq_with(qid: u16, entries: u32, base: u64, interrupt: Option<u16>) -> NvmeCommand {
    let mut c = NvmeCommand::new(admin_opcode::CREATE_IO_CQ);
    c.prp1 = base;
    c.cdw10[0] = (entries - 1) << 16 | u32::from(qid);
    c.cdw10[1] = match interrupt {
        Some(vector) => u32::from(vector) << 16 | CQ_IEN | CQ_PC,
        None => CQ_PC,
    };
    c
}

/// Create I/O Completion Queue CDW11.PC: the queue is physically contiguous.
const CQ_PC: u32 = 1 << 0;
/// Create I/O Completion Queue CDW11.IEN: interrupts enabled.
const CQ_IEN: u32 = 1 << 1;

/// Create I/O Submission Queue (§5.5): physically contiguous, bound to
/// completion queue `cqid`, medium priority (ignored under round robin).
pub fn create_io_sq(qid: u16, entries: u32, base: u64, cqid: u16) -> NvmeCommand {
    let mut c = NvmeCommand::new(admin_opcode::CREATE_IO_SQ);
    c.prp1 = base;
    c.cdw10[0] = (entries - 1) << 16 | u32::from(qid);
    c.cdw10[1] = u32::from(cqid) << 16 | 1; // CDW11.CQID, PC
    c
}

/// Delete I/O Submission (§5.7, `admin_opcode::DELETE_IO_SQ`) or
/// Completion (§5.6, `admin_opcode::DELETE_IO_CQ`) Queue `qid`.
pub fn delete_io_queue(op: u8, qid: u16) -> NvmeCommand {
    let mut c = NvmeCommand::new(op);
    c.cdw10[0] = u32::from(qid);
    c
}

/// Identify (§5.17) of structure `cns` (see [`cns`]) for `nsid` into the
/// 4 KiB page at device address `data`.
pub fn identify(cns: u8, nsid: u32, data: u64) -> NvmeCommand {
    let mut c = NvmeCommand::new(admin_opcode::IDENTIFY);
    c.nsid = nsid;
    c.prp1 = data;
    c.cdw10[0] = u32::from(cns);
    c
}

/// Set Features Number of Queues (§5.27.1.5): ask for `sq` submission and
/// `cq` completion I/O queues (each 1..=65535).
pub fn set_number_of_queues(sq: u16, cq: u16) -> NvmeCommand {
    let mut c = NvmeCommand::new(admin_opcode::SET_FEATURES);
    c.cdw10[0] = u32::from(FID_NUMBER_OF_QUEUES);
    // NSQR and NCQR are zero-based.
    c.cdw10[1] = u32::from(cq.max(1) - 1) << 16 | u32::from(sq.max(1) - 1);
    c
}

/// A Read or Write (`io_opcode::READ`/`WRITE`; NVM Command Set 1.0,
/// §3.2.4 / §3.2.6) of `blocks` logical blocks (1..=65536) from `slba`;
/// the caller fills in the data pointer (PRP1/PRP2 or an SGL).
///
/// # Errors
///
/// [`DriverError::InvalidArgument`] for a block count outside 1..=65536:
/// split the transfer.
pub fn read_write(op: u8, nsid: u32, slba: u64, blocks: u32) -> Result<NvmeCommand, DriverError> {
    if !(1..=1 << 16).contains(&blocks) {
        return Err(DriverError::InvalidArgument(
            "a command moves 1..=65536 blocks (NLB is 16 bits, zero-based): split the transfer",
        ));
    }
    let mut c = NvmeCommand::new(op);
    c.nsid = nsid;
    c.cdw10[0] = slba as u32;
    c.cdw10[1] = (slba >> 32) as u32;
    c.cdw10[2] = blocks - 1;
    Ok(c)
}

/// CDW0 PSDT (bits 15:14) = 01b: the data pointer is SGL1, an SGL
/// descriptor (§4.1.2, Figure 87), with no metadata SGL.
pub const PSDT_SGL: u32 = 0b01 << 14;

/// Puts `sgl1` (the descriptor as its two little-endian quadwords) in the
/// command's DPTR and sets PSDT to 01b.
pub fn set_sgl1(cmd: &mut NvmeCommand, sgl1: [u64; 2]) {
    cmd.cdw0 = (cmd.cdw0 & !(0b11 << 14)) | PSDT_SGL;
    cmd.prp1 = sgl1[0];
    cmd.prp2 = sgl1[1];
}

/// What Identify Controller's SGLS bits 1:0 say about SGLs for the NVM
/// command set (§5.17.2.1, Figure 276).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SglSupport {
    /// 00b (or the reserved 11b): no SGLs; commands use PRPs.
    #[default]
    None,
    /// 01b: SGLs with no alignment or granularity requirement.
    Unaligned,
    /// 10b: SGLs whose Data Block addresses and lengths are dword
    /// aligned.
    DwordAligned,
}

impl SglSupport {
    /// Decodes SGLS (bytes 539:536).
    pub const fn from_sgls(sgls: u32) -> Self {
        match sgls & 0b11 {
            0b01 => Self::Unaligned,
            0b10 => Self::DwordAligned,
            _ => Self::None,
        }
    }

    /// Whether SGLs may be used at all.
    pub const fn supported(self) -> bool {
        !matches!(self, Self::None)
    }
}

fn identify_page(data: &[u8]) -> Result<&[u8; IDENTIFY_BYTES], DriverError> {
    data.get(..IDENTIFY_BYTES)
        .and_then(|d| d.try_into().ok())
        .ok_or(DriverError::InvalidArgument(
            "Identify data is 4096 bytes: pass the whole page",
        ))
}

/// What Identify Controller says that a driver uses (§5.17.2.1,
/// Figure 276).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerIdentity {
    /// PCI vendor id (bytes 1:0).
    pub vid: u16,
    /// Serial number, ASCII padded with spaces (bytes 23:04).
    pub serial: [u8; 20],
    /// Model number, ASCII padded with spaces (bytes 63:24).
    pub model: [u8; 40],
    /// Maximum data transfer size (byte 77): `2^mdts` minimum memory pages,
    /// 0 for no limit.
    pub mdts: u8,
    /// Number of namespaces (bytes 519:516).
    pub namespaces: u32,
    /// SGL Support (bytes 539:536), raw; [`sgl`](Self::sgl) decodes it.
    pub sgls: u32,
}

impl ControllerIdentity {
    /// Decodes the 4 KiB data structure.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] for fewer than 4096 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DriverError> {
        let d = identify_page(data)?;
        let mut serial = [0; 20];
        serial.copy_from_slice(&d[4..24]);
        let mut model = [0; 40];
        model.copy_from_slice(&d[24..64]);
        Ok(Self {
            vid: u16::from_le_bytes([d[0], d[1]]),
            serial,
            model,
            mdts: d[77],
            namespaces: u32::from_le_bytes([d[516], d[517], d[518], d[519]]),
            sgls: u32::from_le_bytes([d[536], d[537], d[538], d[539]]),
        })
    }

    /// Whether and how the controller takes SGLs.
    pub const fn sgl(&self) -> SglSupport {
        SglSupport::from_sgls(self.sgls)
    }

    /// The model number without its padding, or `None` when it is not
    /// ASCII (the controller is untrusted).
    pub fn model(&self) -> Option<&str> {
        ascii_field(&self.model)
    }

    /// The serial number without its padding, or `None` when it is not
    /// ASCII.
    pub fn serial(&self) -> Option<&str> {
        ascii_field(&self.serial)
    }

    /// The largest transfer one command may move with `page`-byte minimum
    /// memory pages, or `None` when unlimited.
    pub fn max_transfer(&self, page: u64) -> Option<u64> {
        (self.mdts != 0).then(|| page << self.mdts.min(40))
    }
}

/// An Identify string field (ASCII, padded with spaces; NULs tolerated)
/// without its padding, or `None` when a byte is not ASCII.
fn ascii_field(field: &[u8]) -> Option<&str> {
    let s = core::str::from_utf8(field).ok()?;
    s.is_ascii().then(|| s.trim_matches([' ', '\0']))
}

/// What Identify Namespace says that a driver uses (NVM Command Set 1.0,
/// §4.1.5.1, Figure 97).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceIdentity {
    /// Namespace size in logical blocks (NSZE, bytes 7:0).
    pub blocks: u64,
    /// Logical block size in bytes, from the format FLBAS selects.
    pub block_size: u32,
}

impl NamespaceIdentity {
    /// Decodes the 4 KiB data structure.
    ///
    /// # Errors
    ///
    /// [`DriverError::InvalidArgument`] for fewer than 4096 bytes, an
    /// LBA data size outside 9..=16 (512 B to 64 KiB: a value a device
    /// wrote, so it is checked before it sizes anything), or an empty
    /// namespace.
    pub fn decode(data: &[u8]) -> Result<Self, DriverError> {
        let d = identify_page(data)?;
        let mut nsze = [0u8; 8];
        nsze.copy_from_slice(&d[..8]);
        // FLBAS bits 3:0 (and 6:5 above 16 formats) pick the LBA format;
        // each format is 4 bytes from byte 128, LBADS in bits 23:16.
        let format = usize::from(d[26] & 0xf) | usize::from(d[26] >> 5 & 0b11) << 4;
        let lbads = d[128 + 4 * format + 2];
        if !(9..=16).contains(&lbads) {
            return Err(DriverError::InvalidArgument(
                "Identify Namespace: LBA data size outside 512 B..64 KiB",
            ));
        }
        let blocks = u64::from_le_bytes(nsze);
        if blocks == 0 {
            return Err(DriverError::InvalidArgument(
                "Identify Namespace: empty namespace",
            ));
        }
        Ok(Self {
            blocks,
            block_size: 1 << lbads,
        })
    }
}

#[cfg(test)]
mod tests {
    use tock_registers::interfaces::Writeable;

    use super::*;

    /// QEMU 7.2's CAP: MQES 2047, CQR, TO 15, DSTRD 0, CSS NVM, MPSMIN 0,
    /// MPSMAX 4; VS 1.4.0.
    const QEMU_CAP: u64 = 0x0040_0020_0f01_07ff;
    const QEMU_VS: u32 = 0x0001_0400;

    #[test]
    fn decodes_qemu_capabilities() {
        let c = Capabilities::decode(QEMU_CAP, QEMU_VS);
        assert_eq!(c.max_queue_entries, 2048);
        assert!(c.contiguous_queues);
        assert_eq!(c.doorbell_stride, 0);
        assert_eq!(c.min_page_size, 4096);
        assert_eq!(c.timeout, Duration::from_millis(7500));
        assert!(c.nvm_command_set);
        assert_eq!(c.version, (1, 4, 0));
    }

    #[test]
    fn doorbells_follow_the_stride() {
        assert_eq!(doorbell_offset(0, false, 0), 0x1000);
        assert_eq!(doorbell_offset(0, true, 0), 0x1004);
        assert_eq!(doorbell_offset(1, false, 0), 0x1008);
        assert_eq!(doorbell_offset(1, true, 2), 0x1000 + 3 * 16);
        let mut page = [0u32; 16];
        // The page is read back only after the last write through the slice.
        // SAFETY: 64 bytes of u32 cells, live for the test; WriteOnly<u32>
        // is a transparent UnsafeCell<u32>.
        let regs: &[WriteOnly<u32>] =
            unsafe { core::slice::from_raw_parts(page.as_mut_ptr().cast(), 16) };
        let array = NvmeDoorbellArray::new(regs, 1).unwrap();
        array.cq_head(1).unwrap().set(7);
        array.queue(2).unwrap().sq_tail.set(9);
        assert!(matches!(array.sq_tail(4), Err(DriverError::Ring(_))));
        assert!(NvmeDoorbellArray::new(regs, 16).is_err());
        assert_eq!((page[3 * 2], page[4 * 2]), (7, 9));
    }

    #[test]
    fn commands_carry_their_fields() {
        let c = create_io_cq(1, 64, 0x8000);
        assert_eq!(
            (c.opcode(), c.prp1, c.cdw10[0], c.cdw10[1]),
            (0x05, 0x8000, 63 << 16 | 1, 1)
        );
        // IEN is bit 1 and IV bits 31:16 of CDW11 (Figure 151).
        let c = create_io_cq_with(2, 64, 0x8000, Some(1));
        assert_eq!((c.cdw10[0], c.cdw10[1]), (63 << 16 | 2, 0x0001_0003));
        let c = create_io_cq_with(1, 2, 0x8000, Some(0x7ff));
        assert_eq!(c.cdw10[1], 0x07ff_0003);
        assert_eq!(
            create_io_cq_with(1, 64, 0x8000, None),
            create_io_cq(1, 64, 0x8000)
        );
        let s = create_io_sq(1, 32, 0x9000, 1);
        assert_eq!(
            (s.opcode(), s.cdw10[0], s.cdw10[1]),
            (0x01, 31 << 16 | 1, 1 << 16 | 1)
        );
        let q = set_number_of_queues(1, 1);
        assert_eq!((q.opcode(), q.cdw10[0], q.cdw10[1]), (0x09, 7, 0));
        let r = read_write(io_opcode::READ, 1, 0x1_0000_0002, 8).unwrap();
        assert_eq!((r.nsid, r.cdw10[0], r.cdw10[1], r.cdw10[2]), (1, 2, 1, 7));
        assert!(read_write(io_opcode::WRITE, 1, 0, 0).is_err());
        assert!(read_write(io_opcode::WRITE, 1, 0, (1 << 16) + 1).is_err());
        let i = identify(cns::NAMESPACE, 1, 0x4000);
        assert_eq!((i.opcode(), i.nsid, i.cdw10[0]), (0x06, 1, 0));
        let mut r = read_write(io_opcode::WRITE, 1, 0, 8).unwrap();
        r.cdw0 |= 0b10 << 14;
        set_sgl1(&mut r, [0x1234, 0x0300_0000_0000_1000]);
        assert_eq!(
            (r.cdw0 & 0xffff, r.prp1, r.prp2),
            (0x4001, 0x1234, 0x0300_0000_0000_1000)
        );
    }

    #[test]
    fn sgls_decodes_bits_1_0() {
        let cases = [
            (0, SglSupport::None),
            (1, SglSupport::Unaligned),
            (2, SglSupport::DwordAligned),
            (3, SglSupport::None),
            (0xffff_fffc, SglSupport::None),
            (0x0005_0001, SglSupport::Unaligned),
        ];
        for (sgls, want) in cases {
            assert_eq!(SglSupport::from_sgls(sgls), want, "{sgls:#x}");
        }
        assert!(!SglSupport::None.supported() && SglSupport::Unaligned.supported());
    }

    #[test]
    fn identify_data_is_checked_before_use() {
        let mut page = [0u8; IDENTIFY_BYTES];
        assert!(ControllerIdentity::decode(&page[..4095]).is_err());
        page[..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        // The bytes around each field differ from it, so an off-by-one
        // offset shows.
        page[2..4].fill(b'<');
        page[4..24].copy_from_slice(b"dma-vfio-0001       ");
        page[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
        page[64..72].copy_from_slice(b"7.2.22  ");
        page[77] = 7;
        page[512..516].fill(0xaa);
        page[516..520].copy_from_slice(&0x0102_0304u32.to_le_bytes());
        page[520..524].fill(0xbb);
        page[532..536].fill(0xcc);
        page[536..540].copy_from_slice(&0x0001_0002u32.to_le_bytes());
        page[540..544].fill(0xdd);
        let c = ControllerIdentity::decode(&page).unwrap();
        assert_eq!((c.vid, c.mdts, c.namespaces), (0x1b36, 7, 0x0102_0304));
        assert_eq!((c.sgls, c.sgl()), (0x0001_0002, SglSupport::DwordAligned));
        assert_eq!(c.serial(), Some("dma-vfio-0001"));
        assert_eq!(c.model(), Some("QEMU NVMe Ctrl"));
        assert_eq!(c.max_transfer(4096), Some(4096 << 7));
        page[30] = 0xff;
        page[10] = 0x80;
        let c = ControllerIdentity::decode(&page).unwrap();
        assert_eq!((c.model(), c.serial()), (None, None));

        let mut ns = [0u8; IDENTIFY_BYTES];
        assert!(NamespaceIdentity::decode(&ns[..100]).is_err());
        ns[128 + 2] = 9; // format 0: 512-byte blocks
        assert!(NamespaceIdentity::decode(&ns).is_err(), "empty namespace");
        ns[..8].copy_from_slice(&1024u64.to_le_bytes());
        let n = NamespaceIdentity::decode(&ns).unwrap();
        assert_eq!((n.blocks, n.block_size), (1024, 512));
        ns[26] = 1; // format 1, whose LBADS is 0
        assert!(NamespaceIdentity::decode(&ns).is_err(), "LBADS 0");
        ns[128 + 4 + 2] = 17;
        assert!(NamespaceIdentity::decode(&ns).is_err(), "LBADS 17");
    }
}
