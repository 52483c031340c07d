//! Sync directions (issue 11, finding 14): the checker accepts exactly what
//! Linux's `check_sync` accepts, reports what it rejects, and still syncs
//! the recorded mapping whenever the platform alone would have synced, so
//! checking never makes a driver worse off. The inner platform records every
//! sync it is given.

use std::ptr::NonNull;
use std::sync::Mutex;

use dma_check::{Checked, Field, Operation, Report, SyncPoint};
use dma_core::{
    DeviceConstraints, DmaAddr, DmaAttrs, DmaBuf, DmaDirection, DmaMap, FromDevice, HostMemory,
    PhysAddr, RawMapping, Result, StreamingMapping,
};
use dma_direct::DirectPlatform;
use dma_sg::{MappedSgTable, SgLimits};
use DmaDirection::{Bidirectional, FromDevice as From, ToDevice as To};

type Direct = DirectPlatform<HostMemory, dma_coherence::HardwareCoherent>;

/// A sync the inner platform was given.
type Sync = (SyncPoint, RawMapping, usize, usize);

/// The x86-coherent direct platform, recording the syncs it is given.
struct Recording {
    inner: Direct,
    syncs: Mutex<Vec<Sync>>,
}

impl Recording {
    fn new() -> Self {
        Self {
            inner: DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED),
            syncs: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Vec<Sync> {
        std::mem::take(&mut self.syncs.lock().unwrap())
    }
}

// SAFETY: every call is forwarded unchanged to the direct platform; the
// record is kept on the side.
unsafe impl DmaMap for Recording {
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
        // SAFETY: the caller's promise, passed on.
        unsafe { self.inner.map(phys, len, dir, attrs) }
    }

    unsafe fn unmap(&self, mapping: &RawMapping) -> Result<()> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.inner.unmap(mapping) }
    }

    unsafe fn sync_for_cpu(&self, mapping: &RawMapping, offset: usize, len: usize) {
        let sync = (SyncPoint::ForCpu, *mapping, offset, len);
        self.syncs.lock().unwrap().push(sync);
        // SAFETY: the caller's promise, passed on.
        unsafe { self.inner.sync_for_cpu(mapping, offset, len) }
    }

    unsafe fn sync_for_device(&self, mapping: &RawMapping, offset: usize, len: usize) {
        let sync = (SyncPoint::ForDevice, *mapping, offset, len);
        self.syncs.lock().unwrap().push(sync);
        // SAFETY: the caller's promise, passed on.
        unsafe { self.inner.sync_for_device(mapping, offset, len) }
    }
}

fn map(p: &Checked<Recording>, buf: &[u8], dir: DmaDirection) -> RawMapping {
    let phys = PhysAddr::new(buf.as_ptr() as u64);
    // SAFETY: the test owns `buf` and keeps it alive past the unmap; the
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

fn sync(p: &Checked<Recording>, point: SyncPoint, raw: &RawMapping) {
    // SAFETY: the mapping is live and 0..len is all of it; the coherent
    // direct platform does nothing on a sync.
    unsafe {
        match point {
            SyncPoint::ForCpu => p.sync_for_cpu(raw, 0, raw.len),
            SyncPoint::ForDevice => p.sync_for_device(raw, 0, raw.len),
        }
    }
}

/// Linux's `check_sync`, written out case by case: the reports for a sync
/// at `point` naming `given` of a mapping made with `mapped`.
fn linux_reports(mapped: DmaDirection, given: DmaDirection, point: SyncPoint) -> Vec<&'static str> {
    match (mapped, given, point) {
        (Bidirectional, _, _) => vec![],
        (m, g, _) if m == g => vec![],
        (To, Bidirectional, SyncPoint::ForCpu) => vec!["direction", "read-only for cpu"],
        (From, Bidirectional, SyncPoint::ForDevice) => vec!["direction", "write-only to device"],
        (To, From, SyncPoint::ForCpu) => vec!["direction", "read-only for cpu"],
        (From, To, SyncPoint::ForDevice) => vec!["direction", "write-only to device"],
        _ => vec!["direction"],
    }
}

/// The reports' kinds, checking each names the mapping as mapped.
fn kinds(reports: &[Report], mapped: DmaDirection) -> Vec<&'static str> {
    reports
        .iter()
        .map(|r| match r {
            Report::Mismatch {
                field: Field::Direction(_),
                mapping,
                ..
            } if mapping.dir == mapped => "direction",
            Report::SyncWrongDirection {
                sync: SyncPoint::ForCpu,
                mapping,
            } if mapping.dir == mapped => "read-only for cpu",
            Report::SyncWrongDirection {
                sync: SyncPoint::ForDevice,
                mapping,
            } if mapping.dir == mapped => "write-only to device",
            other => panic!("unexpected report {other}"),
        })
        .collect()
}

