//! The exact cache maintenance each sync issues through `DirectPlatform`:
//! operation, range and order, for every direction, aligned and unaligned
//! buffers, partial syncs and `SKIP_CPU_SYNC`, asserted with a mockall
//! mock of `CacheMaintenance` in a `Sequence`. Any call not listed, a
//! different range, or a different order fails the test.
//!
//! Each operation of a real implementation ends with its own completion
//! barrier (`dsb sy`, `fence w,iorw`, `sfence`/`mfence`), so the sequence
//! of operations is the whole observable protocol.

use dma_coherence::{CacheMaintenance, CacheOp};
use dma_core::{
    Bidirectional, DeviceConstraints, DmaAttrs, DmaBuf, DmaDirection, DmaMap, ErrorKind,
    FromDevice, HostMemory, PhysAddr, RawMapping, StreamingMapping,
};
use dma_direct::DirectPlatform;
use mockall::predicate::eq;
use mockall::{mock, Sequence};

mock! {
    Cache {}
    unsafe impl CacheMaintenance for Cache {
        fn is_coherent(&self) -> bool;
        fn line_size(&self) -> usize;
        unsafe fn clean(&self, va: usize, len: usize);
        unsafe fn invalidate(&self, va: usize, len: usize);
        unsafe fn clean_invalidate(&self, va: usize, len: usize);
    }
}

const LINE: usize = 64;
const BUF: usize = 512;

/// What the test does, in order.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `sync_for_device(offset, len)` on the live mapping.
    ForDevice(usize, usize),
    /// `sync_for_cpu(offset, len)` on the live mapping.
    ForCpu(usize, usize),
}

/// A mock that is non-coherent with 64-byte lines and expects exactly
/// `ops` (offsets relative to `base`), in order.
fn mock_expecting(base: usize, ops: &[(CacheOp, usize, usize)]) -> MockCache {
    let mut cache = MockCache::new();
    cache.expect_is_coherent().return_const(false);
    cache.expect_line_size().return_const(LINE);
    let mut seq = Sequence::new();
    for &(op, off, len) in ops {
        let args = (eq(base + off), eq(len));
        match op {
            CacheOp::Clean => {
                cache
                    .expect_clean()
                    .with(args.0, args.1)
                    .times(1)
                    .in_sequence(&mut seq)
                    .return_const(());
            }
            CacheOp::Invalidate => {
                cache
                    .expect_invalidate()
                    .with(args.0, args.1)
                    .times(1)
                    .in_sequence(&mut seq)
                    .return_const(());
            }
            CacheOp::CleanInvalidate => {
                cache
                    .expect_clean_invalidate()
                    .with(args.0, args.1)
                    .times(1)
                    .in_sequence(&mut seq)
                    .return_const(());
            }
        }
    }
    cache
}

/// Maps `len` bytes at `start` within a fresh line-aligned buffer with
/// `dir`/`attrs`, runs `steps`, unmaps, and checks the mock saw exactly
/// `expected` (offsets relative to the buffer).
fn run(
    dir: DmaDirection,
    attrs: DmaAttrs,
    start: usize,
    len: usize,
    steps: &[Step],
    expected: &[(CacheOp, usize, usize)],
) {
    let buf = DmaBuf::new(BUF, LINE).unwrap();
    let base = buf.as_ptr() as usize;
    let p = DirectPlatform::noncoherent(
        HostMemory,
        mock_expecting(base, expected),
        DeviceConstraints::UNCONSTRAINED,
    );
    let phys = PhysAddr::new((base + start) as u64);
    // SAFETY: the range lies inside `buf`, which outlives the mapping, and
    // nothing else touches it until the unmap below.
    let dma = unsafe { p.map(phys, len, dir, attrs) }.unwrap();
    let raw = RawMapping {
        phys,
        dma,
        len,
        dir,
        attrs,
    };
    for step in steps {
        match *step {
            // SAFETY: live mapping, range inside it.
            Step::ForDevice(off, n) => unsafe { p.sync_for_device(&raw, off, n) },
            // SAFETY: live mapping, range inside it; no device is writing.
            Step::ForCpu(off, n) => unsafe { p.sync_for_cpu(&raw, off, n) },
        }
    }
    // SAFETY: `raw` is the live mapping made above, unmapped once.
    unsafe { p.unmap(&raw) }.unwrap();
    drop(p); // verifies that every expected call happened
}

use CacheOp::{Clean, Invalidate};
use DmaDirection::{Bidirectional as Bidi, FromDevice as FromDev, ToDevice as ToDev};
use Step::{ForCpu, ForDevice};

const NONE: DmaAttrs = DmaAttrs::empty();
const SKIP: DmaAttrs = DmaAttrs::SKIP_CPU_SYNC;

#[test]
fn to_device_cleans_at_map_and_for_device_only() {
    run(
        ToDev,
        NONE,
        0,
        BUF,
        &[ForDevice(64, 128), ForCpu(0, BUF), ForDevice(0, BUF)],
        &[(Clean, 0, BUF), (Clean, 64, 128), (Clean, 0, BUF)],
    );
}

#[test]
fn from_device_cleans_at_map_and_invalidates_for_the_cpu() {
    run(
        FromDev,
        NONE,
        0,
        BUF,
        &[ForCpu(0, BUF), ForDevice(0, BUF), ForCpu(0, BUF)],
        &[
            (Clean, 0, BUF),
            (Invalidate, 0, BUF),
            (Clean, 0, BUF),
            (Invalidate, 0, BUF),
            (Invalidate, 0, BUF), // unmap
        ],
    );
}

