//! In the spirit of Linux's io-pgtable-arm selftests
//! (`arm_lpae_run_tests`): an empty table translates nothing, every block
//! size maps, overlapping maps fail, partial unmap splits and remaps, and
//! the last page of the address space works.

use core::cell::{Cell, RefCell};
use core::ptr::NonNull;
use std::collections::BTreeMap;
use std::vec::Vec;

use dma_coherence::HardwareCoherent;
use dma_core::{HostMemory, Pages};
use proptest::prelude::*;

use super::*;

const K4: u64 = 4096;
const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;
const RW: Prot = Prot::READ.union(Prot::WRITE);

fn table() -> Vmsav8Table<HostMemory, HardwareCoherent> {
    Vmsav8Table::new(HostMemory, HardwareCoherent).unwrap()
}

/// Maps with a made-up physical address: nothing walks these tables for
/// real, so no memory is reached.
fn map(pt: &mut impl IoPageTable, iova: u64, phys: u64, size: u64, prot: Prot) -> Result<()> {
    // SAFETY: the tables are never given to hardware; `phys` is a label.
    unsafe { pt.map(iova, PhysAddr::new(phys), size, prot) }
}

/// Translations at a set of probe addresses, to show a failed call changed
/// nothing.
fn snapshot(pt: &impl IoPageTable, probes: &[u64]) -> Vec<Option<PhysAddr>> {
    probes.iter().map(|&a| pt.iova_to_phys(a)).collect()
}

#[test]
fn empty_table_translates_nothing() {
    let pt = table();
    for iova in [0, K4, M2, G1, 0x1234_5000, (1 << 48) - K4] {
        assert_eq!(pt.iova_to_phys(iova), None);
        assert_eq!(
            pt.walk(iova),
            Err(FaultKind::Translation { level: Some(0) })
        );
    }
    assert_eq!(pt.walk(1 << 48), Err(FaultKind::AddressSize));
}

#[test]
fn each_block_size_maps_at_its_level_and_overlaps_fail() {
    let mut pt = table();
    let cases = [(K4, 3u8), (M2, 2), (G1, 1)];
    for (i, &(size, level)) in cases.iter().enumerate() {
        let iova = (i as u64 + 1) * 4 * G1;
        let phys = 0x80_0000_0000 + i as u64 * 4 * G1;
        map(&mut pt, iova, phys, size, RW).unwrap();
        let t = pt.walk(iova + size - 8).unwrap();
        assert_eq!((t.level, t.size), (level, size));
        assert_eq!(t.phys.as_u64(), phys + size - 8);
        // Every overlap fails, whatever its size or alignment.
        let probes = [iova, iova + size - K4];
        let before = snapshot(&pt, &probes);
        for (o_iova, o_size) in [(iova, K4), (iova + size - K4, 2 * K4), (iova, size)] {
            let e = map(&mut pt, o_iova, 0x1000, o_size, RW).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyMapped);
        }
        assert_eq!(snapshot(&pt, &probes), before);
        pt.unmap(iova, size).unwrap();
        assert_eq!(pt.iova_to_phys(iova), None);
    }
}

#[test]
fn mixed_range_uses_the_largest_blocks_alignment_allows() {
    let mut pt = table();
    // 4 KiB below a 2 MiB line, then a 2 MiB block, then 4 KiB: three leaves.
    let iova = G1 + M2 - K4;
    let phys = 0x4000_0000 + M2 - K4;
    map(&mut pt, iova, phys, M2 + 2 * K4, RW).unwrap();
    assert_eq!(pt.walk(iova).unwrap().level, 3);
    assert_eq!(pt.walk(iova + K4).unwrap().level, 2);
    assert_eq!(pt.walk(iova + K4 + M2).unwrap().level, 3);
    // Differently aligned physical memory forces pages throughout.
    map(&mut pt, 8 * G1, 0x4000_1000, M2, RW).unwrap();
    assert_eq!(pt.walk(8 * G1).unwrap().level, 3);
}

