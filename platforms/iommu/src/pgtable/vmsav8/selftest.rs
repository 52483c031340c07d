//! Every format against the matrix of Linux's io-pgtable-arm selftest
//! (`arm_lpae_do_selftests`): each granule with every page size it allows
//! (4 KiB | 2 MiB | 1 GiB, 16 KiB | 32 MiB, 64 KiB | 512 MiB), each input
//! size of 32, 36, 40, 42, 44 and 48 bits, stage 1 and stage 2, running the
//! same steps as its `arm_lpae_run_tests`; then the geometry and the
//! stage-2 encoding, which the selftest leaves to the hardware.

use std::vec::Vec;

use dma_coherence::HardwareCoherent;
use dma_core::HostMemory;

use super::*;

const G1: u64 = 1 << 30;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const GRANULES: [Granule; 3] = [Granule::K4, Granule::K16, Granule::K64];
const INPUT_SIZES: [u32; 6] = [32, 36, 40, 42, 44, 48];
const STAGES: [Stage; 2] = [Stage::One, Stage::Two];

type Table = Vmsav8Table<HostMemory, HardwareCoherent>;

fn table(format: Format) -> Table {
    Vmsav8Table::with_format(HostMemory, HardwareCoherent, format).unwrap()
}

fn formats() -> impl Iterator<Item = Format> {
    GRANULES.into_iter().flat_map(|g| {
        INPUT_SIZES.into_iter().flat_map(move |ias| {
            STAGES
                .into_iter()
                .map(move |s| Format::new(g, ias, s).unwrap())
        })
    })
}

fn sizes(pt: &Table) -> Vec<u64> {
    (0..64)
        .map(|b| 1u64 << b)
        .filter(|s| pt.page_sizes() & s != 0)
        .collect()
}

fn map_page(pt: &mut Table, iova: u64, phys: u64, size: u64, prot: Prot) -> Result<()> {
    // SAFETY: nothing walks these tables for real; `phys` is a label.
    unsafe { pt.map_page(iova, PhysAddr::new(phys), size, prot) }
}

fn map(pt: &mut Table, iova: u64, phys: u64, size: u64, prot: Prot) -> Result<()> {
    // SAFETY: as in `map_page`.
    unsafe { pt.map(iova, PhysAddr::new(phys), size, prot) }
}

#[test]
fn page_sizes_are_the_selftests() {
    let expected = [
        (Granule::K4, 0x1000 | 0x20_0000 | 0x4000_0000),
        (Granule::K16, 0x4000 | 0x200_0000),
        (Granule::K64, 0x1_0000 | 0x2000_0000),
    ];
    for format in formats() {
        let want = expected
            .iter()
            .find(|(g, _)| *g == format.granule())
            .unwrap()
            .1;
        assert_eq!(table(format).page_sizes(), want, "{format:?}");
    }
}

/// Linux's `arm_lpae_run_tests`, step by step, for every format.
#[test]
fn linux_selftest_matrix() {
    for format in formats() {
        let mut pt = table(format);
        let sizes = sizes(&pt);
        // Initial sanity: an empty table translates nothing.
        for iova in [42, G1 + 42, 2 * G1 + 42] {
            assert_eq!(pt.iova_to_phys(iova), None, "{format:?}");
        }
        // Distinct mappings of each page size, one per GiB, identity mapped.
        for (i, &size) in sizes.iter().enumerate() {
            let iova = i as u64 * G1;
            map_page(&mut pt, iova, iova, size, RW | Prot::CACHE).unwrap();
            // An overlapping mapping fails.
            let e = map_page(&mut pt, iova, iova + size, size, Prot::READ).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyMapped, "{format:?}");
            assert_eq!(pt.iova_to_phys(iova + 42), Some(PhysAddr::new(iova + 42)));
            assert_eq!(pt.translate(iova + 42).unwrap().size, size, "{format:?}");
        }
        // Partial unmap: the smallest page out of the block at 1 GiB.
        let size = sizes[0];
        assert_eq!(pt.unmap(G1 + size, size).unwrap(), size, "{format:?}");
        assert_eq!(pt.iova_to_phys(G1 + size + 42), None);
        // Remap of the partial unmap, elsewhere.
        map_page(&mut pt, G1 + size, size, size, Prot::READ).unwrap();
        assert_eq!(
            pt.iova_to_phys(G1 + size + 42),
            Some(PhysAddr::new(size + 42))
        );
        assert_eq!(
            pt.iova_to_phys(G1 + 2 * size + 42),
            Some(PhysAddr::new(G1 + 2 * size + 42))
        );
        // Full unmap, then remap of the full block.
        for (i, &size) in sizes.iter().enumerate() {
            let iova = i as u64 * G1;
            assert_eq!(pt.unmap(iova, size).unwrap(), size, "{format:?}");
            assert_eq!(pt.iova_to_phys(iova + 42), None, "{format:?}");
            // Linux frees the table the split left and maps a block again;
            // these tables keep it (see the module's docs), so `map_page`
            // refuses that slot and `map` maps smaller leaves under it.
            if let Err(e) = map_page(&mut pt, iova, iova, size, Prot::WRITE) {
                assert_eq!(e.kind(), ErrorKind::AlreadyMapped);
                map(&mut pt, iova, iova, size, Prot::WRITE).unwrap();
            }
            assert_eq!(pt.iova_to_phys(iova + 42), Some(PhysAddr::new(iova + 42)));
        }
    }
}

