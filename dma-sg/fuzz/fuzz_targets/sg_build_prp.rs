//! Fuzzes the SG table builder and the NVMe PRP encoder on arbitrary page
//! lists and device constraints, checking:
//! - a successful build preserves length and byte order, keeps every entry
//!   within the limits (maximum, boundary, alignment, mask, count), and
//!   coalesces maximally;
//! - building in two appends succeeds exactly when building at once does,
//!   and gives the same table;
//! - a failed build or encode returns an error of an expected kind;
//! - PRP encoding of a built table succeeds exactly when its first address
//!   is dword aligned, and the controller-side walk of the result gives
//!   back the table's bytes, in order, reading only list memory the
//!   request owns; every list block returns to its pool.
#![no_main]

use std::sync::OnceLock;

use dma_core::{DeviceConstraints, DmaAddr, ErrorKind, HostMemory, PhysAddr, SgEntry};
use dma_coherence::HardwareCoherent;
use dma_direct::DirectPlatform;
use dma_sg::nvme::{self, walk_prp, NvmePools};
use dma_sg::{DmaSegment, SgLimits, SgTable};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

const PAGE: u64 = 4096;
const MAX_PAGES: usize = 4096;

type Platform = DirectPlatform<HostMemory, HardwareCoherent>;

#[derive(Arbitrary, Debug)]
struct Input {
    /// High bits of the first page's address (tests the mask and the top of
    /// the address space).
    base: u64,
    /// Page-to-page steps: small values keep pages adjacent.
    steps: Vec<u8>,
    offset: u16,
    tail: u16,
    max_segment: u32,
    boundary_shift: Option<u8>,
    align_shift: u8,
    addr_bits: u8,
    max_segments: u16,
    translated: bool,
    split: u16,
}

fn pools() -> &'static NvmePools<&'static Platform> {
    static POOLS: OnceLock<NvmePools<&'static Platform>> = OnceLock::new();
    static PLATFORM: OnceLock<Platform> = OnceLock::new();
    POOLS.get_or_init(|| {
        let platform = PLATFORM.get_or_init(|| {
            DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED)
        });
        // Enough for MAX_PAGES entries: 511 per chained list page.
        NvmePools::new(platform, PAGE as usize, MAX_PAGES / 511 + 2, 16).unwrap()
    })
}

fn page_list(input: &Input) -> Vec<PhysAddr> {
    let mut frame = input.base >> 12;
    let mut out = Vec::with_capacity(input.steps.len() + 1);
    out.push(PhysAddr::new(frame.wrapping_mul(PAGE)));
    for &s in input.steps.iter().take(MAX_PAGES - 1) {
        frame = frame.wrapping_add(match s {
            0..=159 => 1,
            160..=199 => 0, // the same page again
            d => u64::from(d),
        });
        out.push(PhysAddr::new(frame.wrapping_mul(PAGE)));
    }
    out
}

fn constraints(input: &Input) -> Option<DeviceConstraints> {
    let mut b = DeviceConstraints::builder()
        .addr_bits(input.addr_bits % 65)
        .alignment(1 << (input.align_shift % 14))
        .max_segments(usize::from(input.max_segments));
    if let Some(s) = input.boundary_shift {
        b = b.boundary(1u64 << (s % 40));
    }
    match b.build() {
        Ok(c) => Some(c),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidConstraints);
            None
        }
    }
}

/// Splits entries into per-page pieces, for comparing byte order.
fn pieces(entries: &[SgEntry]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for e in entries {
        let (mut a, mut l) = (e.phys.as_u64(), e.len as u64);
        while l > 0 {
            let n = l.min(PAGE - a % PAGE);
            out.push((a, n));
            a = a.wrapping_add(n);
            l -= n;
        }
    }
    out
}

fn check_table(t: &SgTable<Vec<SgEntry>>, l: &SgLimits, pages: &[PhysAddr], offset: u64, len: u64) {
    let e = t.entries();
    assert_eq!(t.total_len(), len);
    let mut expected = Vec::new();
    let (mut remaining, mut off) = (len, offset);
    for p in pages {
        let n = remaining.min(PAGE - off);
        expected.push((p.as_u64() + off, n));
        remaining -= n;
        off = 0;
    }
    assert_eq!(pieces(e), expected, "length and order preserved");
    if !l.is_translated() {
        assert!(e.len() <= l.max_segments());
    }
    for (i, x) in e.iter().enumerate() {
        let (a, n) = (x.phys.as_u64(), x.len as u64);
        assert!(n > 0 && n <= l.max_segment());
        assert_eq!(a % l.alignment(), 0);
        if let Some(b) = l.boundary() {
            assert_eq!(a / b, (a + (n - 1)) / b, "entry {i} crosses the boundary");
        }
        if !l.is_translated() {
            assert!(a + (n - 1) <= l.dma_mask());
        }
        if i > 0 {
            assert_eq!(a % PAGE, 0);
        }
    }
    for w in e.windows(2) {
        let (a, b) = (w[0], w[1]);
        let start = a.phys.as_u64();
        let merged = (a.len + b.len) as u64;
        let contiguous = start.checked_add(a.len as u64) == Some(b.phys.as_u64());
        let crosses = l.boundary().is_some_and(|bd| {
            start
                .checked_add(merged - 1)
                .is_none_or(|end| start / bd != end / bd)
        });
        assert!(
            !(contiguous && merged <= l.max_segment() && !crosses),
            "not maximal: {a:?} {b:?}"
        );
    }
}

