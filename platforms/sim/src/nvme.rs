//! An NVMe-like controller: spec-shaped registers, admin and I/O queue
//! pairs, Identify, Read, Write and Flush with PRP1/PRP2 and chained PRP
//! lists, phase-tagged completions, and an in-memory disk.
//!
//! It is an independent implementation of the NVM Express Base
//! Specification 2.0 (referred to as "NVMe 2.0" below): commands are
//! parsed from raw bytes at the spec's offsets, not through any driver-side
//! structure, so a driver and this model can only agree by both following
//! the spec.
//!
//! What it implements:
//! - properties (§3.1.4): CAP, VS, CC, CSTS, AQA, ASQ, ACQ and the
//!   doorbells at `0x1000 + (2y + {0,1}) * (4 << CAP.DSTRD)` (§3.1.4.16-17);
//! - enable/disable by CC.EN with CSTS.RDY, shutdown by CC.SHN with
//!   CSTS.SHST (§3.5);
//! - admin commands (§5): Create/Delete I/O Submission and Completion
//!   Queue, Identify (CNS 00h namespace, 01h controller, 02h active
//!   namespace list), Set/Get Features Number of Queues (FID 07h);
//! - NVM commands (NVM Command Set spec §3): Flush (00h), Write (01h),
//!   Read (02h) on namespace 1;
//! - PRPs (§4.3.1): PRP1 with a dword-aligned offset, PRP2 as a second page
//!   or a PRP list, lists chained through their last entry;
//! - SGLs (§4.3.2) on I/O commands with PSDT 01b, advertised in Identify
//!   Controller SGLS as 01b (no alignment or granularity requirement):
//!   SGL Data Block, Segment and Last Segment descriptors of sub type
//!   Address, the data SGL exactly as long as the transfer (SGLS bit 18
//!   clear); see [`NvmeController`]'s SGL section for the statuses;
//! - completions (§4.2.1/4.6): DW0, SQ head and SQ id in DW2, CID, phase
//!   and status in DW3, the phase inverting on every wrap; a full CQ holds
//!   back fetching.
//!
//! A doorbell write out of range, or a bad admin queue setup, sets
//! CSTS.CFS (controller fatal) instead of the spec's asynchronous event.

use dma_core::DmaAddr;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

use crate::device::{Delayed, Injection};
use crate::rng::SplitMix64;
use crate::{Bus, Device, Mmio, RegisterBlock, Step};

mod sgl;

/// Register bitfields (the macro's generated items carry no docs of
/// their own; each field is documented at its definition).
#[allow(missing_docs)]
pub mod fields {
    use tock_registers::register_bitfields;

    register_bitfields! [u64,
        /// Controller Capabilities (NVMe 2.0 §3.1.4.1).
        pub CAP [
            /// Maximum Queue Entries Supported, 0-based.
            MQES OFFSET(0) NUMBITS(16) [],
            /// Contiguous Queues Required.
            CQR OFFSET(16) NUMBITS(1) [],
            /// Timeout in 500 ms units.
            TO OFFSET(24) NUMBITS(8) [],
            /// Doorbell Stride: 4 << DSTRD bytes.
            DSTRD OFFSET(32) NUMBITS(4) [],
            /// Command Sets Supported (bit 0: NVM).
            CSS OFFSET(37) NUMBITS(8) [],
            /// Memory Page Size Minimum: 2^(12 + MPSMIN).
            MPSMIN OFFSET(48) NUMBITS(4) [],
            /// Memory Page Size Maximum.
            MPSMAX OFFSET(52) NUMBITS(4) []
        ]
    ];

    register_bitfields! [u32,
        /// Controller Configuration (NVMe 2.0 §3.1.4.5).
        pub CC [
            /// Enable.
            EN OFFSET(0) NUMBITS(1) [],
            /// I/O Command Set Selected.
            CSS OFFSET(4) NUMBITS(3) [],
            /// Memory Page Size: 2^(12 + MPS).
            MPS OFFSET(7) NUMBITS(4) [],
            /// Arbitration Mechanism Selected.
            AMS OFFSET(11) NUMBITS(3) [],
            /// Shutdown Notification.
            SHN OFFSET(14) NUMBITS(2) [],
            /// I/O Submission Queue Entry Size, log2.
            IOSQES OFFSET(16) NUMBITS(4) [],
            /// I/O Completion Queue Entry Size, log2.
            IOCQES OFFSET(20) NUMBITS(4) []
        ],
        /// Controller Status (NVMe 2.0 §3.1.4.6).
        pub CSTS [
            /// Ready.
            RDY OFFSET(0) NUMBITS(1) [],
            /// Controller Fatal Status.
            CFS OFFSET(1) NUMBITS(1) [],
            /// Shutdown Status: 2 = complete.
            SHST OFFSET(2) NUMBITS(2) []
        ],
        /// Admin Queue Attributes (NVMe 2.0 §3.1.4.8).
        pub AQA [
            /// Admin Submission Queue Size, 0-based.
            ASQS OFFSET(0) NUMBITS(12) [],
            /// Admin Completion Queue Size, 0-based.
            ACQS OFFSET(16) NUMBITS(12) []
        ]
    ];
}

