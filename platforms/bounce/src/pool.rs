//! The bounce pool: 2 KiB slots in memory every device served can reach.

use core::ptr::NonNull;

use dma_core::{Cacheability, Error, ErrorKind, Pages, PhysAddr, PhysMemory, Result};

/// Bytes per slot (Linux's `IO_TLB_SIZE`, `1 << IO_TLB_SHIFT` = 2 KiB).
pub const SLOT_SIZE: usize = 2048;
/// The most slots one mapping may take (Linux's `IO_TLB_SEGSIZE`): 256 KiB.
pub const MAX_SLOTS_PER_MAPPING: usize = 128;

/// Where a mapping sits in the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// The first slot.
    pub(crate) slot: usize,
    /// Slots taken.
    pub(crate) slots: usize,
    /// Offset of the first byte in the first slot.
    pub(crate) offset: usize,
}

impl Placement {
    /// Bytes from the pool's start to the mapping's first byte.
    pub(crate) fn pool_offset(&self) -> usize {
        self.slot * SLOT_SIZE + self.offset
    }
}

/// What a placement must satisfy, in device addresses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    /// Device address of slot 0.
    pub(crate) dma_base: u64,
    /// Low bits of the original address the bounce address keeps.
    pub(crate) min_align_mask: u64,
    /// Start alignment (a power of two).
    pub(crate) alignment: u64,
    /// A line the mapping may not cross, if any.
    pub(crate) boundary: Option<u64>,
}

/// Per-slot bookkeeping, kept in pages from the environment so the pool
/// needs no heap: a free bitmap, then for each slot the original physical
/// address and, at a mapping's first slot, its slot count.
struct Meta {
    pages: Pages,
    words: usize,
    slots: usize,
}

impl Meta {
    fn bitmap(&mut self) -> &mut [u64] {
        // SAFETY: the metadata pages are ours alone (from alloc_pages, never
        // given to a device) and hold `words + 2 * slots` u64s (sized so in
        // `BouncePool::new`); page alignment suits u64.
        unsafe {
            core::slice::from_raw_parts_mut(self.pages.cpu.cast::<u64>().as_ptr(), self.words)
        }
    }

    fn records(&mut self) -> (&mut [u64], &mut [u64]) {
        // SAFETY: as in `bitmap`; the two record arrays follow the bitmap
        // and do not overlap it or each other.
        let all = unsafe {
            core::slice::from_raw_parts_mut(
                self.pages.cpu.cast::<u64>().as_ptr().add(self.words),
                2 * self.slots,
            )
        };
        all.split_at_mut(self.slots)
    }

    fn is_free(&mut self, slot: usize) -> bool {
        self.bitmap()[slot / 64] & (1 << (slot % 64)) == 0
    }

    fn set(&mut self, first: usize, count: usize, used: bool) {
        let bits = self.bitmap();
        for s in first..first + count {
            if used {
                bits[s / 64] |= 1 << (s % 64);
            } else {
                bits[s / 64] &= !(1 << (s % 64));
            }
        }
    }
}

/// A swiotlb-style pool of bounce slots.
pub(crate) struct BouncePool<M: PhysMemory> {
    memory: M,
    data: Pages,
    meta: Meta,
    slots: usize,
    used: usize,
    hint: usize,
}

// SAFETY: the pool owns its pages exclusively; all mutation needs `&mut`.
unsafe impl<M: PhysMemory + Send> Send for BouncePool<M> {}