#[test]
fn bidirectional_cleans_for_the_device_and_invalidates_for_the_cpu() {
    run(
        Bidi,
        NONE,
        0,
        BUF,
        &[ForDevice(0, BUF), ForCpu(0, BUF)],
        &[
            (Clean, 0, BUF),
            (Clean, 0, BUF),
            (Invalidate, 0, BUF),
            (Invalidate, 0, BUF), // unmap
        ],
    );
}

#[test]
fn skip_cpu_sync_skips_map_and_unmap_but_not_explicit_syncs() {
    run(ToDev, SKIP, 0, BUF, &[ForDevice(0, 64)], &[(Clean, 0, 64)]);
    run(
        FromDev,
        SKIP,
        0,
        BUF,
        &[ForCpu(0, 60), ForDevice(0, BUF)],
        &[(Invalidate, 0, 60), (Clean, 0, BUF)],
    );
    run(
        Bidi,
        SKIP,
        0,
        BUF,
        &[ForDevice(0, BUF), ForCpu(128, 64)],
        &[(Clean, 0, BUF), (Invalidate, 128, 64)],
    );
}

#[test]
fn partial_syncs_pass_the_exact_subrange() {
    // The implementation widens to lines; inside a line-aligned mapping the
    // widened lines are still the mapping's own.
    run(
        FromDev,
        NONE,
        0,
        BUF,
        &[ForCpu(10, 20), ForCpu(500, 12), ForCpu(0, 0)],
        &[
            (Clean, 0, BUF),
            (Invalidate, 10, 20),
            (Invalidate, 500, 12),
            (Invalidate, 0, BUF),
        ],
    );
    run(
        Bidi,
        NONE,
        64,
        256,
        &[ForDevice(3, 5)],
        &[(Clean, 64, 256), (Clean, 67, 5), (Invalidate, 64, 256)],
    );
}

#[test]
fn unaligned_to_device_buffers_map_and_clean_their_exact_range() {
    run(
        ToDev,
        NONE,
        3,
        100,
        &[ForDevice(0, 100)],
        &[(Clean, 3, 100), (Clean, 3, 100)],
    );
}

#[test]
fn unaligned_buffers_the_device_writes_are_refused_before_any_maintenance() {
    let buf = DmaBuf::new(BUF, LINE).unwrap();
    let base = buf.as_ptr() as usize;
    // No operation is expected: any call would fail the test.
    let p = DirectPlatform::noncoherent(
        HostMemory,
        mock_expecting(base, &[]),
        DeviceConstraints::UNCONSTRAINED,
    );
    for dir in [FromDev, Bidi] {
        for attrs in [NONE, SKIP] {
            for (start, len) in [(3, 128), (0, 100), (64, 1), (8, 56)] {
                let phys = PhysAddr::new((base + start) as u64);
                // SAFETY: inside `buf`; the map fails, so nothing stays mapped.
                let e = unsafe { p.map(phys, len, dir, attrs) }.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Misaligned, "{dir:?} {start}+{len}");
                assert_eq!(e.addr(), Some((base + start) as u64));
                assert_eq!(e.length(), Some(len as u64));
                assert!(e.message().contains("64-byte cache-line"), "{e}");
            }
        }
    }
    assert_eq!(p.dma_alignment(), LINE);
}

#[test]
fn the_safe_types_issue_the_same_sequence() {
    let buf = DmaBuf::new(256, LINE).unwrap();
    let base = buf.as_ptr() as usize;
    let p = DirectPlatform::noncoherent(
        HostMemory,
        mock_expecting(
            base,
            &[
                (Clean, 0, 256),
                (Invalidate, 0, 256),
                (Invalidate, 4, 60),
                (Invalidate, 0, 256), // unmap
                (Clean, 0, 256),      // second mapping
                (Clean, 0, 256),
                (Invalidate, 0, 256), // dropped without unmap: Drop unmaps
            ],
        ),
        DeviceConstraints::UNCONSTRAINED,
    );
    let mut rx = StreamingMapping::<_, FromDevice, _>::map(&p, buf).unwrap();
    rx.sync_for_cpu();
    rx.sync_range_for_cpu(4, 60).unwrap();
    let buf = rx.unmap().unwrap();
    let mut both = StreamingMapping::<_, Bidirectional, _>::map(&p, buf).unwrap();
    both.sync_for_device();
    drop(both);
    drop(p);
}

#[test]
fn a_coherent_policy_gets_no_maintenance_and_no_alignment_rule() {
    let mut cache = MockCache::new();
    cache.expect_is_coherent().return_const(true);
    // No clean/invalidate/line_size expectation: calling any fails the test.
    let p = DirectPlatform::noncoherent(HostMemory, cache, DeviceConstraints::UNCONSTRAINED);
    let buf = DmaBuf::new(BUF, LINE).unwrap();
    let phys = PhysAddr::new(buf.as_ptr() as u64 + 3);
    for dir in [ToDev, FromDev, Bidi] {
        // SAFETY: inside `buf`, unmapped below before the next map.
        let dma = unsafe { p.map(phys, 100, dir, NONE) }.unwrap();
        let raw = RawMapping {
            phys,
            dma,
            len: 100,
            dir,
            attrs: NONE,
        };
        // SAFETY: live mapping, ranges inside it.
        unsafe {
            p.sync_for_device(&raw, 0, 100);
            p.sync_for_cpu(&raw, 0, 100);
            p.unmap(&raw).unwrap();
        }
    }
    assert_eq!(p.dma_alignment(), 1);
}