pub use fields::{AQA, CAP, CC, CSTS};

/// Number of 32-bit doorbell slots modelled.
pub const DOORBELL_SLOTS: usize = 256;

register_structs! {
    /// The controller's properties, at the offsets of NVMe 2.0 §3.1.4
    /// (Figure 33), through the doorbells.
    pub NvmeRegisters {
        /// Controller Capabilities.
        (0x00 => pub cap: ReadWrite<u64, CAP::Register>),
        /// Version.
        (0x08 => pub vs: ReadWrite<u32>),
        /// Interrupt Mask Set.
        (0x0c => pub intms: ReadWrite<u32>),
        /// Interrupt Mask Clear.
        (0x10 => pub intmc: ReadWrite<u32>),
        /// Controller Configuration.
        (0x14 => pub cc: ReadWrite<u32, CC::Register>),
        (0x18 => _reserved0),
        /// Controller Status.
        (0x1c => pub csts: ReadWrite<u32, CSTS::Register>),
        /// NVM Subsystem Reset.
        (0x20 => pub nssr: ReadWrite<u32>),
        /// Admin Queue Attributes.
        (0x24 => pub aqa: ReadWrite<u32, AQA::Register>),
        /// Admin Submission Queue Base Address.
        (0x28 => pub asq: ReadWrite<u64>),
        /// Admin Completion Queue Base Address.
        (0x30 => pub acq: ReadWrite<u64>),
        (0x38 => _reserved1),
        /// Doorbells: SQ y tail at slot `2y << DSTRD`, CQ y head at slot
        /// `(2y + 1) << DSTRD`.
        (0x1000 => pub doorbells: [ReadWrite<u32>; DOORBELL_SLOTS]),
        (0x1400 => @END),
    }
}

// SAFETY: a repr(C) struct of integer registers, valid when zeroed.
unsafe impl RegisterBlock for NvmeRegisters {}

impl NvmeRegisters {
    /// The SQ `qid` tail doorbell.
    pub fn sq_tail_doorbell(&self, qid: u16) -> Option<&ReadWrite<u32>> {
        let stride = 1usize << self.cap.read(CAP::DSTRD);
        self.doorbells.get(2 * usize::from(qid) * stride)
    }

    /// The CQ `qid` head doorbell.
    pub fn cq_head_doorbell(&self, qid: u16) -> Option<&ReadWrite<u32>> {
        let stride = 1usize << self.cap.read(CAP::DSTRD);
        self.doorbells.get((2 * usize::from(qid) + 1) * stride)
    }
}

/// Opcodes (NVMe 2.0 Figure 138; NVM Command Set Figure 13).
pub mod opcode {
    /// Admin: Delete I/O Submission Queue.
    pub const DELETE_IO_SQ: u8 = 0x00;
    /// Admin: Create I/O Submission Queue.
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Admin: Delete I/O Completion Queue.
    pub const DELETE_IO_CQ: u8 = 0x04;
    /// Admin: Create I/O Completion Queue.
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Admin: Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Admin: Set Features.
    pub const SET_FEATURES: u8 = 0x09;
    /// Admin: Get Features.
    pub const GET_FEATURES: u8 = 0x0a;
    /// NVM: Flush.
    pub const FLUSH: u8 = 0x00;
    /// NVM: Write.
    pub const WRITE: u8 = 0x01;
    /// NVM: Read.
    pub const READ: u8 = 0x02;
}

/// Status values: `(SCT << 8) | SC` (NVMe 2.0 §4.6.1.2), as placed in
/// DW3 bits 31:17 (without DNR/More/CRD).
pub mod status {
    /// Successful Completion.
    pub const SUCCESS: u16 = 0x000;
    /// Invalid Command Opcode.
    pub const INVALID_OPCODE: u16 = 0x001;
    /// Invalid Field in Command.
    pub const INVALID_FIELD: u16 = 0x002;
    /// Data Transfer Error.
    pub const DATA_TRANSFER_ERROR: u16 = 0x004;
    /// Internal Error.
    pub const INTERNAL_ERROR: u16 = 0x006;
    /// Invalid Namespace or Format.
    pub const INVALID_NAMESPACE: u16 = 0x00b;
    /// Invalid SGL Segment Descriptor: a Segment or Last Segment
    /// descriptor that is not the last of its segment, inside the last
    /// segment, or with a length that is zero or not a multiple of 16.
    pub const INVALID_SGL_SEGMENT_DESCRIPTOR: u16 = 0x00d;
    /// Invalid Number of SGL Descriptors: more descriptors than the model
    /// walks for one command ([`MAX_SGL_DESCRIPTORS`](super::MAX_SGL_DESCRIPTORS)).
    pub const INVALID_SGL_DESCRIPTOR_COUNT: u16 = 0x00e;
    /// Data SGL Length Invalid: the data blocks add up to more or less
    /// than the command moves.
    pub const DATA_SGL_LENGTH_INVALID: u16 = 0x00f;
    /// SGL Descriptor Type Invalid: a type or sub type the controller
    /// does not support.
    pub const SGL_DESCRIPTOR_TYPE_INVALID: u16 = 0x011;
    /// PRP Offset Invalid.
    pub const PRP_OFFSET_INVALID: u16 = 0x013;
    /// LBA Out of Range.
    pub const LBA_OUT_OF_RANGE: u16 = 0x080;
    /// Command specific: Completion Queue Invalid.
    pub const CQ_INVALID: u16 = 0x100;
    /// Command specific: Invalid Queue Identifier.
    pub const INVALID_QID: u16 = 0x101;
    /// Command specific: Invalid Queue Size.
    pub const INVALID_QUEUE_SIZE: u16 = 0x102;
    /// Command specific: Invalid Queue Deletion.
    pub const INVALID_QUEUE_DELETION: u16 = 0x10c;
}

