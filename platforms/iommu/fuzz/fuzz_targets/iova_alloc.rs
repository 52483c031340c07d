//! Fuzzes the IOVA allocator (buddy system + per-CPU magazines) against a
//! model that is only the set of live ranges, checking:
//! - every allocation lies in the window, is aligned to its footprint's
//!   power of two (and the allocator's alignment), has the footprint
//!   `footprint` names, and overlaps no live range;
//! - an allocation fails with `IovaExhausted` only when the model has no
//!   free, suitably aligned block of that size in the window (the
//!   allocator flushes its caches before giving up, so cached ranges count
//!   as free), and with `ZeroSize` exactly for zero pages;
//! - after `flush_caches` the buddy system holds exactly the pages the
//!   model says are free.
#![no_main]

use std::collections::BTreeMap;

use dma_core::ErrorKind;
use dma_iommu::iova::{CpuId, IovaAllocator, IovaRange};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// Window sizes stay small enough for exhaustion to happen often.
const MAX_WINDOW: u64 = 1 << 12;

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc { cpu: u8, pages: u8 },
    AllocLarge { cpu: u8, pages: u16 },
    AllocUncached { pages: u8 },
    Free { cpu: u8, which: u16 },
    FreeUncached { which: u16 },
    Flush,
}

#[derive(Arbitrary, Debug)]
struct Input {
    start: u64,
    size: u16,
    cpus: u8,
    align_order: u8,
    ops: Vec<Op>,
}

/// The model: live ranges by first page.
struct Model {
    start: u64,
    end: u64,
    live: BTreeMap<u64, u64>,
}

impl Model {
    fn overlaps(&self, pfn: u64, pages: u64) -> bool {
        let end = pfn + pages;
        self.live
            .range(..end)
            .next_back()
            .is_some_and(|(&s, &n)| s + n > pfn)
    }

    /// Whether some block of `2^order` pages, aligned to its size, lies in
    /// the window and is entirely free.
    fn has_free_block(&self, order: u32) -> bool {
        let size = 1u64 << order;
        let mut at = self.start.next_multiple_of(size);
        while at.checked_add(size).is_some_and(|e| e <= self.end) {
            if !self.overlaps(at, size) {
                return true;
            }
            at += size;
        }
        false
    }

    fn free_pages(&self) -> u64 {
        self.end - self.start - self.live.values().sum::<u64>()
    }

    fn take(&mut self, which: u16) -> Option<IovaRange> {
        let n = self.live.len();
        if n == 0 {
            return None;
        }
        let pfn = *self.live.keys().nth(usize::from(which) % n)?;
        let pages = self.live.remove(&pfn)?;
        Some(IovaRange { pfn, pages })
    }
}

fn alloc(iova: &IovaAllocator, model: &mut Model, align_order: u32, pages: u64, got: dma_core::Result<IovaRange>) {
    let order = match pages {
        0 => {
            assert_eq!(got.unwrap_err().kind(), ErrorKind::ZeroSize);
            return;
        }
        p => (64 - (p - 1).leading_zeros()).max(align_order),
    };
    match got {
        Ok(r) => {
            assert_eq!(Some(r), iova.footprint(r.pfn, pages), "footprint of {pages} pages");
            assert!(r.pages >= pages);
            assert_eq!(r.pfn % (1 << order), 0, "{r:?} not aligned to 2^{order}");
            assert!(r.pfn >= model.start && r.pfn + r.pages <= model.end, "{r:?} outside the window");
            assert!(!model.overlaps(r.pfn, r.pages), "{r:?} overlaps a live range");
            model.live.insert(r.pfn, r.pages);
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::IovaExhausted, "{e}");
            assert!(!model.has_free_block(order), "exhausted with a free 2^{order} block");
        }
    }
}

fuzz_target!(|input: Input| {
    let size = u64::from(input.size) % MAX_WINDOW + 1;
    let start = input.start % (1 << 40);
    let align_order = u32::from(input.align_order % 4);
    let cpus = usize::from(input.cpus % 4) + 1;
    let iova = IovaAllocator::new(start, start + size, cpus, align_order).unwrap();
    let mut model = Model {
        start,
        end: start + size,
        live: BTreeMap::new(),
    };
    for op in input.ops.into_iter().take(512) {
        match op {
            Op::Alloc { cpu, pages } => {
                let pages = u64::from(pages % 40);
                let got = iova.alloc(CpuId(cpu.into()), pages);
                alloc(&iova, &mut model, align_order, pages, got);
            }
            Op::AllocLarge { cpu, pages } => {
                let pages = u64::from(pages) % (2 * MAX_WINDOW);
                let got = iova.alloc(CpuId(cpu.into()), pages);
                alloc(&iova, &mut model, align_order, pages, got);
            }
            Op::AllocUncached { pages } => {
                let pages = u64::from(pages % 40);
                let got = iova.alloc_uncached(pages);
                alloc(&iova, &mut model, align_order, pages, got);
            }
            Op::Free { cpu, which } => {
                if let Some(r) = model.take(which) {
                    iova.free(CpuId(cpu.into()), r);
                }
            }
            Op::FreeUncached { which } => {
                if let Some(r) = model.take(which) {
                    iova.free_uncached(r);
                }
            }
            Op::Flush => {
                iova.flush_caches();
                assert_eq!(iova.free_pages_uncached(), model.free_pages());
            }
        }
    }
});
