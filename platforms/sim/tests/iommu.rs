//! The IOMMU-translated preset: dma-iommu writes the tables, the sim's
//! walker reads them.

use dma_core::{
    DeviceConstraints, DmaBuf, FromDevice, PhysAddr, PhysMemory, StreamingMapping, ToDevice,
};
use dma_sim::{iommu, Access, FaultKind, ReportKind, Sim, SimConfig, Translation};

const ANY: DeviceConstraints = DeviceConstraints::UNCONSTRAINED;

#[test]
fn device_accesses_are_translated_on_both_cache_policies() {
    for cfg in [SimConfig::coherent(), SimConfig::non_coherent().seed(4)] {
        let sim = Sim::new(cfg).unwrap();
        let dev = sim.add_device("dev");
        let p = sim.iommu_platform(dev, ANY).unwrap();
        let buf = DmaBuf::for_device(&p, 8192).unwrap();
        let mut rx = StreamingMapping::<_, FromDevice, _>::map(&p, buf).unwrap();
        let iova = rx.dma_addr();
        assert_ne!(
            iova.as_u64(),
            rx.raw().phys.as_u64(),
            "an IOVA, not the physical address"
        );
        sim.bus(dev).write(iova, &[0x3c; 8192]).unwrap();
        rx.sync_for_cpu();
        let back = rx.unmap().unwrap();
        assert!(back.iter().all(|&b| b == 0x3c));
        assert!(sim.stats().iommu_walks >= 2);
        // Unmapped and invalidated: the walk now faults, nothing lands.
        let f = sim.bus(dev).write(iova, &[1; 16]).unwrap_err();
        assert!(matches!(f.kind, FaultKind::Translation { .. }), "{f:?}");
        assert_eq!(f.access, Access::Write);
        assert!(back.iter().all(|&b| b == 0x3c));
        let r = sim.take_reports();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].kind, ReportKind::DeviceFault);
        assert!(r[0].hint().contains("use after unmap"), "{}", r[0]);
    }
}

#[test]
fn read_only_mappings_and_sub_page_exposure_fault() {
    let sim = Sim::new(SimConfig::non_coherent()).unwrap();
    let dev = sim.add_device("dev");
    let p = sim.iommu_platform(dev, ANY).unwrap();
    let mut tx =
        StreamingMapping::<_, ToDevice, _>::map(&p, DmaBuf::for_device(&p, 64).unwrap()).unwrap();
    tx.write(0, &[5; 64]).unwrap();
    tx.sync_for_device();
    let mut seen = [0u8; 64];
    sim.bus(dev).read(tx.dma_addr(), &mut seen).unwrap();
    assert_eq!(seen, [5; 64]);
    let f = sim.bus(dev).write(tx.dma_addr(), &[0; 4]).unwrap_err();
    assert!(
        matches!(
            f.kind,
            FaultKind::Permission { level: 3 } | FaultKind::ReadOnlyMapping
        ),
        "{f:?}"
    );
    // The IOMMU maps whole pages; bytes past the 64-byte buffer are in the
    // page but not in the mapping: the sim refuses them.
    let past = tx.dma_addr().checked_add(64).unwrap();
    assert_eq!(
        sim.bus(dev).read_u64(past).unwrap_err().kind,
        FaultKind::NotMapped
    );
    // Faults reach the platform through dma-iommu's hardware interface.
    assert!(p.inner().check_faults().is_err());
}

#[test]
fn the_walker_agrees_with_dma_iommu_translation() {
    let sim = Sim::new(SimConfig::coherent()).unwrap();
    let dev = sim.add_device("dev");
    let p = sim.iommu_platform(dev, ANY).unwrap();
    let root = p.inner().context().root;
    let bufs: Vec<_> = (0..8)
        .map(|i| {
            let len = 4096 * (i + 1);
            StreamingMapping::<_, ToDevice, _>::map(&p, DmaBuf::for_device(&p, len).unwrap())
                .unwrap()
        })
        .collect();
    for m in &bufs {
        for off in (0..m.len() as u64).step_by(4096) {
            let iova = m.dma_addr().as_u64() + off;
            let expected = p
                .inner()
                .iova_to_phys(dma_core::DmaAddr::new(iova))
                .unwrap();
            let leaf = iommu::walk(root.as_u64(), iova, Access::Read, |a| {
                // SAFETY: table pages are sim memory the test only reads.
                sim.is_sim_memory(PhysAddr::new(a)).then(|| unsafe {
                    sim.memory()
                        .phys_to_virt(PhysAddr::new(a), 8)
                        .unwrap()
                        .cast::<u64>()
                        .read_volatile()
                })
            })
            .unwrap();
            assert_eq!(leaf.page + iova % 4096, expected.as_u64());
            assert!(!leaf.writable, "to-device pages are read-only");
        }
    }
    drop(bufs);
    sim.set_translation(dev, Translation::Blocked);
    assert!(sim
        .bus(dev)
        .read_u32(dma_core::DmaAddr::new(0x1000))
        .is_err());
}

/// Tables of every granule and both stages: dma-iommu writes them, the
/// sim's walker (told the format at attach) translates the device's
/// accesses through them, and unmapping locks the device out again.
#[test]
fn every_granule_and_stage_translates_through_the_sim_walker() {
    use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage};
    for (granule, bits, stage) in [
        (Granule::K16, 48, Stage::One),
        (Granule::K64, 48, Stage::One),
        (Granule::K64, 36, Stage::One),
        (Granule::K4, 40, Stage::Two),
        (Granule::K64, 48, Stage::Two),
    ] {
        let format = Format::new(granule, bits, stage).unwrap();
        let sim = Sim::new(SimConfig::coherent()).unwrap();
        let dev = sim.add_device("dev");
        let p = sim.iommu_platform_with(dev, ANY, format).unwrap();
        let buf = DmaBuf::for_device(&p, 3 * 4096).unwrap();
        let mut rx = StreamingMapping::<_, FromDevice, _>::map(&p, buf).unwrap();
        let iova = rx.dma_addr();
        let page = granule.size();
        assert!(
            iova.as_u64() >> bits == 0,
            "{format:?}: IOVA inside the input size"
        );
        assert_eq!(iova.offset_in(page), rx.raw().phys.offset_in(page));
        sim.bus(dev).write(iova, &[0x5a; 3 * 4096]).unwrap();
        rx.sync_for_cpu();
        let back = rx.unmap().unwrap();
        assert!(back.iter().all(|&b| b == 0x5a), "{format:?}");
        let f = sim.bus(dev).write(iova, &[1; 16]).unwrap_err();
        assert!(
            matches!(f.kind, FaultKind::Translation { .. }),
            "{format:?}: {f:?}"
        );
        sim.take_reports();
    }
}
