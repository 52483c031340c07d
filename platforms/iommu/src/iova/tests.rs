use std::vec::Vec;

use proptest::prelude::*;

use super::super::magazine;
use super::*;

#[test]
fn fresh_space_fills_top_down_below_the_mask() {
    let a = IovaAllocator::new(1, 1 << 20, 1, 0).unwrap();
    let first = a.alloc(CpuId(0), 1).unwrap();
    let second = a.alloc(CpuId(0), 1).unwrap();
    let big = a.alloc(CpuId(0), 16).unwrap();
    assert_eq!(first.pfn, (1 << 20) - 1);
    assert_eq!(second.pfn, (1 << 20) - 2);
    assert_eq!(big.pfn % 16, 0, "size-aligned");
    assert!(big.pfn < second.pfn);
}

#[test]
fn small_requests_round_to_their_class_and_large_ones_give_back_the_tail() {
    let a = IovaAllocator::new(0, 1 << 12, 1, 0).unwrap();
    assert_eq!(a.alloc(CpuId(0), 3).unwrap().pages, 4);
    let before = a.free_pages_uncached();
    let r = a.alloc(CpuId(0), 33).unwrap();
    assert_eq!(r.pages, 33);
    assert_eq!(r.pfn % 64, 0, "aligned to the power of two above 33");
    assert_eq!(a.free_pages_uncached(), before - 33, "tail returned");
}

#[test]
fn freed_blocks_come_back_from_the_magazine_of_the_same_cpu() {
    let a = IovaAllocator::new(0, 1 << 16, 2, 0).unwrap();
    let r = a.alloc(CpuId(0), 2).unwrap();
    a.free(CpuId(0), r);
    let hits = a.stats().cache_hits;
    assert_eq!(a.alloc(CpuId(0), 2).unwrap(), r);
    assert_eq!(a.stats().cache_hits, hits + 1);
    // Another CPU does not see CPU 0's magazine: it goes to the buddy system.
    a.free(CpuId(0), r);
    assert_ne!(a.alloc(CpuId(1), 2).unwrap(), r);
}

#[test]
fn full_magazines_spill_to_the_depot_and_other_cpus_can_take_them() {
    let a = IovaAllocator::new(0, 1 << 16, 2, 0).unwrap();
    let n = 3 * magazine::MAG_SIZE;
    let blocks: Vec<_> = (0..n).map(|_| a.alloc(CpuId(0), 1).unwrap()).collect();
    for r in &blocks {
        a.free(CpuId(0), *r);
    }
    // CPU 1 has empty magazines: it takes a full one from the depot.
    let before = a.stats().cache_hits;
    let r = a.alloc(CpuId(1), 1).unwrap();
    assert!(blocks.contains(&r));
    assert_eq!(a.stats().cache_hits, before + 1);
}

#[test]
fn exhaustion_flushes_the_caches_and_retries_before_failing() {
    // Eight pages: fill them with single pages, free them all into the
    // magazines, then ask for all eight at once: only a flush, which lets
    // the buddies coalesce, can serve it.
    let a = IovaAllocator::new(0, 8, 1, 0).unwrap();
    let pages: Vec<_> = (0..8).map(|_| a.alloc(CpuId(0), 1).unwrap()).collect();
    let e = a.alloc(CpuId(0), 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IovaExhausted);
    for r in pages {
        a.free(CpuId(0), r);
    }
    assert_eq!(
        a.free_pages_uncached(),
        0,
        "everything sits in the magazine"
    );
    let flushes = a.stats().flushes;
    let all = a.alloc(CpuId(0), 8).unwrap();
    assert_eq!((all.pfn, all.pages), (0, 8));
    assert_eq!(a.stats().flushes, flushes + 1);
}

