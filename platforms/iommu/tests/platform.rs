//! The IOMMU platform end to end on the software IOMMU: translation,
//! faults, both invalidation policies, scatter-gather, coherent memory,
//! non-coherent caches, and every bad input.

use std::ptr::NonNull;

use dma_coherence::{CacheOp, HardwareCoherent, RecordingCache};
use dma_core::{
    Bidirectional, Cacheability, Coherent, DeviceConstraints, DmaAddr, DmaAttrs, DmaBuf,
    DmaDirection, DmaMap, Error, ErrorKind, FromDevice, HostMemory, Pages, PhysAddr, PhysMemory,
    RawMapping, SgEntry, StreamingMapping, ToDevice,
};
use dma_iommu::pgtable::vmsav8::{self, Descriptor};
use dma_iommu::soft::{Command, SoftIommu};
use dma_iommu::{
    Access, Asid, Deferred, DeviceId, DomainConfig, FaultKind, InvalidationPolicy, IommuPlatform,
    Strict,
};

const DEV: DeviceId = DeviceId(8);

type Platform<'a, F> = IommuPlatform<HostMemory, HardwareCoherent, &'a SoftIommu<HostMemory>, F>;

fn platform<F: InvalidationPolicy>(
    hw: &SoftIommu<HostMemory>,
    policy: F,
    c: DeviceConstraints,
) -> Platform<'_, F> {
    IommuPlatform::new(
        HostMemory,
        HardwareCoherent,
        hw,
        policy,
        c,
        DomainConfig::new(DEV, Asid(3)),
    )
    .unwrap()
}

fn bits(n: u8) -> DeviceConstraints {
    DeviceConstraints::builder().addr_bits(n).build().unwrap()
}

#[test]
fn device_sees_the_buffer_through_its_iova_below_the_mask() {
    let hw = SoftIommu::new(HostMemory, 16);
    let p = platform(&hw, Strict, bits(32));
    let mut m =
        StreamingMapping::<_, Bidirectional, _>::map(&p, (0u8..200).collect::<Vec<_>>()).unwrap();
    let dma = m.dma_addr();
    assert!(dma.as_u64() < 1 << 32 && dma.as_u64() >= 0x1000);
    assert_eq!(
        dma.offset_in(4096),
        m.raw().phys.offset_in(4096),
        "offset in page kept"
    );
    assert_eq!(p.iova_to_phys(dma), Some(m.raw().phys));
    let mut got = [0u8; 4];
    hw.device_read(DEV, DmaAddr::new(dma.as_u64() + 10), &mut got)
        .unwrap();
    assert_eq!(got, [10, 11, 12, 13]);
    hw.device_write(DEV, dma, b"hi").unwrap();
    m.sync_for_cpu();
    let back = m.unmap().unwrap();
    assert_eq!(&back[..3], b"hi\x02");
    assert!(p.check_faults().is_ok(), "no fault on legal accesses");
}

#[test]
fn unmapped_and_read_only_accesses_fault_and_are_surfaced() {
    let hw = SoftIommu::new(HostMemory, 16);
    let p = platform(&hw, Strict, DeviceConstraints::UNCONSTRAINED);
    let m = StreamingMapping::<_, ToDevice, _>::map(&p, vec![7u8; 64]).unwrap();
    // A write to a ToDevice (read-only) mapping.
    let e = hw.device_write(DEV, m.dma_addr(), &[0]).unwrap_err();
    assert_eq!(e.kind, FaultKind::Permission { level: Some(3) });
    // A read of an IOVA nothing maps.
    let hole = DmaAddr::new(m.dma_addr().as_u64() & !0xfff)
        .checked_sub(0x10_0000)
        .unwrap();
    assert!(hw.device_read(DEV, hole, &mut [0]).is_err());
    let f = p.take_fault().unwrap();
    assert_eq!(
        (f.access, f.device, f.iova),
        (Access::Write, DEV, m.dma_addr())
    );
    let err = p.check_faults().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeviceFault);
    assert_eq!(err.addr(), Some(hole.as_u64()));
    assert!(p.check_faults().is_ok(), "both faults taken");
    assert_eq!(
        m.unmap().unwrap(),
        vec![7u8; 64],
        "the buffer was not written"
    );
}

