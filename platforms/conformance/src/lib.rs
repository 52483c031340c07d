//! The platform-contract conformance suite: one property per function,
//! each generic over any `P: DmaMap + DmaAlloc`, in the manner of
//! vm-memory's generic backend tests.
//!
//! A backend inherits the whole suite with one line:
//!
//! ```
//! use dma_conformance::{conformance, Env};
//! use dma_core::HostMemory;
//! use dma_direct::DirectPlatform;
//!
//! conformance!(direct_coherent, |env: &Env| {
//!     Ok(DirectPlatform::x86_coherent(HostMemory, env.constraints))
//! });
//! # fn main() {}
//! ```
//!
//! The constructor gets an [`Env`]: the device constraints the property
//! needs and, for non-coherent configurations, a [`RecordingCache`] to use
//! as the cache policy ([`Env::cache`]), against which the properties check
//! the maintenance the backend did. A constructor may fail only with a typed
//! error the property accepts (a bounce pool that cannot be placed below a
//! small mask, say).
//!
//! The properties state the contract, not one backend's behaviour: where
//! backends legitimately differ (bounce serves what direct refuses), a
//! property accepts either a success that meets every promise or the one
//! typed refusal the contract allows, and demands success where the
//! contract does (aligned, reachable, whole-line buffers).
//!
//! Buffers live in host memory, so the suite runs on hosts whose caches are
//! coherent with the memory it uses (see [`RecordingCache`]); no device
//! runs, so "the device wrote nothing" is the state every sync is checked
//! in: a buffer must come back exactly as it went in, and no byte around it
//! may change.

use core::cell::Cell;
use core::ops::Range;

use dma_coherence::recording::Recorded;
use dma_coherence::CacheOp;
pub use dma_coherence::RecordingCache;
use dma_core::{
    DeviceConstraints, DmaAlloc, DmaAttrs, DmaBuf, DmaDirection, DmaMap, ErrorKind, PhysAddr,
    RawMapping, Result, SgEntry,
};

/// The cache-line size of the recording cache the suite hands out.
pub const LINE: usize = 64;

/// A page, the granule of the IOMMU backend and of coherent allocations.
pub const PAGE: usize = 4096;

/// Every direction, in a fixed order.
pub const DIRECTIONS: [DmaDirection; 3] = [
    DmaDirection::ToDevice,
    DmaDirection::FromDevice,
    DmaDirection::Bidirectional,
];

/// What a constructor gets: the constraints to serve and a recording cache.
#[derive(Debug)]
pub struct Env {
    /// The device's constraints for this property.
    pub constraints: DeviceConstraints,
    cache: &'static RecordingCache,
    cache_used: Cell<bool>,
}

impl Env {
    fn new(constraints: DeviceConstraints) -> Self {
        Self {
            constraints,
            // One per property run, shared by the platform and the checks;
            // leaked so platforms may hold it by reference (a few KiB per
            // test).
            cache: Box::leak(Box::new(RecordingCache::new(LINE))),
            cache_used: Cell::new(false),
        }
    }

    /// The non-coherent cache policy for the platform under test. Calling
    /// it tells the suite to check the maintenance the platform does.
    pub fn cache(&self) -> &'static RecordingCache {
        self.cache_used.set(true);
        self.cache
    }

    /// The record, when the platform maintains through the recorder.
    fn recorder(&self) -> Option<&'static RecordingCache> {
        self.cache_used.get().then_some(self.cache)
    }
}

/// Builds the platform under test for an [`Env`].
pub trait Make<P>: Fn(&Env) -> Result<P> {}
impl<P, F: Fn(&Env) -> Result<P>> Make<P> for F {}

fn build<P>(make: &impl Make<P>, constraints: DeviceConstraints) -> (Env, P) {
    let env = Env::new(constraints);
    let p = make(&env).expect("the configuration builds for these constraints");
    (env, p)
}