/// Submission and completion entry sizes (NVMe 2.0 §4.1, §4.2).
pub const SQE_SIZE: usize = 64;
/// Completion entry size.
pub const CQE_SIZE: usize = 16;

/// SGL descriptor size (NVMe 2.0 §4.3.2).
pub const SGL_DESCRIPTOR_SIZE: usize = 16;

/// The most SGL descriptors (data and segment pointers, SGL1 included)
/// the model reads for one command; beyond it the command completes with
/// Invalid Number of SGL Descriptors. It ends segment chains that loop
/// back on themselves; 256 MiB in 4 KiB data blocks needs fewer.
pub const MAX_SGL_DESCRIPTORS: usize = 1 << 16;

/// How the controller is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvmeConfig {
    /// Logical block size: 512 or 4096.
    pub block_size: u32,
    /// Namespace 1's size in blocks.
    pub blocks: u64,
    /// Most I/O queue pairs.
    pub io_queues: u16,
    /// Most entries per queue (CAP.MQES + 1), at least 2.
    pub max_queue_entries: u16,
    /// CAP.DSTRD, 0-2.
    pub doorbell_stride: u8,
    /// Maximum data transfer size, as a power of two of 4 KiB pages.
    pub mdts: u8,
    /// Whether I/O commands may carry SGLs (Identify Controller SGLS bits
    /// 1:0 = 01b); without it SGLS is 0 and PSDT 01b is an invalid field.
    pub sgl: bool,
}

impl Default for NvmeConfig {
    fn default() -> Self {
        Self {
            block_size: 512,
            blocks: 2048,
            io_queues: 4,
            max_queue_entries: 1024,
            doorbell_stride: 0,
            mdts: 5,
            sgl: true,
        }
    }
}

/// The controller's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NvmeStats {
    /// Commands completed (posted, dropped or delayed).
    pub commands: u64,
    /// Read commands.
    pub reads: u64,
    /// Write commands.
    pub writes: u64,
    /// Flush commands.
    pub flushes: u64,
    /// Commands that completed with a non-zero status.
    pub errors: u64,
    /// Bytes moved between host memory and the disk.
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug)]
struct Sq {
    base: u64,
    size: u16,
    head: u16,
    cqid: u16,
}

#[derive(Clone, Copy, Debug)]
struct Cq {
    base: u64,
    size: u16,
    tail: u16,
    head: u16,
    phase: bool,
}

#[derive(Clone, Copy, Debug)]
struct Completion {
    cqid: u16,
    dw0: u32,
    sqhd: u16,
    sqid: u16,
    cid: u16,
    status: u16,
}

/// A command as parsed from the 64 bytes of a submission entry
/// (NVMe 2.0 Figure 87, Common Command Format).
#[derive(Clone, Copy, Debug)]
struct Command {
    opcode: u8,
    fuse: u8,
    psdt: u8,
    cid: u16,
    nsid: u32,
    prp1: u64,
    prp2: u64,
    /// DPTR (bytes 39:24) as bytes: SGL1 when PSDT is 01b.
    dptr: [u8; 16],
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
}

impl Command {
    fn parse(b: &[u8; SQE_SIZE]) -> Self {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | u64::from(u32_at(o + 4)) << 32;
        Self {
            opcode: b[0],          // CDW0 bits 7:0
            fuse: b[1] & 0x3,      // CDW0 bits 9:8
            psdt: (b[1] >> 6) & 3, // CDW0 bits 15:14
            cid: u16::from_le_bytes([b[2], b[3]]),
            nsid: u32_at(4),
            prp1: u64_at(24), // DPTR bytes 24-31
            prp2: u64_at(32), // DPTR bytes 32-39
            dptr: {
                let mut d = [0u8; 16];
                d.copy_from_slice(&b[24..40]);
                d
            },
            cdw10: u32_at(40),
            cdw11: u32_at(44),
            cdw12: u32_at(48),
        }
    }
}

