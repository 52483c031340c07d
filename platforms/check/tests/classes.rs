//! One test per misuse class: each drives the raw `unsafe` platform methods
//! with the bad arguments the safe types make impossible, and asserts the
//! report (and what the caller got back).
//!
//! The inner platform is the x86-coherent direct platform over host memory,
//! so syncs do no maintenance and every raw call is harmless even if it
//! were forwarded; the tests check what the checker forwards through the
//! results it returns and its live records.

#[cfg(all(feature = "std", target_os = "linux"))]
use dma_check::{classify, MemoryClass};
use dma_check::{Checked, Config, CpuSide, Field, MappingKind, Mode, Operation, Report, SyncPoint};
use dma_coherence::HardwareCoherent;
use dma_core::{
    DeviceConstraints, DmaAlloc, DmaAttrs, DmaDirection, DmaMap, ErrorKind, HostMemory, PhysAddr,
    RawMapping, SgEntry,
};
use dma_direct::DirectPlatform;

type Inner = DirectPlatform<HostMemory, HardwareCoherent>;

fn inner(constraints: DeviceConstraints) -> Inner {
    DirectPlatform::x86_coherent(HostMemory, constraints)
}

fn checked() -> Checked<Inner> {
    Checked::new(inner(DeviceConstraints::UNCONSTRAINED))
}

/// A heap buffer whose address serves as the physical address (HostMemory
/// is identity-mapped). Kept alive by the caller for the mapping's life.
fn buffer(len: usize) -> Vec<u8> {
    vec![0u8; len]
}

fn phys_of(buf: &[u8]) -> PhysAddr {
    PhysAddr::new(buf.as_ptr() as u64)
}

fn map(p: &Checked<Inner>, buf: &[u8], dir: DmaDirection) -> RawMapping {
    let phys = phys_of(buf);
    // SAFETY: the test owns `buf`, keeps it alive past the unmap, and the
    // coherent direct platform neither reads nor writes it.
    let dma = unsafe { p.map(phys, buf.len(), dir, DmaAttrs::empty()) }.unwrap();
    RawMapping {
        phys,
        dma,
        len: buf.len(),
        dir,
        attrs: DmaAttrs::empty(),
    }
}

// ---- unmapping something never mapped or already unmapped --------------