/// Page-aligned host memory filled with a known pattern: the suite maps
/// parts of it and checks afterwards that no byte changed.
struct Arena {
    buf: DmaBuf,
    phys: PhysAddr,
}

impl Arena {
    fn new<P: DmaMap>(p: &P, pages: usize) -> Self {
        let mut buf = DmaBuf::new(pages * PAGE, PAGE).expect("host memory for the arena");
        for (i, b) in buf.iter_mut().enumerate() {
            *b = Self::pattern(i);
        }
        let ptr = core::ptr::NonNull::new(buf.as_mut_ptr()).expect("non-null buffer");
        let phys = p
            .virt_to_phys(ptr, pages * PAGE)
            .expect("the platform translates heap memory");
        Self { buf, phys }
    }

    fn pattern(i: usize) -> u8 {
        (i * 7 + 3) as u8
    }

    fn at(&self, offset: usize) -> PhysAddr {
        PhysAddr::new(self.phys.as_u64() + offset as u64)
    }

    fn range(&self) -> Range<u64> {
        self.phys.as_u64()..self.phys.as_u64() + self.buf.len() as u64
    }

    /// Every byte as it was filled: nothing the platform did changed one.
    fn assert_unchanged(&self, what: &str) {
        let changed = self
            .buf
            .iter()
            .enumerate()
            .position(|(i, &b)| b != Self::pattern(i));
        assert_eq!(changed, None, "{what}: an arena byte changed");
    }
}

/// Maps through the raw contract and returns the mapping it describes.
///
/// # Safety
///
/// As for `DmaMap::map`.
unsafe fn map<P: DmaMap>(
    p: &P,
    phys: PhysAddr,
    len: usize,
    dir: DmaDirection,
    attrs: DmaAttrs,
) -> Result<RawMapping> {
    // SAFETY: the caller's promise is passed on.
    let dma = unsafe { p.map(phys, len, dir, attrs) }?;
    Ok(RawMapping {
        phys,
        dma,
        len,
        dir,
        attrs,
    })
}

/// Every success keeps the device's constraints.
fn assert_within_constraints<P: DmaMap>(p: &P, dma: dma_core::DmaAddr, len: usize) {
    let c = p.constraints();
    assert_ne!(dma.as_u64(), 0, "a zero device address is never handed out");
    assert!(
        c.check_reachable(dma, len as u64).is_ok(),
        "{dma:?}+{len} beyond the mask {:#x}",
        c.dma_mask()
    );
    assert!(
        dma.is_aligned(c.alignment()),
        "{dma:?} breaks the alignment"
    );
    assert!(
        !c.crosses_boundary(dma, len as u64),
        "{dma:?}+{len} crosses the boundary"
    );
}

/// The recorded operations since the last clear, checked complete.
fn recorded(cache: &RecordingCache) -> Vec<Recorded> {
    assert_eq!(cache.dropped(), 0, "the record overflowed; clear it sooner");
    cache.recorded().collect()
}

/// No invalidation may discard a line holding an arena byte outside
/// `owned`: that byte could be a CPU write the invalidation throws away.
fn assert_invalidations_inside(env: &Env, arena: &Arena, owned: &[Range<u64>]) {
    let Some(cache) = env.recorder() else { return };
    for r in recorded(cache) {
        if r.op == CacheOp::Clean {
            continue;
        }
        let (first, end) = r.lines(LINE);
        let a = arena.range();
        let (lo, hi) = ((first as u64).max(a.start), (end as u64).min(a.end));
        if lo >= hi {
            continue;
        }
        assert!(
            owned.iter().any(|o| o.start <= lo && hi <= o.end),
            "{r:?} discards lines {lo:#x}..{hi:#x} holding bytes outside the mappings {owned:x?}"
        );
    }
}

/// Whether a recorded operation `op` covers `[phys, phys + len)` (the host
/// identity-maps, so virtual and physical addresses agree).
fn covers(cache: &RecordingCache, op: CacheOp, phys: PhysAddr, len: usize) -> bool {
    let (lo, hi) = (phys.as_u64() as usize, phys.as_u64() as usize + len);
    recorded(cache)
        .iter()
        .any(|r| r.op == op && r.va <= lo && hi <= r.va + r.len)
}