/// The NVMe controller model.
///
/// # SGLs
///
/// With [`NvmeConfig::sgl`] an I/O command with PSDT 01b carries SGL1 in
/// its DPTR. The model follows Data Block, Segment and Last Segment
/// descriptors of sub type Address (a Data Block of length 0 moves
/// nothing) and completes a malformed SGL with the spec's status, moving
/// no data:
/// - another type or sub type (Bit Bucket, keyed, transport, reserved):
///   [`SGL Descriptor Type Invalid`](status::SGL_DESCRIPTOR_TYPE_INVALID);
/// - a Segment or Last Segment descriptor that is not the last of its
///   segment, sits in the last segment, or whose length is zero or not a
///   multiple of 16:
///   [`Invalid SGL Segment Descriptor`](status::INVALID_SGL_SEGMENT_DESCRIPTOR);
/// - data blocks adding up to more or less than the transfer:
///   [`Data SGL Length Invalid`](status::DATA_SGL_LENGTH_INVALID);
/// - more than [`MAX_SGL_DESCRIPTORS`] descriptors (a looping chain):
///   [`Invalid Number of SGL Descriptors`](status::INVALID_SGL_DESCRIPTOR_COUNT);
/// - a segment it cannot read: Data Transfer Error;
/// - PSDT 10b or 11b, PSDT on an admin command, or any PSDT when SGLs are
///   off: Invalid Field in Command.
#[derive(Debug)]
pub struct NvmeController {
    bus: Bus,
    regs: Mmio<NvmeRegisters>,
    config: NvmeConfig,
    disk: Vec<u8>,
    enabled: bool,
    page_size: u64,
    sqs: Vec<Option<Sq>>,
    cqs: Vec<Option<Cq>>,
    next_sq: usize,
    steps: u64,
    injections: std::collections::VecDeque<Injection>,
    delayed: Delayed<Completion>,
    rng: SplitMix64,
    segments: Vec<(u64, usize)>,
    prp_scratch: Vec<u8>,
    stats: NvmeStats,
}

impl NvmeController {
    /// A controller doing DMA through `bus`, with an empty (zeroed) disk.
    ///
    /// # Errors
    ///
    /// [`InvalidConstraints`](dma_core::ErrorKind::InvalidConstraints) for a
    /// block size other than 512 or 4096, no blocks, no I/O queues, fewer
    /// than 2 queue entries, a stride above 2, or more queues than the
    /// doorbell slots hold.
    pub fn new(bus: Bus, config: NvmeConfig) -> dma_core::Result<Self> {
        let bad = |m| {
            Err(dma_core::Error::new(
                dma_core::ErrorKind::InvalidConstraints,
                m,
            ))
        };
        if !matches!(config.block_size, 512 | 4096) {
            return bad("block size must be 512 or 4096");
        }
        if config.blocks == 0 || config.io_queues == 0 || config.max_queue_entries < 2 {
            return bad("the disk, the queue count and the queue size must be non-zero");
        }
        if config.doorbell_stride > 2
            || (2 * (usize::from(config.io_queues) + 1)) << config.doorbell_stride > DOORBELL_SLOTS
        {
            return bad("more queues than doorbell slots");
        }
        let Some(bytes) = config
            .blocks
            .checked_mul(u64::from(config.block_size))
            .filter(|b| *b <= 1 << 32)
        else {
            return bad("the in-memory disk is limited to 4 GiB");
        };
        let regs = Mmio::<NvmeRegisters>::new_zeroed();
        regs.cap.write(
            CAP::MQES.val(u64::from(config.max_queue_entries - 1))
                + CAP::CQR::SET
                + CAP::TO.val(1)
                + CAP::DSTRD.val(u64::from(config.doorbell_stride))
                + CAP::CSS.val(1)
                + CAP::MPSMIN.val(0)
                + CAP::MPSMAX.val(4),
        );
        regs.vs.set(0x0002_0000); // 2.0.0
        let seed = bus.sim().config().seed_value() ^ (u64::from(bus.device().index()) << 32);
        let queues = usize::from(config.io_queues) + 1;
        Ok(Self {
            bus,
            regs,
            config,
            disk: vec![0; bytes as usize],
            enabled: false,
            page_size: 4096,
            sqs: vec![None; queues],
            cqs: vec![None; queues],
            next_sq: 0,
            steps: 0,
            injections: Default::default(),
            delayed: Delayed::default(),
            rng: SplitMix64::new(seed),
            segments: Vec::new(),
            prp_scratch: Vec::new(),
            stats: NvmeStats::default(),
        })
    }

    /// The register block, for the driver.
    pub fn registers(&self) -> Mmio<NvmeRegisters> {
        self.regs.clone()
    }

    /// The disk's bytes.
    pub fn disk(&self) -> &[u8] {
        &self.disk
    }