#[test]
fn bad_requests_are_typed_errors() {
    let a = IovaAllocator::new(0, 4, 1, 0).unwrap();
    assert_eq!(
        a.alloc(CpuId(0), 0).unwrap_err().kind(),
        ErrorKind::ZeroSize
    );
    assert_eq!(
        a.alloc(CpuId(0), 5).unwrap_err().kind(),
        ErrorKind::IovaExhausted
    );
    assert_eq!(
        IovaAllocator::new(4, 4, 1, 0).unwrap_err().kind(),
        ErrorKind::InvalidConstraints
    );
    assert_eq!(
        IovaAllocator::new(0, 4, 1, 64).unwrap_err().kind(),
        ErrorKind::InvalidConstraints
    );
    // A range outside the window is ignored rather than corrupting the space.
    a.free(CpuId(0), IovaRange { pfn: 100, pages: 1 });
    assert_eq!(a.free_pages_uncached(), 4);
}

#[test]
fn alignment_order_applies_to_every_block() {
    let a = IovaAllocator::new(0, 1 << 10, 1, 4).unwrap();
    let r = a.alloc(CpuId(0), 1).unwrap();
    assert_eq!(r.pages, 16);
    assert_eq!(r.pfn % 16, 0);
    let big = a.alloc(CpuId(0), 70).unwrap();
    assert_eq!(big.pfn % 128, 0);
}

/// The model: a page bitmap. A request succeeds exactly when some block of
/// `2^order` pages, aligned to its size, lies in the window and is all free.
struct Model {
    start: u64,
    used: Vec<bool>,
}

impl Model {
    fn has_free_block(&self, order: u32) -> bool {
        let size = 1u64 << order;
        let end = self.start + self.used.len() as u64;
        let mut pfn = self.start.next_multiple_of(size);
        while pfn + size <= end {
            let i = (pfn - self.start) as usize;
            if self.used[i..i + size as usize].iter().all(|u| !u) {
                return true;
            }
            pfn += size;
        }
        false
    }

    fn set(&mut self, r: IovaRange, used: bool) {
        for p in r.pfn..r.pfn + r.pages {
            let slot = &mut self.used[(p - self.start) as usize];
            assert_ne!(
                *slot,
                used,
                "page {p:#x} double-{}",
                if used { "allocated" } else { "freed" }
            );
            *slot = used;
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc { cpu: usize, pages: u64 },
    Free { cpu: usize, index: usize },
    Flush,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3, prop_oneof![1u64..=8, 1u64..=40]).prop_map(|(cpu, pages)| Op::Alloc { cpu, pages }),
        3 => (0usize..3, any::<usize>()).prop_map(|(cpu, index)| Op::Free { cpu, index }),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Against the model: every block is in the window, size-aligned and
    /// overlaps nothing live; a request fails only when the model has no
    /// free aligned block for it either.
    #[test]
    fn matches_the_model(start in 0u64..40, len in 1u64..300, ops in proptest::collection::vec(op(), 1..200)) {
        let alloc = IovaAllocator::new(start, start + len, 3, 0).unwrap();
        let mut model = Model { start, used: std::vec![false; len as usize] };
        let mut live: Vec<IovaRange> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc { cpu, pages } => {
                    let order = 64 - (pages - 1).leading_zeros();
                    let possible = model.has_free_block(order);
                    match alloc.alloc(CpuId(cpu), pages) {
                        Ok(r) => {
                            prop_assert!(possible, "allocated where the model has no room");
                            prop_assert_eq!(r.pfn % (1 << order), 0);
                            prop_assert!(r.pfn >= start && r.pfn + r.pages <= start + len);
                            prop_assert_eq!(Some(r), alloc.footprint(r.pfn, pages));
                            model.set(r, true);
                            live.push(r);
                        }
                        Err(e) => {
                            prop_assert_eq!(e.kind(), ErrorKind::IovaExhausted);
                            prop_assert!(!possible, "failed although an aligned block of order {} is free", order);
                        }
                    }
                }
                Op::Free { cpu, index } => {
                    if !live.is_empty() {
                        let r = live.swap_remove(index % live.len());
                        model.set(r, false);
                        alloc.free(CpuId(cpu), r);
                    }
                }
                Op::Flush => alloc.flush_caches(),
            }
        }
        for r in live.drain(..) {
            alloc.free(CpuId(0), r);
        }
        alloc.flush_caches();
        prop_assert_eq!(alloc.free_pages_uncached(), len, "every page came back");
    }
}
