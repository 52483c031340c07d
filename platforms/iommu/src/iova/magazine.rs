//! The fast path: per-CPU magazines of freed IOVA blocks, per size class.
//!
//! Bonwick's magazine layer (USENIX 2001) as Linux's IOVA "rcache" uses it:
//! each CPU holds a *loaded* and a *previous* magazine per size class;
//! frees push to the loaded one and swap with the previous when it is full;
//! when both are full, one full magazine moves to a global depot (or, if
//! the depot is full too, its blocks go back to the buddy system).
//! Allocation pops in the same order and takes a full magazine from the
//! depot when the CPU has nothing. Every step is `O(1)` except the rare
//! spill of a whole magazine.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::buddy::Buddy;

/// Size classes 1, 2, 4, 8, 16 and 32 pages (Linux's
/// `IOVA_RANGE_CACHE_MAX_SIZE`).
pub(crate) const SIZE_CLASSES: usize = 6;
/// Blocks per magazine (Linux's `IOVA_MAG_SIZE`: one magazine fills 1 KiB).
pub(crate) const MAG_SIZE: usize = 127;
/// Full magazines the depot keeps per class (Linux's `MAX_GLOBAL_MAGS`).
pub(crate) const DEPOT_MAGS: usize = 32;

/// A fixed-capacity stack of block starts of one size class.
pub(crate) struct Magazine {
    pfns: [u64; MAG_SIZE],
    len: usize,
}

impl Magazine {
    fn empty() -> Box<Self> {
        Box::new(Self {
            pfns: [0; MAG_SIZE],
            len: 0,
        })
    }

    fn is_full(&self) -> bool {
        self.len == MAG_SIZE
    }

    fn push(&mut self, pfn: u64) -> bool {
        if self.is_full() {
            return false;
        }
        self.pfns[self.len] = pfn;
        self.len += 1;
        true
    }

    fn pop(&mut self) -> Option<u64> {
        self.len = self.len.checked_sub(1)?;
        Some(self.pfns[self.len])
    }

    fn drain_into(&mut self, order: usize, buddy: &mut Buddy) {
        while let Some(pfn) = self.pop() {
            let fresh = buddy.free(pfn, order);
            debug_assert!(fresh, "cached IOVA block {pfn:#x} was already free");
        }
    }
}

/// The depot of full magazines for one size class.
pub(crate) struct Depot {
    // Boxed so a magazine moves between a CPU and the depot as a pointer,
    // not a 1 KiB copy.
    #[allow(clippy::vec_box)]
    mags: Vec<Box<Magazine>>,
}

impl Depot {
    pub(crate) fn new() -> Self {
        Self { mags: Vec::new() }
    }

    /// Takes a full magazine, if any.
    pub(crate) fn take(&mut self) -> Option<Box<Magazine>> {
        self.mags.pop()
    }

    /// Stores a full magazine, or hands it back when the depot is full.
    pub(crate) fn store(&mut self, mag: Box<Magazine>) -> Result<(), Box<Magazine>> {
        if self.mags.len() >= DEPOT_MAGS {
            return Err(mag);
        }
        self.mags.push(mag);
        Ok(())
    }

    pub(crate) fn drain_into(&mut self, order: usize, buddy: &mut Buddy) {
        for mut mag in self.mags.drain(..) {
            mag.drain_into(order, buddy);
        }
    }
}

/// One CPU's magazines.
pub(crate) struct CpuCache {
    loaded: [Box<Magazine>; SIZE_CLASSES],
    prev: [Box<Magazine>; SIZE_CLASSES],
    /// Allocations this CPU served from cache.
    pub(crate) hits: u64,
}

impl CpuCache {
    pub(crate) fn new() -> Self {
        Self {
            loaded: core::array::from_fn(|_| Magazine::empty()),
            prev: core::array::from_fn(|_| Magazine::empty()),
            hits: 0,
        }
    }

    /// A cached block of `order`, refilling from the depot when both
    /// magazines are empty (`depot` is asked at most once).
    pub(crate) fn pop(
        &mut self,
        order: usize,
        depot: impl FnOnce() -> Option<Box<Magazine>>,
    ) -> Option<u64> {
        let pfn = self.loaded[order].pop().or_else(|| {
            core::mem::swap(&mut self.loaded[order], &mut self.prev[order]);
            self.loaded[order].pop()
        });
        let pfn = match pfn {
            Some(p) => Some(p),
            None => {
                // Both are empty here: a full one from the depot replaces
                // the loaded one, whose empty box is dropped.
                let full = depot()?;
                self.loaded[order] = full;
                self.loaded[order].pop()
            }
        };
        if pfn.is_some() {
            self.hits += 1;
        }
        pfn
    }

    /// Caches a freed block of `order`. When both magazines are full the
    /// loaded one goes to `spill` (the depot, or the buddy system) and an
    /// empty one takes its place.
    pub(crate) fn push(&mut self, order: usize, pfn: u64, spill: impl FnOnce(Box<Magazine>)) {
        if self.loaded[order].push(pfn) {
            return;
        }
        if !self.prev[order].is_full() {
            core::mem::swap(&mut self.loaded[order], &mut self.prev[order]);
        } else {
            let full = core::mem::replace(&mut self.loaded[order], Magazine::empty());
            spill(full);
        }
        let pushed = self.loaded[order].push(pfn);
        debug_assert!(pushed, "a swapped-in or fresh magazine has room");
    }

    /// Empties both magazines of every class into the buddy system.
    pub(crate) fn drain_into(&mut self, buddy: &mut Buddy) {
        for order in 0..SIZE_CLASSES {
            self.loaded[order].drain_into(order, buddy);
            self.prev[order].drain_into(order, buddy);
        }
    }
}

/// Puts a magazine that has nowhere else to go back into the buddy system.
pub(crate) fn spill_to_buddy(mut mag: Box<Magazine>, order: usize, buddy: &mut Buddy) {
    mag.drain_into(order, buddy);
}
