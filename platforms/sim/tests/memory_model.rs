//! The two views of memory, the detector and the bus checks, end to end
//! through the real direct backend.

use dma_core::{
    Bidirectional, Coherent, DeviceConstraints, DmaAddr, DmaAttrs, DmaBuf, DmaMap, ErrorKind,
    FromDevice, StreamingMapping, ToDevice,
};
use dma_sim::{Access, FaultKind, ReportKind, Sim, SimConfig};

const ANY: DeviceConstraints = DeviceConstraints::UNCONSTRAINED;

/// A buffer the device may write: whole cache lines, as the direct
/// backend requires on a non-coherent machine.
fn dbuf(p: &impl DmaMap, len: usize) -> DmaBuf {
    DmaBuf::for_device(p, len).unwrap()
}

fn non_coherent(seed: u64) -> Sim {
    Sim::new(SimConfig::non_coherent().seed(seed)).unwrap()
}

#[test]
fn coherent_machine_needs_no_syncs() {
    let sim = Sim::new(SimConfig::coherent()).unwrap();
    let dev = sim.add_device("d");
    let p = sim.coherent_platform(dev, ANY);
    let mut tx = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 100]).unwrap();
    tx.write(0, b"abc").unwrap();
    let mut seen = [0u8; 3];
    sim.bus(dev).read(tx.dma_addr(), &mut seen).unwrap();
    assert_eq!(&seen, b"abc");
    let rx = StreamingMapping::<_, FromDevice, _>::map(&p, dbuf(&p, 100)).unwrap();
    sim.bus(dev).write(rx.dma_addr(), &[9; 100]).unwrap();
    let mut now = [0u8; 100];
    rx.read(0, &mut now).unwrap();
    assert_eq!(now, [9; 100]);
    // The data is right without syncs, but the read broke the ownership
    // rule all the same (on an Arm board it would be stale): reported on
    // the coherent machine too.
    let r = sim.take_reports();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].kind, ReportKind::CpuReadDeviceOwned);
    assert_eq!(&*rx.unmap().unwrap(), &[9; 100][..]);
    drop(tx);
    assert!(sim.reports().is_empty());
    assert_eq!(sim.live_regions(), 0);
}

#[test]
fn correct_driver_is_silent_and_right_on_every_seed_and_line_size() {
    for line in [32, 64, 128] {
        for seed in 0..50 {
            let sim = Sim::new(SimConfig::non_coherent().line_size(line).seed(seed)).unwrap();
            let dev = sim.add_device("d");
            let p = sim.non_coherent_platform(dev, ANY);
            // Transmit: write, sync, device reads.
            let mut tx = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 300]).unwrap();
            tx.write(7, b"payload").unwrap();
            tx.sync_for_device();
            let mut seen = [0u8; 7];
            sim.bus(dev)
                .read(tx.dma_addr().checked_add(7).unwrap(), &mut seen)
                .unwrap();
            assert_eq!(&seen, b"payload");
            drop(tx);
            // Receive: device writes, sync, CPU reads.
            let mut rx = StreamingMapping::<_, FromDevice, _>::map(&p, dbuf(&p, 384)).unwrap();
            sim.bus(dev).write(rx.dma_addr(), &[0x5a; 384]).unwrap();
            sim.tick();
            rx.sync_for_cpu();
            let mut got = [0u8; 384];
            rx.read(0, &mut got).unwrap();
            assert_eq!(got, [0x5a; 384]);
            assert_eq!(&*rx.unmap().unwrap(), &[0x5a; 384][..]);
            assert!(sim.reports().is_empty(), "seed {seed}: {:?}", sim.reports());
            assert_eq!(sim.shadow_pages(), 0);
        }
    }
}

#[test]
fn missing_clean_is_reported_on_every_seed() {
    for seed in 0..200 {
        let sim = non_coherent(seed);
        let dev = sim.add_device("nic");
        let p = sim.non_coherent_platform(dev, ANY);
        let mut tx = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 64]).unwrap();
        tx.write(0, &[1; 64]).unwrap();
        let mut seen = [0u8; 64];
        sim.bus(dev).read(tx.dma_addr(), &mut seen).unwrap();
        let r = sim.take_reports();
        assert_eq!(r.len(), 1, "seed {seed}");
        assert_eq!(r[0].kind, ReportKind::DeviceReadUncleaned);
        let region = r[0].region.unwrap();
        assert_eq!(region.dma, tx.dma_addr());
        assert_eq!(r[0].device, Some(dev));
        assert!(r[0].to_string().contains("sync_for_device"));
    }
}

