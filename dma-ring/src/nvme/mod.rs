//! NVMe submission/completion queue pairs.
//!
//! The driver writes 64-byte commands at the submission queue (SQ) tail and
//! rings the SQ tail doorbell, once for a batch. The controller posts
//! 16-byte completions in the completion queue (CQ), inverting the phase
//! tag on each pass (NVMe base spec 2.0 §4.2.4 "Phase Tag"), and reports its
//! SQ head in each one (§4.2.1), which is what frees SQ entries. The driver
//! polls the phase tag at its CQ head, issues the read barrier, validates
//! the rest of the entry, and writes the CQ head doorbell once per batch of
//! reaped completions.
//!
//! Command identifiers come from the in-flight table, with a generation in
//! their high bits (as Linux's `nvme_cid`; at least
//! [`MIN_GENERATION_BITS`](crate::MIN_GENERATION_BITS), so at most
//! [`MAX_TAGGED_SLOTS`](crate::MAX_TAGGED_SLOTS) commands are in flight
//! whatever the queue size), so a repeated or stale completion is refused
//! instead of returning a buffer twice. A completion for a command written
//! but not yet announced by the SQ tail doorbell is refused too: the
//! controller cannot have fetched it.

mod layout;

pub use layout::{opcode, NvmeCommand, NvmeCompletion, NvmeStatus, NvmeStatusBits, STATUS_OFFSET};

use crate::memory::check_memory;
use crate::ring::RingCursor;
use crate::slots::{is_unannounced, Drain, SlotStorage, SlotTable, Tally};
use crate::sync;
use crate::{Doorbell, Rejected, RingError, RingErrorKind, RingMemory};

/// Bytes per submission entry.
pub const SQE_SIZE: usize = 64;
/// Bytes per completion entry.
pub const CQE_SIZE: usize = 16;
/// Completion entries per 64-byte cache line (the CQ base is page-aligned,
/// so entry `4k` starts a line).
const CQES_PER_LINE: u32 = 64 / CQE_SIZE as u32;

/// How many entries ahead of the one it writes a batch push prefetches
/// the SQ for writing. The SQ lines were last read by the controller, so
/// each store to them waits for its line; the slot stores queued between
/// the commands' stores keep the store buffer from asking for many lines
/// at once, and the prefetch asks early instead. 12 measured best with
/// the cases interleaved (5 and 6 slower than 8; 10 to 20 faster than 8,
/// 12 and 14 the fastest; docs/performance.md, "The ring").
const PREFETCH_AHEAD: u32 = 12;

/// Queue base alignment: the smallest memory page size (`CC.MPS` = 0, 4 KiB).
pub const QUEUE_ALIGN: u64 = 4096;

/// The two doorbells of a queue pair.
#[derive(Clone, Copy, Debug)]
pub struct NvmeDoorbells<D> {
    /// `SQyTDBL`.
    pub sq_tail: D,
    /// `CQyHDBL`.
    pub cq_head: D,
}

/// Queue identifier and sizes (each `2..=65536` entries, any value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvmeQueueConfig {
    /// Queue identifier (0 for the admin queue); completions must carry it.
    pub qid: u16,
    /// Submission queue entries.
    pub sq_size: u32,
    /// Completion queue entries.
    pub cq_size: u32,
}

impl NvmeQueueConfig {
    /// Bytes the submission queue needs.
    pub const fn sq_bytes(&self) -> usize {
        self.sq_size as usize * SQE_SIZE
    }

    /// Bytes the completion queue needs.
    pub const fn cq_bytes(&self) -> usize {
        self.cq_size as usize * CQE_SIZE
    }
}

/// A reaped completion: the request's buffers back, with what the
/// controller said.
#[derive(Debug)]
pub struct NvmeCompleted<T> {
    /// The buffers given to [`NvmeQueuePair::push`].
    pub buffers: T,
    /// The command identifier it ran under.
    pub cid: u16,
    /// Status (phase tag included).
    pub status: NvmeStatus,
    /// Command-specific dword 0.
    pub dw0: u32,
    /// Command-specific dword 1.
    pub dw1: u32,
}

