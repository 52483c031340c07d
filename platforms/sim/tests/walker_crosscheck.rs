//! The sim's walker (its own reading of the Arm ARM) against `dma-iommu`'s
//! table writer and reference walker, for every granule, input sizes of 32
//! to 48 bits and both stages: the same tables must give the same
//! translations, leaf sizes, levels and permission faults.

use dma_coherence::HardwareCoherent;
use dma_core::{HostMemory, PhysAddr, PhysMemory};
use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage, Vmsav8Table};
use dma_iommu::{IoPageTable, Prot};
use dma_sim::iommu::{self, Regime};
use dma_sim::{Access, FaultKind};

const GRANULES: [Granule; 3] = [Granule::K4, Granule::K16, Granule::K64];
const INPUT_SIZES: [u32; 6] = [32, 36, 40, 42, 44, 48];
const RW: Prot = Prot::READ.union(Prot::WRITE);

type Table = Vmsav8Table<HostMemory, HardwareCoherent>;

/// The regime an SMMU driver would program for `format`: T0SZ and TG0 at
/// stage 1 (the sim derives the start level), S2T0SZ, S2TG and S2SL0 at
/// stage 2 (the sim checks the start level is legal).
fn regime(format: &Format) -> Regime {
    let g = format.granule().shift();
    match format.stage() {
        Stage::One => Regime::stage1(g, format.ias_bits()).unwrap(),
        Stage::Two => Regime::stage2(g, format.ias_bits(), format.start_level()).unwrap(),
    }
}

fn sim_walk(pt: &Table, iova: u64, access: Access) -> Result<iommu::Leaf, FaultKind> {
    iommu::walk_regime(
        &regime(pt.format()),
        pt.root().as_u64(),
        iova,
        access,
        |a| {
            let p = pt.memory().phys_to_virt(PhysAddr::new(a), 8).ok()?;
            // SAFETY: the walk reads descriptors of `pt`'s tables, which
            // HostMemory maps at `p`; an aligned volatile load, as a walker makes.
            Some(unsafe { p.cast::<u64>().as_ptr().read_volatile() })
        },
    )
}

/// The two walkers agree at `iova`.
fn agree(pt: &Table, iova: u64) {
    let theirs = pt.walk(iova);
    let ours = sim_walk(pt, iova, Access::Read);
    match (theirs, ours) {
        (Ok(t), Ok(o)) => {
            assert_eq!(o.page + iova % iommu::GRANULE, t.phys.as_u64(), "{iova:#x}");
            assert_eq!((o.size, o.level), (t.size, t.level), "{iova:#x}");
        }
        (Err(_), Err(FaultKind::Translation { .. })) => {}
        (t, o) => panic!("{:?} at {iova:#x}: dma-iommu {t:?}, sim {o:?}", pt.format()),
    }
}

fn formats() -> impl Iterator<Item = Format> {
    GRANULES.into_iter().flat_map(|g| {
        INPUT_SIZES.into_iter().flat_map(move |ias| {
            [Stage::One, Stage::Two]
                .into_iter()
                .map(move |s| Format::new(g, ias, s).unwrap())
        })
    })
}

#[test]
fn stage1_start_levels_agree() {
    for format in formats().filter(|f| f.stage() == Stage::One) {
        assert_eq!(
            regime(&format).start_level(),
            format.start_level(),
            "{format:?}"
        );
    }
}

#[test]
fn every_granule_size_and_stage_translates_alike() {
    for format in formats() {
        let mut pt = Table::with_format(HostMemory, HardwareCoherent, format).unwrap();
        let g = pt.granule();
        let sizes: Vec<u64> = (0..64)
            .map(|b| 1u64 << b)
            .filter(|s| pt.page_sizes() & s != 0)
            .collect();
        let top = 1u64 << format.ias_bits();
        let mut probes = Vec::new();
        // One leaf of each size, the last at the top of the input space.
        for (i, &size) in sizes.iter().enumerate() {
            let iova = if i + 1 == sizes.len() {
                top - size
            } else {
                (top / 2 + i as u64 * (top / 8)).next_multiple_of(size)
            };
            let phys = (i as u64 + 3) * sizes[sizes.len() - 1];
            // SAFETY: nothing but the walkers reads these tables; `phys` is a label.
            unsafe { pt.map_page(iova, PhysAddr::new(phys), size, RW) }.unwrap();
            probes.extend([iova, iova + size / 2 + 8, iova + size - 1, iova + size]);
        }
        // A range the writer splits into mixed leaves, then a hole in it.
        let block = sizes[1];
        let base = block - 3 * g; // below top / 2, where the leaves start
                                  // SAFETY: nothing but the walkers reads these tables; `phys` is a label.
        unsafe { pt.map(base, PhysAddr::new(5 * block - 3 * g), block + 6 * g, RW) }.unwrap();
        pt.unmap(base + block, g).unwrap();
        probes.extend((0..12).map(|i| base + i * (block / 4) + i * g + 16));
        probes.extend([base - 1, base, base + block, base + block + g, top - 1]);
        for iova in probes.into_iter().filter(|&a| a < top) {
            agree(&pt, iova);
        }
        // Beyond the input size both fault.
        assert!(pt.walk(top).is_err());
        assert!(matches!(
            sim_walk(&pt, top, Access::Read),
            Err(FaultKind::Translation { .. })
        ));
    }
}

#[test]
fn permissions_agree_at_both_stages() {
    for format in formats() {
        let mut pt = Table::with_format(HostMemory, HardwareCoherent, format).unwrap();
        let g = pt.granule();
        // SAFETY: nothing but the walkers reads these tables; `phys` is a label.
        unsafe { pt.map(0, PhysAddr::new(g), g, Prot::READ) }.unwrap();
        // SAFETY: nothing but the walkers reads these tables; `phys` is a label.
        unsafe { pt.map(g, PhysAddr::new(2 * g), g, Prot::WRITE) }.unwrap();
        for (iova, access) in [
            (0, Access::Read),
            (0, Access::Write),
            (g, Access::Read),
            (g, Access::Write),
        ] {
            let theirs = pt.walk(iova).unwrap().check(match access {
                Access::Read => dma_iommu::Access::Read,
                Access::Write => dma_iommu::Access::Write,
            });
            let ours = sim_walk(&pt, iova, access);
            assert_eq!(
                theirs.is_ok(),
                ours.is_ok(),
                "{format:?} {iova:#x} {access:?}"
            );
            if let Err(fault) = ours {
                assert_eq!(fault, FaultKind::Permission { level: 3 });
            }
        }
        // Stage 1 cannot express write-only; stage 2 can.
        let write_only_reads = sim_walk(&pt, g, Access::Read).is_ok();
        assert_eq!(write_only_reads, format.stage() == Stage::One, "{format:?}");
    }
}

#[test]
fn illegal_stage2_start_levels_are_refused() {
    // 4 KiB, 48 bits: level 1 would need 512 concatenated tables.
    assert!(Regime::stage2(12, 48, 1).is_none());
    assert!(Regime::stage2(12, 48, 0).is_some());
    // 4 KiB, 32 bits: level 2 with 4 concatenated tables is legal too.
    assert!(Regime::stage2(12, 32, 2).is_some());
    assert!(Regime::stage2(12, 32, 3).is_none());
    // 16 KiB, 48 bits: one bit at level 0, or two tables at level 1.
    assert!(Regime::stage2(14, 48, 1).is_some());
    assert!(Regime::stage2(16, 48, 4).is_none());
    assert!(Regime::stage1(13, 48).is_none());
}