/// The map-time clean skips re-reading lines it has just filled; that
/// must not reach a later clean of the same range, after the CPU wrote
/// (a map that skipped its clean, then the driver's own sync).
#[test]
fn a_sync_after_a_skipped_map_clean_sees_the_cpu_writes() {
    for seed in 0..20 {
        let sim = non_coherent(seed);
        let dev = sim.add_device("d");
        let p = sim.non_coherent_platform(dev, ANY);
        for sync in [false, true] {
            let mut tx = StreamingMapping::<_, ToDevice, _>::map_with_attrs(
                &p,
                dbuf(&p, 256),
                DmaAttrs::SKIP_CPU_SYNC,
            )
            .unwrap();
            tx.write(0, &[3; 256]).unwrap();
            if sync {
                tx.sync_for_device();
            }
            let mut seen = [0u8; 256];
            sim.bus(dev).read(tx.dma_addr(), &mut seen).unwrap();
            drop(tx);
            let r = sim.take_reports();
            if sync {
                assert_eq!(seen, [3; 256], "seed {seed}");
                assert!(r.is_empty(), "seed {seed}: {r:?}");
            } else {
                // The device read lines never cleaned, and stale lines; the
                // unmap finds the CPU wrote while the device owned the buffer.
                let kinds: Vec<_> = r.iter().map(|r| r.kind).collect();
                assert_eq!(
                    kinds,
                    [
                        ReportKind::DeviceReadNeverCleaned,
                        ReportKind::DeviceReadUncleaned,
                        ReportKind::CpuWroteDeviceOwned
                    ],
                    "seed {seed}"
                );
            }
        }
        assert_eq!(sim.live_regions(), 0);
    }
}

#[test]
fn missing_invalidate_is_reported_and_data_is_stale() {
    let sim = Sim::new(SimConfig::non_coherent().eviction_per_mille(0)).unwrap();
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, ANY);
    let rx = StreamingMapping::<_, FromDevice, _>::map_with_attrs(
        &p,
        dbuf(&p, 128),
        DmaAttrs::SKIP_CPU_SYNC,
    )
    .unwrap();
    sim.bus(dev).write(rx.dma_addr(), &[7; 128]).unwrap();
    let buf = rx.unmap().unwrap();
    assert_ne!(&*buf, &[7; 128][..], "the CPU kept its stale lines");
    let r = sim.take_reports();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].kind, ReportKind::CpuReadNotInvalidated);
    assert_eq!(r[0].lines, 2);
}

#[test]
fn cpu_writing_a_device_owned_buffer_is_reported() {
    let sim = non_coherent(5);
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, ANY);
    let mut rx = StreamingMapping::<_, Bidirectional, _>::map(&p, dbuf(&p, 64)).unwrap();
    rx.write(3, &[1]).unwrap(); // owned by the device now
    rx.sync_for_cpu();
    // Seen twice: at the write (the accessor tells the platform) and when
    // the CPU takes the buffer back (the bytes changed under the device,
    // which is how a write through a raw pointer is found).
    let r = sim.take_reports();
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r.iter().all(|r| r.kind == ReportKind::CpuWroteDeviceOwned));
    // After sync_for_cpu the CPU owns it: writing and unmapping is fine.
    rx.write(3, &[2]).unwrap();
    drop(rx.unmap().unwrap());
    assert!(sim.reports().is_empty());
}

#[test]
fn device_write_over_a_dirty_line_is_reported() {
    let sim = non_coherent(9);
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, ANY);
    let mut rx = StreamingMapping::<_, Bidirectional, _>::map(&p, dbuf(&p, 64)).unwrap();
    rx.write(0, &[1; 8]).unwrap();
    sim.bus(dev).write(rx.dma_addr(), &[2; 8]).unwrap();
    let r = sim.take_reports();
    // The accessor's report at the write, then the device's write finds the
    // dirty line.
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0].kind, ReportKind::CpuWroteDeviceOwned);
    assert_eq!(r[0].device, None);
    assert_eq!(r[1].kind, ReportKind::CpuWroteDeviceOwned);
    assert_eq!(r[1].device, Some(dev));
}

