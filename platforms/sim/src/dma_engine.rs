//! A memory-to-memory DMA engine fed by a ring of 16-byte generic
//! scatter-gather entries.
//!
//! # Programming model
//!
//! The ring is an array of [`SgDescriptor`]s in DMA memory (a coherent
//! allocation: the engine writes completion flags back into it). The
//! driver programs [`DmaEngineRegisters::ring_base`] and `ring_size`
//! (entries), sets [`ctrl`](DmaEngineRegisters::ctrl) `EN`, and produces
//! entries at `tail`. One *job* is the run of entries from `head` up to and
//! including the first with [`SgFlags::FINAL`]: entries without
//! [`SgFlags::DEST`] are the source, read in order; entries with it are the
//! destination, written in order. Source and destination totals must be
//! equal and non-zero.
//!
//! When a job finishes, the engine sets [`SgFlags::DONE`] (and
//! [`SgFlags::ERROR`] if it failed: unequal totals, or a refused access)
//! in the FINAL entry's flags, then advances `head` and `completed` (and
//! `errors`). An incomplete job (no FINAL entry before `tail`) waits.
//!
//! Entry layout (little-endian), the generic hardware SG entry: bytes 0-7
//! address, 8-11 length, 12-15 flags.

use bitflags::bitflags;
use dma_core::DmaAddr;
use static_assertions::{assert_eq_size, const_assert_eq};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

use crate::device::{Delayed, Injection};
use crate::rng::SplitMix64;
use crate::{Bus, Device, Mmio, RegisterBlock, Step};

bitflags! {
    /// The flags word of an [`SgDescriptor`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SgFlags: u32 {
        /// The last entry of a job.
        const FINAL = 1 << 0;
        /// A destination segment (else a source segment).
        const DEST = 1 << 1;
        /// Written back by the engine on the FINAL entry: the job failed.
        const ERROR = 1 << 30;
        /// Written back by the engine on the FINAL entry: the job is done.
        const DONE = 1 << 31;
    }
}

/// One 16-byte generic scatter-gather entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SgDescriptor {
    /// Device address of the segment.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// [`SgFlags`] bits.
    pub flags: u32,
}

assert_eq_size!(SgDescriptor, [u8; 16]);
const_assert_eq!(core::mem::offset_of!(SgDescriptor, addr), 0);
const_assert_eq!(core::mem::offset_of!(SgDescriptor, len), 8);
const_assert_eq!(core::mem::offset_of!(SgDescriptor, flags), 12);

impl SgDescriptor {
    /// Size in bytes.
    pub const SIZE: usize = 16;

    /// The entry as bytes, little-endian.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// An entry from bytes, little-endian.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        Self {
            addr: u64::from_le_bytes(b[0..8].try_into().unwrap_or_default()),
            len: u32::from_le_bytes(b[8..12].try_into().unwrap_or_default()),
            flags: u32::from_le_bytes(b[12..16].try_into().unwrap_or_default()),
        }
    }
}

register_structs! {
    /// The engine's registers. The driver writes `ctrl`, `ring_base`,
    /// `ring_size` and `tail`; the engine writes `id`, `status`, `head`,
    /// `completed` and `errors`.
    pub DmaEngineRegisters {
        /// Identification: [`DmaEngine::ID`].
        (0x00 => pub id: ReadWrite<u32>),
        /// Bit 0: EN, the engine runs.
        (0x04 => pub ctrl: ReadWrite<u32>),
        /// Bit 0: the ring registers are invalid (size 0, tail out of range).
        (0x08 => pub status: ReadWrite<u32>),
        (0x0c => _reserved0),
        /// Device address of entry 0 (16-byte aligned).
        (0x10 => pub ring_base: ReadWrite<u64>),
        /// Number of entries.
        (0x18 => pub ring_size: ReadWrite<u32>),
        /// Next entry the engine will read.
        (0x1c => pub head: ReadWrite<u32>),
        /// One past the last entry the driver produced.
        (0x20 => pub tail: ReadWrite<u32>),
        /// Jobs finished (wrapping).
        (0x24 => pub completed: ReadWrite<u32>),
        /// Jobs finished with ERROR (wrapping).
        (0x28 => pub errors: ReadWrite<u32>),
        (0x2c => @END),
    }
}

// SAFETY: a repr(C) struct of integer registers, valid when zeroed.
unsafe impl RegisterBlock for DmaEngineRegisters {}

/// `ctrl` bit 0.
pub const CTRL_EN: u32 = 1;
/// `status` bit 0.
pub const STATUS_BAD_RING: u32 = 1;

/// The engine's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaEngineStats {
    /// Jobs finished successfully.
    pub jobs: u64,
    /// Jobs finished with ERROR.
    pub failed: u64,
    /// Bytes copied.
    pub bytes: u64,
}

/// The memory-to-memory engine model.
#[derive(Debug)]
pub struct DmaEngine {
    bus: Bus,
    regs: Mmio<DmaEngineRegisters>,
    head: u32,
    steps: u64,
    injections: std::collections::VecDeque<Injection>,
    delayed: Delayed<(DmaAddr, u32)>,
    rng: SplitMix64,
    buf: Vec<u8>,
    stats: DmaEngineStats,
}

impl DmaEngine {
    /// The value of the `id` register.
    pub const ID: u32 = 0x5347_4d44; // "DMGS"

    /// Most entries in one job.
    pub const MAX_JOB: u32 = 256;

    /// An engine doing DMA through `bus`.
    pub fn new(bus: Bus) -> Self {
        let regs = Mmio::<DmaEngineRegisters>::new_zeroed();
        regs.id.set(Self::ID);
        let seed = bus.sim().config().seed_value() ^ u64::from(bus.device().index()) << 32;
        Self {
            bus,
            regs,
            head: 0,
            steps: 0,
            injections: Default::default(),
            delayed: Delayed::default(),
            rng: SplitMix64::new(seed),
            buf: Vec::new(),
            stats: DmaEngineStats::default(),
        }
    }