#[test]
fn every_direction_pair_is_judged_as_linux_judges_it_and_synced_with_the_record() {
    let p = Checked::new(Recording::new());
    let buf = vec![0u8; 256];
    for mapped in [To, From, Bidirectional] {
        let raw = map(&p, &buf, mapped);
        for given in [To, From, Bidirectional] {
            for point in [SyncPoint::ForCpu, SyncPoint::ForDevice] {
                sync(&p, point, &RawMapping { dir: given, ..raw });
                let reports = p.take_reports();
                assert_eq!(
                    kinds(&reports, mapped),
                    linux_reports(mapped, given, point),
                    "{mapped:?} mapping, {point:?} sync naming {given:?}"
                );
                // Reported or not, the platform alone would have synced, so
                // the checker syncs: with its own record of the mapping.
                assert_eq!(
                    p.inner().take(),
                    [(point, raw, 0, raw.len)],
                    "{mapped:?} mapping, {point:?} sync naming {given:?}"
                );
            }
        }
        // SAFETY: mapped above, unmapped once.
        unsafe { p.unmap(&raw) }.unwrap();
    }
    assert!(p.take_reports().is_empty());
}

#[test]
fn a_sync_outside_the_mapping_is_reported_and_not_forwarded() {
    let p = Checked::new(Recording::new());
    let buf = vec![0u8; 64];
    let raw = map(&p, &buf, From);
    // SAFETY: refused by the checker before the platform.
    unsafe { p.sync_for_device(&raw, 32, 64) };
    assert!(matches!(
        p.take_reports()[..],
        [Report::SyncOutOfRange {
            op: Operation::SyncForDevice,
            offset: 32,
            len: 64,
            ..
        }]
    ));
    assert!(p.inner().take().is_empty());
    // SAFETY: as mapped.
    unsafe { p.unmap(&raw) }.unwrap();
}

#[test]
fn a_from_device_mapping_is_handed_back_after_the_cpu_read_it() {
    let p = Checked::new(Recording::new());
    let mut rx = StreamingMapping::<_, FromDevice, _>::map(&p, vec![0u8; 2048]).unwrap();
    let raw = *rx.raw();
    for _ in 0..3 {
        // ... the device writes ...
        rx.sync_for_cpu();
        let mut head = [0u8; 14];
        rx.read(0, &mut head).unwrap();
        rx.sync_for_device();
        rx.sync_range_for_device(0, 14).unwrap();
    }
    let _ = rx.unmap().unwrap();
    assert!(p.take_reports().is_empty(), "{:?}", p.reports());
    let syncs = p.inner().take();
    let expected: Vec<Sync> = (0..3)
        .flat_map(|_| {
            [
                (SyncPoint::ForCpu, raw, 0, 2048),
                (SyncPoint::ForDevice, raw, 0, 2048),
                (SyncPoint::ForDevice, raw, 0, 14),
            ]
        })
        .collect();
    assert_eq!(syncs, expected);
}

#[test]
fn a_from_device_table_is_handed_back_after_the_cpu_read_it() {
    let p = Checked::new(Recording::new());
    let limits = SgLimits::unconstrained(4096).unwrap();
    let buffer = DmaBuf::new(3 * 4096, 4096).unwrap();
    let mut rx = MappedSgTable::<_, FromDevice, _, _>::map(&p, buffer, limits)
        .map_err(|e| e.error)
        .unwrap();
    let entries = rx.entries().to_vec();
    rx.sync_for_cpu();
    rx.sync_for_device();
    rx.sync_range_for_device(100, 10).unwrap();
    let _ = rx.unmap().unwrap();
    assert!(p.take_reports().is_empty(), "{:?}", p.reports());
    let handed_back: Vec<(usize, usize)> = p
        .inner()
        .take()
        .into_iter()
        .filter(|s| s.0 == SyncPoint::ForDevice)
        .map(|(_, m, off, len)| {
            assert_eq!(m.dir, From);
            (off, len)
        })
        .collect();
    let mut expected: Vec<(usize, usize)> = entries.iter().map(|e| (0, e.len)).collect();
    expected.push((100, 10));
    assert_eq!(handed_back, expected);
}