#[test]
fn strict_policy_invalidates_and_syncs_on_every_unmap() {
    let hw = SoftIommu::new(HostMemory, 16);
    let p = platform(&hw, Strict, DeviceConstraints::UNCONSTRAINED);
    let m = StreamingMapping::<_, FromDevice, _>::map(&p, vec![0u8; 4096]).unwrap();
    let dma = m.dma_addr();
    hw.device_write(DEV, dma, &[1]).unwrap(); // the IOTLB now caches it
    m.unmap().unwrap();
    let log = hw.log();
    let n = log.len();
    assert!(matches!(
        log[n - 2],
        Command::InvalidateRange(Asid(3), _, _)
    ));
    assert_eq!(log[n - 1], Command::Sync);
    let e = hw.device_write(DEV, dma, &[1]).unwrap_err();
    assert_eq!(
        e.kind,
        FaultKind::Translation { level: Some(3) },
        "no stale IOTLB entry"
    );
}

#[test]
fn deferred_policy_reuses_an_iova_only_after_its_flush() {
    // A 16 KiB window: IOVA pages 1, 2 and 3.
    let hw = SoftIommu::new(HostMemory, 16);
    let p = platform(&hw, Deferred::<8>::new(), bits(14));
    let buf = Box::leak(vec![0u8; 2 * 4096].into_boxed_slice());
    let phys = PhysAddr::new((buf.as_ptr() as u64 + 4095) & !4095);
    // SAFETY: `buf` is leaked and used only through this platform here.
    let map = || unsafe { p.map(phys, 4096, DmaDirection::FromDevice, DmaAttrs::empty()) };
    let raw = |dma| RawMapping {
        phys,
        dma,
        len: 4096,
        dir: DmaDirection::FromDevice,
        attrs: DmaAttrs::empty(),
    };
    let a = map().unwrap();
    hw.device_write(DEV, a, &[1]).unwrap();
    // SAFETY: mapped just above; no device access after this.
    unsafe { p.unmap(&raw(a)).unwrap() };
    assert_eq!(p.pending_invalidations(), 1);
    assert!(!hw
        .log()
        .iter()
        .any(|c| matches!(c, Command::InvalidateAll(_))));
    // The deferred window: the cached translation still works until flushed.
    assert!(hw.device_write(DEV, a, &[2]).is_ok());
    let b = map().unwrap();
    let c = map().unwrap();
    assert!(b != a && c != a, "a queued IOVA is not handed out");
    // The window is full now; the next map must flush to get `a` back.
    let d = map().unwrap();
    assert_eq!(d, a);
    let log = hw.log();
    let flush = log
        .iter()
        .position(|c| matches!(c, Command::InvalidateAll(Asid(3))))
        .unwrap();
    assert_eq!(log[flush + 1], Command::Sync);
    assert_eq!(p.pending_invalidations(), 0);
    for m in [b, c, d] {
        // SAFETY: each is a live mapping made above.
        unsafe { p.unmap(&raw(m)).unwrap() };
    }
    // The timeout hook flushes what is queued.
    p.on_flush_timeout().unwrap();
    assert_eq!(p.pending_invalidations(), 0);
    assert!(
        hw.device_write(DEV, d, &[3]).is_err(),
        "flushed: no stale entry left"
    );
    // The flush gave back every IOVA it released, not just the first: all
    // three pages of the window map again.
    for _ in 0..3 {
        map().unwrap();
    }
}

#[test]
fn a_full_flush_queue_flushes_before_queueing() {
    let hw = SoftIommu::new(HostMemory, 0);
    let p = platform(&hw, Deferred::<2>::new(), DeviceConstraints::UNCONSTRAINED);
    for _ in 0..3 {
        drop(StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 16]).unwrap());
    }
    assert_eq!(p.pending_invalidations(), 1);
    assert_eq!(
        hw.log()
            .iter()
            .filter(|c| matches!(c, Command::InvalidateAll(_)))
            .count(),
        1
    );
}