#[test]
fn partial_unmap_splits_the_block_then_remap_works() {
    let mut pt = table();
    map(&mut pt, G1, 0x40_0000_0000, G1, Prot::READ).unwrap();
    for size in [K4, M2] {
        let hole = G1 + size;
        pt.unmap(hole, size).unwrap();
        assert_eq!(pt.iova_to_phys(hole), None);
        assert_eq!(pt.iova_to_phys(hole + size - K4), None);
        assert_eq!(
            pt.iova_to_phys(hole - K4),
            Some(PhysAddr::new(0x40_0000_0000 + size - K4)),
            "the rest of the block still translates"
        );
        assert_eq!(
            pt.iova_to_phys(hole + size),
            Some(PhysAddr::new(0x40_0000_0000 + 2 * size))
        );
        // The split leaves keep the block's attributes.
        assert_eq!(
            pt.walk(hole + size).unwrap().check(Access::Write),
            Err(FaultKind::Permission {
                level: Some(pt.walk(hole + size).unwrap().level)
            })
        );
        map(&mut pt, hole, 0x1_0000_0000, size, RW).unwrap();
        assert_eq!(
            pt.iova_to_phys(hole + 8),
            Some(PhysAddr::new(0x1_0000_0008))
        );
    }
}

#[test]
fn last_page_of_the_address_space_maps_and_unmaps() {
    let mut pt = table();
    let last = (1 << 48) - K4;
    map(&mut pt, last, 0xffff_ffff_f000, K4, RW).unwrap();
    assert_eq!(
        pt.iova_to_phys(last + 0xfff),
        Some(PhysAddr::new(0xffff_ffff_ffff))
    );
    pt.unmap(last, K4).unwrap();
    assert_eq!(pt.iova_to_phys(last), None);
    // The last 1 GiB as a block in a fresh table, then its last page
    // split off and remapped.
    let mut pt = table();
    map(&mut pt, (1 << 48) - G1, 0, G1, RW).unwrap();
    assert_eq!(pt.walk(last).unwrap().level, 1);
    pt.unmap(last, K4).unwrap();
    assert_eq!(pt.iova_to_phys(last), None);
    assert_eq!(pt.walk(last - K4).unwrap().level, 3);
    map(&mut pt, last, 0x5000, K4, RW).unwrap();
    assert_eq!(pt.iova_to_phys(last), Some(PhysAddr::new(0x5000)));
    pt.unmap((1 << 48) - G1, G1).unwrap();
    // Tables left empty under the range do not stop a later map.
    map(&mut pt, (1 << 48) - G1, 0, G1, RW).unwrap();
    assert_eq!(pt.iova_to_phys(last), Some(PhysAddr::new(G1 - K4)));
}

#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() {
    let mut pt = table();
    map(&mut pt, M2, 0x4000_0000, 4 * K4, RW).unwrap();
    let probes = [M2, M2 + 3 * K4, M2 + 4 * K4, 0];
    let before = snapshot(&pt, &probes);
    let tables = pt.table_pages();
    let kind = |r: Result<()>| r.unwrap_err().kind();
    let unmap_kind =
        |pt: &mut Vmsav8Table<_, _>, iova, size| pt.unmap(iova, size).unwrap_err().kind();
    assert_eq!(kind(map(&mut pt, 0, 0, 0, RW)), ErrorKind::ZeroSize);
    assert_eq!(kind(map(&mut pt, 0x800, 0, K4, RW)), ErrorKind::Misaligned);
    assert_eq!(kind(map(&mut pt, 0, 0x800, K4, RW)), ErrorKind::Misaligned);
    assert_eq!(
        kind(map(&mut pt, 1 << 48, 0, K4, RW)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        kind(map(&mut pt, 0, 1 << 48, K4, RW)),
        ErrorKind::Unreachable
    );
    assert_eq!(
        kind(map(&mut pt, 0, 0, K4, Prot::CACHE)),
        ErrorKind::Unsupported
    );
    assert_eq!(unmap_kind(&mut pt, 0, 0), ErrorKind::ZeroSize);
    assert_eq!(
        unmap_kind(&mut pt, G1, K4),
        ErrorKind::NotMapped,
        "never mapped"
    );
    assert_eq!(
        unmap_kind(&mut pt, M2, 5 * K4),
        ErrorKind::NotMapped,
        "runs past the end"
    );
    assert_eq!(unmap_kind(&mut pt, !0xfff, K4), ErrorKind::OutOfRange);
    assert_eq!(snapshot(&pt, &probes), before);
    assert_eq!(pt.table_pages(), tables);
    assert_eq!(pt.unmap(M2, 4 * K4).unwrap(), 4 * K4);
    assert_eq!(
        unmap_kind(&mut pt, M2, 4 * K4),
        ErrorKind::NotMapped,
        "double unmap"
    );
}

