//! Building tables: Linux `sg_alloc_table_from_pages` semantics, device
//! constraints, append mode, and every error.

use core::ptr::NonNull;

use dma_core::{DeviceConstraints, ErrorKind, PhysAddr, Result, SgEntry};
use dma_sg::{SgArray, SgLimits, SgTable};
use proptest::prelude::*;

const P: u64 = 4096;

fn pages(list: &[u64]) -> Vec<PhysAddr> {
    list.iter().map(|&p| PhysAddr::new(p * P)).collect()
}

fn limits(c: DeviceConstraints) -> SgLimits {
    SgLimits::new(P as usize, &c).unwrap()
}

fn unconstrained() -> SgLimits {
    SgLimits::unconstrained(P as usize).unwrap()
}

fn shape(t: &SgTable<Vec<SgEntry>>) -> Vec<(u64, usize)> {
    t.entries()
        .iter()
        .map(|e| (e.phys.as_u64(), e.len))
        .collect()
}

fn kind<T: core::fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.expect_err("input should be refused").kind()
}

#[test]
fn offset_applies_to_first_entry_only_and_neighbours_coalesce() {
    let t = SgTable::from_pages(
        unconstrained(),
        &pages(&[10, 11, 12, 20, 21, 40]),
        0x100,
        5 * 4096 + 0x10,
    )
    .unwrap();
    assert_eq!(
        shape(&t),
        [
            (10 * P + 0x100, 3 * 4096 - 0x100),
            (20 * P, 2 * 4096),
            (40 * P, 0x110)
        ]
    );
    assert_eq!(t.total_len(), 5 * 4096 + 0x10);
}

#[test]
fn chunks_are_cut_at_the_maximum_in_whole_pages() {
    // 10000 rounds down to two pages.
    let l = unconstrained().with_max_segment(10_000).unwrap();
    let t = SgTable::from_pages(l, &pages(&[1, 2, 3, 4, 5]), 0, 5 * 4096).unwrap();
    assert_eq!(shape(&t), [(P, 8192), (3 * P, 8192), (5 * P, 4096)]);
    // With an offset the first entry is shorter, and the cut stays on a
    // page boundary.
    let t = SgTable::from_pages(l, &pages(&[1, 2, 3]), 0x800, 3 * 4096 - 0x800).unwrap();
    assert_eq!(shape(&t), [(P + 0x800, 0x1800), (3 * P, 0x1000)]);
}

#[test]
fn boundary_cuts_contiguous_pages() {
    let c = DeviceConstraints::builder()
        .boundary(4 * P)
        .build()
        .unwrap();
    let t = SgTable::from_pages(limits(c), &pages(&[2, 3, 4, 5, 6]), 0, 5 * 4096).unwrap();
    assert_eq!(shape(&t), [(2 * P, 8192), (4 * P, 3 * 4096)]);
}

#[test]
fn append_continues_the_last_entry_when_contiguous() {
    let mut t = SgTable::from_pages(unconstrained(), &pages(&[7, 8]), 0, 2 * 4096).unwrap();
    t.append_pages(&pages(&[9, 30]), 0, 2 * 4096).unwrap();
    assert_eq!(shape(&t), [(7 * P, 3 * 4096), (30 * P, 4096)]);
    // A gap starts a new entry.
    t.append_pages(&pages(&[50]), 0, 100).unwrap();
    assert_eq!(t.entries().len(), 3);
    // A range continuing mid-page where the last entry ended merges too.
    t.append_ranges([(PhysAddr::new(50 * P + 100), 28)])
        .unwrap();
    assert_eq!(shape(&t)[2], (50 * P, 128));
    assert_eq!(t.total_len(), 4 * 4096 + 128);
}

#[test]
fn ranges_are_cut_at_pages_and_coalesced() {
    let l = unconstrained().with_max_segment(2 * P).unwrap();
    let t = SgTable::from_ranges(
        l,
        [
            (PhysAddr::new(0x1_0800), 0x2000),
            (PhysAddr::new(0x1_2800), 0x100),
        ],
    )
    .unwrap();
    // 0x10800..0x12900 is contiguous: the first entry grows piece by piece
    // (pieces end at page boundaries or where a range ends) to exactly
    // 8 KiB; the second range's piece would exceed it and starts a new one.
    assert_eq!(shape(&t), [(0x1_0800, 0x2000), (0x1_2800, 0x100)]);
}

#[test]
fn virtual_buffer_is_translated_page_by_page() {
    // A fake 4-page virtual buffer at 0x7000_0800 whose pages map to
    // scattered frames; the memory is never touched.
    let frames = [0x90u64, 0x91, 0x10, 0x55];
    let translate = |p: NonNull<u8>, len: usize| -> Result<PhysAddr> {
        let va = p.as_ptr() as usize as u64;
        let page = (va - 0x7000_0000) / P;
        assert!((va % P) + len as u64 <= P, "asked across a page");
        Ok(PhysAddr::new(frames[page as usize] * P + va % P))
    };
    let cpu = NonNull::new(0x7000_0800usize as *mut u8).unwrap();
    let t = SgTable::from_virt(unconstrained(), translate, cpu, 3 * 4096).unwrap();
    assert_eq!(
        shape(&t),
        [
            (0x90 * P + 0x800, 0x1800),
            (0x10 * P, 0x1000),
            (0x55 * P, 0x800)
        ]
    );
}