    /// The register block, for the driver.
    pub fn registers(&self) -> Mmio<DmaEngineRegisters> {
        self.regs.clone()
    }

    /// Queues a fault for the next job.
    pub fn inject(&mut self, injection: Injection) {
        self.injections.push_back(injection);
    }

    /// The counters.
    pub fn stats(&self) -> DmaEngineStats {
        self.stats
    }

    fn entry_addr(&self, base: u64, index: u32) -> DmaAddr {
        DmaAddr::new(base.wrapping_add(u64::from(index) * SgDescriptor::SIZE as u64))
    }

    /// Runs one job whose entries are `entries`; true on success.
    fn run_job(&mut self, entries: &[SgDescriptor]) -> bool {
        let is_dest = |e: &SgDescriptor| SgFlags::from_bits_retain(e.flags).contains(SgFlags::DEST);
        let src: u64 = entries
            .iter()
            .filter(|e| !is_dest(e))
            .map(|e| u64::from(e.len))
            .sum();
        let dst: u64 = entries
            .iter()
            .filter(|e| is_dest(e))
            .map(|e| u64::from(e.len))
            .sum();
        if src != dst || src == 0 || src > (64 << 20) {
            return false;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(src as usize, 0);
        let mut ok = true;
        let mut pos = 0usize;
        for e in entries.iter().filter(|e| !is_dest(e)) {
            let n = e.len as usize;
            if self
                .bus
                .read(DmaAddr::new(e.addr), &mut buf[pos..pos + n])
                .is_err()
            {
                ok = false;
                break;
            }
            pos += n;
        }
        pos = 0;
        if ok {
            for e in entries.iter().filter(|e| is_dest(e)) {
                let n = e.len as usize;
                if self
                    .bus
                    .write(DmaAddr::new(e.addr), &buf[pos..pos + n])
                    .is_err()
                {
                    ok = false;
                    break;
                }
                pos += n;
            }
        }
        if ok {
            self.stats.bytes += src;
        }
        self.buf = buf;
        ok
    }

    fn complete(&mut self, flags_addr: DmaAddr, flags: u32) {
        // A lost write-back is simply not retried: the job is done, its
        // completion is not.
        let _ = self.bus.write_u32(flags_addr, flags);
    }
}

impl Device for DmaEngine {
    fn step(&mut self) -> Step {
        self.steps += 1;
        if let Some((addr, flags)) = self.delayed.pop_due(self.steps) {
            self.complete(addr, flags);
            return Step::Progress;
        }
        if self.regs.ctrl.get() & CTRL_EN == 0 {
            self.head = 0;
            self.regs.head.set(0);
            return if self.delayed.is_empty() {
                Step::Idle
            } else {
                Step::Progress
            };
        }
        let size = self.regs.ring_size.get();
        let base = self.regs.ring_base.get();
        let tail = self.regs.tail.get();
        if size == 0 || tail >= size || self.head >= size || base % 16 != 0 {
            self.regs.status.set(STATUS_BAD_RING);
            return Step::Idle;
        }
        self.regs.status.set(0);
        if self.head == tail {
            return if self.delayed.is_empty() {
                Step::Idle
            } else {
                Step::Progress
            };
        }
        // Gather one job: head .. first FINAL, not past tail.
        let mut entries = Vec::new();
        let mut index = self.head;
        let mut final_index = None;
        while index != tail && entries.len() < Self::MAX_JOB as usize {
            let mut raw = [0u8; 16];
            if self
                .bus
                .read(self.entry_addr(base, index), &mut raw)
                .is_err()
            {
                // The ring itself is unreachable: nothing can be reported
                // through it. Stop, flag the ring.
                self.regs.status.set(STATUS_BAD_RING);
                return Step::Idle;
            }
            let e = SgDescriptor::from_bytes(&raw);
            entries.push(e);
            if SgFlags::from_bits_retain(e.flags).contains(SgFlags::FINAL) {
                final_index = Some(index);
                break;
            }
            index = (index + 1) % size;
        }
        let Some(final_index) = final_index else {
            return Step::Idle; // the driver has not produced the whole job yet
        };
        let injection = self.injections.pop_front();
        let ok = match injection {
            Some(Injection::Error) => false,
            _ => self.run_job(&entries),
        };
        let last = entries[entries.len() - 1];
        let mut flags = SgFlags::from_bits_retain(last.flags) | SgFlags::DONE;
        if !ok {
            flags |= SgFlags::ERROR;
            self.stats.failed += 1;
            self.regs.errors.set(self.regs.errors.get().wrapping_add(1));
        } else {
            self.stats.jobs += 1;
        }
        let flags_addr = self
            .entry_addr(base, final_index)
            .checked_add(12)
            .unwrap_or(DmaAddr::ZERO);
        match injection {
            Some(Injection::DropCompletion) => {}
            Some(Injection::DelayCompletion { steps }) => {
                self.delayed
                    .push(self.steps + u64::from(steps), (flags_addr, flags.bits()));
            }
            Some(Injection::GarbageCompletion) => {
                let garbage = (self.rng.next_u64() as u32) | SgFlags::DONE.bits();
                self.complete(flags_addr, garbage);
            }
            _ => self.complete(flags_addr, flags.bits()),
        }
        self.head = (final_index + 1) % size;
        self.regs.head.set(self.head);
        self.regs
            .completed
            .set(self.regs.completed.get().wrapping_add(1));
        Step::Progress
    }
}