#[test]
fn geometry_follows_the_arm_arm() {
    // (granule, input bits, stage) -> (start level, initial entries).
    let cases = [
        (Granule::K4, 48, Stage::One, 0, 512),
        (Granule::K4, 39, Stage::One, 1, 512),
        (Granule::K4, 32, Stage::One, 1, 4),
        (Granule::K4, 40, Stage::One, 0, 2),
        (Granule::K4, 40, Stage::Two, 1, 1024),
        (Granule::K4, 43, Stage::Two, 1, 8192),
        (Granule::K4, 44, Stage::Two, 0, 32),
        (Granule::K16, 48, Stage::One, 0, 2),
        (Granule::K16, 48, Stage::Two, 1, 4096),
        (Granule::K16, 47, Stage::Two, 1, 2048),
        (Granule::K16, 36, Stage::One, 2, 2048),
        (Granule::K16, 32, Stage::One, 2, 128),
        (Granule::K64, 48, Stage::One, 1, 64),
        (Granule::K64, 48, Stage::Two, 1, 64),
        (Granule::K64, 42, Stage::One, 2, 8192),
        (Granule::K64, 32, Stage::Two, 2, 8),
    ];
    for (granule, ias, stage, level, entries) in cases {
        let f = Format::new(granule, ias, stage).unwrap();
        assert_eq!(
            (f.start_level(), f.root_entries()),
            (level, entries),
            "{f:?}"
        );
        // The initial table is as large as its entries and at least a
        // granule, and the walk covers exactly the input size.
        assert_eq!(f.table_bytes(level), (entries * 8).max(granule.size()));
        assert_eq!(f.level_size(level) * entries, 1 << ias);
    }
    for ias in [31, 49] {
        let e = Format::new(Granule::K4, ias, Stage::One).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }
}

#[test]
fn the_last_page_of_every_format_maps() {
    for format in formats() {
        let top = 1u64 << format.ias_bits();
        for size in sizes(&table(format)) {
            // A fresh table each time: an emptied table would hold the
            // next, larger page's slot.
            let mut pt = table(format);
            let iova = top - size;
            map_page(&mut pt, iova, size, size, RW).unwrap();
            assert_eq!(
                pt.translate(top - 1),
                Some(Leaf {
                    phys: PhysAddr::new(2 * size - 1),
                    size
                })
            );
            assert_eq!(pt.unmap(iova, size).unwrap(), size);
            let granule = pt.granule();
            let e = map(&mut pt, top, 0, granule, RW).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfRange, "{format:?}");
        }
    }
}