#[test]
fn fixed_storage_without_alloc() {
    let mut t = SgTable::new_in(SgArray::<2>::new(), unconstrained());
    t.append_pages(&pages(&[1, 3]), 0, 2 * 4096).unwrap();
    assert_eq!(t.entries().len(), 2);
    let before = t.entries().to_vec();
    assert_eq!(
        kind(t.append_pages(&pages(&[9]), 0, 4096)),
        ErrorKind::TooManySegments
    );
    assert_eq!(t.entries(), &before[..], "a failed append changes nothing");
    // Contiguous with the last entry: no new slot needed.
    t.append_pages(&pages(&[4]), 0, 4096).unwrap();
    assert_eq!(t.entries()[1].len, 8192);
}

#[test]
fn every_bad_input_is_a_typed_error() {
    let l = unconstrained();
    let t = |p: &[u64], off, len| SgTable::from_pages(l, &pages(p), off, len);
    assert_eq!(kind(t(&[1], 0, 0)), ErrorKind::ZeroSize);
    assert_eq!(kind(t(&[1], 4096, 1)), ErrorKind::OutOfRange);
    assert_eq!(kind(t(&[1], 0, 4097)), ErrorKind::OutOfRange);
    assert_eq!(kind(t(&[1, 2], 0, 4096)), ErrorKind::OutOfRange);
    assert_eq!(
        kind(SgTable::from_pages(l, &[PhysAddr::new(0x1234)], 0, 8)),
        ErrorKind::Misaligned
    );
    assert_eq!(
        kind(SgTable::from_ranges(l, [(PhysAddr::new(u64::MAX - 3), 8)])),
        ErrorKind::AddressOverflow
    );
    assert_eq!(
        kind(SgTable::from_ranges(l, [(PhysAddr::new(0x1000), 0)])),
        ErrorKind::ZeroSize
    );
    assert_eq!(
        kind(SgTable::from_ranges(l, core::iter::empty())),
        ErrorKind::ZeroSize
    );
    let cpu = NonNull::new(usize::MAX as *mut u8).unwrap();
    assert_eq!(
        kind(SgTable::from_virt(l, |_, _| Ok(PhysAddr::ZERO), cpu, 2)),
        ErrorKind::AddressOverflow
    );
    assert_eq!(
        kind(SgTable::from_virt(
            l,
            |_, _| Ok(PhysAddr::ZERO),
            NonNull::dangling(),
            0
        )),
        ErrorKind::ZeroSize
    );

    // Device constraints.
    let c32 = DeviceConstraints::builder().addr_bits(32).build().unwrap();
    assert_eq!(
        kind(SgTable::from_pages(limits(c32), &pages(&[0x10_0000]), 0, 8)),
        ErrorKind::Unreachable
    );
    // Pages are checked as they are reached, yet a bad page is reported
    // ahead of an earlier page's constraint error, and the table is left
    // as it was.
    let mut t32 = SgTable::from_pages(limits(c32), &pages(&[1]), 0, 8).unwrap();
    let before = shape(&t32);
    let mixed = [PhysAddr::new(0x1_0000_0000), PhysAddr::new(0x3001)];
    assert_eq!(
        kind(t32.append_pages(&mixed, 0, 2 * 4096)),
        ErrorKind::Misaligned
    );
    assert_eq!((shape(&t32), t32.total_len()), (before, 8));
    let few = DeviceConstraints::builder()
        .max_segments(2)
        .build()
        .unwrap();
    assert_eq!(
        kind(SgTable::from_pages(
            limits(few),
            &pages(&[1, 3, 5]),
            0,
            3 * 4096
        )),
        ErrorKind::TooManySegments
    );
    // Contiguous pages need only one segment, so the same device takes them.
    assert!(SgTable::from_pages(limits(few), &pages(&[1, 2, 3]), 0, 3 * 4096).is_ok());
    let aligned = DeviceConstraints::builder().alignment(512).build().unwrap();
    assert_eq!(
        kind(SgTable::from_pages(limits(aligned), &pages(&[1]), 0x100, 8)),
        ErrorKind::Misaligned
    );
}

#[test]
fn translated_limits_leave_mask_and_count_to_map_time() {
    let c = DeviceConstraints::builder()
        .addr_bits(32)
        .max_segments(1)
        .build()
        .unwrap();
    let l = limits(c).translated();
    let t = SgTable::from_pages(l, &pages(&[0x10_0000, 0x20_0000]), 0, 2 * 4096).unwrap();
    assert_eq!(t.entries().len(), 2);
}