#[test]
fn scatter_gather_table_gets_one_contiguous_iova_range() {
    let hw = SoftIommu::new(HostMemory, 16);
    let p = platform(&hw, Strict, bits(32));
    // Three separate page-aligned buffers (a partial last one).
    let bufs: Vec<&'static mut [u8]> = (0..3u8)
        .map(|i| &mut Box::leak(vec![i; 2 * 4096 + 4096].into_boxed_slice())[..])
        .collect();
    let mut entries: Vec<SgEntry> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let start = b.as_ptr() as u64;
            let aligned = (start + 4095) & !4095;
            let len = if i == 2 { 100 } else { 8192 };
            SgEntry::new(PhysAddr::new(aligned), len)
        })
        .collect();
    // SAFETY: the leaked buffers are used only through this platform.
    unsafe {
        p.map_sg(&mut entries, DmaDirection::ToDevice, DmaAttrs::empty())
            .unwrap()
    };
    assert_eq!(entries[1].dma.as_u64(), entries[0].dma.as_u64() + 8192);
    assert_eq!(entries[2].dma.as_u64(), entries[1].dma.as_u64() + 8192);
    // The device reads across the entry boundaries as one buffer.
    let mut got = vec![0u8; 8192 * 2 + 100];
    hw.device_read(DEV, entries[0].dma, &mut got).unwrap();
    assert!(got[..8192].iter().all(|&b| b == 0) && got[8192..16384].iter().all(|&b| b == 1));
    let free_before = p.iova_allocator().free_pages_uncached();
    // SAFETY: exactly what map_sg filled in.
    unsafe {
        p.unmap_sg(&entries, DmaDirection::ToDevice, DmaAttrs::empty())
            .unwrap()
    };
    assert!(hw.device_read(DEV, entries[1].dma, &mut [0]).is_err());
    let invalidations = hw
        .log()
        .iter()
        .filter(|c| matches!(c, Command::InvalidateRange(..)))
        .count();
    assert_eq!(invalidations, 1, "freed as one range");
    p.iova_allocator().flush_caches();
    assert!(p.iova_allocator().free_pages_uncached() >= free_before + 5);
    // Unmapping it again is refused.
    // SAFETY: deliberately stale entries; the platform must refuse them.
    let e = unsafe { p.unmap_sg(&entries, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotMapped);
}

#[test]
fn scatter_gather_under_a_small_boundary_maps_entry_by_entry() {
    let hw = SoftIommu::new(HostMemory, 0);
    let c = DeviceConstraints::builder().boundary(8192).build().unwrap();
    let p = platform(&hw, Strict, c);
    let a = Box::leak(vec![0u8; 3 * 4096].into_boxed_slice());
    let base = (a.as_ptr() as u64 + 4095) & !4095;
    let mut entries = [
        SgEntry::new(PhysAddr::new(base), 4096),
        SgEntry::new(PhysAddr::new(base + 4096), 4096),
    ];
    // SAFETY: leaked memory used only here.
    unsafe {
        p.map_sg(&mut entries, DmaDirection::ToDevice, DmaAttrs::empty())
            .unwrap()
    };
    for e in &entries {
        assert!(!c.crosses_boundary(e.dma, e.len as u64));
        assert_eq!(p.iova_to_phys(e.dma), Some(e.phys));
    }
    // SAFETY: exactly what map_sg filled in.
    unsafe {
        p.unmap_sg(&entries, DmaDirection::ToDevice, DmaAttrs::empty())
            .unwrap()
    };
    assert_eq!(p.iova_to_phys(entries[0].dma), None);
}

#[test]
fn coherent_memory_is_shared_and_invalidated_strictly_on_free() {
    let hw = SoftIommu::new(HostMemory, 16);
    let p = platform(&hw, Deferred::<16>::new(), bits(32));
    let mut c = Coherent::<[u32], _>::zeroed_slice(&p, 4).unwrap();
    let dma = c.dma_addr();
    assert!(dma.as_u64() < 1 << 32);
    hw.device_write(DEV, dma, &5u32.to_ne_bytes()).unwrap();
    assert_eq!(c.read(0).unwrap(), 5);
    c.write(1, 9).unwrap();
    let mut w = [0u8; 4];
    hw.device_read(DEV, DmaAddr::new(dma.as_u64() + 4), &mut w)
        .unwrap();
    assert_eq!(u32::from_ne_bytes(w), 9);
    drop(c);
    assert!(
        hw.device_read(DEV, dma, &mut w).is_err(),
        "invalidated at free, not deferred"
    );
}

fn recorded(cache: &RecordingCache) -> Vec<(CacheOp, usize, usize)> {
    cache.recorded().map(|r| (r.op, r.va, r.len)).collect()
}

fn non_coherent<'a>(
    memory: HoleMemory,
    cache: &'a RecordingCache,
    hw: &'a SoftIommu<HostMemory>,
) -> IommuPlatform<HoleMemory, &'a RecordingCache, &'a SoftIommu<HostMemory>, Strict> {
    IommuPlatform::new(
        memory,
        cache,
        hw,
        Strict,
        DeviceConstraints::UNCONSTRAINED,
        DomainConfig::new(DEV, Asid(1)),
    )
    .unwrap()
}