#[test]
fn writeback_over_device_data_is_reported() {
    // Device writes, the CPU writes the same line without taking it back
    // first, then hands it back: the clean destroys the device's data.
    let sim = Sim::new(SimConfig::non_coherent().eviction_per_mille(0)).unwrap();
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, ANY);
    let mut m = StreamingMapping::<_, Bidirectional, _>::map(&p, dbuf(&p, 64)).unwrap();
    sim.bus(dev).write(m.dma_addr(), &[2; 8]).unwrap();
    m.write(4, &[1]).unwrap(); // on a stale copy of the device's line
    m.sync_for_device();
    let kinds: Vec<_> = sim.take_reports().iter().map(|r| r.kind).collect();
    assert!(
        kinds.contains(&ReportKind::DirtyWritebackOverDeviceData),
        "{kinds:?}"
    );
    let mut seen = [0u8; 8];
    sim.bus(dev).read(m.dma_addr(), &mut seen).unwrap();
    assert_ne!(seen, [2; 8], "the device's bytes were overwritten");

    // The same by eviction.
    let mut m2 = StreamingMapping::<_, Bidirectional, _>::map(&p, dbuf(&p, 64)).unwrap();
    sim.bus(dev).write(m2.dma_addr(), &[2; 8]).unwrap();
    m2.write(4, &[1]).unwrap();
    sim.take_reports();
    sim.evict_all();
    let r = sim.take_reports();
    assert!(
        r.iter()
            .any(|r| r.kind == ReportKind::DirtyWritebackOverDeviceData),
        "{r:?}"
    );
    assert!(sim.stats().lines_evicted >= 1);
}

#[test]
#[should_panic(expected = "DeviceReadUncleaned")]
fn reports_can_be_panics() {
    let sim = Sim::new(SimConfig::non_coherent().panic_on_report(true)).unwrap();
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, ANY);
    let mut tx = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 64]).unwrap();
    tx.write(0, &[1; 64]).unwrap();
    let _ = sim.bus(dev).read_u64(tx.dma_addr());
}

#[test]
fn the_device_reaches_nothing_outside_live_regions() {
    let sim = non_coherent(1);
    let dev = sim.add_device("d");
    let other = sim.add_device("other");
    let p = sim.non_coherent_platform(dev, ANY);
    let guard = vec![0x11u8; 4096];
    let guard_addr = DmaAddr::new(guard.as_ptr() as u64);
    // Unmapped memory.
    let f = sim.bus(dev).write(guard_addr, &[0; 16]).unwrap_err();
    assert_eq!(f.kind, FaultKind::NotMapped);
    assert_eq!(f.access, Access::Write);
    assert_eq!(f.device, dev);
    // One byte past a mapping: the whole access is refused.
    let m = StreamingMapping::<_, FromDevice, _>::map(&p, dbuf(&p, 128)).unwrap();
    let f = sim.bus(dev).write(m.dma_addr(), &[0xee; 129]).unwrap_err();
    assert_eq!(f.kind, FaultKind::NotMapped);
    assert_eq!(f.addr.as_u64(), m.dma_addr().as_u64() + 128);
    // Another device's mapping.
    assert_eq!(
        sim.bus(other)
            .write(m.dma_addr(), &[0; 4])
            .unwrap_err()
            .kind,
        FaultKind::NotMapped
    );
    // After unmap.
    let dma = m.dma_addr();
    let back = m.unmap().unwrap();
    assert!(
        back.iter().all(|&b| b == 0),
        "nothing of the refused writes landed"
    );
    assert_eq!(
        sim.bus(dev).read_u32(dma).unwrap_err().kind,
        FaultKind::NotMapped
    );
    // Writing a to-device buffer.
    let tx = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0u8; 8]).unwrap();
    assert_eq!(
        sim.bus(dev).write_u32(tx.dma_addr(), 1).unwrap_err().kind,
        FaultKind::ReadOnlyMapping
    );
    drop(tx);
    assert!(guard.iter().all(|&b| b == 0x11));
    assert_eq!(sim.faults().len(), 5);
    let e: dma_core::Error = sim.take_faults()[0].into();
    assert_eq!(e.kind(), ErrorKind::DeviceFault);
}

#[test]
fn coherent_allocations_bypass_the_cache() {
    let sim = non_coherent(2);
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, ANY);
    let mut ring = Coherent::<[u64], _>::zeroed_slice(&p, 16).unwrap();
    ring.write(2, 77).unwrap();
    assert_eq!(
        sim.bus(dev)
            .read_u64(ring.dma_addr().checked_add(16).unwrap())
            .unwrap(),
        77
    );
    sim.bus(dev).write_u64(ring.dma_addr(), 55).unwrap();
    assert_eq!(ring.read(0).unwrap(), 55);
    let dma = ring.dma_addr();
    drop(ring);
    assert!(sim.bus(dev).read_u64(dma).is_err());
    // The refused read is a report naming the freed allocation.
    let r = sim.take_reports();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].kind, ReportKind::DeviceFault);
    let region = r[0].region.expect("the freed allocation");
    assert_eq!((region.dma, region.dir), (dma, None));
    assert!(region.unmapped_at.is_some());
    assert!(r[0].hint().contains("use after unmap"), "{}", r[0]);
    assert_eq!(sim.stats().coherent_allocs, 1);
    assert_eq!(sim.stats().coherent_frees, 1);
}

