//! The slow path: a binary buddy allocator over page frame numbers.
//!
//! Why a buddy system: IOVAs are handed out *size-aligned* (a block of
//! `2^k` pages starts at a multiple of `2^k`, as Linux's
//! `alloc_iova(.., size_aligned = true)` does), and the buddy system is
//! exactly the structure whose blocks are naturally aligned. With one
//! ordered set of free block starts per order,
//! - allocation looks at the highest free block of each non-empty order at
//!   or above the request (a bit mask names them) and takes the highest of
//!   those: `O(orders * log n)`;
//! - splitting and coalescing touch at most one block per order:
//!   `O(orders * log n)`.
//!
//! Nothing is ever scanned in proportion to the number of live mappings,
//! which Linux's rbtree first-fit can do when the space fragments (its
//! `alloc_iova` walks backwards from a cached node). The price is internal
//! fragmentation of *address space* (never memory): a 3-page request takes
//! a 4-page block. Above the cached size classes the unused tail is given
//! back, so large mappings waste nothing.
//!
//! Allocation is top-down first fit, as Linux places IOVAs: the highest
//! free block that is large enough is taken and splits keep the upper half,
//! so the space fills from just below the device's mask downwards and low
//! addresses stay free for as long as possible.

use alloc::collections::BTreeSet;

/// Orders 0..=63: a block of order `k` is `2^k` pages.
pub(crate) const ORDERS: usize = 64;

pub(crate) struct Buddy {
    /// Free block starts, per order.
    free: [BTreeSet<u64>; ORDERS],
    /// Bit `k` set when `free[k]` is non-empty.
    nonempty: u64,
    /// Free pages, for statistics and tests.
    free_pages: u64,
}

impl Buddy {
    /// A buddy system owning pages `[start, end)`.
    pub(crate) fn new(start: u64, end: u64) -> Self {
        let mut b = Self {
            free: core::array::from_fn(|_| BTreeSet::new()),
            nonempty: 0,
            free_pages: 0,
        };
        b.free_range(start, end.saturating_sub(start));
        b
    }

    pub(crate) fn free_pages(&self) -> u64 {
        self.free_pages
    }

    fn insert(&mut self, start: u64, order: usize) -> bool {
        let fresh = self.free[order].insert(start);
        if fresh {
            self.nonempty |= 1 << order;
            self.free_pages += 1 << order;
        }
        fresh
    }

    fn remove(&mut self, start: u64, order: usize) -> bool {
        let found = self.free[order].remove(&start);
        if found {
            self.free_pages -= 1 << order;
            if self.free[order].is_empty() {
                self.nonempty &= !(1 << order);
            }
        }
        found
    }

    /// Takes a free block of `2^order` pages, or `None` when there is none.
    pub(crate) fn alloc(&mut self, order: usize) -> Option<u64> {
        if order >= ORDERS {
            return None;
        }
        let mut candidates = self.nonempty & (u64::MAX << order);
        let mut best: Option<(u64, usize)> = None;
        while candidates != 0 {
            let o = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            if let Some(&top) = self.free[o].last() {
                if best.is_none_or(|(b, _)| top > b) {
                    best = Some((top, o));
                }
            }
        }
        let (block, mut have) = best?;
        self.remove(block, have);
        // Split, keeping the upper half each time: top-down placement.
        let mut block = block;
        while have > order {
            have -= 1;
            self.insert(block, have);
            block += 1 << have;
        }
        Some(block)
    }

    /// Whether any page of the block of `2^order` pages at `start` is free:
    /// a free block containing it, or a free block inside it.
    fn overlaps_free(&self, start: u64, order: usize) -> bool {
        let mut orders = self.nonempty;
        while orders != 0 {
            let o = orders.trailing_zeros() as usize;
            orders &= orders - 1;
            let hit = if o >= order {
                self.free[o].contains(&(start & !((1u64 << o) - 1)))
            } else {
                let end = start.saturating_add(1 << order);
                self.free[o].range(start..end).next().is_some()
            };
            if hit {
                return true;
            }
        }
        false
    }

    /// Returns the block of `2^order` pages at `start`, merging it with its
    /// free buddies. Returns `false` (and changes nothing) if any of it is
    /// already free, which would mean a double free.
    pub(crate) fn free(&mut self, mut start: u64, mut order: usize) -> bool {
        if self.overlaps_free(start, order) {
            return false;
        }
        while order + 1 < ORDERS {
            let buddy = start ^ (1 << order);
            if !self.remove(buddy, order) {
                break;
            }
            start = start.min(buddy);
            order += 1;
        }
        self.insert(start, order)
    }

    /// Frees `pages` pages at `start`, as the largest aligned blocks they
    /// decompose into (at most two per order).
    pub(crate) fn free_range(&mut self, mut start: u64, pages: u64) {
        let end = start + pages;
        while start < end {
            let align = if start == 0 {
                ORDERS - 1
            } else {
                start.trailing_zeros() as usize
            };
            let fit = (63 - (end - start).leading_zeros()) as usize;
            let order = align.min(fit).min(ORDERS - 1);
            let fresh = self.free(start, order);
            debug_assert!(fresh, "IOVA block {start:#x} freed twice");
            start += 1 << order;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_decomposes_into_aligned_blocks_and_fills_top_down() {
        let mut b = Buddy::new(1, 16);
        assert_eq!(b.free_pages(), 15);
        assert_eq!(b.alloc(0), Some(15));
        assert_eq!(b.alloc(0), Some(14));
        assert_eq!(b.alloc(1), Some(12));
        assert_eq!(b.alloc(2), Some(8));
        assert_eq!(b.alloc(2), Some(4));
        assert_eq!(b.alloc(2), None, "only 1..4 is left, in pieces");
        assert_eq!(b.alloc(1), Some(2));
        assert_eq!(b.alloc(0), Some(1));
        assert_eq!(b.free_pages(), 0);
    }

    #[test]
    fn frees_coalesce_back_to_the_whole_window() {
        let mut b = Buddy::new(0, 64);
        let blocks: std::vec::Vec<u64> = (0..64).map(|_| b.alloc(0).unwrap()).collect();
        assert_eq!(b.alloc(0), None);
        for p in blocks {
            assert!(b.free(p, 0));
        }
        assert_eq!(b.alloc(6), Some(0), "fully coalesced");
    }

    #[test]
    fn double_free_is_detected_and_ignored() {
        let mut b = Buddy::new(0, 4);
        let p = b.alloc(0).unwrap();
        assert!(b.free(p, 0));
        assert!(!b.free(p, 0), "inside a coalesced free block");
        assert!(!b.free(0, 2), "contains free blocks");
        assert_eq!(b.free_pages(), 4);
    }
}