#[test]
fn descriptor_encoding_is_exact() {
    // Page, read-write, cacheable: UXN|PXN, nG, AF, SH=inner, AP=01, AttrIndx 0.
    let f = Format::default();
    let d = Descriptor::leaf(&f, 3, PhysAddr::new(0x4000_1000), RW | Prot::CACHE);
    assert_eq!(d.0, 0x0060_0000_4000_1f43);
    // 2 MiB block, read-only, non-cacheable: AP=11, SH=outer, AttrIndx 1.
    let d = Descriptor::leaf(&f, 2, PhysAddr::new(0x4020_0000), Prot::READ);
    assert_eq!(d.0, 0x0060_0000_4020_0ec5);
    assert_eq!(
        (d.attr_index(), d.shareability()),
        (MAIR_IDX_NON_CACHEABLE, 0b10)
    );
    assert_eq!(Descriptor::table(PhysAddr::new(0x4000_3000)).0, 0x4000_3003);
    assert_eq!(
        Descriptor(0x4000_3001).decode(&f, 0),
        Decoded::Reserved,
        "no level-0 blocks"
    );
    assert_eq!(Descriptor(0x4000_3001).decode(&f, 3), Decoded::Reserved);
    assert_eq!(MAIR & 0xff, 0xff);
    assert_eq!((MAIR >> 8) & 0xff, 0x44);
}

#[test]
fn permissions_follow_ap_bits() {
    let mut pt = table();
    map(&mut pt, 0, 0x1000, K4, Prot::READ).unwrap();
    map(&mut pt, K4, 0x2000, K4, Prot::WRITE).unwrap();
    let ro = pt.walk(0).unwrap();
    assert_eq!(ro.check(Access::Read), Ok(()));
    assert_eq!(
        ro.check(Access::Write),
        Err(FaultKind::Permission { level: Some(3) })
    );
    let rw = pt.walk(K4).unwrap();
    assert_eq!(
        rw.check(Access::Write),
        Ok(()),
        "write-only maps read-write in stage 1"
    );
    let no_af = Translation {
        leaf: Descriptor(ro.leaf.0 & !DescBits::AF.bits()),
        ..ro
    };
    assert_eq!(
        no_af.check(Access::Read),
        Err(FaultKind::AccessFlag { level: Some(3) })
    );
}

/// A non-coherent walker: records every clean.
#[derive(Default)]
struct RecordingCache {
    cleaned: RefCell<Vec<(usize, usize)>>,
}

// SAFETY: a test double that only records; no memory is maintained, which
// is fine because nothing but this process reads the tables.
unsafe impl CacheMaintenance for RecordingCache {
    fn is_coherent(&self) -> bool {
        false
    }
    fn line_size(&self) -> usize {
        64
    }
    unsafe fn clean(&self, va: usize, len: usize) {
        self.cleaned.borrow_mut().push((va, len));
    }
    unsafe fn invalidate(&self, _va: usize, _len: usize) {}
    unsafe fn clean_invalidate(&self, _va: usize, _len: usize) {}
}

#[test]
fn every_descriptor_write_is_cleaned_when_the_walk_is_not_coherent() {
    let mut pt = Vmsav8Table::new(HostMemory, RecordingCache::default()).unwrap();
    map(&mut pt, G1 + M2, 0x4000_0000, K4, RW).unwrap();
    // Each descriptor on the walk path must lie in a cleaned range.
    let mut table = pt.root();
    for level in 0..=3u8 {
        let index = pt.format().index(level, G1 + M2);
        let at = table.as_u64() + 8 * index;
        let cleaned = pt.cache.cleaned.borrow();
        assert!(
            cleaned
                .iter()
                .any(|&(va, len)| (va as u64..(va + len) as u64).contains(&at)),
            "descriptor at level {level} not cleaned"
        );
        drop(cleaned);
        match pt.read(table, index).unwrap().decode(pt.format(), level) {
            Decoded::Table(t) => table = t,
            _ => break,
        }
    }
    // The new tables were cleaned whole before being linked.
    assert!(
        pt.cache
            .cleaned
            .borrow()
            .iter()
            .filter(|&&(_, l)| l == 4096)
            .count()
            >= 3
    );
    let n = pt.cache.cleaned.borrow().len();
    pt.unmap(G1 + M2, K4).unwrap();
    assert!(
        pt.cache.cleaned.borrow().len() > n,
        "the cleared leaf is cleaned"
    );
}