/// Empty mappings, empty entries and empty allocations are `ZeroSize`, and
/// an empty table maps and unmaps as nothing.
pub fn zero_sizes<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let (_env, p) = build(&make, DeviceConstraints::UNCONSTRAINED);
    let arena = Arena::new(&p, 1);
    for dir in DIRECTIONS {
        // SAFETY: the arena is ours and only reached through `p`; every
        // call here is refused or maps nothing.
        unsafe {
            let e = p.map(arena.at(0), 0, dir, DmaAttrs::empty()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ZeroSize, "{dir:?}");
            let mut sg = [SgEntry::new(arena.at(0), 0)];
            let e = p.map_sg(&mut sg, dir, DmaAttrs::empty()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ZeroSize, "{dir:?} sg");
            p.map_sg(&mut [], dir, DmaAttrs::empty()).unwrap();
            p.unmap_sg(&[], dir, DmaAttrs::empty()).unwrap();
        }
    }
    let e = p.alloc_coherent(0, DmaAttrs::empty()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ZeroSize);
    arena.assert_unchanged("zero sizes");
}

/// A range that wraps past the top of the address space is
/// `AddressOverflow`, in every direction and inside a table.
pub fn overflow<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let (_env, p) = build(&make, DeviceConstraints::UNCONSTRAINED);
    let top = PhysAddr::new(u64::MAX - 15);
    for dir in DIRECTIONS {
        // SAFETY: refused before anything is touched (that is the property).
        unsafe {
            let e = p.map(top, 64, dir, DmaAttrs::empty()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddressOverflow, "{dir:?}");
            let mut sg = [SgEntry::new(top, 64)];
            let e = p.map_sg(&mut sg, dir, DmaAttrs::empty()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddressOverflow, "{dir:?} sg");
        }
    }
    let e = p.alloc_coherent(usize::MAX, DmaAttrs::empty()).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::OutOfMemory
                | ErrorKind::AddressOverflow
                | ErrorKind::Unreachable
                | ErrorKind::Unsupported
        ),
        "{e}"
    );
}

/// A buffer above the device's mask is served below it (IOMMU, bounce) or
/// refused as `Unreachable`; whatever is served lies below the mask.
pub fn mask<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let (_env, probe) = build(&make, DeviceConstraints::UNCONSTRAINED);
    let arena = Arena::new(&probe, 2);
    drop(probe);
    // The widest mask that leaves the arena's first byte out of reach.
    let bits = 63 - arena.phys.as_u64().leading_zeros() as u8;
    let c = DeviceConstraints::builder()
        .addr_bits(bits)
        .build()
        .expect("a mask of the arena's width");
    let env = Env::new(c);
    let p = match make(&env) {
        Ok(p) => p,
        Err(e) => {
            // A bounce pool the environment cannot place below the mask.
            assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
            return;
        }
    };
    for dir in DIRECTIONS {
        // SAFETY: the arena is ours and only reached through `p`.
        match unsafe { map(&p, arena.at(0), 2 * PAGE, dir, DmaAttrs::empty()) } {
            Ok(m) => {
                assert_within_constraints(&p, m.dma, m.len);
                // SAFETY: mapped just above; no device ran.
                unsafe { p.unmap(&m) }.unwrap();
            }
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Unreachable | ErrorKind::BounceExhausted
                ),
                "{dir:?}: {e}"
            ),
        }
    }
    arena.assert_unchanged("mask");
}

