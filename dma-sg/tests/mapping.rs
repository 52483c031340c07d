//! Mapping tables through platforms: the direct x86-coherent preset, a
//! recording wrapper that shows exactly which platform calls are made, and
//! an IOVA-style wrapper that places a table in one contiguous range.

mod common;

use core::cell::RefCell;
use core::ptr::NonNull;

use common::{platform, Platform};
use dma_core::{
    Bidirectional, Cacheability, DeviceConstraints, DmaAddr, DmaAttrs, DmaDirection, DmaMap,
    ErrorKind, FromDevice, HostMemory, PhysAddr, PhysMemory, RawMapping, Result, SgEntry, ToDevice,
};
use dma_sg::{DmaSegment, ExternalPages, MappedSgTable, SgLimits, SgTable};

const P: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Map(u64, usize),
    Unmap(u64, usize),
    SyncCpu(u64, usize, usize),
    SyncDevice(u64, usize, usize),
}

/// Forwards to an inner platform and records every call. With `iova`
/// set, `map` hands out back-to-back device addresses from there instead
/// (as an IOMMU's `map_sg` does); nothing dereferences them in these tests.
struct Recorder {
    inner: Platform,
    calls: RefCell<Vec<Call>>,
    iova: Option<RefCell<u64>>,
}

impl Recorder {
    fn new(c: DeviceConstraints, iova: Option<u64>) -> Self {
        Self {
            inner: platform(c),
            calls: RefCell::new(Vec::new()),
            iova: iova.map(RefCell::new),
        }
    }

    fn take(&self) -> Vec<Call> {
        core::mem::take(&mut *self.calls.borrow_mut())
    }
}

// SAFETY: forwards to the direct platform, which upholds the contract; the
// IOVA mode changes only the addresses reported, which these tests never
// give to a device.
unsafe impl DmaMap for Recorder {
    fn constraints(&self) -> &DeviceConstraints {
        self.inner.constraints()
    }
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        self.inner.virt_to_phys(cpu, len)
    }
    fn dma_alignment(&self) -> usize {
        self.inner.dma_alignment()
    }
    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<DmaAddr> {
        self.calls.borrow_mut().push(Call::Map(phys.as_u64(), len));
        // SAFETY: the caller's promise, passed on.
        let dma = unsafe { self.inner.map(phys, len, dir, attrs)? };
        Ok(match &self.iova {
            Some(next) => {
                let mut n = next.borrow_mut();
                let d = DmaAddr::new(*n + phys.as_u64() % P as u64);
                *n += (phys.as_u64() % P as u64 + len as u64).next_multiple_of(P as u64);
                d
            }
            None => dma,
        })
    }
    unsafe fn unmap(&self, m: &RawMapping) -> Result<()> {
        self.calls
            .borrow_mut()
            .push(Call::Unmap(m.phys.as_u64(), m.len));
        // SAFETY: the caller's promise, passed on.
        unsafe { self.inner.unmap(m) }
    }
    unsafe fn sync_for_cpu(&self, m: &RawMapping, offset: usize, len: usize) {
        self.calls
            .borrow_mut()
            .push(Call::SyncCpu(m.phys.as_u64(), offset, len));
        // SAFETY: the caller's promise, passed on.
        unsafe { self.inner.sync_for_cpu(m, offset, len) }
    }
    unsafe fn sync_for_device(&self, m: &RawMapping, offset: usize, len: usize) {
        self.calls
            .borrow_mut()
            .push(Call::SyncDevice(m.phys.as_u64(), offset, len));
        // SAFETY: the caller's promise, passed on.
        unsafe { self.inner.sync_for_device(m, offset, len) }
    }
}

fn limits(c: &DeviceConstraints) -> SgLimits {
    SgLimits::new(P, c).unwrap()
}