#[test]
fn non_coherent_policy_maintains_buffers_and_maps_them_non_cacheable() {
    let hw = SoftIommu::new(HostMemory, 16);
    let cache = RecordingCache::new(64);
    let p = non_coherent(HoleMemory::default(), &cache, &hw);
    assert!(!p.context().walk_coherent);
    assert_eq!(p.dma_alignment(), 64);
    let buf = DmaBuf::for_device(&p, 256).unwrap();
    cache.clear();
    let m = StreamingMapping::<_, FromDevice, _>::map(&p, buf).unwrap();
    let va = m.raw().phys.as_u64() as usize;
    assert!(
        recorded(&cache).contains(&(CacheOp::Clean, va, 256)),
        "cleaned for the device at map"
    );
    let t = vmsav8::walk(
        &vmsav8::Format::STAGE1_4K_48,
        p.context().root,
        m.dma_addr().as_u64(),
        |a| {
            // SAFETY: identity-mapped table memory owned by the platform.
            Some(unsafe { (a.as_u64() as *const u64).read_volatile() })
        },
    )
    .unwrap();
    assert_eq!(
        Descriptor::attr_index(t.leaf),
        vmsav8::MAIR_IDX_NON_CACHEABLE
    );
    m.unmap().unwrap();
    assert!(
        recorded(&cache).contains(&(CacheOp::Invalidate, va, 256)),
        "invalidated for the CPU at unmap"
    );
    // The coherent allocation asks for uncached pages, which a hosted
    // process cannot give: a typed error, nothing leaked into the tables.
    let e = Coherent::<u64, _>::zeroed(&p).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

/// Issue 11, finding 3: on a non-coherent policy a buffer the device
/// writes that shares a cache line with other data is refused, as the
/// direct backend refuses it, because invalidating the shared line at
/// unmap would throw away the CPU's writes to the neighbour.
#[test]
fn non_coherent_policy_refuses_device_written_buffers_sharing_cache_lines() {
    let hw = SoftIommu::new(HostMemory, 16);
    let cache = RecordingCache::new(64);
    let p = non_coherent(HoleMemory::default(), &cache, &hw);
    let mut buf = DmaBuf::new(4096, 4096).unwrap();
    let base = buf.as_mut_ptr() as u64;
    cache.clear();
    for dir in [DmaDirection::FromDevice, DmaDirection::Bidirectional] {
        for (start, len) in [(8, 64), (0, 100), (64, 4000)] {
            let phys = PhysAddr::new(base + start);
            // SAFETY: the buffer is ours and only used through this platform;
            // every call here is refused.
            let e = unsafe { p.map(phys, len, dir, DmaAttrs::empty()) }.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Misaligned, "{dir:?} {start}+{len}");
            assert!(e.message().contains("64-byte cache-line"), "{e}");
            let mut sg = [
                SgEntry::new(PhysAddr::new(base), 64),
                SgEntry::new(phys, len),
            ];
            // SAFETY: the buffer is ours and used only through this platform; the call is refused.
            let e = unsafe { p.map_sg(&mut sg, dir, DmaAttrs::empty()) }.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Misaligned);
        }
    }
    assert_eq!(recorded(&cache), [], "a refusal maintains nothing");
    assert_eq!(p.iova_to_phys(DmaAddr::new(0x1000)), None, "maps nothing");
    // The device only reads: cleaning a shared line loses nothing.
    // SAFETY: the buffer is ours and used only through this platform until unmapped below.
    let dma = unsafe {
        p.map(
            PhysAddr::new(base + 8),
            64,
            DmaDirection::ToDevice,
            DmaAttrs::empty(),
        )
    }
    .unwrap();
    let raw = RawMapping {
        phys: PhysAddr::new(base + 8),
        dma,
        len: 64,
        dir: DmaDirection::ToDevice,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: mapped just above; the device never ran.
    unsafe { p.unmap(&raw) }.unwrap();
    // Unmapping a device-written mapping twice is refused before any
    // maintenance: the buffer is the CPU's again, and the invalidate the
    // unmap's sync would make could lose the CPU's writes.
    let whole = RawMapping {
        phys: PhysAddr::new(base),
        len: 4096,
        dir: DmaDirection::FromDevice,
        ..raw
    };
    // SAFETY: the buffer is ours and used only through this platform.
    let dma = unsafe { p.map(whole.phys, whole.len, whole.dir, DmaAttrs::empty()) }.unwrap();
    let whole = RawMapping { dma, ..whole };
    // SAFETY: mapped just above; the device never ran.
    unsafe { p.unmap(&whole) }.unwrap();
    cache.clear();
    // SAFETY: deliberately stale; the platform must refuse it untouched.
    let e = unsafe { p.unmap(&whole) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotMapped);
    assert_eq!(recorded(&cache), [], "a refused unmap maintains nothing");
}

