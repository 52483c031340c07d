//! The two layers together.

use alloc::boxed::Box;
use alloc::vec::Vec;

use dma_core::{Error, ErrorKind, Result};

use super::buddy::{self, Buddy};
use super::magazine::{spill_to_buddy, CpuCache, Depot, SIZE_CLASSES};
use super::{CpuId, IovaRange};
use spin::Mutex;

/// Counters for the two paths, for tests and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IovaStats {
    /// Allocations served by a CPU's magazines or the depot.
    pub cache_hits: u64,
    /// Allocations that went to the buddy system.
    pub slow_allocs: u64,
    /// Times every cache was flushed to retry a failed allocation.
    pub flushes: u64,
}

struct Shared {
    buddy: Buddy,
    depots: [Depot; SIZE_CLASSES],
    stats: IovaStats,
}

/// A size-aligned, top-down IOVA allocator with per-CPU magazines.
///
/// ```
/// use dma_iommu::iova::{CpuId, IovaAllocator};
///
/// // Pages 1 to 0xfffff: a 32-bit device with 4 KiB pages, page 0 kept out.
/// let iova = IovaAllocator::new(1, 0x10_0000, 4, 0)?;
/// let a = iova.alloc(CpuId(0), 3)?; // rounded to a 4-page, 4-aligned block
/// assert_eq!((a.pfn, a.pages), (0xf_fffc, 4));
/// iova.free(CpuId(0), a);
/// assert_eq!(iova.alloc(CpuId(0), 4)?.pfn, 0xf_fffc, "served from the magazine");
/// # Ok::<(), dma_core::Error>(())
/// ```
pub struct IovaAllocator {
    cpus: Box<[Mutex<CpuCache>]>,
    shared: Mutex<Shared>,
    start: u64,
    end: u64,
    align_order: u32,
}

impl IovaAllocator {
    /// An allocator for page frames `[start_pfn, end_pfn)` with `cpus`
    /// per-CPU caches (at least one is made), every block aligned to at least
    /// `2^align_order` pages.
    ///
    /// # Errors
    ///
    /// [`InvalidConstraints`](ErrorKind::InvalidConstraints) when the window
    /// is empty or the alignment is 64 orders or more.
    pub fn new(start_pfn: u64, end_pfn: u64, cpus: usize, align_order: u32) -> Result<Self> {
        if start_pfn >= end_pfn {
            return Err(
                Error::new(ErrorKind::InvalidConstraints, "empty IOVA window").at(start_pfn),
            );
        }
        if align_order as usize >= buddy::ORDERS {
            return Err(Error::new(
                ErrorKind::InvalidConstraints,
                "IOVA alignment beyond 2^63 pages",
            ));
        }
        Ok(Self {
            cpus: (0..cpus.max(1))
                .map(|_| Mutex::new(CpuCache::new()))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
            shared: Mutex::new(Shared {
                buddy: Buddy::new(start_pfn, end_pfn),
                depots: core::array::from_fn(|_| Depot::new()),
                stats: IovaStats::default(),
            }),
            start: start_pfn,
            end: end_pfn,
            align_order,
        })
    }

    /// The window: page frames `[start, end)`.
    pub fn window(&self) -> (u64, u64) {
        (self.start, self.end)
    }

    /// The order of the block a request of `pages` takes: the power of two
    /// at or above it, at least the allocator's alignment.
    fn order_for(&self, pages: u64) -> Option<usize> {
        let order = match pages {
            0 => return None,
            1 => 0,
            p => 64 - (p - 1).leading_zeros(),
        };
        let order = order.max(self.align_order) as usize;
        (order < buddy::ORDERS).then_some(order)
    }

    /// The range a request of `pages` at `pfn` occupies: what
    /// [`alloc`](Self::alloc) returned for it, and what
    /// [`free`](Self::free) must be given back. `None` for zero pages or
    /// more than the address space.
    pub fn footprint(&self, pfn: u64, pages: u64) -> Option<IovaRange> {
        let order = self.order_for(pages)?;
        let pages = if order < SIZE_CLASSES {
            1 << order
        } else {
            pages
        };
        Some(IovaRange { pfn, pages })
    }

    /// Allocates room for `pages` pages, aligned to the request's power of
    /// two (and the allocator's alignment), as high in the window as it fits.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) for no pages;
    /// [`IovaExhausted`](ErrorKind::IovaExhausted) when no aligned block is
    /// free even after flushing every cache.
    pub fn alloc(&self, cpu: CpuId, pages: u64) -> Result<IovaRange> {
        let order = self
            .order_for(pages)
            .ok_or(Error::new(ErrorKind::ZeroSize, "zero-page IOVA request"))?;
        if order < SIZE_CLASSES {
            let hit = self
                .cache(cpu)
                .lock()
                .pop(order, || self.shared.lock().depots[order].take());
            if let Some(pfn) = hit {
                return Ok(IovaRange {
                    pfn,
                    pages: 1 << order,
                });
            }
        }
        self.alloc_slow(order, pages, true)
    }