/// The device's start alignment: a buffer that meets it is mapped; one that
/// breaks it is served aligned (bounce) or refused as `Misaligned`.
pub fn alignment<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let c = DeviceConstraints::builder()
        .alignment(256)
        .build()
        .expect("valid constraints");
    let (_env, p) = build(&make, c);
    let arena = Arena::new(&p, 1);
    let dir = DmaDirection::ToDevice;
    // SAFETY: the arena is ours and only reached through `p`.
    let m = unsafe { map(&p, arena.at(0), 512, dir, DmaAttrs::empty()) }
        .expect("an aligned buffer is mapped");
    assert_within_constraints(&p, m.dma, m.len);
    // SAFETY: mapped just above; no device ran.
    unsafe { p.unmap(&m) }.unwrap();
    // SAFETY: the arena is ours and reached only through `p` until unmapped.
    match unsafe { map(&p, arena.at(8), 512, dir, DmaAttrs::empty()) } {
        Ok(m) => {
            assert_within_constraints(&p, m.dma, m.len);
            // SAFETY: `m` was mapped just above and is unmapped once; no device ran.
            unsafe { p.unmap(&m) }.unwrap();
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::Misaligned, "{e}"),
    }
    arena.assert_unchanged("alignment");
}

/// The device's boundary: a buffer within one boundary window is mapped;
/// one that straddles two is served within one (IOVA, bounce slot),
/// refused as `CrossesBoundary`, or passed through at its own address (a
/// direct backend, which crosses only where the buffer does: `DmaMap`'s
/// contract leaves splitting at boundaries to whoever builds segments).
pub fn boundary<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let c = DeviceConstraints::builder()
        .boundary(PAGE as u64)
        .build()
        .expect("valid constraints");
    let env = Env::new(c);
    let p = match make(&env) {
        Ok(p) => p,
        Err(e) => {
            // A bounce pool larger than one window, mapped as one range
            // through a backend that places addresses (an IOMMU).
            assert_eq!(e.kind(), ErrorKind::CrossesBoundary, "{e}");
            return;
        }
    };
    let arena = Arena::new(&p, 2);
    let dir = DmaDirection::ToDevice;
    // SAFETY: the arena is ours and only reached through `p`.
    let m = unsafe { map(&p, arena.at(0), PAGE, dir, DmaAttrs::empty()) }
        .expect("a buffer inside one window is mapped");
    assert_within_constraints(&p, m.dma, m.len);
    // SAFETY: mapped just above; no device ran.
    unsafe { p.unmap(&m) }.unwrap();
    // SAFETY: the arena is ours and reached only through `p` until unmapped.
    match unsafe { map(&p, arena.at(PAGE / 2), PAGE, dir, DmaAttrs::empty()) } {
        Ok(m) if m.dma.as_u64() == m.phys.as_u64() => {
            // Passed through: only the mask and alignment bind.
            assert!(p.constraints().check_reachable(m.dma, m.len as u64).is_ok());
            // SAFETY: `m` was mapped just above and is unmapped once; no device ran.
            unsafe { p.unmap(&m) }.unwrap();
        }
        Ok(m) => {
            assert_within_constraints(&p, m.dma, m.len);
            // SAFETY: `m` was mapped just above and is unmapped once; no device ran.
            unsafe { p.unmap(&m) }.unwrap();
        }
        Err(e) => assert_eq!(e.kind(), ErrorKind::CrossesBoundary, "{e}"),
    }
    arena.assert_unchanged("boundary");
}