#[test]
fn direct_mapping_gives_identity_segments_and_returns_the_buffer() {
    let c = DeviceConstraints::builder()
        .max_segment_size(2 * P as u64)
        .build()
        .unwrap();
    let p = platform(c);
    let data: Vec<u8> = (0..5 * P + 100).map(|i| i as u8).collect();
    let mut m = MappedSgTable::<_, ToDevice, _, _>::map(&p, data.clone(), limits(&c)).unwrap();
    for e in m.entries() {
        assert_eq!(
            e.dma.as_u64(),
            e.phys.as_u64(),
            "x86: device address = physical"
        );
        assert!(e.len <= 2 * P);
    }
    assert_eq!(m.total_len(), data.len() as u64);
    assert_eq!(m.segments().count(), m.segment_count());
    assert_eq!(m.segments().map(|s| s.len).sum::<u64>(), data.len() as u64);
    // The device reads exactly the buffer's bytes, in order, through the segments.
    let mut seen = Vec::new();
    for s in m.segments() {
        for i in 0..s.len {
            // SAFETY: the segment lies inside the mapped Vec, which the mapping owns.
            seen.push(unsafe { ((s.addr.as_u64() + i) as usize as *const u8).read_volatile() });
        }
    }
    assert_eq!(seen, data);
    m.write(3, &[0xee; 4]).unwrap();
    let mut back = [0u8; 6];
    m.read(2, &mut back).unwrap();
    assert_eq!(back, [2, 0xee, 0xee, 0xee, 0xee, 7]);
    m.sync_for_device();
    let buf = m.unmap().unwrap();
    assert_eq!(&buf[3..7], &[0xee; 4]);
}

#[test]
fn syncs_cover_exactly_the_requested_bytes_per_entry() {
    // Two-page entries so a range crosses entries.
    let c = DeviceConstraints::builder()
        .max_segment_size(2 * P as u64)
        .build()
        .unwrap();
    let rec = Recorder::new(c, None);
    let buf = dma_core::DmaBuf::new(6 * P, P).unwrap();
    let base = buf.as_ptr() as u64;
    let mut m = MappedSgTable::<_, Bidirectional, _, _>::map(&rec, buf, limits(&c)).unwrap();
    assert_eq!(
        rec.take(),
        [0, 2, 4]
            .map(|k| Call::Map(base + k * P as u64, 2 * P))
            .to_vec()
    );
    // Bytes 3000..(2P + 10): tail of entry 0, head of entry 1.
    m.sync_range_for_cpu(3000, (2 * P + 10 - 3000) as u64)
        .unwrap();
    assert_eq!(
        rec.take(),
        [
            Call::SyncCpu(base, 3000, 2 * P - 3000),
            Call::SyncCpu(base + 2 * P as u64, 0, 10)
        ]
    );
    m.sync_range_for_device(5 * P as u64, P as u64).unwrap();
    assert_eq!(rec.take(), [Call::SyncDevice(base + 4 * P as u64, P, P)]);
    m.sync_for_cpu();
    assert_eq!(rec.take().len(), 3);
    let kind = m
        .sync_range_for_cpu(6 * P as u64 - 1, 2)
        .unwrap_err()
        .kind();
    assert_eq!(kind, ErrorKind::OutOfRange);
    assert_eq!(
        m.sync_range_for_device(u64::MAX, 2).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    assert!(rec.take().is_empty(), "a refused range syncs nothing");
    drop(m);
    assert_eq!(
        rec.take(),
        [0, 2, 4]
            .map(|k| Call::Unmap(base + k * P as u64, 2 * P))
            .to_vec(),
        "drop unmaps every entry"
    );
}

#[test]
fn iova_placement_merges_entries_into_few_device_segments() {
    // Scattered pages, laid out back to back by the "IOMMU".
    let c = DeviceConstraints::builder()
        .boundary(1 << 16)
        .max_segments(2)
        .build()
        .unwrap();
    let rec = Recorder::new(c, Some(0x100_0000 - 3 * P as u64));
    let mem = HostMemory;
    let pages: Vec<_> = (0..8)
        .map(|_| mem.alloc_pages(1, Cacheability::Cached, u64::MAX).unwrap())
        .collect();
    // Every other page, so none are physically adjacent to their neighbour here.
    let phys: Vec<PhysAddr> = pages.iter().step_by(2).map(|p| p.phys).collect();
    let table = SgTable::from_pages(limits(&c).translated(), &phys, 0, 4 * P).unwrap();
    // SAFETY: the pages were allocated above, are not touched while mapped,
    // and are freed only after the table is unmapped.
    let m = unsafe {
        MappedSgTable::<ExternalPages, FromDevice, _, _>::map_pages(&rec, table, DmaAttrs::empty())
    }
    .unwrap();
    // Contiguous IOVAs from 0xffd000: three pages up to the 64 KiB line, then one.
    let segs: Vec<DmaSegment> = m.segments().collect();
    assert_eq!(
        segs,
        [
            DmaSegment::new(DmaAddr::new(0xffd000), 3 * P as u64),
            DmaSegment::new(DmaAddr::new(0x100_0000), P as u64)
        ]
    );
    assert_eq!(m.segment_count(), 2);
    let table = m.unmap().unwrap();
    assert_eq!(table.entries().len(), 4);
    for p in pages {
        // SAFETY: allocated above, unmapped, freed once.
        unsafe { mem.free_pages(p) };
    }
}

#[test]
fn too_many_device_segments_unmaps_and_gives_everything_back() {
    // Direct mapping of scattered pages: four segments, device takes two.
    let c = DeviceConstraints::builder()
        .max_segments(2)
        .build()
        .unwrap();
    let rec = Recorder::new(c, None);
    let mem = HostMemory;
    let pages: Vec<_> = (0..8)
        .map(|_| mem.alloc_pages(1, Cacheability::Cached, u64::MAX).unwrap())
        .collect();
    let mut phys: Vec<PhysAddr> = pages.iter().map(|p| p.phys).collect();
    phys.sort();
    // Sorted distinct pages two apart are never adjacent: three segments.
    let scattered = [phys[0], phys[2], phys[4]];
    let n = scattered.len();
    let table = SgTable::from_pages(limits(&c).translated(), &scattered, 0, n * P).unwrap();
    // SAFETY: our own pages, untouched while mapped; freed after.
    let err = unsafe {
        MappedSgTable::<ExternalPages, ToDevice, _, _>::map_pages(&rec, table, DmaAttrs::empty())
    }
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManySegments);
    assert_eq!(err.buffer.entries().len(), n, "the table comes back");
    let calls = rec.take();
    let maps = calls.iter().filter(|c| matches!(c, Call::Map(..))).count();
    let unmaps = calls
        .iter()
        .filter(|c| matches!(c, Call::Unmap(..)))
        .count();
    assert_eq!((maps, unmaps), (n, n), "nothing stays mapped");
    for p in pages {
        // SAFETY: allocated above, never mapped now, freed once.
        unsafe { mem.free_pages(p) };
    }
}