#[test]
fn injected_faults_drop_the_access() {
    let sim = non_coherent(3);
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, ANY);
    let mut ring = Coherent::<[u8], _>::zeroed_slice(&p, 64).unwrap();
    sim.inject_faults(dev, 1);
    let f = sim.bus(dev).write(ring.dma_addr(), &[1; 64]).unwrap_err();
    assert_eq!(f.kind, FaultKind::Injected);
    assert_eq!(ring.read(0).unwrap(), 0);
    sim.bus(dev).write(ring.dma_addr(), &[1; 64]).unwrap();
    assert_eq!(ring.read(0).unwrap(), 1);
    ring.write(0, 0).unwrap();
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |seed| {
        let sim = non_coherent(seed);
        let dev = sim.add_device("d");
        let p = sim.non_coherent_platform(dev, ANY);
        let mut out = Vec::new();
        for i in 0..20u8 {
            // A driver that never syncs: what the device reads depends on
            // which lines happened to be evicted.
            // Line-aligned, so which bytes share a line with which does not
            // depend on where the allocator put the buffer.
            let mut tx = StreamingMapping::<_, ToDevice, _>::map(&p, dbuf(&p, 512)).unwrap();
            tx.write(0, &[i; 512]).unwrap();
            for _ in 0..64 {
                sim.tick(); // time passes: lines may be evicted
            }
            let mut seen = [0u8; 512];
            sim.bus(dev).read(tx.dma_addr(), &mut seen).unwrap();
            out.push(seen.iter().filter(|&&b| b == i).count());
        }
        (out, sim.stats().lines_evicted)
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11), run(12));
}

#[test]
fn invalid_configurations_are_refused() {
    for bad in [
        SimConfig::non_coherent().line_size(48),
        SimConfig::non_coherent().eviction_per_mille(1001),
    ] {
        assert_eq!(
            Sim::new(bad).unwrap_err().kind(),
            ErrorKind::InvalidConstraints
        );
    }
}

#[test]
fn a_cpu_access_announced_for_an_ended_mapping_reports_nothing() {
    // `cpu_access` is a safe call anyone can make with any description; the
    // sim judges only live mappings, however recently it looked one up.
    let sim = non_coherent(2);
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, ANY);
    let rx = StreamingMapping::<_, FromDevice, _>::map(&p, dbuf(&p, 256)).unwrap();
    let raw = *rx.raw();
    // While live, the CPU reading device-owned bytes is a report...
    p.cpu_access(&raw, 0, 8, dma_core::CpuAccess::Read);
    assert_eq!(sim.take_reports()[0].kind, ReportKind::CpuReadDeviceOwned);
    // ...and once the mapping ended, nothing is.
    drop(rx.unmap().unwrap());
    p.cpu_access(&raw, 0, 8, dma_core::CpuAccess::Read);
    assert!(sim.take_reports().is_empty());
}

#[test]
fn a_buffer_whose_map_was_refused_keeps_its_address() {
    // A bounce platform serves what the backend refuses, then translates
    // the caller's buffer again to unmap it: the address must not move, even
    // after a neighbour sharing its cache line was mapped and unmapped.
    let sim = non_coherent(3);
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, ANY);
    let buf = dbuf(&p, 256);
    let at = |off: usize, len: usize| {
        p.virt_to_phys(std::ptr::NonNull::from(&buf[off]), len)
            .unwrap()
    };
    let rx = at(8, 100);
    // SAFETY: `buf` outlives every mapping below and is not touched by the
    // CPU meanwhile; each mapping is ended before the next check.
    let refused = unsafe {
        p.map(
            rx,
            100,
            dma_core::DmaDirection::FromDevice,
            DmaAttrs::empty(),
        )
    };
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Misaligned);
    let tx = at(108, 20);
    // SAFETY: `tx` lies in `buf`, which outlives this mapping; the CPU does
    // not touch it while mapped, and it is unmapped just below.
    let dma =
        unsafe { p.map(tx, 20, dma_core::DmaDirection::ToDevice, DmaAttrs::empty()) }.unwrap();
    let m = dma_core::RawMapping {
        phys: tx,
        dma,
        len: 20,
        dir: dma_core::DmaDirection::ToDevice,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: `m` is the live mapping made just above.
    unsafe { p.unmap(&m) }.unwrap();
    assert_eq!(at(8, 100), rx);
}