/// Partial cache lines, every direction: a buffer sharing its edge lines
/// with other data is mapped when the device only reads it or the policy is
/// coherent, and otherwise served (bounce) or refused as `Misaligned`;
/// whatever is served, no sync or unmap invalidates a line holding a byte
/// outside it, and no byte around it changes.
pub fn partial_lines<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let (env, p) = build(&make, DeviceConstraints::UNCONSTRAINED);
    let arena = Arena::new(&p, 1);
    let coherent = p.dma_alignment() == 1;
    for dir in DIRECTIONS {
        let (phys, len) = (arena.at(LINE + 8), 2 * LINE);
        env.cache.clear();
        // SAFETY: the arena is ours and only reached through `p`.
        match unsafe { map(&p, phys, len, dir, DmaAttrs::empty()) } {
            Ok(m) => {
                assert_within_constraints(&p, m.dma, m.len);
                // SAFETY: live mapping, whole range, no device ran.
                unsafe {
                    p.sync_for_cpu(&m, 0, len);
                    p.sync_for_device(&m, 0, len);
                    p.sync_for_cpu(&m, 1, len - 2);
                    p.unmap(&m).unwrap();
                }
                let owned = phys.as_u64()..phys.as_u64() + len as u64;
                assert_invalidations_inside(&env, &arena, core::slice::from_ref(&owned));
            }
            Err(e) => {
                assert!(
                    !coherent && dir.device_writes(),
                    "{dir:?}: refused a buffer the contract lets through: {e}"
                );
                assert_eq!(e.kind(), ErrorKind::Misaligned, "{dir:?}: {e}");
                if let Some(cache) = env.recorder() {
                    assert_eq!(recorded(cache), [], "{dir:?}: a refusal maintains nothing");
                }
            }
        }
        arena.assert_unchanged(&format!("partial lines {dir:?}"));
    }
}

/// Sync ranges: on a whole-line buffer, an explicit sync of a sub-range
/// cleans it for the device and (for directions the device writes)
/// invalidates it for the CPU, even under `SKIP_CPU_SYNC`, which skips only
/// the implicit syncs at map and unmap; the first and last byte alone can be
/// synced; no invalidation leaves the mapping; the buffer comes back as it
/// went in.
pub fn sync_ranges<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let (env, p) = build(&make, DeviceConstraints::UNCONSTRAINED);
    let arena = Arena::new(&p, 1);
    let len = 16 * LINE;
    for dir in DIRECTIONS {
        for attrs in [DmaAttrs::empty(), DmaAttrs::SKIP_CPU_SYNC] {
            env.cache.clear();
            // SAFETY: the arena is ours and only reached through `p`.
            let m = unsafe { map(&p, arena.at(0), len, dir, attrs) }
                .expect("a whole-line buffer is mapped in every direction");
            assert_within_constraints(&p, m.dma, m.len);
            let sub = (arena.at(LINE), LINE);
            if let Some(cache) = env.recorder() {
                let implicit = covers(cache, CacheOp::Clean, arena.at(0), len);
                assert_eq!(
                    implicit,
                    attrs.is_empty(),
                    "{dir:?} {attrs:?}: map cleans unless SKIP_CPU_SYNC"
                );
                cache.clear();
            }
            // SAFETY: live mapping, ranges inside it, no device ran.
            unsafe { p.sync_for_device(&m, LINE, LINE) };
            if let Some(cache) = env.recorder() {
                assert!(
                    covers(cache, CacheOp::Clean, sub.0, sub.1),
                    "{dir:?} {attrs:?}: sync_for_device cleans its range"
                );
                cache.clear();
            }
            // SAFETY: live mapping; LINE..2 * LINE lies inside it; no device ran.
            unsafe { p.sync_for_cpu(&m, LINE, LINE) };
            if let Some(cache) = env.recorder() {
                assert_eq!(
                    covers(cache, CacheOp::Invalidate, sub.0, sub.1),
                    dir.device_writes(),
                    "{dir:?} {attrs:?}: sync_for_cpu invalidates when the device wrote"
                );
            }
            // SAFETY: live mapping; its first and last byte lie inside it; no device ran.
            unsafe {
                p.sync_for_device(&m, 0, 1);
                p.sync_for_cpu(&m, len - 1, 1);
            }
            assert_invalidations_inside(
                &env,
                &arena,
                core::slice::from_ref(&(arena.phys.as_u64()..arena.phys.as_u64() + len as u64)),
            );
            if let Some(cache) = env.recorder() {
                cache.clear();
            }
            // SAFETY: mapped above; no device ran.
            unsafe { p.unmap(&m) }.unwrap();
            if let (Some(cache), true) = (env.recorder(), dir.device_writes()) {
                assert_eq!(
                    covers(cache, CacheOp::Invalidate, arena.at(0), len),
                    attrs.is_empty(),
                    "{dir:?} {attrs:?}: unmap invalidates unless SKIP_CPU_SYNC"
                );
            }
            arena.assert_unchanged(&format!("sync ranges {dir:?} {attrs:?}"));
        }
    }
}