    /// The disk's bytes, for tests to prepare.
    pub fn disk_mut(&mut self) -> &mut [u8] {
        &mut self.disk
    }

    /// The configuration.
    pub fn config(&self) -> NvmeConfig {
        self.config
    }

    /// The counters.
    pub fn stats(&self) -> NvmeStats {
        self.stats
    }

    /// Queues a fault for the next command fetched (from any queue).
    pub fn inject(&mut self, injection: Injection) {
        self.injections.push_back(injection);
    }

    fn fatal(&mut self) -> Step {
        self.regs.csts.modify(CSTS::CFS::SET);
        Step::Idle
    }

    fn reset(&mut self) {
        self.enabled = false;
        self.sqs.iter_mut().for_each(|q| *q = None);
        self.cqs.iter_mut().for_each(|q| *q = None);
        self.delayed = Delayed::default();
        self.regs.csts.set(0);
    }

    /// CC.EN 0 -> 1: take the admin queue from AQA/ASQ/ACQ (NVMe 2.0 §3.5.1).
    fn enable(&mut self) -> Step {
        let cc = self.regs.cc.extract();
        let mps = cc.read(CC::MPS);
        if mps > 4 {
            return self.fatal();
        }
        self.page_size = 4096 << mps;
        let aqa = self.regs.aqa.extract();
        let sq_size = aqa.read(AQA::ASQS) as u16 + 1;
        let cq_size = aqa.read(AQA::ACQS) as u16 + 1;
        let (asq, acq) = (self.regs.asq.get(), self.regs.acq.get());
        // ASQ and ACQ bits 11:0 are reserved: the queues are page aligned.
        if sq_size < 2 || cq_size < 2 || asq % 4096 != 0 || acq % 4096 != 0 || asq == 0 || acq == 0
        {
            return self.fatal();
        }
        self.sqs[0] = Some(Sq {
            base: asq,
            size: sq_size,
            head: 0,
            cqid: 0,
        });
        self.cqs[0] = Some(Cq {
            base: acq,
            size: cq_size,
            tail: 0,
            head: 0,
            phase: true,
        });
        self.enabled = true;
        self.regs.csts.modify(CSTS::RDY::SET);
        Step::Progress
    }

