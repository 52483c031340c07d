//! The IOMMU platform on every table format through its public
//! constructor (`DomainConfig::with_format`): the granule is the IOVA
//! page, the input size the top of the IOVA window, and the software IOMMU
//! walks whatever the platform attached.

use dma_coherence::HardwareCoherent;
use dma_core::{
    Bidirectional, DeviceConstraints, DmaAddr, DmaAlloc, DmaAttrs, ErrorKind, HostMemory,
    PhysMemory, StreamingMapping,
};
use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage};
use dma_iommu::soft::SoftIommu;
use dma_iommu::{
    Asid, DeviceId, DomainConfig, FaultKind, IommuHardware, IommuPlatform, Strict, TableFormat,
};

const DEV: DeviceId = DeviceId(8);

type Platform<'a> = IommuPlatform<HostMemory, HardwareCoherent, &'a SoftIommu<HostMemory>, Strict>;

fn platform(
    hw: &SoftIommu<HostMemory>,
    format: Format,
    c: DeviceConstraints,
) -> dma_core::Result<Platform<'_>> {
    IommuPlatform::new(
        HostMemory,
        HardwareCoherent,
        hw,
        Strict,
        c,
        DomainConfig::new(DEV, Asid(3)).with_format(format),
    )
}

const FORMATS: [(Granule, u32, Stage); 8] = [
    (Granule::K4, 48, Stage::One),
    (Granule::K16, 48, Stage::One),
    (Granule::K64, 48, Stage::One),
    (Granule::K64, 42, Stage::One),
    (Granule::K16, 32, Stage::One),
    (Granule::K4, 40, Stage::Two),
    (Granule::K16, 36, Stage::Two),
    (Granule::K64, 48, Stage::Two),
];

#[test]
fn every_format_maps_whole_granules_the_device_reaches() {
    for (granule, bits, stage) in FORMATS {
        let format = Format::new(granule, bits, stage).unwrap();
        let hw = SoftIommu::new(HostMemory, 16);
        let p = platform(&hw, format, DeviceConstraints::UNCONSTRAINED).unwrap();
        let page = granule.size();
        assert_eq!(p.granule(), page);
        let ctx = p.context();
        assert_eq!(
            ctx.format,
            TableFormat::Vmsav8 {
                format,
                mair: dma_iommu::pgtable::vmsav8::MAIR
            }
        );
        assert_eq!(ctx.ias_bits, bits);
        let mut m =
            StreamingMapping::<_, Bidirectional, _>::map(&p, (0u8..200).collect::<Vec<_>>())
                .unwrap();
        let dma = m.dma_addr();
        let phys = m.raw().phys;
        assert!(dma.as_u64() >> bits == 0, "{format:?}: IOVA {dma}");
        assert!(
            dma.as_u64() >= page,
            "{format:?}: IOVA page 0 stays unmapped"
        );
        assert_eq!(dma.offset_in(page), phys.offset_in(page), "{format:?}");
        // The whole granule around the buffer translates, and no more.
        let first = dma.as_u64() - dma.offset_in(page);
        let granule_phys = phys.as_u64() - phys.offset_in(page);
        assert_eq!(
            p.iova_to_phys(DmaAddr::new(first + page - 1))
                .map(|a| a.as_u64()),
            Some(granule_phys + page - 1)
        );
        assert_eq!(p.iova_to_phys(DmaAddr::new(first + page)), None);
        let mut got = [0u8; 4];
        hw.device_read(DEV, DmaAddr::new(dma.as_u64() + 10), &mut got)
            .unwrap();
        assert_eq!(got, [10, 11, 12, 13], "{format:?}");
        hw.device_write(DEV, dma, b"hi").unwrap();
        m.sync_for_cpu();
        let back = m.unmap().unwrap();
        assert_eq!(&back[..3], b"hi\x02");
        let f = hw.device_write(DEV, dma, b"x").unwrap_err();
        assert!(
            matches!(f.kind, FaultKind::Translation { .. }),
            "{format:?}: {f:?}"
        );
        assert!(p.check_faults().is_err());
    }
}