/// Scatter-gather through the platform's own `map_sg`: every entry gets a
/// device address within the constraints, syncs cover every entry, and
/// `unmap_sg` ends the table; the memory comes back unchanged.
pub fn scatter_gather<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let (env, p) = build(&make, DeviceConstraints::UNCONSTRAINED);
    let arena = Arena::new(&p, 4);
    let layout = [(0, PAGE), (PAGE, PAGE), (2 * PAGE + LINE, PAGE / 2)];
    for dir in DIRECTIONS {
        let mut sg = layout.map(|(off, len)| SgEntry::new(arena.at(off), len));
        env.cache.clear();
        // SAFETY: the arena is ours and only reached through `p`.
        unsafe { p.map_sg(&mut sg, dir, DmaAttrs::empty()) }
            .expect("whole-line entries are mapped");
        for e in &sg {
            assert_within_constraints(&p, e.dma, e.len);
        }
        if let Some(cache) = env.recorder() {
            for e in &sg {
                assert!(covers(cache, CacheOp::Clean, e.phys, e.len), "{dir:?}");
            }
            cache.clear();
        }
        // SAFETY: the table is live; no device ran.
        unsafe {
            p.sync_sg_for_device(&sg, dir, DmaAttrs::empty());
            p.sync_sg_for_cpu(&sg, dir, DmaAttrs::empty());
            // One entry on its own, as `SgEntry::as_raw` allows.
            p.sync_for_cpu(&sg[1].as_raw(dir, DmaAttrs::empty()), 8, 64);
        }
        if let Some(cache) = env.recorder() {
            for e in &sg {
                assert!(covers(cache, CacheOp::Clean, e.phys, e.len), "{dir:?}");
                assert_eq!(
                    covers(cache, CacheOp::Invalidate, e.phys, e.len),
                    dir.device_writes(),
                    "{dir:?}"
                );
            }
        }
        let owned: Vec<_> = sg
            .iter()
            .map(|e| e.phys.as_u64()..e.phys.as_u64() + e.len as u64)
            .collect();
        assert_invalidations_inside(&env, &arena, &owned);
        // SAFETY: mapped above; no device ran.
        unsafe { p.unmap_sg(&sg, dir, DmaAttrs::empty()) }.unwrap();
        arena.assert_unchanged(&format!("scatter-gather {dir:?}"));
    }
}

/// Coherent allocations: zero-filled, page-aligned, at least the size
/// asked, reachable within the mask, writable and freed; a policy that
/// needs uncached memory from an environment that has none says
/// `Unsupported`.
pub fn coherent_allocation<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let c = DeviceConstraints::builder()
        .addr_bits(48)
        .build()
        .expect("valid constraints");
    let (_env, p) = build(&make, c);
    let region = match p.alloc_coherent(100, DmaAttrs::empty()) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                p.dma_alignment() > 1,
                "a coherent policy allocates coherent memory: {e}"
            );
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            return;
        }
    };
    assert!(region.size >= 100 && region.size % PAGE == 0);
    assert_eq!(region.cpu.as_ptr() as usize % PAGE, 0, "page-aligned");
    assert!(p
        .constraints()
        .check_reachable(region.dma, region.size as u64)
        .is_ok());
    assert_ne!(region.dma.as_u64(), 0);
    let cpu = region.cpu.as_ptr();
    for i in 0..region.size {
        // SAFETY: the region is ours, `size` bytes at `cpu`; volatile, as the
        // device may reach it.
        let byte = unsafe { cpu.add(i).read_volatile() };
        assert_eq!(byte, 0, "zero-filled at {i}");
    }
    // SAFETY: the region is ours and its last byte lies inside it.
    unsafe {
        cpu.add(region.size - 1).write_volatile(0x5a);
        assert_eq!(cpu.add(region.size - 1).read_volatile(), 0x5a);
    }
    // SAFETY: allocated above with the same attributes, freed once, not
    // used afterwards.
    unsafe { p.free_coherent(region, DmaAttrs::empty()) }.unwrap();
}