/// Page lists made of runs of contiguous pages separated by gaps, so that
/// coalescing, cuts and boundaries all get exercised.
fn page_runs() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec((1u64..6, 0u64..3), 1..12).prop_map(|runs| {
        let mut next = 0x100u64;
        let mut out = Vec::new();
        for (len, gap) in runs {
            next += gap * 7; // gap 0 keeps the run going
            for _ in 0..len {
                out.push(next);
                next += 1;
            }
        }
        out
    })
}

fn limits_strategy() -> impl Strategy<Value = SgLimits> {
    (
        1u64..9,
        prop::option::of(0u32..5),
        prop::sample::select(vec![1u64, 4, 512, 4096]),
    )
        .prop_map(|(max_pages, boundary_shift, align)| {
            let mut b = DeviceConstraints::builder().alignment(align);
            if let Some(s) = boundary_shift {
                b = b.boundary(P << s);
            }
            let c = b.build().unwrap();
            SgLimits::new(P as usize, &c)
                .unwrap()
                .with_max_segment(max_pages * P + 100)
                .unwrap()
        })
}

/// The per-page pieces a buffer consists of, in order.
fn expected_pieces(pages: &[u64], offset: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut remaining = len;
    let mut off = offset;
    for &p in pages {
        let n = remaining.min(P - off);
        out.push((p * P + off, n));
        remaining -= n;
        off = 0;
    }
    out
}

fn pieces_of(entries: &[SgEntry]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for e in entries {
        let (mut a, mut l) = (e.phys.as_u64(), e.len as u64);
        while l > 0 {
            let n = l.min(P - a % P);
            out.push((a, n));
            a += n;
            l -= n;
        }
    }
    out
}

fn check_invariants(t: &SgTable<Vec<SgEntry>>, l: &SgLimits, pages: &[u64], offset: u64, len: u64) {
    let e = t.entries();
    // Total length and order preserved.
    assert_eq!(t.total_len(), len);
    assert_eq!(e.iter().map(|e| e.len as u64).sum::<u64>(), len);
    assert_eq!(pieces_of(e), expected_pieces(pages, offset, len));
    for (i, x) in e.iter().enumerate() {
        let (a, n) = (x.phys.as_u64(), x.len as u64);
        assert!(n > 0 && n <= l.max_segment(), "entry {i} length {n:#x}");
        if let Some(b) = l.boundary() {
            assert_eq!(a / b, (a + n - 1) / b, "entry {i} crosses the boundary");
        }
        assert_eq!(a % l.alignment(), 0, "entry {i} misaligned");
        if i > 0 {
            assert_eq!(a % P, 0, "only the first entry carries an offset");
        }
    }
    // Coalescing is maximal.
    for w in e.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let start = a.phys.as_u64();
        let merged = (a.len + b.len) as u64;
        let contiguous = start + a.len as u64 == b.phys.as_u64();
        let fits = merged <= l.max_segment();
        let crosses = l
            .boundary()
            .is_some_and(|bd| start / bd != (start + merged - 1) / bd);
        assert!(
            !(contiguous && fits && !crosses),
            "{a:?} and {b:?} should be one entry"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 200 }))]

    #[test]
    fn builder_invariants(
        pages in page_runs(),
        l in limits_strategy(),
        offset_frac in 0u64..P,
        tail in 0u64..P,
    ) {
        // Aligned starts keep the device's alignment satisfiable.
        let offset = offset_frac - offset_frac % l.alignment().min(P);
        let n = pages.len() as u64;
        // Any length that touches exactly these pages.
        let min_len = if n == 1 { 1 } else { (n - 1) * P - offset + 1 };
        let max_len = n * P - offset;
        let len = min_len + tail.min(max_len - min_len);
        let t = SgTable::from_pages(l, &self::pages(&pages), offset as usize, len as usize).unwrap();
        check_invariants(&t, &l, &pages, offset, len);
    }

    #[test]
    fn append_equals_one_shot(pages in page_runs(), l in limits_strategy(), split_frac in 0.0f64..1.0) {
        let split = ((pages.len() as f64 * split_frac) as usize).clamp(1, pages.len());
        let len = pages.len() * P as usize;
        let whole = SgTable::from_pages(l, &self::pages(&pages), 0, len).unwrap();
        let mut parts = SgTable::from_pages(l, &self::pages(&pages[..split]), 0, split * P as usize).unwrap();
        if split < pages.len() {
            parts.append_pages(&self::pages(&pages[split..]), 0, len - split * P as usize).unwrap();
        }
        prop_assert_eq!(whole.entries(), parts.entries());
        check_invariants(&parts, &l, &pages, 0, len as u64);
    }

    #[test]
    fn ranges_equal_pages(pages in page_runs(), l in limits_strategy()) {
        let len = pages.len() * P as usize;
        let from_pages = SgTable::from_pages(l, &self::pages(&pages), 0, len).unwrap();
        let ranges = pages.iter().map(|&p| (PhysAddr::new(p * P), P as usize));
        let from_ranges = SgTable::from_ranges(l, ranges).unwrap();
        prop_assert_eq!(from_pages.entries(), from_ranges.entries());
    }
}