/// Where reaping stands: the CQ head and phase, the SQ head the last
/// reaped completion reported, and the slot table's free list and count,
/// with what no completion changes worked out once. Kept in registers while
/// a run of completions is reaped, stored back once.
#[derive(Clone, Copy)]
struct ReapPosition {
    cq_head: u32,
    phase: bool,
    sq_head: u32,
    /// SQ entries from the stored SQ head to `sq_head`: the reported heads
    /// so far consumed this many.
    sq_taken: u32,
    /// SQ entries from the stored SQ head to the announced tail: no
    /// reported head may lie further.
    sq_room: u32,
    /// Commands pushed but not announced by a doorbell yet.
    unannounced: u32,
    tally: Tally,
}

/// An NVMe I/O (or admin) queue pair over ring memory `M`, doorbells `D`,
/// owning the buffers `T` of each command in flight in storage `S`.
pub struct NvmeQueuePair<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> {
    sq_mem: M,
    cq_mem: M,
    doorbells: NvmeDoorbells<D>,
    qid: u16,
    sq: RingCursor,
    cq_size: u32,
    cq_head: u32,
    phase: bool,
    cq_unreleased: bool,
    /// Commands pushed so far (wrapping): each command's submission number.
    pushed: u32,
    /// Whether an [`NvmeBatch`] is open. A batch keeps the SQ tail, the
    /// tally and the submission count in registers and stores them back
    /// when it ends, so if this is still set when the queue pair is used
    /// again, the batch was leaked (`mem::forget`) and
    /// [`settle`](Self::settle) takes its commands over: they are the busy
    /// slots at the head of the free list.
    open_batch: bool,
    slots: SlotTable<T, S>,
    broken: bool,
}