    /// Allocates without looking at the caches (the slow path on its own;
    /// for comparison and for callers that want no caching).
    ///
    /// # Errors
    ///
    /// As for [`alloc`](Self::alloc).
    pub fn alloc_uncached(&self, pages: u64) -> Result<IovaRange> {
        let order = self
            .order_for(pages)
            .ok_or(Error::new(ErrorKind::ZeroSize, "zero-page IOVA request"))?;
        self.alloc_slow(order, pages, true)
    }

    fn alloc_slow(&self, order: usize, pages: u64, retry: bool) -> Result<IovaRange> {
        {
            let mut shared = self.shared.lock();
            shared.stats.slow_allocs += 1;
            if let Some(pfn) = shared.buddy.alloc(order) {
                let range = self.footprint(pfn, pages).unwrap_or(IovaRange {
                    pfn,
                    pages: 1 << order,
                });
                let tail = (1u64 << order) - range.pages;
                if tail > 0 {
                    shared.buddy.free_range(pfn + range.pages, tail);
                }
                return Ok(range);
            }
        }
        if retry {
            self.flush_caches();
            return self.alloc_slow(order, pages, false);
        }
        Err(Error::new(
            ErrorKind::IovaExhausted,
            "no free size-aligned IOVA block below the device's mask",
        )
        .len(pages))
    }

    /// Returns a range from [`alloc`](Self::alloc) (or one made by
    /// [`footprint`](Self::footprint) for it).
    ///
    /// The caller frees each range once, after the IOTLB no longer holds
    /// translations for it; the platform checks its page tables before
    /// getting here. A range outside the window is ignored.
    pub fn free(&self, cpu: CpuId, range: IovaRange) {
        self.free_many(cpu, &[range]);
    }

    /// [`free`](Self::free) for each range, taking the CPU's cache lock
    /// once for all of them (a deferred flush frees its whole queue).
    pub fn free_many(&self, cpu: CpuId, ranges: &[IovaRange]) {
        let mut cache = self.cache(cpu).lock();
        for range in ranges {
            if range.pages == 0 || range.pfn < self.start || range.pfn + range.pages > self.end {
                continue;
            }
            let order = (63 - range.pages.leading_zeros()) as usize;
            let cacheable = range.pages.is_power_of_two()
                && order < SIZE_CLASSES
                && self.order_for(range.pages) == Some(order);
            if cacheable {
                cache.push(order, range.pfn, |full| {
                    let mut shared = self.shared.lock();
                    let Shared { buddy, depots, .. } = &mut *shared;
                    if let Err(full) = depots[order].store(full) {
                        spill_to_buddy(full, order, buddy);
                    }
                });
            } else {
                self.shared.lock().buddy.free_range(range.pfn, range.pages);
            }
        }
    }

    /// Returns a range straight to the buddy system, bypassing the caches
    /// (the counterpart of [`alloc_uncached`](Self::alloc_uncached)).
    pub fn free_uncached(&self, range: IovaRange) {
        if range.pages == 0 || range.pfn < self.start || range.pfn + range.pages > self.end {
            return;
        }
        self.shared.lock().buddy.free_range(range.pfn, range.pages);
    }

    /// Returns every cached range to the buddy system, where neighbours
    /// coalesce (Linux's `free_cpu_cached_iovas` and
    /// `free_global_cached_iovas`).
    pub fn flush_caches(&self) {
        for cpu in self.cpus.iter() {
            let mut cache = cpu.lock();
            let mut shared = self.shared.lock();
            cache.drain_into(&mut shared.buddy);
        }
        let mut shared = self.shared.lock();
        let Shared {
            buddy,
            depots,
            stats,
        } = &mut *shared;
        for (order, depot) in depots.iter_mut().enumerate() {
            depot.drain_into(order, buddy);
        }
        stats.flushes += 1;
    }

    /// Pages currently free in the buddy system (cached ranges excluded).
    pub fn free_pages_uncached(&self) -> u64 {
        self.shared.lock().buddy.free_pages()
    }

    /// The counters.
    pub fn stats(&self) -> IovaStats {
        let shared = self.shared.lock();
        let mut stats = shared.stats;
        drop(shared);
        for cpu in self.cpus.iter() {
            stats.cache_hits += cpu.lock().hits;
        }
        stats
    }

    fn cache(&self, cpu: CpuId) -> &Mutex<CpuCache> {
        &self.cpus[cpu.0 % self.cpus.len()]
    }
}

impl core::fmt::Debug for IovaAllocator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IovaAllocator")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("cpus", &self.cpus.len())
            .field("align_order", &self.align_order)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