#[test]
fn map_errors_return_the_buffer() {
    let c = DeviceConstraints::UNCONSTRAINED;
    let p = platform(c);
    let e = MappedSgTable::<_, ToDevice, _, _>::map(&p, Vec::<u8>::new(), limits(&c)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ZeroSize);
    assert!(e.buffer.is_empty());
    // A device with a 12-bit mask cannot reach any heap page.
    let tiny = DeviceConstraints::builder().addr_bits(12).build().unwrap();
    let e = MappedSgTable::<_, ToDevice, _, _>::map(&p, vec![1u8; 64], limits(&tiny)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    assert_eq!(e.buffer, vec![1u8; 64]);
    // An empty external table.
    let empty = SgTable::new(limits(&c));
    // SAFETY: the table describes no pages.
    let e = unsafe {
        MappedSgTable::<ExternalPages, ToDevice, _, _>::map_pages(&p, empty, DmaAttrs::empty())
    }
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ZeroSize);
}

#[test]
fn cpu_access_is_bounds_checked() {
    let c = DeviceConstraints::UNCONSTRAINED;
    let p = platform(c);
    let mut tx = MappedSgTable::<_, ToDevice, _, _>::map(&p, vec![0u8; 100], limits(&c)).unwrap();
    assert_eq!(
        tx.write(99, &[1, 2]).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    let mut m = MappedSgTable::<_, FromDevice, _, _>::map(&p, vec![0u8; 100], limits(&c)).unwrap();
    let mut two = [0u8; 2];
    assert_eq!(
        m.read(usize::MAX, &mut two).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    m.sync_range_for_cpu(0, 100).unwrap();
    let _ = format!("{m:?}");
}

#[test]
fn fixed_storage_tables_map_too() {
    let c = DeviceConstraints::UNCONSTRAINED;
    let p = platform(c);
    let table = SgTable::new_in(dma_sg::SgArray::<4>::new(), limits(&c));
    let buf: Box<[u8]> = vec![9u8; 3 * P].into_boxed_slice();
    let m = MappedSgTable::<_, ToDevice, _, _>::map_in(&p, buf, table, DmaAttrs::empty()).unwrap();
    assert!(m.entries().len() <= 4);
    let entries: Vec<SgEntry> = m.entries().to_vec();
    assert_eq!(entries.iter().map(|e| e.len).sum::<usize>(), 3 * P);
    let buf = m.unmap().unwrap();
    assert_eq!(buf.len(), 3 * P);
}