impl<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> NvmeQueuePair<M, D, T, S> {
    /// A queue pair over `sq_mem` and `cq_mem` (each 4 KiB-aligned for the
    /// device, zeroed, at least [`sq_bytes`](NvmeQueueConfig::sq_bytes) /
    /// [`cq_bytes`](NvmeQueueConfig::cq_bytes)). At most
    /// `min(slots, sq_size - 1, cq_size - 1, MAX_TAGGED_SLOTS)` commands are
    /// in flight ([`MAX_TAGGED_SLOTS`](crate::MAX_TAGGED_SLOTS) keeps
    /// generation bits in every command identifier).
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize) for a size outside
    /// `2..=65536` or empty slot storage,
    /// [`BadMemory`](RingErrorKind::BadMemory) for memory too small or
    /// misaligned.
    pub fn new(
        config: NvmeQueueConfig,
        sq_mem: M,
        cq_mem: M,
        doorbells: NvmeDoorbells<D>,
        slots: S,
    ) -> crate::Result<Self> {
        let sq = RingCursor::new(config.sq_size)?;
        let cq = RingCursor::new(config.cq_size)?;
        check_memory(&sq_mem, config.sq_bytes(), QUEUE_ALIGN)?;
        check_memory(&cq_mem, config.cq_bytes(), QUEUE_ALIGN)?;
        let limit = sq.capacity().min(cq.capacity());
        Ok(Self {
            sq_mem,
            cq_mem,
            doorbells,
            qid: config.qid,
            sq,
            cq_size: config.cq_size,
            cq_head: 0,
            phase: true,
            cq_unreleased: false,
            pushed: 0,
            open_batch: false,
            slots: SlotTable::tagged(slots, limit)?,
            broken: false,
        })
    }

    /// The queue identifier.
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Where the controller reads the submission queue (for Create I/O SQ
    /// or `ASQ`).
    pub fn sq_dma_addr(&self) -> dma_core::DmaAddr {
        self.sq_mem.dma_addr()
    }

    /// Where the controller writes the completion queue.
    pub fn cq_dma_addr(&self) -> dma_core::DmaAddr {
        self.cq_mem.dma_addr()
    }

    /// The submission queue memory.
    pub fn sq_memory(&self) -> &M {
        &self.sq_mem
    }

    /// The completion queue memory.
    pub fn cq_memory(&self) -> &M {
        &self.cq_mem
    }

    /// Commands submitted and not yet completed.
    pub fn in_flight(&self) -> u32 {
        self.slots.in_use() + self.leaked_batch()
    }

    /// Whether another command fits now.
    pub fn can_push(&self) -> bool {
        let leaked = self.leaked_batch();
        !self.broken
            && self.sq.free() > leaked
            && self.slots.usable() - self.slots.in_use() > leaked
    }

    /// Commands a leaked [`NvmeBatch`] pushed that [`settle`](Self::settle)
    /// has not taken over yet.
    #[inline]
    fn leaked_batch(&self) -> u32 {
        if self.open_batch {
            self.slots.inserted_beyond_tally()
        } else {
            0
        }
    }

    /// Takes over the commands of a leaked [`NvmeBatch`], as if it had been
    /// dropped: they count as pushed and in flight, the next doorbell
    /// announces them, and their buffers come back by completion or
    /// [`reset`](Self::reset). Without this the next push would reuse
    /// their slots and drop their buffers. Every method that reads the SQ
    /// tail or the in-flight table calls it first.
    #[inline(always)]
    fn settle(&mut self) {
        if self.open_batch {
            self.adopt_leaked_batch();
        }
    }

    #[cold]
    fn adopt_leaked_batch(&mut self) {
        let n = self.leaked_batch();
        self.open_batch = false;
        // The batch wrote its commands at the SQ tail on, one entry each,
        // numbered from `pushed` on, and took their slots from the head of
        // the free list in order.
        let adopted = self.slots.adopt_inserted(n);
        debug_assert_eq!(adopted, n);
        self.pushed = self.pushed.wrapping_add(adopted);
        let tail = self.sq.advance(self.sq.tail(), adopted);
        self.sq.set_produced_tail(tail);
    }

    /// Whether a device error broke the queue (see [`reset`](Self::reset)).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Writes `command` at the SQ tail with a fresh command identifier and
    /// takes ownership of `buffers` until it completes. The controller is
    /// not told until [`ring_doorbell`](Self::ring_doorbell): push a batch,
    /// ring once.
    ///
    /// # Errors
    ///
    /// [`Full`](RingErrorKind::Full) or [`Broken`](RingErrorKind::Broken),
    /// with the buffers handed back.
    #[inline]
    pub fn push(&mut self, command: NvmeCommand, buffers: T) -> Result<u16, Rejected<T>> {
        self.settle();
        if self.broken {
            return Err(Rejected::new(RingErrorKind::Broken, buffers));
        }
        if let Err(kind) = self.slots.check_reclaimed() {
            return Err(Rejected::new(kind, buffers));
        }
        if self.sq.is_full() {
            return Err(Rejected::new(RingErrorKind::Full, buffers));
        }
        let cid = match self.slots.insert_id(buffers, self.pushed) {
            Ok(cid) => cid,
            Err(buffers) => return Err(Rejected::new(RingErrorKind::Full, buffers)),
        };
        self.pushed = self.pushed.wrapping_add(1);
        let tail = self.sq.tail();
        // Cannot be None: the SQ was checked not full above.
        let _ = self.sq.push();
        self.write_command(tail, command, cid);
        Ok(cid)
    }

    /// Starts a batch of submissions: [`NvmeBatch::push`] writes commands
    /// like [`push`](Self::push) but keeps the SQ tail and the in-flight
    /// table's free list and count in registers until the batch ends (on
    /// [`NvmeBatch::ring_doorbell`] or drop), instead of storing them per
    /// command.
    ///
    /// ```
    /// # use dma_ring::nvme::*;
    /// # fn demo<M: dma_ring::RingMemory, D: dma_ring::Doorbell>(
    /// #     qp: &mut NvmeQueuePair<M, D, u32, [dma_ring::Slot<u32>; 8]>,
    /// # ) -> Result<(), dma_ring::Rejected<u32>> {
    /// let mut batch = qp.batch();
    /// for token in 0..4 {
    ///     batch.push(NvmeCommand::new(opcode::FLUSH), token)?;
    /// }
    /// batch.ring_doorbell(); // one doorbell for the four
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn batch(&mut self) -> NvmeBatch<'_, M, D, T, S> {
        self.settle();
        self.open_batch = true;
        let room = if self.broken || self.slots.check_reclaimed().is_err() {
            0
        } else {
            self.sq
                .free()
                .min(self.slots.usable() - self.slots.in_use())
        };
        NvmeBatch {
            pushed: self.pushed,
            first: self.pushed,
            tail: self.sq.tail(),
            tally: self.slots.tally(),
            room,
            qp: self,
        }
    }

    /// Writes a command with its identifier at SQ entry `tail`.
    #[inline]
    fn write_command(&self, tail: u32, command: NvmeCommand, cid: u16) {
        // The identifier goes into the words in registers: storing it into
        // the command and reloading the words would stall on store-to-load
        // forwarding behind the previous entry's stores to the queue.
        let mut words = command.to_words();
        words[0] = NvmeCommand::word0_with_cid(words[0], cid);
        // SAFETY: callers pass tail < sq_size, and the memory holds sq_size
        // entries (checked in `new`); 8-aligned as the base is page-aligned.
        unsafe { self.sq_mem.write_u64s(tail as usize * SQE_SIZE, &words) };
    }

    /// Hints that SQ entry `pos` (below twice the SQ size, so one
    /// subtraction wraps it) will be written soon.
    #[inline(always)]
    fn prefetch_sq(&self, pos: u32) {
        let size = self.sq.size();
        let pos = if pos >= size { pos - size } else { pos };
        self.sq_mem.prefetch_for_write(pos as usize * SQE_SIZE);
    }

    /// Tells the controller about every command pushed since the last
    /// doorbell: write barrier, then one SQ tail doorbell write. Returns
    /// whether it rang.
    #[inline]
    pub fn ring_doorbell(&mut self) -> bool {
        self.settle();
        match self.sq.take_doorbell() {
            Some(tail) => {
                sync::before_doorbell();
                self.doorbells.sq_tail.ring(tail);
                true
            }
            None => false,
        }
    }

    /// [`push`](Self::push) then [`ring_doorbell`](Self::ring_doorbell).
    ///
    /// # Errors
    ///
    /// As for `push`.
    #[inline]
    pub fn submit(&mut self, command: NvmeCommand, buffers: T) -> Result<u16, Rejected<T>> {
        let cid = self.push(command, buffers)?;
        self.ring_doorbell();
        Ok(cid)
    }

    /// Reaps the completion at the CQ head, if the controller posted one.
    /// The CQ head doorbell is written by
    /// [`release_completions`](Self::release_completions), once per batch.
    /// [`poll_many`](Self::poll_many) reaps several with one read barrier.
    ///
    /// # Errors
    ///
    /// A device-fault kind when the entry is invalid (a command identifier
    /// out of range or not in flight, another queue's id, an SQ head beyond
    /// the tail the controller was given, or a completion when nothing is
    /// in flight); the queue is then broken. [`Broken`](RingErrorKind::Broken)
    /// after that.
    #[inline]
    pub fn poll(&mut self) -> crate::Result<Option<NvmeCompleted<T>>> {
        self.settle();
        if self.broken {
            return Err(RingError::new(RingErrorKind::Broken));
        }
        let base = self.cq_head as usize * CQE_SIZE;
        // SAFETY: cq_head < cq_size and the memory holds cq_size entries.
        let status = NvmeStatus(unsafe { self.cq_mem.load_flag(base + STATUS_OFFSET) });
        if status.phase() != self.phase {
            return Ok(None);
        }
        // The phase tag is read; the rest of the entry only after it.
        sync::after_completion_flag();
        let mut at = self.reap_position();
        let reaped = self.reap(&mut at, status);
        self.set_reap_position(at);
        reaped.map(Some)
    }

    /// Reaps up to `max` posted completions into `f`, in order, and returns
    /// how many. The CQ head doorbell is left to
    /// [`release_completions`](Self::release_completions).
    ///
    /// One pass over the entries: each one's phase tag, a read barrier,
    /// then the rest of that entry, as Linux's `nvme_poll_cq` does. Its
    /// cache line is read while it is still in this CPU's cache; reading a
    /// run of tags first and the payloads in a second pass fetched the line
    /// the controller was still filling twice. On reaching the first entry
    /// of a cache line it prefetches the next line, which arrives while
    /// this line's entries are reaped if the controller has filled it
    /// already. The CQ head, phase, SQ head
    /// and the in-flight table's free list and count stay in registers and
    /// are stored back once per call. Each entry is validated as by
    /// [`poll`](Self::poll).
    ///
    /// # Errors
    ///
    /// As for [`poll`](Self::poll): the completions reaped before the bad
    /// entry went to `f`, and the queue is broken.
    #[inline]
    pub fn poll_many(
        &mut self,
        max: u32,
        mut f: impl FnMut(NvmeCompleted<T>),
    ) -> crate::Result<u32> {
        self.settle();
        if self.broken {
            return Err(RingError::new(RingErrorKind::Broken));
        }
        let mut at = self.reap_position();
        let mut reaped = 0;
        let result = loop {
            if reaped == max {
                break Ok(reaped);
            }
            let base = at.cq_head as usize * CQE_SIZE;
            // SAFETY: cq_head < cq_size and the memory holds cq_size entries.
            let status = NvmeStatus(unsafe { self.cq_mem.load_flag(base + STATUS_OFFSET) });
            if status.phase() != at.phase {
                break Ok(reaped);
            }
            // This entry's phase tag is read; the rest of it only after.
            sync::after_completion_flag();
            // The first entry of a cache line is posted: ask for the next
            // line now, so that if the controller has filled it already it
            // arrives while this line's entries are reaped.
            if at.cq_head % CQES_PER_LINE == 0 && at.cq_head + CQES_PER_LINE < self.cq_size {
                self.cq_mem
                    .prefetch_for_read((at.cq_head + CQES_PER_LINE) as usize * CQE_SIZE);
            }
            match self.reap(&mut at, status) {
                Ok(done) => f(done),
                Err(e) => break Err(e),
            }
            reaped += 1;
        };
        self.set_reap_position(at);
        result
    }

    #[inline]
    fn reap_position(&self) -> ReapPosition {
        ReapPosition {
            cq_head: self.cq_head,
            phase: self.phase,
            sq_head: self.sq.head(),
            sq_taken: 0,
            sq_room: self.sq.span(self.sq.head(), self.sq.announced()),
            unannounced: self.sq.unannounced(),
            tally: self.slots.tally(),
        }
    }

    #[inline]
    fn set_reap_position(&mut self, at: ReapPosition) {
        if at.cq_head != self.cq_head {
            self.cq_unreleased = true;
        }
        self.cq_head = at.cq_head;
        self.phase = at.phase;
        self.sq.set_checked_head(at.sq_head);
        self.slots.set_tally(at.tally);
    }

    /// Validates and consumes the entry at `at.cq_head`, whose phase tag
    /// was read (as `status`) before a read barrier, and advances `at`. A
    /// bad entry breaks the queue and leaves `at` as it was.
    #[inline]
    fn reap(
        &mut self,
        at: &mut ReapPosition,
        status: NvmeStatus,
    ) -> crate::Result<NvmeCompleted<T>> {
        let base = at.cq_head as usize * CQE_SIZE;
        // SAFETY: cq_head < cq_size and the memory holds cq_size entries;
        // offsets inside the entry, aligned to their widths.
        let (dws, dw2, cid) = unsafe {
            (
                self.cq_mem.read_u64(base),
                self.cq_mem.read_u32(base + 8),
                self.cq_mem.read_u16(base + 12),
            )
        };
        let (sq_head, sq_id) = (dw2 as u16, (dw2 >> 16) as u16);
        let (index, sq_taken) = match self.validate(at, cid, sq_head, sq_id) {
            Ok(valid) => valid,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        let taken = self.slots.take_checked_in(&mut at.tally, index)?;
        at.sq_head = sq_head.into();
        at.sq_taken = sq_taken;
        at.cq_head += 1;
        if at.cq_head == self.cq_size {
            at.cq_head = 0;
            at.phase = !at.phase;
        }
        Ok(NvmeCompleted {
            buffers: taken.value,
            cid,
            status,
            dw0: dws as u32,
            dw1: (dws >> 32) as u32,
        })
    }

    /// Checks what the controller wrote; returns the command's slot and
    /// how far the reported SQ head is from the stored one.
    #[inline]
    fn validate(
        &self,
        at: &ReapPosition,
        cid: u16,
        sq_head: u16,
        sq_id: u16,
    ) -> crate::Result<(u16, u32)> {
        if at.tally.in_use() == 0 {
            return Err(RingError::with(
                RingErrorKind::UnexpectedCompletion,
                at.cq_head.into(),
            ));
        }
        if sq_id != self.qid {
            return Err(RingError::with(RingErrorKind::WrongQueue, sq_id.into()));
        }
        // The head must lie from the last reported one to the announced
        // tail (as `RingCursor::check_head` asks of one report), counted
        // from the stored head so that one distance is worked out per entry.
        let sq_head = u32::from(sq_head);
        let jump = || RingError::with(RingErrorKind::IndexJump, sq_head.into());
        if sq_head >= self.sq.size() {
            return Err(jump());
        }
        let taken = self.sq.span(self.sq.head(), sq_head);
        if taken < at.sq_taken || taken > at.sq_room {
            return Err(jump());
        }
        let command = self.slots.check(cid)?;
        if is_unannounced(command.submitted, self.pushed, at.unannounced) {
            return Err(RingError::with(
                RingErrorKind::UnexpectedCompletion,
                cid.into(),
            ));
        }
        Ok((command.index, taken))
    }

    /// Writes the CQ head doorbell if completions were reaped since the last
    /// time, letting the controller reuse those entries. Returns whether it
    /// rang.
    #[inline]
    pub fn release_completions(&mut self) -> bool {
        if !self.cq_unreleased {
            return false;
        }
        self.cq_unreleased = false;
        // Orders the reads of the reaped entries before the doorbell that
        // lets the controller overwrite them (a release in the models).
        sync::before_doorbell();
        self.doorbells.cq_head.ring(self.cq_head);
        true
    }

    /// Reaps every posted completion into `f` (as [`poll_many`](Self::poll_many)),
    /// then writes the CQ head doorbell once. Returns how many were reaped.
    ///
    /// # Errors
    ///
    /// As for [`poll`](Self::poll); completions reaped before the error were
    /// passed to `f` and are released.
    pub fn drain(&mut self, f: impl FnMut(NvmeCompleted<T>)) -> crate::Result<u32> {
        let result = self.poll_many(u32::MAX, f);
        self.release_completions();
        result
    }

    /// After the controller was reset (or the queue deleted): forgets every
    /// submission, zeroes the completion queue, repairs a broken queue, and
    /// hands back the buffers of every command that was in flight, each once.
    ///
    /// Call it only once the controller no longer accesses the queues or
    /// the buffers.
    pub fn reset(&mut self) -> Drain<'_, T> {
        self.settle();
        for i in 0..self.cq_size as usize {
            let base = i * CQE_SIZE;
            // SAFETY: every entry below cq_size is inside the memory.
            unsafe {
                self.cq_mem.write_u64(base, 0);
                self.cq_mem.write_u32(base + 8, 0);
                self.cq_mem.write_u16(base + 12, 0);
                self.cq_mem.store_flag(base + STATUS_OFFSET, 0);
            }
        }
        self.sq.reset();
        self.cq_head = 0;
        self.phase = true;
        self.cq_unreleased = false;
        self.broken = false;
        self.slots.drain()
    }
}