#[test]
fn unmap_run_clears_a_page_run_only_where_every_page_maps_to_the_buffer() {
    let mut pt = table();
    let (iova, phys) = (G1 + M2 + 8 * K4, 0x40_0000_0000);
    map(&mut pt, iova, phys, 3 * K4, RW).unwrap();
    let probes: Vec<u64> = (0..3).map(|i| iova + i * K4).collect();
    let mapped = snapshot(&pt, &probes);
    let run = |pt: &mut Vmsav8Table<_, _>, at: u64, to: u64, size: u64| {
        pt.unmap_run(at, PhysAddr::new(to), size).unwrap()
    };
    assert_eq!(
        run(&mut pt, iova, phys + K4, 3 * K4),
        Some(false),
        "another buffer"
    );
    assert_eq!(
        run(&mut pt, iova, phys, 4 * K4),
        Some(false),
        "longer than mapped"
    );
    assert_eq!(snapshot(&pt, &probes), mapped, "a refusal changes nothing");
    // A block's pages, and a run crossing a last-level table, are left to
    // the general path.
    map(&mut pt, 2 * G1, phys, M2, RW).unwrap();
    assert_eq!(
        run(&mut pt, 2 * G1 + K4, phys + K4, K4),
        None,
        "under a block"
    );
    assert_eq!(
        run(&mut pt, G1 + M2 - K4, phys, 2 * K4),
        None,
        "crosses a table"
    );
    assert_eq!(
        pt.unmap_run(iova, PhysAddr::new(phys), 0)
            .unwrap_err()
            .kind(),
        ErrorKind::ZeroSize
    );
    assert_eq!(run(&mut pt, iova + K4, phys + K4, 2 * K4), Some(true));
    assert_eq!(snapshot(&pt, &probes), [mapped[0], None, None]);
    assert_eq!(run(&mut pt, iova + K4, phys + K4, K4), Some(false), "gone");
}

#[test]
fn page_runs_in_other_tables_between_use_the_right_table() {
    // The one-walk paths remember the last last-level table; interleave
    // three 2 MiB blocks' tables so a stale one would map or clear the
    // wrong slots.
    let mut pt = table();
    let blocks = [G1, G1 + M2, 3 * G1];
    for round in 0..3u64 {
        for (b, &base) in blocks.iter().enumerate() {
            let iova = base + round * K4;
            map(
                &mut pt,
                iova,
                0x40_0000_0000 + b as u64 * M2 + round * K4,
                K4,
                RW,
            )
            .unwrap();
        }
    }
    for (b, &base) in blocks.iter().enumerate() {
        for round in 0..3u64 {
            let want = 0x40_0000_0000 + b as u64 * M2 + round * K4;
            assert_eq!(
                pt.iova_to_phys(base + round * K4),
                Some(PhysAddr::new(want))
            );
        }
    }
    for (b, &base) in blocks.iter().enumerate() {
        let phys = PhysAddr::new(0x40_0000_0000 + b as u64 * M2 + K4);
        assert_eq!(pt.unmap_run(base + K4, phys, K4).unwrap(), Some(true));
    }
    for &base in &blocks {
        assert!(pt.iova_to_phys(base).is_some() && pt.iova_to_phys(base + 2 * K4).is_some());
        assert_eq!(pt.iova_to_phys(base + K4), None);
    }
}

/// An environment that refuses one translation, the one after `countdown`
/// more, and is the host's otherwise.
#[derive(Default)]
struct RefusesOnce {
    countdown: Cell<Option<usize>>,
}