/// Issue 11, finding 4: a range the environment cannot translate is
/// refused at map on a non-coherent policy (every sync would have to
/// reach it), and a translation lost under a live mapping is reported by
/// unmap instead of the sync being skipped silently.
#[test]
fn untranslatable_buffers_are_refused_and_a_lost_translation_is_reported() {
    let hw = SoftIommu::new(HostMemory, 16);
    let cache = RecordingCache::new(64);
    let memory = HoleMemory::default();
    let p = non_coherent(memory.clone(), &cache, &hw);
    let mut buf = DmaBuf::new(4096, 4096).unwrap();
    let phys = PhysAddr::new(buf.as_mut_ptr() as u64);
    let dir = DmaDirection::FromDevice;
    memory.hide(phys, 4096);
    cache.clear();
    // SAFETY: the buffer is ours and only used through this platform.
    let e = unsafe { p.map(phys, 256, dir, DmaAttrs::empty()) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotContiguous);
    let mut sg = [SgEntry::new(phys, 256)];
    // SAFETY: the buffer is ours and used only through this platform; the call is refused.
    let e = unsafe { p.map_sg(&mut sg, dir, DmaAttrs::empty()) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotContiguous);
    assert_eq!(recorded(&cache), [], "nothing maintained");

    memory.show();
    // SAFETY: the buffer is ours and used only through this platform until unmapped below.
    let dma = unsafe { p.map(phys, 256, dir, DmaAttrs::empty()) }.unwrap();
    memory.hide(phys, 4096);
    cache.clear();
    let raw = RawMapping {
        phys,
        dma,
        len: 256,
        dir,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: mapped above; the device never ran.
    let e = unsafe { p.unmap(&raw) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotContiguous);
    let buffer = phys.as_u64() as usize..phys.as_u64() as usize + 4096;
    assert!(
        recorded(&cache)
            .iter()
            .all(|(_, va, _)| !buffer.contains(va)),
        "the buffer is not maintained (the table's own writes are)"
    );
    assert_eq!(p.iova_to_phys(dma), None, "the device's access still ended");
}

/// Host memory whose linear map can lose a range, standing for an
/// environment that cannot (or no longer can) translate a buffer.
#[derive(Clone, Default)]
struct HoleMemory(std::sync::Arc<std::sync::Mutex<Option<(u64, u64)>>>);

impl HoleMemory {
    fn hide(&self, phys: PhysAddr, len: u64) {
        *self.0.lock().unwrap() = Some((phys.as_u64(), phys.as_u64() + len));
    }
    fn show(&self) {
        *self.0.lock().unwrap() = None;
    }
}

// SAFETY: forwards to HostMemory, whose translations stay exact inverses;
// it only refuses more ranges.
unsafe impl PhysMemory for HoleMemory {
    fn page_size(&self) -> usize {
        HostMemory.page_size()
    }
    fn alloc_pages(&self, count: usize, c: Cacheability, max_phys: u64) -> dma_core::Result<Pages> {
        HostMemory.alloc_pages(count, c, max_phys)
    }
    unsafe fn free_pages(&self, pages: Pages) {
        // SAFETY: the caller's promise is passed on.
        unsafe { HostMemory.free_pages(pages) }
    }
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> dma_core::Result<PhysAddr> {
        HostMemory.virt_to_phys(cpu, len)
    }
    fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> dma_core::Result<NonNull<u8>> {
        if let Some((lo, hi)) = *self.0.lock().unwrap() {
            if phys.as_u64() < hi && phys.as_u64() + len as u64 > lo {
                return Err(Error::new(ErrorKind::NotContiguous, "hidden by the test"));
            }
        }
        HostMemory.phys_to_virt(phys, len)
    }
}

#[test]
fn bad_input_is_typed_and_leaves_the_tables_unchanged() {
    let hw = SoftIommu::new(HostMemory, 0);
    let c = DeviceConstraints::builder()
        .addr_bits(14)
        .alignment(16)
        .build()
        .unwrap();
    let p = platform(&hw, Strict, c);
    let buf = Box::leak(vec![0u8; 4 * 4096].into_boxed_slice());
    let page = (buf.as_ptr() as u64 + 4095) & !4095;
    let phys = PhysAddr::new(page);
    let flags = (DmaDirection::Bidirectional, DmaAttrs::empty());
    // SAFETY: the leaked buffer is used only through this platform.
    let map = |phys, len| unsafe { p.map(phys, len, flags.0, flags.1) };
    let live = map(phys, 4096).unwrap();
    let probes = |p: &Platform<'_, Strict>| {
        (1..4)
            .map(|i| p.iova_to_phys(DmaAddr::new(i * 4096)))
            .collect::<Vec<_>>()
    };
    let before = probes(&p);
    let raw = |dma, len| RawMapping {
        phys,
        dma,
        len,
        dir: flags.0,
        attrs: flags.1,
    };

    assert_eq!(map(phys, 0).unwrap_err().kind(), ErrorKind::ZeroSize);
    assert_eq!(
        map(PhysAddr::new(page + 8), 64).unwrap_err().kind(),
        ErrorKind::Misaligned,
        "no placement keeps offset 8 16-aligned"
    );
    assert_eq!(
        map(PhysAddr::new(u64::MAX - 10), 64).unwrap_err().kind(),
        ErrorKind::AddressOverflow
    );
    assert_eq!(
        map(phys, 3 * 4096).unwrap_err().kind(),
        ErrorKind::IovaExhausted,
        "needs an aligned 4-page block"
    );
    let two = map(PhysAddr::new(page + 4096), 4096).unwrap();
    let three = map(PhysAddr::new(page + 8192), 4096).unwrap();
    assert_eq!(
        map(phys, 4096).unwrap_err().kind(),
        ErrorKind::IovaExhausted,
        "all three pages in use"
    );
    let all_three = probes(&p);
    // SAFETY: deliberately wrong descriptions, which the platform must
    // refuse, and then the real mappings made above, each unmapped once.
    unsafe {
        assert_eq!(
            p.unmap(&raw(DmaAddr::new(0x2000), 4096))
                .unwrap_err()
                .kind(),
            ErrorKind::NotMapped,
            "never mapped at that IOVA"
        );
        assert_eq!(
            p.unmap(&raw(live, 8192)).unwrap_err().kind(),
            ErrorKind::NotMapped,
            "longer than mapped"
        );
        assert_eq!(
            p.unmap(&raw(DmaAddr::new(live.as_u64() + 4), 4096))
                .unwrap_err()
                .kind(),
            ErrorKind::NotMapped
        );
        assert_eq!(
            p.unmap(&RawMapping {
                phys: PhysAddr::new(page + 4096),
                ..raw(live, 4096)
            })
            .unwrap_err()
            .kind(),
            ErrorKind::NotMapped,
            "a live IOVA, but another buffer's"
        );
        assert_eq!(probes(&p), all_three);
        p.unmap(&raw(live, 4096)).unwrap();
        assert_eq!(
            p.unmap(&raw(live, 4096)).unwrap_err().kind(),
            ErrorKind::NotMapped,
            "double unmap"
        );
        p.unmap(&RawMapping {
            phys: PhysAddr::new(page + 4096),
            ..raw(two, 4096)
        })
        .unwrap();
        p.unmap(&RawMapping {
            phys: PhysAddr::new(page + 8192),
            ..raw(three, 4096)
        })
        .unwrap();
    }
    assert_ne!(before, probes(&p));
    assert!(probes(&p).iter().all(Option::is_none));
    let invalid = IommuPlatform::new(
        HostMemory,
        HardwareCoherent,
        &hw,
        Strict,
        bits(12),
        DomainConfig::new(DeviceId(9), Asid(4)),
    );
    assert_eq!(
        invalid.unwrap_err().kind(),
        ErrorKind::InvalidConstraints,
        "a 4 KiB mask leaves no IOVA page"
    );
}

#[test]
fn dropping_the_platform_detaches_the_domain() {
    let hw = SoftIommu::new(HostMemory, 16);
    {
        let p = platform(&hw, Strict, DeviceConstraints::UNCONSTRAINED);
        let m = StreamingMapping::<_, ToDevice, _>::map(&p, vec![1u8; 8]).unwrap();
        let _ = m.unmap().unwrap();
    }
    assert_eq!(hw.log().last(), Some(&Command::Detach(DEV)));
    // The device id is free for a new domain.
    let _p = platform(&hw, Strict, DeviceConstraints::UNCONSTRAINED);
}
