//! Device models that consume the rings through the same memory, as a
//! device would: read after seeing a doorbell or flag (with an acquire
//! barrier), write payload, release barrier, then the flag. Shared by the
//! unit-level tests (on real memory) and the loom models (on LoomMemory).
//! The `raw_*` methods let a test play a hostile device.
#![allow(dead_code)]

pub mod queues;

use dma_coherence::barrier::{
    after_completion_flag as device_acquire, dma_full as device_full,
    publish_descriptors as device_release,
};
use dma_ring::nvme::{NvmeCommand, NvmeCompletion, NvmeStatus, CQE_SIZE, SQE_SIZE, STATUS_OFFSET};
use dma_ring::virtio::need_event;
use dma_ring::virtio::packed::{EventFlags, PackedFlags, PackedLayout};
use dma_ring::virtio::split::{AvailFlags, DescFlags, SplitLayout};
use dma_ring::RingMemory;

/// `native` under a normal build, `miri` under Miri, which interprets
/// every step (and every spin of a device thread) a thousand times more
/// slowly: for loop counts that only need to wrap a ring several times.
pub const fn iterations(native: u32, miri: u32) -> u32 {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

/// An NVMe controller's view of one queue pair.
pub struct NvmeController<M> {
    pub sq: M,
    pub cq: M,
    pub sq_size: u32,
    pub cq_size: u32,
    pub qid: u16,
    pub sq_head: u32,
    pub cq_tail: u32,
    pub phase: bool,
}

impl<M: RingMemory> NvmeController<M> {
    pub fn new(sq: M, sq_size: u32, cq: M, cq_size: u32, qid: u16) -> Self {
        Self {
            sq,
            cq,
            sq_size,
            cq_size,
            qid,
            sq_head: 0,
            cq_tail: 0,
            phase: true,
        }
    }

    /// Whether the CQ has room, given the driver's last CQ head doorbell.
    pub fn cq_has_room(&self, cq_head: u32) -> bool {
        (self.cq_tail + 1) % self.cq_size != cq_head
    }

    /// Reads the command at the SQ head (the caller saw the tail doorbell
    /// move past it) and advances.
    pub fn fetch(&mut self) -> NvmeCommand {
        device_acquire();
        let base = self.sq_head as usize * SQE_SIZE;
        // SAFETY: sq_head < sq_size, inside the SQ.
        let words = core::array::from_fn(|i| unsafe { self.sq.read_u64(base + 8 * i) });
        self.sq_head = (self.sq_head + 1) % self.sq_size;
        NvmeCommand::from_words(words)
    }

    /// Posts a completion for `cid` with the current phase and SQ head.
    pub fn complete(&mut self, cid: u16, status: NvmeStatus, dw0: u32) {
        let entry = NvmeCompletion {
            dw0,
            dw1: !dw0,
            sq_head: self.sq_head as u16,
            sq_id: self.qid,
            cid,
            status: status.with_phase(self.phase),
        };
        let slot = self.cq_tail;
        self.raw_post(slot, entry);
        self.cq_tail += 1;
        if self.cq_tail == self.cq_size {
            self.cq_tail = 0;
            self.phase = !self.phase;
        }
    }

    /// Writes `entry` as is (phase included) into CQ slot `slot`: payload,
    /// release barrier, then the status word with the phase tag.
    pub fn raw_post(&self, slot: u32, entry: NvmeCompletion) {
        let base = slot as usize * CQE_SIZE;
        let [w0, w1] = entry.to_words();
        // SAFETY: slot < cq_size, inside the CQ.
        unsafe {
            self.cq.write_u64(base, w0);
            self.cq.write_u32(base + 8, w1 as u32);
            self.cq.write_u16(base + 12, entry.cid);
        }
        device_release();
        // SAFETY: `base + STATUS_OFFSET` is this entry's status, inside the CQ
        // (slot < cq_size).
        unsafe { self.cq.store_flag(base + STATUS_OFFSET, entry.status.0) };
    }

    /// Runs every command up to `sq_tail` whose completion fits, answering
    /// each with `dw0 = cdw10[0] + 1`. Returns how many ran.
    pub fn process(&mut self, sq_tail: u32, cq_head: u32) -> u32 {
        let mut n = 0;
        while self.sq_head != sq_tail && self.cq_has_room(cq_head) {
            let cmd = self.fetch();
            self.complete(cmd.cid(), NvmeStatus::SUCCESS, cmd.cdw10[0].wrapping_add(1));
            n += 1;
        }
        n
    }
}

/// A NIC's view of one descriptor ring (RX or TX).
pub struct NicDevice<M> {
    pub mem: M,
    pub size: u32,
    pub head: u32,
}

impl<M: RingMemory> NicDevice<M> {
    pub fn new(mem: M, size: u32) -> Self {
        Self { mem, size, head: 0 }
    }

    /// RX: writes a packet of `len` bytes into the next posted buffer, if
    /// the tail register says there is one. Returns the buffer's address.
    pub fn receive(&mut self, tail: u32, len: u16) -> Option<u64> {
        if self.head == tail {
            return None;
        }
        device_acquire();
        let base = self.head as usize * 16;
        // SAFETY: head < size, inside the ring.
        let addr = unsafe { self.mem.read_u64(base) };
        self.raw_write_back(self.head, len, 0x0003); // DD | EOP
        self.head = (self.head + 1) % self.size;
        Some(addr)
    }

    /// Writes back `len` and the status word at descriptor `index`.
    pub fn raw_write_back(&self, index: u32, len: u16, status_word: u16) {
        let base = index as usize * 16;
        // SAFETY: index < size.
        unsafe {
            self.mem.write_u16(base + 8, len);
            self.mem.write_u16(base + 10, 0xabcd);
        }
        device_release();
        // SAFETY: `base + 12` is this descriptor's status word (index < size).
        unsafe { self.mem.store_flag(base + 12, status_word) };
    }

    /// TX: sends every descriptor up to `tail`, writing back DD where RS
    /// is set. Returns (address, length) of each descriptor sent.
    pub fn transmit(&mut self, tail: u32) -> Vec<(u64, u16)> {
        let mut sent = Vec::new();
        if self.head != tail {
            device_acquire();
        }
        while self.head != tail {
            let base = self.head as usize * 16;
            // SAFETY: head < size.
            let (addr, len, cmd) = unsafe {
                (
                    self.mem.read_u64(base),
                    self.mem.read_u16(base + 8),
                    self.mem.read_u16(base + 10) >> 8,
                )
            };
            sent.push((addr, len));
            if cmd & 0x08 != 0 {
                device_release();
                // SAFETY: `base + 12` is this descriptor's status word, inside the
                // ring (index < size). DD in the status byte, CSS kept.
                unsafe { self.mem.store_flag(base + 12, 0x0001) };
            }
            self.head = (self.head + 1) % self.size;
        }
        sent
    }
}

/// One chain as a virtio device reads it.
#[derive(Debug, Default)]
pub struct Chain {
    pub id: u16,
    /// (address, length, device-writable) per descriptor (an indirect
    /// table's, for an indirect chain).
    pub descs: Vec<(u64, u32, bool)>,
    /// Whether it came as an indirect table.
    pub indirect: bool,
}

/// The offset of an indirect table at device address `addr`, `len` bytes
/// long, in `tables`, checking the rules the driver must keep: a whole
/// number of 16-byte descriptors (at least one) inside the tables' memory,
/// 16-aligned.
fn indirect_table<M: RingMemory>(tables: &Option<M>, addr: u64, len: u32) -> (&M, usize, usize) {
    let tables = tables
        .as_ref()
        .expect("an INDIRECT descriptor, but the device was given no table memory");
    assert!(
        len > 0 && len % 16 == 0,
        "indirect table length {len} is not a multiple of 16"
    );
    let offset = addr
        .checked_sub(tables.dma_addr().as_u64())
        .expect("indirect table below the table memory") as usize;
    assert!(
        offset % 16 == 0 && offset + len as usize <= tables.len(),
        "indirect table at {addr:#x}+{len} outside the table memory"
    );
    (tables, offset, len as usize / 16)
}

impl Chain {
    pub fn writable(&self) -> u32 {
        self.descs.iter().filter(|d| d.2).map(|d| d.1).sum()
    }
}

/// A split virtqueue's device side.
pub struct SplitDevice<M> {
    pub mem: M,
    pub layout: SplitLayout,
    pub last_avail: u16,
    pub used_idx: u16,
    /// The driver's indirect table memory, if it negotiated them.
    pub tables: Option<M>,
}

impl<M: RingMemory> SplitDevice<M> {
    pub fn new(mem: M, size: u16) -> Self {
        Self {
            mem,
            layout: SplitLayout::new(size).unwrap(),
            last_avail: 0,
            used_idx: 0,
            tables: None,
        }
    }

    /// Takes the next available chain, polling the available index: the
    /// read barrier after the index orders the reads of the chain.
    pub fn pop(&mut self) -> Option<Chain> {
        self.pop_with(true)
    }

    /// Takes the next available chain after a notification: the caller
    /// consumed the driver's notify doorbell write and issued the read
    /// barrier after it, so (as a device reading ring memory after an MMIO
    /// write reached it) nothing orders the index and chain reads here but
    /// the driver's barriers before its doorbell.
    pub fn pop_notified(&mut self) -> Option<Chain> {
        self.pop_with(false)
    }

    fn pop_with(&mut self, acquire: bool) -> Option<Chain> {
        let l = self.layout;
        // SAFETY: inside the available ring.
        let avail = unsafe { self.mem.load_flag(l.avail_idx()) };
        if avail == self.last_avail {
            return None;
        }
        if acquire {
            device_acquire();
        }
        let slot = self.last_avail & (l.size - 1);
        // SAFETY: inside the available ring.
        let head = unsafe { self.mem.read_u16(l.avail_ring(slot)) };
        self.last_avail = self.last_avail.wrapping_add(1);
        let mut chain = Chain {
            id: head,
            ..Chain::default()
        };
        let mut i = head;
        for _ in 0..l.size {
            let (addr, len, flags, next) = split_desc(&self.mem, l.desc(i));
            if flags.contains(DescFlags::INDIRECT) {
                assert!(
                    !flags.contains(DescFlags::NEXT) && i == head,
                    "INDIRECT only on a chain's one descriptor, never with NEXT (§2.7.5.3.1)"
                );
                chain.indirect = true;
                chain.descs = self.read_indirect(addr, len);
                break;
            }
            chain
                .descs
                .push((addr, len, flags.contains(DescFlags::WRITE)));
            if !flags.contains(DescFlags::NEXT) {
                break;
            }
            i = next % l.size;
        }
        Some(chain)
    }

    /// Walks an indirect table by its `next` links from entry 0.
    fn read_indirect(&self, addr: u64, len: u32) -> Vec<(u64, u32, bool)> {
        let (tables, table, n) = indirect_table(&self.tables, addr, len);
        assert!(
            n <= self.layout.size as usize,
            "a chain longer than the queue"
        );
        let mut descs = Vec::new();
        let mut k = 0;
        loop {
            let (addr, len, flags, next) = split_desc(tables, table + 16 * k);
            assert!(
                !flags.contains(DescFlags::INDIRECT),
                "nested indirect table"
            );
            descs.push((addr, len, flags.contains(DescFlags::WRITE)));
            if !flags.contains(DescFlags::NEXT) {
                return descs;
            }
            assert!(
                usize::from(next) < n && descs.len() < n,
                "next {next} outside a table of {n}"
            );
            k = usize::from(next);
        }
    }

    /// Returns a chain: element, release barrier, used index.
    pub fn push_used(&mut self, id: u32, len: u32) {
        let l = self.layout;
        let elem = l.used_ring(self.used_idx & (l.size - 1));
        // SAFETY: inside the used ring.
        unsafe {
            self.mem.write_u32(elem, id);
            self.mem.write_u32(elem + 4, len);
        }
        self.used_idx = self.used_idx.wrapping_add(1);
        self.raw_used_idx(self.used_idx);
    }

    /// Stores a used index as is.
    pub fn raw_used_idx(&self, idx: u16) {
        device_release();
        // SAFETY: inside the used ring.
        unsafe { self.mem.store_flag(self.layout.used_idx(), idx) };
    }

    /// Sets `avail_event` (VIRTIO_F_EVENT_IDX) or the used flags.
    pub fn set_avail_event(&self, idx: u16) {
        // SAFETY: inside the used ring.
        unsafe { self.mem.store_flag(self.layout.avail_event(), idx) };
    }

    pub fn set_no_notify(&self, on: bool) {
        // SAFETY: inside the used ring.
        unsafe { self.mem.store_flag(self.layout.used_flags(), on as u16) };
    }

    /// The driver's `used_event`.
    pub fn used_event(&self) -> u16 {
        // SAFETY: inside the available ring.
        unsafe { self.mem.load_flag(self.layout.used_event()) }
    }

    /// Going to sleep with `VIRTIO_F_EVENT_IDX`: asks to be notified once
    /// the available index passes `last_avail` (`avail_event`), full
    /// barrier, then looks once more (§2.7.10). Returns whether a chain is
    /// available after all, so the device must not sleep.
    pub fn sleep_unless_available(&self) -> bool {
        self.set_avail_event(self.last_avail);
        device_full();
        // SAFETY: inside the available ring.
        unsafe { self.mem.load_flag(self.layout.avail_idx()) != self.last_avail }
    }

    /// After used entries from index `old` on were published: full barrier
    /// (the used index before the driver's suppression state), then
    /// whether the driver wants an interrupt: `used_event` with
    /// `VIRTIO_F_EVENT_IDX`, the available ring's `NO_INTERRUPT` flag
    /// without (§2.7.7).
    pub fn wants_interrupt(&self, old: u16, event_idx: bool) -> bool {
        device_full();
        if event_idx {
            need_event(self.used_event(), self.used_idx, old)
        } else {
            // SAFETY: inside the available ring.
            let flags = unsafe { self.mem.load_flag(self.layout.avail_flags()) };
            !AvailFlags::from_bits_retain(flags).contains(AvailFlags::NO_INTERRUPT)
        }
    }
}

/// A split descriptor's fields at `base`.
fn split_desc<M: RingMemory>(mem: &M, base: usize) -> (u64, u32, DescFlags, u16) {
    // SAFETY: the callers give a descriptor inside `mem`, 16-aligned.
    unsafe {
        (
            mem.read_u64(base),
            mem.read_u32(base + 8),
            DescFlags::from_bits_retain(mem.read_u16(base + 12)),
            mem.read_u16(base + 14),
        )
    }
}

/// A packed virtqueue's device side.
pub struct PackedDevice<M> {
    pub mem: M,
    pub layout: PackedLayout,
    pub avail: (u16, bool),
    pub used: (u16, bool),
    /// The driver's indirect table memory, if it negotiated them.
    pub tables: Option<M>,
}

fn advance(pos: (u16, bool), n: u16, size: u16) -> (u16, bool) {
    let sum = pos.0 as u32 + n as u32;
    if sum >= size as u32 {
        ((sum - size as u32) as u16, !pos.1)
    } else {
        (sum as u16, pos.1)
    }
}

impl<M: RingMemory> PackedDevice<M> {
    pub fn new(mem: M, size: u16) -> Self {
        Self {
            mem,
            layout: PackedLayout::new(size).unwrap(),
            avail: (0, true),
            used: (0, true),
            tables: None,
        }
    }

    fn flags(&self, index: u16) -> PackedFlags {
        // SAFETY: index < size.
        PackedFlags::from_bits_retain(unsafe { self.mem.load_flag(self.layout.desc(index) + 14) })
    }

    /// Whether the descriptor at the device's available position is
    /// available (its AVAIL bit matches the wrap counter, USED does not).
    pub fn has_available(&self) -> bool {
        let f = self.flags(self.avail.0);
        let wrap = self.avail.1;
        f.contains(PackedFlags::AVAIL) == wrap && f.contains(PackedFlags::USED) != wrap
    }

    /// Takes the next available chain, polling the descriptor flags: the
    /// read barrier after the flags orders the reads of the chain.
    pub fn pop(&mut self) -> Option<Chain> {
        self.pop_with(true)
    }

    /// Takes the next available chain after a notification, with no read
    /// barrier of its own (see [`SplitDevice::pop_notified`]).
    pub fn pop_notified(&mut self) -> Option<Chain> {
        self.pop_with(false)
    }

    fn pop_with(&mut self, acquire: bool) -> Option<Chain> {
        if !self.has_available() {
            return None;
        }
        if acquire {
            device_acquire();
        }
        let mut chain = Chain::default();
        for _ in 0..self.layout.size {
            let base = self.layout.desc(self.avail.0);
            let flags = self.flags(self.avail.0);
            // SAFETY: inside the ring.
            let (addr, len, id) = unsafe {
                (
                    self.mem.read_u64(base),
                    self.mem.read_u32(base + 8),
                    self.mem.read_u16(base + 12),
                )
            };
            chain.id = id;
            self.avail = advance(self.avail, 1, self.layout.size);
            if flags.contains(PackedFlags::INDIRECT) {
                assert!(
                    !flags.contains(PackedFlags::NEXT) && chain.descs.is_empty(),
                    "INDIRECT only on a chain's one descriptor, never with NEXT (§2.8.19)"
                );
                chain.indirect = true;
                chain.descs = self.read_indirect(addr, len);
                break;
            }
            chain
                .descs
                .push((addr, len, flags.contains(PackedFlags::WRITE)));
            if !flags.contains(PackedFlags::NEXT) {
                break;
            }
        }
        Some(chain)
    }

    /// Reads an indirect table's consecutive entries, which carry no id
    /// and no flag but WRITE (§2.8.19).
    fn read_indirect(&self, addr: u64, len: u32) -> Vec<(u64, u32, bool)> {
        let (tables, table, n) = indirect_table(&self.tables, addr, len);
        assert!(
            n <= self.layout.size as usize,
            "a chain longer than the queue"
        );
        (0..n)
            .map(|k| {
                let base = table + 16 * k;
                // SAFETY: entry k < n of a table inside the memory.
                let (addr, len, id, flags) = unsafe {
                    (
                        tables.read_u64(base),
                        tables.read_u32(base + 8),
                        tables.read_u16(base + 12),
                        PackedFlags::from_bits_retain(tables.read_u16(base + 14)),
                    )
                };
                assert_eq!(id, 0, "an id in an indirect table entry");
                assert!(
                    (flags - PackedFlags::WRITE).is_empty(),
                    "a flag other than WRITE in an indirect table entry: {flags:?}"
                );
                (addr, len, flags.contains(PackedFlags::WRITE))
            })
            .collect()
    }

    /// Writes a used descriptor for `id` and skips `count` positions.
    pub fn push_used(&mut self, id: u16, len: u32, count: u16) {
        let wrap = self.used.1;
        self.raw_used(self.used.0, id, len, wrap);
        self.used = advance(self.used, count, self.layout.size);
    }

    /// Writes a used descriptor as is at `index` with wrap counter `wrap`.
    pub fn raw_used(&self, index: u16, id: u16, len: u32, wrap: bool) {
        let base = self.layout.desc(index);
        // SAFETY: index < size.
        unsafe {
            self.mem.write_u32(base + 8, len);
            self.mem.write_u16(base + 12, id);
        }
        device_release();
        let flags = if wrap {
            PackedFlags::AVAIL | PackedFlags::USED
        } else {
            PackedFlags::empty()
        };
        // SAFETY: `base + 14` is this descriptor's flags, inside the ring.
        unsafe { self.mem.store_flag(base + 14, flags.bits()) };
    }

    /// Writes the device event suppression structure.
    pub fn set_event(&self, off_wrap: u16, flags: u16) {
        let area = self.layout.device_event;
        // SAFETY: inside the layout.
        unsafe {
            self.mem.store_flag(area, off_wrap);
            self.mem.store_flag(area + 2, flags);
        }
    }

    /// Going to sleep: enables notifications, full barrier, then looks
    /// once more (§2.8.10). Returns whether a chain is available after
    /// all, so the device must not sleep.
    pub fn sleep_unless_available(&self) -> bool {
        self.set_event(0, EventFlags::Enable as u16);
        device_full();
        self.has_available()
    }

    /// After a used descriptor was written: full barrier (its flags before
    /// the driver's suppression state), then whether the driver's event
    /// suppression structure asks for an interrupt. Only `Enable` and
    /// `Disable` (no `VIRTIO_F_EVENT_IDX`).
    pub fn wants_interrupt(&self) -> bool {
        device_full();
        // SAFETY: inside the driver event suppression structure.
        let flags = unsafe { self.mem.load_flag(self.layout.driver_event + 2) };
        flags & 0x3 != EventFlags::Disable as u16
    }
}