/// A batch of submissions to a queue pair, from [`NvmeQueuePair::batch`].
///
/// The SQ tail, the submission count and the in-flight table's
/// bookkeeping live in the batch until it ends (no store per command but
/// the command's own and its slot's); dropping it (or [`ring_doorbell`](Self::ring_doorbell))
/// stores them back. The controller learns of the commands only from a
/// doorbell after that. A batch leaked (`mem::forget`) instead of dropped
/// ends the same way: the queue pair's next call takes its commands over
/// as pushed and not yet announced, so their buffers come back by
/// completion or [`reset`](NvmeQueuePair::reset), never dropped or handed
/// out twice.
pub struct NvmeBatch<'a, M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> {
    qp: &'a mut NvmeQueuePair<M, D, T, S>,
    tail: u32,
    tally: Tally,
    /// Commands that still fit: free SQ entries and free slots alike.
    room: u32,
    /// The next command's submission number.
    pushed: u32,
    /// The submission number of the batch's first command.
    first: u32,
}

impl<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> NvmeBatch<'_, M, D, T, S> {
    /// Commands that still fit in this batch.
    #[inline]
    pub fn room(&self) -> u32 {
        self.room
    }

    /// As [`NvmeQueuePair::push`]: writes `command` at the SQ tail with a
    /// fresh command identifier and takes ownership of `buffers`.
    ///
    /// # Errors
    ///
    /// [`Full`](RingErrorKind::Full), or [`Broken`](RingErrorKind::Broken)
    /// if the queue was broken when the batch began, with the buffers
    /// handed back.
    #[inline]
    pub fn push(&mut self, command: NvmeCommand, buffers: T) -> Result<u16, Rejected<T>> {
        if self.room == 0 {
            let kind = if self.qp.broken {
                RingErrorKind::Broken
            } else if let Err(kind) = self.qp.slots.check_reclaimed() {
                kind
            } else {
                RingErrorKind::Full
            };
            return Err(Rejected::new(kind, buffers));
        }
        let submitted = self.pushed;
        let cid = match self
            .qp
            .slots
            .insert_id_in(&mut self.tally, buffers, submitted)
        {
            Ok(cid) => cid,
            Err(buffers) => return Err(Rejected::new(RingErrorKind::Full, buffers)),
        };
        self.pushed = submitted.wrapping_add(1);
        let tail = self.tail;
        self.qp.write_command(tail, command, cid);
        self.tail = self.qp.sq.next(tail);
        self.room -= 1;
        // Only entries the batch may still fill (free ones, which the
        // controller no longer reads), and not on a batch's first command:
        // a lone command is in flight before a prefetch would pay off, and
        // batch 1 ran slower with one.
        if self.room > PREFETCH_AHEAD && submitted != self.first {
            self.qp.prefetch_sq(tail + PREFETCH_AHEAD);
        }
        Ok(cid)
    }

    /// Ends the batch and rings the SQ tail doorbell (as
    /// [`NvmeQueuePair::ring_doorbell`]). Returns whether it rang.
    #[inline]
    pub fn ring_doorbell(mut self) -> bool {
        self.store_back();
        self.qp.ring_doorbell()
    }

    #[inline]
    fn store_back(&mut self) {
        self.qp.slots.set_tally(self.tally);
        self.qp.sq.set_produced_tail(self.tail);
        self.qp.pushed = self.pushed;
        self.qp.open_batch = false;
    }
}