#[test]
fn coherent_allocations_are_whole_granules_of_their_own() {
    for granule in [Granule::K16, Granule::K64] {
        let format = Format::new(granule, 48, Stage::One).unwrap();
        let hw = SoftIommu::new(HostMemory, 16);
        let p = platform(&hw, format, DeviceConstraints::UNCONSTRAINED).unwrap();
        let page = granule.size();
        // Several, so that some land unaligned in the environment's 4 KiB
        // pages and need the padded allocation.
        let regions: Vec<_> = (0..4)
            .map(|i| p.alloc_coherent(100 + i * 5000, DmaAttrs::empty()).unwrap())
            .collect();
        for r in &regions {
            assert_eq!(r.size as u64 % page, 0, "{granule:?}: whole granules");
            assert!(r.dma.is_aligned(page));
            let phys = HostMemory.virt_to_phys(r.cpu, r.size).unwrap();
            assert!(phys.is_aligned(page), "{granule:?}: granule-aligned memory");
            assert_eq!(p.iova_to_phys(r.dma), Some(phys));
            let last = DmaAddr::new(r.dma.as_u64() + r.size as u64 - 1);
            hw.device_write(DEV, last, &[7]).unwrap();
            // SAFETY: the region is ours and `size` bytes long.
            assert_eq!(unsafe { r.cpu.as_ptr().add(r.size - 1).read_volatile() }, 7);
        }
        for r in regions {
            let dma = r.dma;
            // SAFETY: from alloc_coherent with these attrs, freed once, and
            // the (software) device is not using it.
            unsafe { p.free_coherent(r, DmaAttrs::empty()) }.unwrap();
            assert!(
                hw.device_write(DEV, dma, &[1]).is_err(),
                "invalidated at free"
            );
        }
    }
}

#[test]
fn the_iova_window_is_the_lower_of_mask_and_input_size() {
    let hw = SoftIommu::new(HostMemory, 16);
    let small = Format::new(Granule::K64, 32, Stage::One).unwrap();
    let p = platform(&hw, small, DeviceConstraints::UNCONSTRAINED).unwrap();
    let maps: Vec<_> = (0..4)
        .map(|_| StreamingMapping::<_, Bidirectional, _>::map(&p, vec![0u8; 70_000]).unwrap())
        .collect();
    for m in &maps {
        assert!(m.dma_addr().as_u64() + m.len() as u64 <= 1 << 32);
    }
    drop(maps);
    drop(p);
    // A 16-bit mask leaves only IOVA page 0 of 64 KiB pages, which stays
    // unmapped: no window at all.
    let narrow = DeviceConstraints::builder().addr_bits(16).build().unwrap();
    let k64 = Format::new(Granule::K64, 48, Stage::One).unwrap();
    let e = platform(&hw, k64, narrow).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidConstraints, "{e}");
    // The same mask with 4 KiB pages leaves fifteen.
    platform(&hw, Format::default(), narrow).unwrap();
}

#[test]
fn coherent_sizes_that_overflow_whole_granules_are_out_of_memory() {
    let hw = SoftIommu::new(HostMemory, 16);
    let k64 = Format::new(Granule::K64, 48, Stage::One).unwrap();
    let p = platform(&hw, k64, DeviceConstraints::UNCONSTRAINED).unwrap();
    let e = p
        .alloc_coherent(usize::MAX - 100, DmaAttrs::empty())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
    assert!(e.message().contains("whole IOMMU granules"), "{e}");
}

/// The software IOMMU caches whole leaves, as hardware does: an
/// invalidation touching any part of a 64 KiB page drops all of it, and
/// one beside it drops nothing.
#[test]
fn the_soft_iotlb_caches_and_drops_whole_leaves() {
    let hw = SoftIommu::new(HostMemory, 16);
    let k64 = Format::new(Granule::K64, 48, Stage::One).unwrap();
    let p = platform(&hw, k64, DeviceConstraints::UNCONSTRAINED).unwrap();
    // The device reads across the whole granule, so the buffer is the whole
    // granule: host memory around a smaller one may not exist.
    let buf = dma_core::DmaBuf::new(0x1_0000, 0x1_0000).unwrap();
    let m = StreamingMapping::<_, Bidirectional, _>::map(&p, buf).unwrap();
    let base = m.dma_addr().as_u64();
    assert_eq!(
        base & 0xffff,
        0,
        "a granule-aligned buffer at a granule-aligned IOVA"
    );
    let mut b = [0u8; 1];
    hw.device_read(DEV, DmaAddr::new(base), &mut b).unwrap();
    hw.device_read(DEV, DmaAddr::new(base + 0xf000), &mut b)
        .unwrap();
    assert_eq!(hw.tlb_len(), 1, "one leaf for the whole 64 KiB page");
    hw.invalidate_range(Asid(3), DmaAddr::new(base + 0x1_0000), 0x1000);
    assert_eq!(hw.tlb_len(), 1, "the next page's invalidation keeps it");
    hw.invalidate_range(Asid(3), DmaAddr::new(base + 0x8000), 0x1000);
    assert_eq!(hw.tlb_len(), 0, "part of the leaf drops all of it");
    drop(m);
}