// SAFETY: every call but the one refused translation is the host's, which
// keeps the contract; a refusal promises nothing.
unsafe impl PhysMemory for RefusesOnce {
    fn page_size(&self) -> usize {
        HostMemory.page_size()
    }
    fn alloc_pages(
        &self,
        count: usize,
        cacheability: Cacheability,
        max_phys: u64,
    ) -> Result<Pages> {
        HostMemory.alloc_pages(count, cacheability, max_phys)
    }
    unsafe fn free_pages(&self, pages: Pages) {
        // SAFETY: the pages came from the host's alloc_pages above (the
        // caller's promise is passed on).
        unsafe { HostMemory.free_pages(pages) }
    }
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        HostMemory.virt_to_phys(cpu, len)
    }
    fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> Result<NonNull<u8>> {
        match self.countdown.get() {
            Some(0) => {
                self.countdown.set(None);
                Err(Error::new(ErrorKind::NotContiguous, "refused by the test"))
            }
            Some(n) => {
                self.countdown.set(Some(n - 1));
                HostMemory.phys_to_virt(phys, len)
            }
            None => HostMemory.phys_to_virt(phys, len),
        }
    }
}

#[test]
fn a_page_run_whose_write_fails_is_taken_back() {
    let mut pt = Vmsav8Table::new(RefusesOnce::default(), HardwareCoherent).unwrap();
    let iova = G1 + M2;
    // Builds the walk to this block's last-level table and remembers it.
    map(&mut pt, iova, 0x4000_0000, K4, RW).unwrap();
    // The next three pages: three descriptor reads, then the writes; the
    // second write is refused.
    pt.memory().countdown.set(Some(4));
    let e = map(&mut pt, iova + K4, 0x4000_1000, 3 * K4, RW).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotContiguous);
    let probes: Vec<u64> = (0..4).map(|i| iova + i * K4).collect();
    let first = Some(PhysAddr::new(0x4000_0000));
    assert_eq!(
        snapshot(&pt, &probes),
        [first, None, None, None],
        "taken back"
    );
    map(&mut pt, iova + K4, 0x4000_1000, 3 * K4, RW).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random maps and unmaps over a small window agree page by page with a
    /// map from page to physical address.
    #[test]
    fn agrees_with_a_page_model(ops in proptest::collection::vec((any::<bool>(), 0u64..1024, 1u64..600), 1..40)) {
        let mut pt = table();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let base = G1 - 512 * K4; // straddles a 1 GiB and 2 MiB line
        for (is_map, first, pages) in ops {
            let iova = base + first * K4;
            let size = pages * K4;
            let phys = 0x40_0000_0000 + first * K4;
            let range: Vec<u64> = (0..pages).map(|p| iova + p * K4).collect();
            if is_map {
                let free = range.iter().all(|p| !model.contains_key(p));
                let r = map(&mut pt, iova, phys, size, RW);
                prop_assert_eq!(r.is_ok(), free);
                if free {
                    for (i, p) in range.iter().enumerate() {
                        model.insert(*p, phys + i as u64 * K4);
                    }
                }
            } else if first % 2 == 0 {
                let full = range.iter().all(|p| model.contains_key(p));
                prop_assert_eq!(pt.unmap(iova, size).is_ok(), full);
                if full {
                    for p in &range {
                        model.remove(p);
                    }
                }
            } else {
                // The platform's one-walk unmap: it clears only a run whose
                // every page maps to `phys` onwards (here, every mapped
                // run), and leaves what it cannot judge (`None`) to the
                // general path.
                let full = range.iter().all(|p| model.contains_key(p));
                let removed = match pt.unmap_run(iova, PhysAddr::new(phys), size).unwrap() {
                    Some(done) => {
                        prop_assert_eq!(done, full);
                        done
                    }
                    None => {
                        let done = pt.unmap(iova, size).is_ok();
                        prop_assert_eq!(done, full);
                        done
                    }
                };
                if removed {
                    for p in &range {
                        model.remove(p);
                    }
                }
            }
        }
        for p in 0..1600u64 {
            let iova = base + p * K4;
            prop_assert_eq!(pt.iova_to_phys(iova).map(|a| a.as_u64()), model.get(&iova).copied());
        }
    }
}