fn check_prp(t: &SgTable<Vec<SgEntry>>) {
    let pools = pools();
    let before = pools.available();
    let segs: Vec<DmaSegment> = t
        .entries()
        .iter()
        .map(|e| DmaSegment::new(DmaAddr::new(e.phys.as_u64()), e.len as u64))
        .collect();
    let first_ok = segs[0].addr.as_u64() % 4 == 0;
    match nvme::encode_prp(pools, segs.iter().copied()) {
        Ok(req) => {
            assert!(first_ok, "PRP accepted an unaligned first entry");
            let regions: Vec<DmaSegment> = req.list_regions().collect();
            let mut walked: Vec<(u64, u64)> = Vec::new();
            walk_prp(
                req.prp1(),
                req.prp2(),
                t.total_len(),
                PAGE as usize,
                |a| {
                    let inside = regions.iter().any(|r| {
                        a.as_u64() >= r.addr.as_u64() && a.as_u64() - r.addr.as_u64() + 8 <= r.len
                    });
                    assert!(
                        inside,
                        "walker read outside the request's list memory at {a:?}"
                    );
                    // SAFETY: inside a pool block the request holds (checked
                    // above); device address = host address on this platform.
                    Ok(u64::from_le(unsafe {
                        (a.as_u64() as usize as *const u64).read_volatile()
                    }))
                },
                |s| {
                    match walked.last_mut() {
                        Some((a, l)) if a.checked_add(*l) == Some(s.addr.as_u64()) => *l += s.len,
                        _ => walked.push((s.addr.as_u64(), s.len)),
                    }
                    Ok(())
                },
            )
            .expect("a fresh encoding walks cleanly");
            let mut canonical: Vec<(u64, u64)> = Vec::new();
            for s in &segs {
                match canonical.last_mut() {
                    Some((a, l)) if a.checked_add(*l) == Some(s.addr.as_u64()) => *l += s.len,
                    _ => canonical.push((s.addr.as_u64(), s.len)),
                }
            }
            assert_eq!(
                walked, canonical,
                "the controller sees the table's bytes in order"
            );
        }
        Err(e) => {
            assert!(
                !first_ok || e.kind() == ErrorKind::AddressOverflow,
                "unexpected {e:?}"
            );
            assert!(matches!(
                e.kind(),
                ErrorKind::Misaligned | ErrorKind::AddressOverflow
            ));
        }
    }
    assert_eq!(pools.available(), before, "every list block went back");
}

fuzz_target!(|input: Input| {
    let Some(c) = constraints(&input) else { return };
    let limits = match SgLimits::new(PAGE as usize, &c)
        .and_then(|l| l.with_max_segment(u64::from(input.max_segment)))
    {
        Ok(l) if input.translated => l.translated(),
        Ok(l) => l,
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidConstraints);
            return;
        }
    };
    let pages = page_list(&input);
    let n = pages.len() as u64;
    let offset = u64::from(input.offset) % PAGE;
    let min_len = if n == 1 {
        1
    } else {
        (n - 1) * PAGE - offset + 1
    };
    let len = min_len + u64::from(input.tail) % (n * PAGE - offset - min_len + 1);

    let whole = SgTable::from_pages(limits, &pages, offset as usize, len as usize);
    // The same buffer in two appends, split at a page boundary.
    let k = 1 + usize::from(input.split) % pages.len();
    let first_len = (k as u64 * PAGE - offset).min(len);
    let parts = SgTable::from_pages(limits, &pages[..k], offset as usize, first_len as usize)
        .and_then(|mut t| {
            if k < pages.len() {
                t.append_pages(&pages[k..], 0, (len - first_len) as usize)?;
            }
            Ok(t)
        });
    match (&whole, &parts) {
        (Ok(w), Ok(p)) => assert_eq!(w.entries(), p.entries(), "append equals one-shot"),
        (Err(a), Err(b)) => {
            for e in [a, b] {
                assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::Misaligned
                            | ErrorKind::AddressOverflow
                            | ErrorKind::Unreachable
                            | ErrorKind::TooManySegments
                    ),
                    "unexpected {e:?}"
                );
            }
            return;
        }
        _ => panic!("append and one-shot disagree: {whole:?} vs {parts:?}"),
    }
    let table = whole.unwrap();
    check_table(&table, &limits, &pages, offset, len);
    check_prp(&table);
});