#[test]
fn unmap_of_memory_never_mapped() {
    let p = checked();
    let buf = buffer(64);
    let raw = RawMapping {
        phys: phys_of(&buf),
        dma: dma_core::DmaAddr::new(phys_of(&buf).as_u64()),
        len: 64,
        dir: DmaDirection::ToDevice,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: the checker refuses an unknown mapping before the platform.
    let err = unsafe { p.unmap(&raw) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotMapped);
    let reports = p.take_reports();
    assert_eq!(
        reports,
        [Report::NotMapped {
            op: Operation::Unmap,
            dma: raw.dma,
            len: 64,
            previous: None
        }]
    );
    assert!(reports[0].to_string().contains("never mapped"));
}

#[test]
fn double_unmap_is_reported_and_not_forwarded() {
    let p = checked();
    let buf = buffer(128);
    let raw = map(&p, &buf, DmaDirection::FromDevice);
    // SAFETY: mapped above, unmapped once here.
    unsafe { p.unmap(&raw) }.unwrap();
    // SAFETY: the second unmap is refused by the checker.
    let err = unsafe { p.unmap(&raw) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotMapped);
    let reports = p.take_reports();
    let [Report::NotMapped {
        op: Operation::Unmap,
        previous: Some(prev),
        ..
    }] = reports[..]
    else {
        panic!("expected one NotMapped with history, got {reports:?}");
    };
    assert_eq!(prev.dma, raw.dma);
    assert_eq!(prev.kind, MappingKind::Single);
    assert!(reports[0].to_string().contains("already ended"));
}

// ---- unmapping with a different size, direction or kind -----------------

#[test]
fn unmap_with_a_different_size_forwards_the_record() {
    let p = checked();
    let buf = buffer(256);
    let raw = map(&p, &buf, DmaDirection::ToDevice);
    let wrong = RawMapping { len: 128, ..raw };
    // SAFETY: the checker forwards its own record of the mapping.
    unsafe { p.unmap(&wrong) }.unwrap();
    let reports = p.take_reports();
    assert!(matches!(
        reports[..],
        [Report::Mismatch { op: Operation::Unmap, field: Field::Size(128), mapping }]
            if mapping.len == 256
    ));
    assert!(reports[0].to_string().contains("different size"));
    assert!(p.live_mappings().is_empty(), "the real mapping was ended");
}

#[test]
fn unmap_with_a_different_direction() {
    let p = checked();
    let buf = buffer(256);
    let raw = map(&p, &buf, DmaDirection::ToDevice);
    let wrong = RawMapping {
        dir: DmaDirection::FromDevice,
        ..raw
    };
    // SAFETY: the checker forwards its own record of the mapping.
    unsafe { p.unmap(&wrong) }.unwrap();
    assert!(matches!(
        p.take_reports()[..],
        [Report::Mismatch { op: Operation::Unmap, field: Field::Direction(DmaDirection::FromDevice), mapping }]
            if mapping.dir == DmaDirection::ToDevice
    ));
    assert!(p.live_mappings().is_empty());
}

#[test]
fn unmap_of_an_sg_entry_as_a_single_mapping() {
    let p = checked();
    let (a, b) = (buffer(512), buffer(512));
    let mut sg = [
        SgEntry::new(phys_of(&a), 512),
        SgEntry::new(phys_of(&b), 512),
    ];
    // SAFETY: the test owns both buffers for the mappings' life.
    unsafe { p.map_sg(&mut sg, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap();
    let as_single = sg[0].as_raw(DmaDirection::ToDevice, DmaAttrs::empty());
    // SAFETY: refused: the record is an sg entry.
    let err = unsafe { p.unmap(&as_single) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotMapped);
    assert!(matches!(
        p.take_reports()[..],
        [Report::Mismatch { op: Operation::Unmap, field: Field::Kind(MappingKind::Single), mapping }]
            if mapping.kind == MappingKind::Sg
    ));
    assert_eq!(p.live_mappings().len(), 2, "still mapped: not forwarded");
    // SAFETY: the table as mapped.
    unsafe { p.unmap_sg(&sg, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap();
    assert!(p.reports().is_empty());
}

#[test]
fn unmap_sg_of_a_single_mapping() {
    let p = checked();
    let buf = buffer(64);
    let raw = map(&p, &buf, DmaDirection::ToDevice);
    let sg = [SgEntry {
        phys: raw.phys,
        len: raw.len,
        dma: raw.dma,
    }];
    // SAFETY: refused: the record is a single mapping.
    let err = unsafe { p.unmap_sg(&sg, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotMapped);
    assert!(matches!(
        p.take_reports()[..],
        [Report::Mismatch {
            op: Operation::UnmapSg,
            field: Field::Kind(MappingKind::Sg),
            ..
        }]
    ));
    // SAFETY: the mapping as made.
    unsafe { p.unmap(&raw) }.unwrap();
}

/// Two records at one device address, the older a coherent allocation:
/// a sync names the streaming one, so the checker must pass over the older
/// record (the lookup's shortcut for an address holding one record must
/// not apply here).
#[test]
fn a_sync_finds_the_streaming_record_beside_an_older_coherent_one() {
    let p = checked();
    let region = p.alloc_coherent(4096, DmaAttrs::empty()).unwrap();
    let phys = PhysAddr::new(region.cpu.as_ptr() as u64);
    let dir = DmaDirection::Bidirectional;
    // SAFETY: the region outlives the mapping, which is unmapped before the
    // region is freed; no device is attached.
    let dma = unsafe { p.map(phys, 64, dir, DmaAttrs::empty()) }.unwrap();
    assert_eq!(dma, region.dma, "direct mapping: same device address");
    let raw = RawMapping {
        phys,
        dma,
        len: 64,
        dir,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: the mapping as made, and its whole length.
    unsafe { p.sync_for_cpu(&raw, 0, 64) };
    assert!(p.take_reports().is_empty(), "the sync found its own record");
    // SAFETY: both as made.
    unsafe {
        p.unmap(&raw).unwrap();
        p.free_coherent(region, DmaAttrs::empty()).unwrap();
    }
    assert!(p.reports().is_empty());
}

#[test]
fn free_coherent_of_a_streaming_mapping() {
    let p = checked();
    let region = p.alloc_coherent(4096, DmaAttrs::empty()).unwrap();
    let buf = buffer(64);
    let raw = map(&p, &buf, DmaDirection::Bidirectional);
    let fake = dma_core::CoherentRegion {
        cpu: core::ptr::NonNull::new(buf.as_ptr() as *mut u8).unwrap(),
        dma: raw.dma,
        size: 64,
    };
    // SAFETY: refused: the record is a streaming mapping.
    let err = unsafe { p.free_coherent(fake, DmaAttrs::empty()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotMapped);
    assert!(matches!(
        p.take_reports()[..],
        [Report::Mismatch {
            op: Operation::FreeCoherent,
            field: Field::Kind(MappingKind::Coherent),
            ..
        }]
    ));
    // The coherent region unmapped as a streaming mapping is a kind
    // mismatch too.
    let as_streaming = RawMapping {
        phys: PhysAddr::new(region.cpu.as_ptr() as u64),
        dma: region.dma,
        len: region.size,
        dir: DmaDirection::Bidirectional,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: refused: the record is a coherent allocation.
    assert!(unsafe { p.unmap(&as_streaming) }.is_err());
    assert!(matches!(
        p.take_reports()[..],
        [Report::Mismatch { op: Operation::Unmap, field: Field::Kind(MappingKind::Single), mapping }]
            if mapping.kind == MappingKind::Coherent
    ));
    // SAFETY: both as made.
    unsafe {
        p.unmap(&raw).unwrap();
        p.free_coherent(region, DmaAttrs::empty()).unwrap();
    }
    assert!(p.reports().is_empty());
}

// ---- freeing a coherent allocation with a different CPU address or size ---

#[test]
fn free_coherent_with_a_different_cpu_address_is_not_forwarded() {
    let p = checked();
    let region = p.alloc_coherent(100, DmaAttrs::empty()).unwrap();
    let other = p.alloc_coherent(100, DmaAttrs::empty()).unwrap();
    let wrong = dma_core::CoherentRegion {
        cpu: other.cpu,
        ..region
    };
    // SAFETY: refused: the CPU address does not match the record.
    let err = unsafe { p.free_coherent(wrong, DmaAttrs::empty()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotMapped);
    let reports = p.take_reports();
    assert!(matches!(
        reports[..],
        [Report::Mismatch { op: Operation::FreeCoherent, field: Field::CpuAddress(a), mapping }]
            if a == other.cpu.as_ptr() as usize
                && mapping.cpu == CpuSide::Virt(region.cpu.as_ptr() as usize)
    ));
    assert!(reports[0].to_string().contains("different CPU address"));
    assert_eq!(p.live_mappings().len(), 2, "neither allocation was freed");
    // SAFETY: both as allocated.
    unsafe {
        p.free_coherent(region, DmaAttrs::empty()).unwrap();
        p.free_coherent(other, DmaAttrs::empty()).unwrap();
    }
}

#[test]
fn free_coherent_with_a_different_size_or_attrs_frees_the_record() {
    let p = checked();
    let region = p.alloc_coherent(4096, DmaAttrs::empty()).unwrap();
    let wrong = dma_core::CoherentRegion {
        size: 100,
        ..region
    };
    // SAFETY: the checker forwards its own record (size 4096, no attrs).
    unsafe { p.free_coherent(wrong, DmaAttrs::WRITE_COMBINE) }.unwrap();
    assert!(matches!(
        p.take_reports()[..],
        [
            Report::Mismatch {
                field: Field::Size(100),
                ..
            },
            Report::Mismatch {
                field: Field::Attrs(DmaAttrs::WRITE_COMBINE),
                ..
            },
        ]
    ));
    assert!(p.live_mappings().is_empty());
    // Freed once: a second free is NotMapped.
    // SAFETY: refused by the checker.
    assert!(unsafe { p.free_coherent(region, DmaAttrs::empty()) }.is_err());
    assert!(matches!(
        p.take_reports()[..],
        [Report::NotMapped {
            op: Operation::FreeCoherent,
            previous: Some(_),
            ..
        }]
    ));
}

// ---- a different sg entry count at unmap or sync ------------------------

fn map_table(p: &Checked<Inner>, bufs: &[Vec<u8>], dir: DmaDirection) -> Vec<SgEntry> {
    let mut sg: Vec<SgEntry> = bufs
        .iter()
        .map(|b| SgEntry::new(phys_of(b), b.len()))
        .collect();
    // SAFETY: the test owns the buffers for the mappings' life.
    unsafe { p.map_sg(&mut sg, dir, DmaAttrs::empty()) }.unwrap();
    sg
}

#[test]
fn unmap_sg_with_a_different_entry_count_ends_the_whole_table() {
    let p = checked();
    let bufs = [buffer(256), buffer(256), buffer(256)];
    let sg = map_table(&p, &bufs, DmaDirection::FromDevice);
    // SAFETY: the checker forwards the whole recorded table.
    unsafe { p.unmap_sg(&sg[..2], DmaDirection::FromDevice, DmaAttrs::empty()) }.unwrap();
    let reports = p.take_reports();
    assert!(matches!(
        reports[..],
        [Report::Mismatch { op: Operation::UnmapSg, field: Field::SgCount(2), mapping }]
            if mapping.sg.is_some_and(|s| s.count == 3 && s.index == 0)
    ));
    assert!(reports[0]
        .to_string()
        .contains("different sg entry count (2)"));
    assert!(p.live_mappings().is_empty(), "all three entries unmapped");
}

#[test]
fn sync_sg_with_a_different_entry_count() {
    let p = checked();
    let bufs = [buffer(256), buffer(256), buffer(256)];
    let sg = map_table(&p, &bufs, DmaDirection::FromDevice);
    // SAFETY: live table, device idle.
    unsafe { p.sync_sg_for_cpu(&sg[..1], DmaDirection::FromDevice, DmaAttrs::empty()) };
    assert!(matches!(
        p.take_reports()[..],
        [Report::Mismatch {
            op: Operation::SyncForCpu,
            field: Field::SgCount(1),
            ..
        }]
    ));
    // The right count is quiet.
    // SAFETY: `sg` is the live table `map_table` mapped, and no device
    // is attached, so it is idle.
    unsafe { p.sync_sg_for_cpu(&sg, DmaDirection::FromDevice, DmaAttrs::empty()) };
    assert!(p.reports().is_empty());
    // SAFETY: the table as mapped.
    unsafe { p.unmap_sg(&sg, DmaDirection::FromDevice, DmaAttrs::empty()) }.unwrap();
}

// ---- sync of unmapped memory or outside the mapped range -----------------

#[test]
fn sync_of_unmapped_memory() {
    let p = checked();
    let buf = buffer(64);
    let raw = map(&p, &buf, DmaDirection::FromDevice);
    // SAFETY: mapped above and unmapped once.
    unsafe { p.unmap(&raw) }.unwrap();
    // SAFETY: refused by the checker.
    unsafe { p.sync_for_cpu(&raw, 0, 64) };
    assert!(matches!(
        p.take_reports()[..],
        [Report::NotMapped {
            op: Operation::SyncForCpu,
            previous: Some(_),
            ..
        }]
    ));
}

#[test]
fn sync_outside_the_mapped_range() {
    let p = checked();
    let buf = buffer(64);
    let raw = map(&p, &buf, DmaDirection::Bidirectional);
    // SAFETY: refused by the checker: 32 + 64 > 64.
    unsafe { p.sync_for_device(&raw, 32, 64) };
    // SAFETY: refused: the end overflows.
    unsafe { p.sync_for_cpu(&raw, usize::MAX, 2) };
    let reports = p.take_reports();
    assert!(matches!(
        reports[..],
        [
            Report::SyncOutOfRange {
                op: Operation::SyncForDevice,
                offset: 32,
                len: 64,
                ..
            },
            Report::SyncOutOfRange {
                op: Operation::SyncForCpu,
                offset: usize::MAX,
                len: 2,
                ..
            },
        ]
    ));
    assert!(reports[0].to_string().contains("at offset 0x20 leaves"));
    // SAFETY: as mapped.
    unsafe { p.unmap(&raw) }.unwrap();
}

// ---- sync naming a different direction ----------------------------------

#[test]
fn sync_naming_a_different_direction() {
    let p = checked();
    let (a, b) = (buffer(64), buffer(64));
    let tx = map(&p, &a, DmaDirection::ToDevice);
    let rx = map(&p, &b, DmaDirection::FromDevice);
    // Linux's check_sync accepts both: a sync naming the mapped direction.
    // SAFETY: live mappings, whole range; the coherent platform does nothing.
    unsafe {
        p.sync_for_cpu(&tx, 0, 64);
        p.sync_for_device(&rx, 0, 64);
    }
    assert!(p.take_reports().is_empty());
    // A sync whose RawMapping carries a different direction than mapped.
    let lying = RawMapping {
        dir: DmaDirection::Bidirectional,
        ..tx
    };
    // SAFETY: reported, then forwarded with the recorded mapping.
    unsafe { p.sync_for_cpu(&lying, 0, 64) };
    let reports = p.take_reports();
    assert!(matches!(
        reports[..],
        [
            Report::Mismatch {
                field: Field::Direction(DmaDirection::Bidirectional),
                ..
            },
            Report::SyncWrongDirection { sync: SyncPoint::ForCpu, mapping },
        ] if mapping.dir == DmaDirection::ToDevice
    ));
    assert!(reports[1].to_string().contains("device only reads"));
    // SAFETY: as mapped.
    unsafe {
        p.unmap(&tx).unwrap();
        p.unmap(&rx).unwrap();
    }
}

// ---- stack and read-only memory ----------------------------------------

#[cfg(all(feature = "std", target_os = "linux"))]
static READ_ONLY: [u8; 256] = [0x5a; 256];

#[cfg(all(feature = "std", target_os = "linux"))]
#[test]
#[cfg_attr(
    miri,
    ignore = "the classifier asks pthread and /proc, which miri cannot"
)]
fn mapping_stack_memory_is_refused() {
    let p = Checked::with_config(
        inner(DeviceConstraints::UNCONSTRAINED),
        Config::new().classifier(classify::host_linux),
    );
    let on_stack = [0u8; 64];
    let phys = PhysAddr::new(on_stack.as_ptr() as u64);
    // SAFETY: refused before the platform sees it.
    let err = unsafe { p.map(phys, 64, DmaDirection::FromDevice, DmaAttrs::empty()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    let reports = p.take_reports();
    assert_eq!(
        reports,
        [Report::BadMemory {
            op: Operation::Map,
            phys,
            len: 64,
            class: MemoryClass::Stack
        }]
    );
    assert!(reports[0].to_string().contains("stack memory refused"));
    // Heap memory is ordinary.
    let heap = buffer(64);
    let raw = map(&p, &heap, DmaDirection::FromDevice);
    // SAFETY: as mapped.
    unsafe { p.unmap(&raw) }.unwrap();
    assert!(p.reports().is_empty());
}

#[cfg(all(feature = "std", target_os = "linux"))]
#[test]
#[cfg_attr(
    miri,
    ignore = "the classifier asks pthread and /proc, which miri cannot"
)]
fn mapping_read_only_memory_is_refused() {
    let p = Checked::with_config(
        inner(DeviceConstraints::UNCONSTRAINED),
        Config::new().classifier(classify::host_linux),
    );
    let phys = PhysAddr::new(READ_ONLY.as_ptr() as u64);
    let mut sg = [SgEntry::new(phys, READ_ONLY.len())];
    // SAFETY: refused before the platform sees it.
    let err = unsafe { p.map_sg(&mut sg, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert_eq!(
        p.take_reports(),
        [Report::BadMemory {
            op: Operation::MapSg,
            phys,
            len: 256,
            class: MemoryClass::ReadOnly
        }]
    );
    assert!(p.live_mappings().is_empty());
}

// ---- sg segments against the device's limits ----------------------------

#[test]
fn sg_segment_longer_than_the_device_maximum() {
    let constraints = DeviceConstraints::builder()
        .max_segment_size(1024)
        .build()
        .unwrap();
    let p = Checked::new(inner(constraints));
    let bufs = [buffer(1024), buffer(2048)];
    let sg = map_table(&p, &bufs, DmaDirection::ToDevice);
    let reports = p.take_reports();
    assert!(matches!(
        reports[..],
        [Report::SegmentTooLong { max: 1024, mapping }] if mapping.len == 2048
            && mapping.sg.is_some_and(|s| s.index == 1)
    ));
    assert!(reports[0]
        .to_string()
        .contains("longer than the device's maximum"));
    // SAFETY: the table as mapped.
    unsafe { p.unmap_sg(&sg, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap();
}

#[test]
fn sg_segment_crossing_the_device_boundary() {
    let constraints = DeviceConstraints::builder().boundary(4096).build().unwrap();
    let p = Checked::new(inner(constraints));
    // A page-aligned host page split so that one entry straddles a 4 KiB
    // line: 8 KiB aligned to 4 KiB, entry at offset 3 KiB, 2 KiB long.
    let pages = p.alloc_coherent(8192, DmaAttrs::empty()).unwrap();
    let base = pages.cpu.as_ptr() as u64;
    let mut sg = [
        SgEntry::new(PhysAddr::new(base), 1024),
        SgEntry::new(PhysAddr::new(base + 3072), 2048),
    ];
    // SAFETY: the region is the test's own, alive until freed below.
    unsafe { p.map_sg(&mut sg, DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap();
    assert!(matches!(
        p.take_reports()[..],
        [Report::SegmentCrossesBoundary { boundary: 4096, mapping }]
            if mapping.dma.as_u64() == base + 3072
    ));
    // SAFETY: as mapped and allocated.
    unsafe {
        p.unmap_sg(&sg, DmaDirection::ToDevice, DmaAttrs::empty())
            .unwrap();
        p.free_coherent(pages, DmaAttrs::empty()).unwrap();
    }
}

// ---- overlapping device-writable mappings of one cache line ---------------

#[test]
fn device_writable_mappings_sharing_a_cache_line() {
    let p = Checked::with_config(
        inner(DeviceConstraints::UNCONSTRAINED),
        Config::new().cache_line(64),
    );
    let pages = p.alloc_coherent(4096, DmaAttrs::empty()).unwrap();
    let base = pages.cpu.as_ptr() as u64;
    let map_at = |off: u64, len: usize, dir| {
        let phys = PhysAddr::new(base + off);
        // SAFETY: inside the test's own region, alive until freed below.
        let dma = unsafe { p.map(phys, len, dir, DmaAttrs::empty()) }.unwrap();
        RawMapping {
            phys,
            dma,
            len,
            dir,
            attrs: DmaAttrs::empty(),
        }
    };
    let a = map_at(0, 100, DmaDirection::FromDevice); // lines 0..=1
    let b = map_at(128, 64, DmaDirection::FromDevice); // line 2: no overlap
    let tx = map_at(100, 20, DmaDirection::ToDevice); // readers are not tracked
    assert!(p.reports().is_empty());
    let c = map_at(120, 8, DmaDirection::Bidirectional); // line 1, shared with a
    let reports = p.take_reports();
    assert!(matches!(
        reports[..],
        [Report::CacheLineOverlap { mapping, existing, line, line_size: 64 }]
            if mapping.dma == c.dma && existing.dma == a.dma && line.as_u64() == base + 64
    ));
    assert!(reports[0]
        .to_string()
        .contains("shares the 64-byte cache line"));
    // Once `a` is unmapped its lines are free again.
    // SAFETY: as mapped.
    unsafe {
        p.unmap(&a).unwrap();
        p.unmap(&c).unwrap();
    }
    let d = map_at(64, 16, DmaDirection::FromDevice);
    assert!(p.reports().is_empty());
    // SAFETY: as mapped and allocated.
    unsafe {
        for m in [b, tx, d] {
            p.unmap(&m).unwrap();
        }
        p.free_coherent(pages, DmaAttrs::empty()).unwrap();
    }
}

/// A mapping inside one cache line frees that line at unmap, so a later
/// clash is reported against the live mapping there, not hidden behind the
/// ended one.
#[test]
fn a_one_line_mapping_frees_its_line_at_unmap() {
    let p = Checked::with_config(
        inner(DeviceConstraints::UNCONSTRAINED),
        Config::new().cache_line(64),
    );
    let pages = p.alloc_coherent(4096, DmaAttrs::empty()).unwrap();
    let base = pages.cpu.as_ptr() as u64;
    let map_at = |off: u64| {
        let phys = PhysAddr::new(base + off);
        // SAFETY: inside the test's own region, alive until freed below.
        let dma = unsafe { p.map(phys, 16, DmaDirection::FromDevice, DmaAttrs::empty()) }.unwrap();
        RawMapping {
            phys,
            dma,
            len: 16,
            dir: DmaDirection::FromDevice,
            attrs: DmaAttrs::empty(),
        }
    };
    let a = map_at(64); // line 1 alone
                        // SAFETY: as mapped.
    unsafe { p.unmap(&a).unwrap() };
    let b = map_at(80); // line 1 again, now the only one there
    assert!(p.reports().is_empty(), "{:?}", p.reports());
    let c = map_at(96); // line 1, shared with b
    let reports = p.take_reports();
    assert!(
        matches!(
            reports[..],
            [Report::CacheLineOverlap { mapping, existing, .. }]
                if mapping.dma == c.dma && existing.dma == b.dma
        ),
        "{reports:?}"
    );
    // SAFETY: as mapped and allocated.
    unsafe {
        for m in [b, c] {
            p.unmap(&m).unwrap();
        }
        p.free_coherent(pages, DmaAttrs::empty()).unwrap();
    }
}

/// Lines are counted in the configured size even when it is not a power of
/// two (the usual power-of-two size takes a shift instead of a division).
#[test]
fn a_cache_line_size_that_is_not_a_power_of_two() {
    let p = Checked::with_config(
        inner(DeviceConstraints::UNCONSTRAINED),
        Config::new().cache_line(96),
    );
    let pages = p.alloc_coherent(4096, DmaAttrs::empty()).unwrap();
    let base = pages.cpu.as_ptr() as u64;
    // The first 96-byte line boundary in the region.
    let start = base + (96 - base % 96) % 96;
    let map_at = |at: u64, len: usize| {
        let phys = PhysAddr::new(at);
        // SAFETY: inside the test's own region, alive until freed below.
        let dma = unsafe { p.map(phys, len, DmaDirection::FromDevice, DmaAttrs::empty()) }.unwrap();
        RawMapping {
            phys,
            dma,
            len,
            dir: DmaDirection::FromDevice,
            attrs: DmaAttrs::empty(),
        }
    };
    let a = map_at(start, 100); // lines 0..=1
    let b = map_at(start + 192, 8); // line 2: no overlap
    assert!(p.reports().is_empty(), "{:?}", p.reports());
    let c = map_at(start + 100, 8); // line 1, shared with a
    let reports = p.take_reports();
    assert!(
        matches!(
            reports[..],
            [Report::CacheLineOverlap { mapping, existing, line, line_size: 96 }]
                if mapping.dma == c.dma && existing.dma == a.dma && line.as_u64() == start + 96
        ),
        "{reports:?}"
    );
    // SAFETY: as mapped and allocated.
    unsafe {
        for m in [a, b, c] {
            p.unmap(&m).unwrap();
        }
        p.free_coherent(pages, DmaAttrs::empty()).unwrap();
    }
    assert!(p.reports().is_empty());
}

// ---- leaks at release ----------------------------------------------------

#[test]
fn mappings_live_when_the_device_is_released() {
    let p = checked();
    let buf = buffer(64);
    let raw = map(&p, &buf, DmaDirection::ToDevice);
    let region = p.alloc_coherent(64, DmaAttrs::empty()).unwrap();
    assert_eq!(p.release(), 2);
    let reports = p.take_reports();
    assert!(matches!(
        reports[..],
        [Report::Leak { mapping: m1 }, Report::Leak { mapping: m2 }]
            if m1.dma == raw.dma && m1.kind == MappingKind::Single
                && m2.dma == region.dma && m2.kind == MappingKind::Coherent
    ));
    assert!(reports[0]
        .to_string()
        .contains("still live when the device was released"));
    assert!(p.live_mappings().is_empty());
    // Leaked on purpose: free the host pages by hand so the test is clean.
    // SAFETY: the region came from this inner platform and is unused.
    unsafe { p.inner().free_coherent(region, DmaAttrs::empty()) }.unwrap();
}

#[test]
fn dropping_the_checker_reports_leaks_to_the_hook() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LEAKS: AtomicUsize = AtomicUsize::new(0);
    fn hook(r: &Report) {
        if matches!(r, Report::Leak { .. }) {
            LEAKS.fetch_add(1, Ordering::SeqCst);
        }
    }
    let buf = buffer(64);
    {
        let p = Checked::with_config(
            inner(DeviceConstraints::UNCONSTRAINED),
            Config::new().on_report(hook),
        );
        map(&p, &buf, DmaDirection::FromDevice);
    }
    assert_eq!(LEAKS.load(Ordering::SeqCst), 1);
}

// ---- panic mode ------------------------------------------------------------

#[test]
#[should_panic(expected = "DMA-API: unmap of memory that is not mapped")]
fn panic_mode_panics_on_a_report() {
    let p = Checked::panicking(inner(DeviceConstraints::UNCONSTRAINED));
    let buf = buffer(64);
    let raw = map(&p, &buf, DmaDirection::ToDevice);
    // SAFETY: mapped above, unmapped once.
    unsafe { p.unmap(&raw) }.unwrap();
    // SAFETY: the checker panics before forwarding.
    let _ = unsafe { p.unmap(&raw) };
}

#[test]
#[should_panic(expected = "still live when the device was released")]
fn panic_mode_panics_on_a_leak_at_drop() {
    let buf = buffer(64);
    let p = checked();
    p.set_mode(Mode::Panic);
    map(&p, &buf, DmaDirection::FromDevice);
    drop(p);
}

/// Needs `std` to see that the thread is already unwinding.
#[cfg(feature = "std")]
#[test]
fn panic_mode_stays_quiet_while_already_unwinding() {
    let buf = buffer(64);
    let result = std::panic::catch_unwind(|| {
        let p = Checked::panicking(inner(DeviceConstraints::UNCONSTRAINED));
        map(&p, &buf, DmaDirection::FromDevice);
        panic!("the test's own failure");
    });
    // A second panic in Drop would have aborted the process.
    let msg = result.unwrap_err();
    assert_eq!(msg.downcast_ref::<&str>(), Some(&"the test's own failure"));
}