    /// Writes a completion entry: DW0-DW2 first, then DW3 with the phase
    /// tag, so a driver polling the phase never sees a half-written entry.
    fn post(&mut self, c: Completion, garbage: bool) -> bool {
        let Some(cq) = self
            .cqs
            .get_mut(usize::from(c.cqid))
            .and_then(|q| q.as_mut())
        else {
            return false;
        };
        let slot = DmaAddr::new(cq.base + u64::from(cq.tail) * CQE_SIZE as u64);
        let mut entry = [0u8; CQE_SIZE];
        entry[0..4].copy_from_slice(&c.dw0.to_le_bytes());
        entry[8..10].copy_from_slice(&c.sqhd.to_le_bytes());
        entry[10..12].copy_from_slice(&c.sqid.to_le_bytes());
        let mut dw3 = u32::from(c.cid) | u32::from(cq.phase) << 16 | u32::from(c.status) << 17;
        if garbage {
            self.rng.fill(&mut entry[..12]);
            dw3 = (self.rng.next_u64() as u32 & !(1 << 16)) | u32::from(cq.phase) << 16;
        }
        cq.tail += 1;
        if cq.tail == cq.size {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
        let slot_dw3 = DmaAddr::new(slot.as_u64() + 12);
        self.bus
            .write_then((slot, &entry[..12]), (slot_dw3, &dw3.to_le_bytes()))
            .is_ok()
    }

    /// Builds the data segments of a `len`-byte transfer from the
    /// command's PRPs or (PSDT 01b, checked by `execute`) its SGL.
    fn data_segments(&mut self, cmd: &Command, len: usize) -> Result<(), u16> {
        if cmd.psdt == 0 {
            return self.prp_segments(cmd.prp1, cmd.prp2, len);
        }
        let bus = &self.bus;
        sgl::Walk::run(
            sgl::Descriptor::parse(&cmd.dptr),
            len,
            &mut self.segments,
            &mut self.prp_scratch,
            |addr, buf| bus.read(DmaAddr::new(addr), buf).is_ok(),
        )
    }

    /// Builds the PRP segments of a `len`-byte transfer (NVMe 2.0 §4.3.1).
    fn prp_segments(&mut self, prp1: u64, prp2: u64, len: usize) -> Result<(), u16> {
        let mps = self.page_size;
        self.segments.clear();
        if prp1 & 0x3 != 0 {
            return Err(status::PRP_OFFSET_INVALID);
        }
        let first = (len as u64).min(mps - prp1 % mps) as usize;
        self.segments.push((prp1, first));
        let mut rem = len - first;
        if rem == 0 {
            return Ok(());
        }
        if rem as u64 <= mps {
            if prp2 % mps != 0 {
                return Err(status::PRP_OFFSET_INVALID);
            }
            self.segments.push((prp2, rem));
            return Ok(());
        }
        // PRP2 points to a PRP list; its last entry chains to the next list
        // page when more entries are needed than fit (§4.3.1.2).
        let mut list = prp2;
        loop {
            if list & 0x7 != 0 {
                return Err(status::PRP_OFFSET_INVALID);
            }
            let slots = ((mps - list % mps) / 8) as usize;
            let needed = rem.div_ceil(mps as usize);
            let (count, chains) = if needed <= slots {
                (needed, false)
            } else {
                (slots, true)
            };
            let mut scratch = std::mem::take(&mut self.prp_scratch);
            scratch.resize(count * 8, 0);
            let read = self.bus.read(DmaAddr::new(list), &mut scratch);
            let entries: Vec<u64> = scratch
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            self.prp_scratch = scratch;
            if read.is_err() {
                return Err(status::DATA_TRANSFER_ERROR);
            }
            let data = if chains {
                &entries[..count - 1]
            } else {
                &entries[..]
            };
            for &e in data {
                if e % mps != 0 {
                    return Err(status::PRP_OFFSET_INVALID);
                }
                let n = rem.min(mps as usize);
                self.segments.push((e, n));
                rem -= n;
            }
            if !chains {
                return Ok(());
            }
            list = entries[count - 1];
        }
    }

    fn transfer(&mut self, cmd: &Command, disk_off: usize, len: usize, to_host: bool) -> u16 {
        if let Err(s) = self.data_segments(cmd, len) {
            return s;
        }
        let mut off = disk_off;
        for i in 0..self.segments.len() {
            let (addr, n) = self.segments[i];
            let range = off..off + n;
            let r = if to_host {
                self.bus.write(DmaAddr::new(addr), &self.disk[range])
            } else {
                self.bus.read(DmaAddr::new(addr), &mut self.disk[range])
            };
            if r.is_err() {
                return status::DATA_TRANSFER_ERROR;
            }
            off += n;
        }
        self.stats.bytes += len as u64;
        status::SUCCESS
    }

    fn write_data(&mut self, prp1: u64, prp2: u64, data: &[u8]) -> u16 {
        if let Err(s) = self.prp_segments(prp1, prp2, data.len()) {
            return s;
        }
        let mut off = 0;
        for i in 0..self.segments.len() {
            let (addr, n) = self.segments[i];
            if self
                .bus
                .write(DmaAddr::new(addr), &data[off..off + n])
                .is_err()
            {
                return status::DATA_TRANSFER_ERROR;
            }
            off += n;
        }
        status::SUCCESS
    }

    fn identify(&mut self, cmd: &Command) -> u16 {
        let mut data = vec![0u8; 4096];
        match cmd.cdw10 & 0xff {
            // Identify Namespace (NVM Command Set spec, Figure 97).
            0x00 => {
                if cmd.nsid != 1 {
                    return status::INVALID_NAMESPACE;
                }
                let n = self.config.blocks.to_le_bytes();
                data[0..8].copy_from_slice(&n); // NSZE
                data[8..16].copy_from_slice(&n); // NCAP
                data[16..24].copy_from_slice(&n); // NUSE
                data[25] = 0; // NLBAF: one format
                data[26] = 0; // FLBAS: format 0
                let lbads = self.config.block_size.trailing_zeros();
                data[128..132].copy_from_slice(&(lbads << 16).to_le_bytes()); // LBAF0.LBADS
            }
            // Identify Controller (NVMe 2.0 Figure 275).
            0x01 => {
                data[0..2].copy_from_slice(&0x1b36u16.to_le_bytes()); // VID
                data[4..24].copy_from_slice(b"DMASIM0001          "); // SN
                let mut mn = [b' '; 40];
                mn[..16].copy_from_slice(b"dma-sim NVMe-ish");
                data[24..64].copy_from_slice(&mn); // MN
                data[64..72].copy_from_slice(b"0.1.0   "); // FR
                data[77] = self.config.mdts; // MDTS
                data[80..84].copy_from_slice(&0x0002_0000u32.to_le_bytes()); // VER
                data[512] = 0x66; // SQES: 64-byte entries
                data[513] = 0x44; // CQES: 16-byte entries
                data[516..520].copy_from_slice(&1u32.to_le_bytes()); // NN
                data[525] = 1; // VWC: a volatile write cache, so Flush means something
                               // SGLS bits 1:0 = 01b: SGLs with no alignment or granularity
                               // requirement; no keyed SGLs, Bit Buckets, metadata SGLs or
                               // SGLs longer than the data (bits 2, 16-21 clear).
                data[536..540].copy_from_slice(&u32::from(self.config.sgl).to_le_bytes());
                // SGLS
            }
            // Active Namespace ID list (NVMe 2.0 §5.17.2.2).
            0x02 => {
                if cmd.nsid < 1 {
                    data[0..4].copy_from_slice(&1u32.to_le_bytes());
                }
            }
            _ => return status::INVALID_FIELD,
        }
        self.write_data(cmd.prp1, cmd.prp2, &data)
    }

    fn queue_entry_sizes_ok(&self) -> bool {
        let cc = self.regs.cc.extract();
        cc.read(CC::IOSQES) == 6 && cc.read(CC::IOCQES) == 4
    }

    fn admin(&mut self, cmd: &Command) -> (u32, u16) {
        let qid = (cmd.cdw10 & 0xffff) as u16;
        let qsize = (cmd.cdw10 >> 16) + 1;
        let q = usize::from(qid);
        let io_qid_ok = qid != 0 && q < self.sqs.len();
        match cmd.opcode {
            opcode::IDENTIFY => (0, self.identify(cmd)),
            opcode::CREATE_IO_CQ => {
                if !io_qid_ok || self.cqs[q].is_some() {
                    return (0, status::INVALID_QID);
                }
                if qsize < 2 || qsize > u32::from(self.config.max_queue_entries) {
                    return (0, status::INVALID_QUEUE_SIZE);
                }
                if cmd.cdw11 & 1 == 0 || !self.queue_entry_sizes_ok() {
                    return (0, status::INVALID_FIELD); // CAP.CQR: contiguous only
                }
                if cmd.prp1 % self.page_size != 0 || cmd.prp1 == 0 {
                    return (0, status::PRP_OFFSET_INVALID);
                }
                self.cqs[q] = Some(Cq {
                    base: cmd.prp1,
                    size: qsize as u16,
                    tail: 0,
                    head: 0,
                    phase: true,
                });
                (0, status::SUCCESS)
            }
            opcode::CREATE_IO_SQ => {
                if !io_qid_ok || self.sqs[q].is_some() {
                    return (0, status::INVALID_QID);
                }
                if qsize < 2 || qsize > u32::from(self.config.max_queue_entries) {
                    return (0, status::INVALID_QUEUE_SIZE);
                }
                let cqid = (cmd.cdw11 >> 16) as u16;
                if cqid == 0 || self.cqs.get(usize::from(cqid)).is_none_or(|c| c.is_none()) {
                    return (0, status::CQ_INVALID);
                }
                if cmd.cdw11 & 1 == 0 || !self.queue_entry_sizes_ok() {
                    return (0, status::INVALID_FIELD);
                }
                if cmd.prp1 % self.page_size != 0 || cmd.prp1 == 0 {
                    return (0, status::PRP_OFFSET_INVALID);
                }
                self.sqs[q] = Some(Sq {
                    base: cmd.prp1,
                    size: qsize as u16,
                    head: 0,
                    cqid,
                });
                (0, status::SUCCESS)
            }
            opcode::DELETE_IO_SQ => {
                if !io_qid_ok || self.sqs[q].take().is_none() {
                    return (0, status::INVALID_QID);
                }
                (0, status::SUCCESS)
            }
            opcode::DELETE_IO_CQ => {
                if !io_qid_ok || self.cqs[q].is_none() {
                    return (0, status::INVALID_QID);
                }
                if self.sqs.iter().flatten().any(|s| s.cqid == qid) {
                    return (0, status::INVALID_QUEUE_DELETION);
                }
                self.cqs[q] = None;
                (0, status::SUCCESS)
            }
            // Number of Queues (FID 07h, NVMe 2.0 §5.27.1.5): both counts
            // are 0-based in DW0.
            opcode::SET_FEATURES | opcode::GET_FEATURES if cmd.cdw10 & 0xff == 0x07 => {
                let n = u32::from(self.config.io_queues) - 1;
                (n << 16 | n, status::SUCCESS)
            }
            _ => (0, status::INVALID_OPCODE),
        }
    }

    fn io(&mut self, cmd: &Command) -> u16 {
        if cmd.nsid != 1 {
            return status::INVALID_NAMESPACE;
        }
        match cmd.opcode {
            opcode::FLUSH => {
                self.stats.flushes += 1;
                status::SUCCESS
            }
            opcode::READ | opcode::WRITE => {
                let slba = u64::from(cmd.cdw10) | u64::from(cmd.cdw11) << 32;
                let nlb = u64::from(cmd.cdw12 & 0xffff) + 1;
                if slba
                    .checked_add(nlb)
                    .is_none_or(|end| end > self.config.blocks)
                {
                    return status::LBA_OUT_OF_RANGE;
                }
                let len = nlb * u64::from(self.config.block_size);
                if len > 4096u64 << self.config.mdts {
                    return status::INVALID_FIELD;
                }
                let off = (slba * u64::from(self.config.block_size)) as usize;
                let to_host = cmd.opcode == opcode::READ;
                if to_host {
                    self.stats.reads += 1;
                } else {
                    self.stats.writes += 1;
                }
                self.transfer(cmd, off, len as usize, to_host)
            }
            _ => status::INVALID_OPCODE,
        }
    }

    fn execute(&mut self, qid: u16, cmd: &Command) -> (u32, u16) {
        // No fused commands; admin commands use PRPs (PSDT 00b on PCIe);
        // I/O commands PRPs or, when SGLS advertises them, PSDT 01b (SGLs
        // without metadata SGLs: 10b would need SGLS bit 19).
        let sgl_ok = qid != 0 && self.config.sgl && cmd.psdt == 1;
        if cmd.fuse != 0 || (cmd.psdt != 0 && !sgl_ok) {
            return (0, status::INVALID_FIELD);
        }
        if qid == 0 {
            self.admin(cmd)
        } else {
            (0, self.io(cmd))
        }
    }

    /// Reads the CQ head doorbells; false on an out-of-range value.
    fn read_cq_heads(&mut self) -> bool {
        for qid in 0..self.cqs.len() {
            let Some(cq) = self.cqs[qid] else { continue };
            let Some(db) = self.regs.cq_head_doorbell(qid as u16) else {
                return false;
            };
            let head = db.get();
            if head >= u32::from(cq.size) {
                return false;
            }
            if let Some(c) = self.cqs[qid].as_mut() {
                c.head = head as u16;
            }
        }
        true
    }

    /// Finds the next SQ (round robin) with an entry and room in its CQ.
    fn next_command(&mut self) -> Result<Option<(u16, Sq)>, ()> {
        let n = self.sqs.len();
        for i in 0..n {
            let qid = (self.next_sq + i) % n;
            let Some(sq) = self.sqs[qid] else { continue };
            let tail = self
                .regs
                .sq_tail_doorbell(qid as u16)
                .map(|d| d.get())
                .ok_or(())?;
            if tail >= u32::from(sq.size) {
                return Err(());
            }
            if tail as u16 == sq.head {
                continue;
            }
            let Some(cq) = self.cqs.get(usize::from(sq.cqid)).copied().flatten() else {
                continue;
            };
            if (cq.tail + 1) % cq.size == cq.head {
                continue; // CQ full: hold the command back
            }
            self.next_sq = (qid + 1) % n;
            return Ok(Some((qid as u16, sq)));
        }
        Ok(None)
    }
}

impl Device for NvmeController {
    fn step(&mut self) -> Step {
        self.steps += 1;
        let cc = self.regs.cc.extract();
        if cc.is_set(CC::EN) && !self.enabled {
            if self.regs.csts.is_set(CSTS::CFS) {
                return Step::Idle;
            }
            return self.enable();
        }
        if !cc.is_set(CC::EN) {
            if self.enabled || self.regs.csts.get() != 0 {
                self.reset();
                return Step::Progress;
            }
            return Step::Idle;
        }
        if cc.read(CC::SHN) != 0 && self.regs.csts.read(CSTS::SHST) != 2 {
            self.regs.csts.modify(CSTS::SHST.val(2));
            return Step::Progress;
        }
        if self.regs.csts.is_set(CSTS::CFS) {
            return Step::Idle;
        }
        if !self.read_cq_heads() {
            return self.fatal();
        }
        if let Some(c) = self.delayed.pop_due(self.steps) {
            self.post(c, false);
            return Step::Progress;
        }
        let (qid, sq) = match self.next_command() {
            Ok(Some(next)) => next,
            Ok(None) if self.delayed.is_empty() => return Step::Idle,
            Ok(None) => return Step::Progress, // waiting for a late completion
            Err(()) => return self.fatal(),
        };
        let mut raw = [0u8; SQE_SIZE];
        let fetched = self.bus.read(
            DmaAddr::new(sq.base + u64::from(sq.head) * SQE_SIZE as u64),
            &mut raw,
        );
        let head = (sq.head + 1) % sq.size;
        if let Some(s) = self.sqs[usize::from(qid)].as_mut() {
            s.head = head;
        }
        let injection = self.injections.pop_front();
        let cmd = Command::parse(&raw);
        let (dw0, status) = match (fetched, injection) {
            // An unreadable entry: the CID is unknown, so the completion
            // carries CID 0 and a transfer error.
            (Err(_), _) => (0, status::DATA_TRANSFER_ERROR),
            (Ok(()), Some(Injection::Error)) => (0, status::INTERNAL_ERROR),
            (Ok(()), _) => self.execute(qid, &cmd),
        };
        self.stats.commands += 1;
        if status != status::SUCCESS {
            self.stats.errors += 1;
        }
        let completion = Completion {
            cqid: sq.cqid,
            dw0,
            sqhd: head,
            sqid: qid,
            cid: if fetched.is_ok() { cmd.cid } else { 0 },
            status,
        };
        match injection {
            Some(Injection::DropCompletion) => {}
            Some(Injection::DelayCompletion { steps }) => {
                self.delayed.push(self.steps + u64::from(steps), completion);
            }
            Some(Injection::GarbageCompletion) => {
                self.post(completion, true);
            }
            _ => {
                self.post(completion, false);
            }
        }
        Step::Progress
    }
}
