//! The IOVA allocator: where in the device's window each mapping goes.
//!
//! Two layers, as in Linux's `drivers/iommu/iova.c`:
//! - the slow path, a buddy system over the window, size-aligned
//!   and top-down below the device's mask, with a worst case bounded by the
//!   number of orders and a logarithm, never by the number of live mappings;
//! - the fast path, per-CPU magazines of recently freed ranges
//!   for each size class of 1, 2, 4, 8, 16 and 32 pages (Linux's "rcache":
//!   `IOVA_RANGE_CACHE_MAX_SIZE` = 6 classes, magazines of 127 entries and
//!   a global depot of full magazines).
//!
//! Requests of up to 32 pages are rounded up to a power of two, so that
//! every cached range fits any request of its class (Linux rounds them the
//! same way in `alloc_iova_fast`); larger ones take a power-of-two block and
//! give the unused tail back.
//!
//! When both layers come up empty the allocator flushes every magazine back
//! into the buddy system, where freed neighbours coalesce, and tries once
//! more before reporting [`IovaExhausted`](dma_core::ErrorKind::IovaExhausted).
//!
//! `no_std` has no notion of "the current CPU": callers name one with a
//! [`CpuId`], any small index that no two concurrent callers share (the
//! CPU number in a kernel, a queue number in a driver, 0 when there is one
//! context). Indexes beyond the allocator's CPU count wrap around; two
//! contexts sharing a cache is still correct, only slower.

#[cfg(feature = "alloc")]
pub(crate) mod buddy;
#[cfg(feature = "alloc")]
pub(crate) mod magazine;

#[cfg(feature = "alloc")]
mod allocator;
#[cfg(feature = "alloc")]
pub use allocator::{IovaAllocator, IovaStats};

/// The calling context's index into the per-CPU magazines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuId(pub usize);

/// A range of pages in I/O virtual address space, in page frame numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IovaRange {
    /// The first page frame number.
    pub pfn: u64,
    /// How many pages the allocation occupies (the request rounded as the
    /// allocator rounds it; see `IovaAllocator::footprint`).
    pub pages: u64,
}

impl IovaRange {
    /// The first byte's address for `page_shift`-bit pages.
    pub const fn start(&self, page_shift: u32) -> u64 {
        self.pfn << page_shift
    }

    /// The size in bytes for `page_shift`-bit pages.
    pub const fn size(&self, page_shift: u32) -> u64 {
        self.pages << page_shift
    }
}