impl<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> Drop for NvmeBatch<'_, M, D, T, S> {
    #[inline]
    fn drop(&mut self) {
        self.store_back();
    }
}

impl<M: RingMemory, D: Doorbell, T, S: SlotStorage<T>> core::fmt::Debug
    for NvmeBatch<'_, M, D, T, S>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NvmeBatch")
            .field("tail", &self.tail)
            .field("room", &self.room)
            .finish()
    }
}

#[cfg(feature = "alloc")]
impl<P, D, T> NvmeQueuePair<dma_core::Coherent<[u64], P>, D, T, alloc::vec::Vec<crate::Slot<T>>>
where
    P: dma_core::DmaAlloc + Clone,
    D: Doorbell,
{
    /// Allocates both queues as coherent memory from `platform` and a heap
    /// slot table.
    ///
    /// # Errors
    ///
    /// The allocation's error, or as for [`new`](Self::new).
    pub fn allocate(
        platform: P,
        config: NvmeQueueConfig,
        doorbells: NvmeDoorbells<D>,
    ) -> Result<Self, dma_core::Error> {
        let words = |bytes: usize| bytes.div_ceil(8);
        let sq = dma_core::Coherent::zeroed_slice(platform.clone(), words(config.sq_bytes()))?;
        let cq = dma_core::Coherent::zeroed_slice(platform, words(config.cq_bytes()))?;
        let slots = crate::slot_vec(config.sq_size.min(config.cq_size) as usize);
        Ok(Self::new(config, sq, cq, doorbells, slots)?)
    }
}