#[test]
fn map_page_refuses_what_it_cannot_map_exactly() {
    let mut pt = table(Format::new(Granule::K16, 48, Stage::One).unwrap());
    let kind = |r: Result<()>| r.unwrap_err().kind();
    // 64 GiB level-1 blocks need a 52-bit output address with 16 KiB.
    assert_eq!(
        kind(map_page(&mut pt, 0, 0, 1 << 36, RW)),
        ErrorKind::Unsupported
    );
    assert_eq!(
        kind(map_page(&mut pt, 0, 0, 4096, RW)),
        ErrorKind::Unsupported
    );
    assert_eq!(
        kind(map_page(&mut pt, 0x4000, 0, 1 << 25, RW)),
        ErrorKind::Misaligned
    );
    assert_eq!(
        kind(map_page(&mut pt, 0, 0x4000, 1 << 25, RW)),
        ErrorKind::Misaligned
    );
    assert_eq!(
        kind(map_page(&mut pt, 0, 0, 0x4000, Prot::CACHE)),
        ErrorKind::Unsupported
    );
    assert_eq!(
        kind(map(&mut pt, 0x1000, 0, 0x4000, RW)),
        ErrorKind::Misaligned,
        "4 KiB is not the granule"
    );
    map_page(&mut pt, 1 << 25, 0, 0x4000, RW).unwrap();
    assert_eq!(
        kind(map_page(&mut pt, 0, 0, 1 << 26, RW)),
        ErrorKind::Unsupported,
        "not a leaf size"
    );
    assert_eq!(
        kind(map_page(&mut pt, 1 << 25, 0, 1 << 25, RW)),
        ErrorKind::AlreadyMapped
    );
    // `map` picks the largest leaf alignment allows.
    map(&mut pt, 1 << 26, 1 << 26, (1 << 25) + 0x4000, RW).unwrap();
    assert_eq!(pt.translate(1 << 26).unwrap().size, 1 << 25);
    assert_eq!(pt.translate((1 << 26) + (1 << 25)).unwrap().size, 0x4000);
}

#[test]
fn stage2_descriptors_carry_s2ap_and_memattr() {
    let f = Format::new(Granule::K4, 40, Stage::Two).unwrap();
    // Page, read-write, cacheable: XN[1:0], AF, SH inner, S2AP 11, MemAttr 1111.
    let d = Descriptor::leaf(&f, 3, PhysAddr::new(0x4000_1000), RW | Prot::CACHE);
    assert_eq!(d.0, 0x0060_0000_4000_17ff);
    assert_eq!(d.s2_mem_attr(), S2_MEMATTR_CACHED);
    // 2 MiB block, write-only, non-cacheable: S2AP 10, MemAttr 0101, SH outer.
    let d = Descriptor::leaf(&f, 2, PhysAddr::new(0x4020_0000), Prot::WRITE);
    assert_eq!(d.0, 0x0060_0000_4020_0695);
    assert_eq!(d.0 & DescBits::NG.bits(), 0, "no ASID at stage 2");
    let mut pt = table(f);
    map(&mut pt, 0, 0x1000, 0x1000, Prot::READ).unwrap();
    map(&mut pt, 0x1000, 0x2000, 0x1000, Prot::WRITE).unwrap();
    let ro = pt.walk(0).unwrap();
    assert_eq!((ro.stage, ro.check(Access::Read)), (Stage::Two, Ok(())));
    assert_eq!(
        ro.check(Access::Write),
        Err(FaultKind::Permission { level: Some(3) })
    );
    let wo = pt.walk(0x1000).unwrap();
    assert_eq!(wo.check(Access::Write), Ok(()));
    assert_eq!(
        wo.check(Access::Read),
        Err(FaultKind::Permission { level: Some(3) }),
        "write-only is expressible at stage 2"
    );
}

#[test]
fn large_granule_tables_are_aligned_and_blocks_split() {
    for format in formats().filter(|f| f.granule() != Granule::K4) {
        let mut pt = table(format);
        let g = pt.granule();
        assert_eq!(
            pt.root().as_u64() % format.table_bytes(format.start_level()),
            0
        );
        let block = sizes(&pt)[1];
        map(&mut pt, block, 4 * block, block, RW).unwrap();
        assert_eq!(pt.walk(block).unwrap().level, 2);
        // A hole in the middle splits the block into granule pages.
        assert_eq!(pt.unmap(block + 3 * g, 2 * g).unwrap(), 2 * g);
        let t = pt.walk(block + 5 * g).unwrap();
        assert_eq!(
            (t.level, t.size, t.phys.as_u64()),
            (3, g, 4 * block + 5 * g)
        );
        assert_eq!(pt.iova_to_phys(block + 4 * g), None);
        assert_eq!(
            pt.iova_to_phys(block + 2 * g + 7),
            Some(PhysAddr::new(4 * block + 2 * g + 7))
        );
        // The walk went through a granule-aligned table.
        let mut table = pt.root();
        for level in format.start_level()..LAST_LEVEL {
            let index = format.index(level, block);
            match pt.read(table, index).unwrap().decode(&format, level) {
                Decoded::Table(t) => {
                    assert_eq!(t.as_u64() % g, 0, "{format:?} level {level}");
                    table = t;
                }
                other => panic!("{other:?} at level {level}"),
            }
        }
    }
}
