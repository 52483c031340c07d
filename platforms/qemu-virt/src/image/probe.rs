//! BRING-UP SCAFFOLDING, to be replaced by dma-ring's NVMe queue pair and
//! dma-iommu's page tables once they land.
//!
//! The smallest thing that makes the controller DMA: a two-slot admin queue
//! pair in non-cacheable pages that issues one Identify Controller at a
//! time, and a one-page stage-1 table for the SMMU that maps RAM's
//! gigabyte as a single block. It exists to prove the board (BAR, enable,
//! SMMU STE/CD/commands/events) works on the real device model before the
//! libraries arrive; it is not a ring library and grows no further.

use core::time::Duration;

use dma_api::{Cacheability, Pages, PhysMemory};
use dma_coherence::barrier;
use dma_qemu_virt::memmap::RAM_BASE;
use dma_qemu_virt::mmu::{self, Descriptor, ATTR_NORMAL_WB, L1_BLOCK};
use dma_qemu_virt::nvme::{AdminQueues, Doorbell};
use dma_qemu_virt::smmu::{Stage1Config, WalkAttrs};
use dma_qemu_virt::timer::wait_for;
use dma_qemu_virt::{BoardError, Result};

use crate::board::Board;

/// Entries in each probe queue.
const ENTRIES: u16 = 2;

/// The admin queue pair of the probe.
pub struct AdminProbe {
    sq: Pages,
    cq: Pages,
    sq_tail: u16,
    cq_head: u16,
    phase: bool,
    next_cid: u16,
    sq_doorbell: Doorbell,
    cq_doorbell: Doorbell,
}

/// A completion as the probe saw it.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    /// Status field (`DW3[31:17]`): 0 is success.
    pub status: u16,
}

impl AdminProbe {
    /// Allocates the queues and enables the controller with them.
    pub fn enable(board: &mut Board) -> Result<Self> {
        let sq = board
            .memory
            .alloc_pages(1, Cacheability::Uncached, u64::MAX)?;
        let cq = board
            .memory
            .alloc_pages(1, Cacheability::Uncached, u64::MAX)?;
        board.nvme.disable(&board.clock)?;
        board.nvme.enable(
            AdminQueues {
                sq: sq.phys.as_u64(),
                sq_entries: ENTRIES,
                cq: cq.phys.as_u64(),
                cq_entries: ENTRIES,
            },
            &board.clock,
        )?;
        Ok(Self {
            sq,
            cq,
            sq_tail: 0,
            cq_head: 0,
            phase: true,
            next_cid: 1,
            sq_doorbell: board.nvme.doorbell(0, false)?,
            cq_doorbell: board.nvme.doorbell(0, true)?,
        })
    }

    /// Issues Identify (opcode 0x06) with CNS = 1 (controller) writing 4 KiB
    /// to device address `data` (NVMe 2.0 §5.17), and waits for its
    /// completion.
    pub fn identify_controller(&mut self, board: &Board, data: u64) -> Result<Completion> {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        let mut sqe = [0u32; 16];
        sqe[0] = 0x06 | u32::from(cid) << 16;
        sqe[6] = data as u32; // PRP1 (DW6-7)
        sqe[7] = (data >> 32) as u32;
        sqe[10] = 1; // CDW10.CNS = Identify Controller
        let slot = self.sq.cpu.as_ptr().cast::<u32>();
        for (i, word) in sqe.iter().enumerate() {
            // SAFETY: slot `sq_tail` (< ENTRIES) of the SQ page this probe
            // owns; the controller reads it only after the doorbell.
            unsafe {
                slot.add(usize::from(self.sq_tail) * 16 + i)
                    .write_volatile(*word)
            };
        }
        self.sq_tail = (self.sq_tail + 1) % ENTRIES;
        barrier::before_doorbell();
        self.sq_doorbell.ring(u32::from(self.sq_tail));

        let cqe = self.cq.cpu.as_ptr().cast::<u32>();
        let entry = usize::from(self.cq_head) * 4;
        let phase = self.phase;
        let read = |dw: usize| {
            // SAFETY: entry `cq_head` (< ENTRIES) of the CQ page this probe
            // owns; the controller writes it, so reads are volatile.
            unsafe { cqe.add(entry + dw).read_volatile() }
        };
        wait_for(
            &board.clock,
            Duration::from_secs(1),
            "Identify completion",
            || ((read(3) & 1 << 16 != 0) == phase).then_some(()),
        )?;
        barrier::after_completion_flag();
        let (dw2, dw3) = (read(2), read(3));
        if dw3 as u16 != cid {
            return Err(BoardError::InvalidArgument(
                "completion for another command id",
            ));
        }
        if dw2 as u16 != self.sq_tail || dw2 >> 16 != 0 {
            return Err(BoardError::InvalidArgument(
                "completion with a wrong SQ head or SQ id",
            ));
        }
        self.cq_head = (self.cq_head + 1) % ENTRIES;
        if self.cq_head == 0 {
            self.phase = !self.phase;
        }
        self.cq_doorbell.ring(u32::from(self.cq_head));
        Ok(Completion {
            status: (dw3 >> 17) as u16,
        })
    }

    /// Disables the controller and frees the queues.
    pub fn finish(self, board: &mut Board) -> Result<()> {
        board.nvme.disable(&board.clock)?;
        // SAFETY: allocated in `enable`; the controller is disabled, so it no
        // longer reads or writes them.
        unsafe {
            board.memory.free_pages(self.sq);
            board.memory.free_pages(self.cq);
        }
        Ok(())
    }
}

/// A one-page stage-1 table for the SMMU (input 39 bits, walks start at
/// level 1): RAM's gigabyte is one write-back block, everything else faults.
pub struct ProbeTables {
    l1: Pages,
}

impl ProbeTables {
    /// Builds the table in a non-cacheable page (so the SMMU's walks see it
    /// without cache maintenance).
    pub fn new(board: &Board) -> Result<Self> {
        let l1 = board
            .memory
            .alloc_pages(1, Cacheability::Uncached, u64::MAX)?;
        let entry = mmu::block(
            RAM_BASE,
            ATTR_NORMAL_WB,
            Descriptor::SH_INNER.union(Descriptor::AP_EL0),
        );
        // SAFETY: the page was just allocated and is ours; index 1 of 512.
        unsafe {
            l1.cpu
                .as_ptr()
                .cast::<u64>()
                .add((RAM_BASE / L1_BLOCK) as usize)
                .write_volatile(entry)
        };
        Ok(Self { l1 })
    }

    /// The CD configuration for these tables.
    pub fn stage1(&self, asid: u16) -> Stage1Config {
        Stage1Config {
            ttb0: self.l1.phys.as_u64(),
            input_bits: 39,
            mair: mmu::MAIR,
            asid,
            walk: WalkAttrs::NonCacheable,
        }
    }
}