impl<M: PhysMemory> BouncePool<M> {
    /// A pool of `slots` slots (rounded up to whole pages) at or below
    /// `max_phys`.
    pub(crate) fn new(memory: M, slots: usize, max_phys: u64) -> Result<Self> {
        if slots == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "bounce pool with no slots"));
        }
        let page = memory.page_size();
        let data_pages = (slots * SLOT_SIZE).div_ceil(page);
        let slots = data_pages * page / SLOT_SIZE;
        let words = slots.div_ceil(64);
        let meta_pages = ((words + 2 * slots) * 8).div_ceil(page);
        let data = memory.alloc_pages(data_pages, Cacheability::Cached, max_phys)?;
        let meta = match memory.alloc_pages(meta_pages, Cacheability::Cached, u64::MAX) {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: just allocated, never shared.
                unsafe { memory.free_pages(data) };
                return Err(e);
            }
        };
        Ok(Self {
            memory,
            data,
            meta: Meta {
                pages: meta,
                words,
                slots,
            },
            slots,
            used: 0,
            hint: 0,
        })
    }

    pub(crate) fn phys(&self) -> PhysAddr {
        self.data.phys
    }

    pub(crate) fn bytes(&self) -> usize {
        self.slots * SLOT_SIZE
    }

    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// The CPU address `offset` bytes into the pool.
    pub(crate) fn cpu(&self, offset: usize) -> NonNull<u8> {
        debug_assert!(offset <= self.bytes());
        // SAFETY: offset is within the pool's pages.
        unsafe { self.data.cpu.add(offset) }
    }

    /// Finds and takes slots for `len` bytes of the original at `orig`
    /// (the first-fit scan from a moving hint that swiotlb uses).
    pub(crate) fn alloc(&mut self, orig: PhysAddr, len: usize, rules: Rules) -> Result<Placement> {
        // Bits of min_align_mask below the slot size survive as the offset
        // in the first slot; the bits above it pick the slot (swiotlb's
        // `iotlb_align_mask`).
        let offset = (orig.as_u64() & rules.min_align_mask & (SLOT_SIZE as u64 - 1)) as usize;
        let slot_mask = rules.min_align_mask & !(SLOT_SIZE as u64 - 1);
        let slots = (offset + len).div_ceil(SLOT_SIZE);
        if slots > MAX_SLOTS_PER_MAPPING {
            return Err(Error::new(
                ErrorKind::SegmentTooLarge,
                "buffer needs bouncing but is longer than one bounce mapping (128 slots)",
            )
            .at(orig.as_u64())
            .len(len as u64));
        }
        if (offset as u64) % rules.alignment.min(SLOT_SIZE as u64) != 0 {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "min_align_mask keeps an offset the device's alignment forbids",
            )
            .at(orig.as_u64()));
        }
        if slots > self.slots {
            return Err(Error::new(
                ErrorKind::BounceExhausted,
                "bounce pool smaller than the buffer",
            )
            .len(len as u64));
        }
        let fits = |slot: usize| {
            let dma = rules.dma_base + (slot * SLOT_SIZE + offset) as u64;
            (dma & slot_mask) == (orig.as_u64() & slot_mask)
                && dma % rules.alignment == 0
                && rules
                    .boundary
                    .is_none_or(|b| dma / b == (dma + len as u64 - 1) / b)
        };
        let candidates = self.slots - slots + 1;
        for step in 0..candidates {
            let slot = (self.hint + step) % candidates;
            if !fits(slot) || !(slot..slot + slots).all(|s| self.meta.is_free(s)) {
                continue;
            }
            self.meta.set(slot, slots, true);
            let (origs, counts) = self.meta.records();
            origs[slot] = orig.as_u64();
            counts[slot] = slots as u64;
            self.used += slots;
            self.hint = (slot + slots) % candidates;
            return Ok(Placement {
                slot,
                slots,
                offset,
            });
        }
        Err(Error::new(
            ErrorKind::BounceExhausted,
            "no run of free bounce slots fits the buffer",
        )
        .at(orig.as_u64())
        .len(len as u64))
    }

    /// The placement of a live mapping of `len` bytes from `orig` whose
    /// bounce copy starts `pool_offset` bytes into the pool.
    pub(crate) fn find(
        &mut self,
        pool_offset: usize,
        orig: PhysAddr,
        len: usize,
    ) -> Result<Placement> {
        let slot = pool_offset / SLOT_SIZE;
        let offset = pool_offset % SLOT_SIZE;
        let slots = (offset + len).div_ceil(SLOT_SIZE);
        let not_mapped = Error::new(
            ErrorKind::NotMapped,
            "no live bounce mapping of this buffer here",
        )
        .at(orig.as_u64())
        .len(len as u64);
        if slot + slots > self.slots || self.meta.is_free(slot) {
            return Err(not_mapped);
        }
        let (origs, counts) = self.meta.records();
        if origs[slot] != orig.as_u64() || counts[slot] != slots as u64 {
            return Err(not_mapped);
        }
        Ok(Placement {
            slot,
            slots,
            offset,
        })
    }

    /// Frees a placement from [`find`](Self::find).
    pub(crate) fn free(&mut self, p: Placement) {
        self.meta.set(p.slot, p.slots, false);
        let (origs, counts) = self.meta.records();
        origs[p.slot] = 0;
        counts[p.slot] = 0;
        self.used -= p.slots;
    }
}

impl<M: PhysMemory> Drop for BouncePool<M> {
    /// Frees the pool unless a mapping is still out (a forgotten mapping's
    /// device may still reach its slots): then it is leaked, as `DmaPool`
    /// does.
    fn drop(&mut self) {
        if self.used != 0 {
            return;
        }
        // SAFETY: both allocations came from alloc_pages, no slot is in use,
        // and the owner unmapped the pool from the device first.
        unsafe {
            self.memory.free_pages(self.data);
            self.memory.free_pages(self.meta.pages);
        }
    }
}