/// A failed call changes nothing: refused maps and a table refused halfway
/// leave every byte as it was, invalidate no line outside what was asked
/// for, and leave the same memory mappable afterwards.
pub fn failed_calls_change_nothing<P: DmaMap + DmaAlloc>(make: impl Make<P>) {
    let (env, p) = build(&make, DeviceConstraints::UNCONSTRAINED);
    let arena = Arena::new(&p, 3);
    for dir in DIRECTIONS {
        env.cache.clear();
        // SAFETY: the arena is ours and only reached through `p`; every call
        // in this block is refused.
        unsafe {
            assert!(p.map(arena.at(0), 0, dir, DmaAttrs::empty()).is_err());
            assert!(p
                .map(PhysAddr::new(u64::MAX - 7), 64, dir, DmaAttrs::empty())
                .is_err());
            // A table whose last entry is bad: the good ones must be undone.
            let mut sg = [
                SgEntry::new(arena.at(0), PAGE),
                SgEntry::new(arena.at(PAGE), PAGE),
                SgEntry::new(arena.at(2 * PAGE), 0),
            ];
            assert!(p.map_sg(&mut sg, dir, DmaAttrs::empty()).is_err());
        }
        assert_invalidations_inside(
            &env,
            &arena,
            core::slice::from_ref(&(arena.phys.as_u64()..arena.at(2 * PAGE).as_u64())),
        );
        arena.assert_unchanged(&format!("refused calls {dir:?}"));
        // Everything is still available: the whole arena maps, once.
        // SAFETY: the arena is ours and reached only through `p` until unmapped.
        let m = unsafe { map(&p, arena.at(0), 3 * PAGE, dir, DmaAttrs::empty()) }
            .expect("the memory a refused call named maps afterwards");
        // SAFETY: mapped just above; no device ran.
        unsafe { p.unmap(&m) }.unwrap();
        arena.assert_unchanged(&format!("after refused calls {dir:?}"));
    }
}

/// Generates one `#[test]` per property in a module `$name`, for the
/// platform `$make` builds from an [`Env`].
///
/// A configuration that breaks a property for a reason tracked elsewhere
/// lists every property instead, the broken ones under `ignore` with the
/// reason, so they show as ignored (and run with `--ignored`) rather than
/// disappear:
///
/// ```
/// use dma_conformance::{conformance, Env};
/// use dma_core::HostMemory;
/// use dma_direct::DirectPlatform;
///
/// conformance!(direct, |env: &Env| {
///         Ok(DirectPlatform::x86_coherent(HostMemory, env.constraints))
///     },
///     run [zero_sizes, overflow, mask, alignment, boundary, partial_lines,
///          coherent_allocation, failed_calls_change_nothing],
///     ignore [sync_ranges, scatter_gather] = "tracked in an issue: say which");
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance {
    ($name:ident, $make:expr) => {
        $crate::conformance!($name, $make,
            run [zero_sizes, overflow, mask, alignment, boundary, partial_lines,
                 sync_ranges, scatter_gather, coherent_allocation,
                 failed_calls_change_nothing],
            ignore [] = "");
    };
    ($name:ident, $make:expr, run [$($run:ident),* $(,)?],
     ignore [$($ignored:ident),* $(,)?] = $reason:literal) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $run() {
                    $crate::$run($make);
                }
            )*
            $(
                #[test]
                #[ignore = $reason]
                fn $ignored() {
                    $crate::$ignored($make);
                }
            )*
        }
    };
}
