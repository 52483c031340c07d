//! Fuzzes the VMSAv8-64 page tables, in every granule, input size and
//! stage, with sequences of map, map-one-page, unmap and translate, against
//! a model that is only an ordered map of mapped ranges, checking:
//! - a map succeeds exactly when the range is valid and entirely unmapped,
//!   and an unmap exactly when the range is valid and entirely mapped; a
//!   failed call changes no translation;
//! - `unmap` reports the bytes it unmapped;
//! - every translation (probed at range edges and at arbitrary addresses)
//!   is the model's, with a leaf size the format allows, aligned in both
//!   address spaces, and never larger than the mapping it came from;
//! - dropping the tables frees every page (LeakSanitizer).
#![no_main]

use std::collections::BTreeMap;

use dma_coherence::HardwareCoherent;
use dma_core::{ErrorKind, HostMemory, PhysAddr};
use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage, Vmsav8Table};
use dma_iommu::{IoPageTable, Prot};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    /// `pages` granules at granule index `at`, to `at + shift` granules of
    /// physical space (a zero shift keeps blocks possible).
    Map { at: u32, pages: u16, shift: u16, prot: u8 },
    /// One leaf of the `size_index`-th allowed page size.
    MapPage { at: u32, size_index: u8, shift: u16 },
    Unmap { at: u32, pages: u16 },
    Translate { at: u64 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    granule: u8,
    ias: u8,
    stage2: bool,
    ops: Vec<Op>,
}

/// Mapped ranges: IOVA start -> (length, physical start).
#[derive(Default)]
struct Model(BTreeMap<u64, (u64, u64)>);

impl Model {
    fn lookup(&self, iova: u64) -> Option<(u64, u64, u64)> {
        let (&start, &(len, phys)) = self.0.range(..=iova).next_back()?;
        (iova < start + len).then_some((start, len, phys + (iova - start)))
    }

    /// Bytes of `[iova, iova + len)` that are mapped.
    fn mapped_bytes(&self, iova: u64, len: u64) -> u64 {
        let end = iova + len;
        let first = self.lookup(iova).map_or(iova, |(s, _, _)| s);
        self.0
            .range(first..end)
            .map(|(&s, &(l, _))| (s + l).min(end) - s.max(iova))
            .sum()
    }

    fn insert(&mut self, iova: u64, len: u64, phys: u64) {
        self.0.insert(iova, (len, phys));
    }

    fn remove(&mut self, iova: u64, len: u64) {
        let end = iova + len;
        let first = self.lookup(iova).map_or(iova, |(s, _, _)| s);
        let hit: Vec<_> = self.0.range(first..end).map(|(&s, &v)| (s, v)).collect();
        for (s, (l, p)) in hit {
            self.0.remove(&s);
            if s < iova {
                self.0.insert(s, (iova - s, p));
            }
            if s + l > end {
                self.0.insert(end, (s + l - end, p + (end - s)));
            }
        }
    }
}

struct Harness {
    pt: Vmsav8Table<HostMemory, HardwareCoherent>,
    model: Model,
    granule: u64,
    top: u64,
    sizes: Vec<u64>,
}

impl Harness {
    /// An IOVA from a granule index: low indexes, and the same indexes
    /// counted down from the top of the input space.
    fn iova(&self, at: u32) -> u64 {
        let offset = u64::from(at >> 1) * self.granule % self.top;
        if at & 1 == 0 {
            offset
        } else {
            self.top - self.granule - offset
        }
    }

    fn phys(&self, iova: u64, shift: u16) -> u64 {
        (iova + u64::from(shift) * self.granule) % (1 << 40)
    }

    fn valid(&self, iova: u64, len: u64) -> bool {
        len > 0 && iova.checked_add(len).is_some_and(|e| e <= self.top)
    }

    fn check(&self, iova: u64) {
        let got = self.pt.translate(iova);
        let want = self.model.lookup(iova);
        assert_eq!(got.map(|l| l.phys.as_u64()), want.map(|w| w.2), "translation of {iova:#x}");
        assert_eq!(self.pt.iova_to_phys(iova), got.map(|l| l.phys));
        if let (Some(leaf), Some((start, len, phys))) = (got, want) {
            assert!(self.sizes.contains(&leaf.size), "leaf size {:#x}", leaf.size);
            assert_eq!(leaf.phys.as_u64() % leaf.size, iova % leaf.size, "leaf not aligned alike");
            let leaf_start = iova - iova % leaf.size;
            // The leaf lies inside one mapping that was made at once, or is
            // what remains of one: never beyond what the model maps.
            assert!(self.model.mapped_bytes(leaf_start, leaf.size) == leaf.size, "leaf beyond the mapping");
            let _ = (start, len, phys);
        }
    }

    fn map(&mut self, iova: u64, len: u64, phys: u64, prot: Prot, one_page: bool) {
        let got = if one_page {
            // SAFETY: nothing walks these tables for real; `phys` is a label.
            unsafe { self.pt.map_page(iova, PhysAddr::new(phys), len, prot) }
        } else {
            // SAFETY: nothing walks these tables for real (no device is
            // attached); `phys` is only a label the model compares.
            unsafe { self.pt.map(iova, PhysAddr::new(phys), len, prot) }
        };
        let valid = self.valid(iova, len) && prot.intersects(Prot::READ | Prot::WRITE);
        let aligned = if one_page { self.sizes.contains(&len) && iova % len == 0 && phys % len == 0 } else { true };
        match got {
            Ok(()) => {
                assert!(valid && aligned, "mapped an invalid range {iova:#x}+{len:#x}");
                assert_eq!(self.model.mapped_bytes(iova, len), 0, "mapped over a mapping");
                self.model.insert(iova, len, phys);
            }
            Err(e) => {
                if valid && aligned {
                    assert!(
                        matches!(e.kind(), ErrorKind::AlreadyMapped) && self.model.mapped_bytes(iova, len) > 0,
                        "refused a free range {iova:#x}+{len:#x}: {e}"
                    );
                }
            }
        }
        self.check(iova);
        if len > 0 {
            self.check(iova.wrapping_add(len - 1));
        }
    }

    fn unmap(&mut self, iova: u64, len: u64) {
        let got = self.pt.unmap(iova, len);
        match got {
            Ok(bytes) => {
                assert!(self.valid(iova, len));
                assert_eq!(self.model.mapped_bytes(iova, len), len, "unmapped a hole");
                assert_eq!(bytes, len, "unmap reported {bytes:#x}");
                self.model.remove(iova, len);
            }
            Err(e) => {
                if self.valid(iova, len) {
                    assert_eq!(e.kind(), ErrorKind::NotMapped, "{e}");
                    assert!(self.model.mapped_bytes(iova, len) < len);
                }
            }
        }
        for probe in [iova.wrapping_sub(1), iova, iova.wrapping_add(len.wrapping_sub(1)), iova.wrapping_add(len)] {
            if probe < self.top {
                self.check(probe);
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let granule = [Granule::K4, Granule::K16, Granule::K64][usize::from(input.granule % 3)];
    let ias = 32 + u32::from(input.ias % 17);
    let stage = if input.stage2 { Stage::Two } else { Stage::One };
    let format = Format::new(granule, ias, stage).unwrap();
    let pt = Vmsav8Table::with_format(HostMemory, HardwareCoherent, format).unwrap();
    let sizes: Vec<u64> = (0..64).map(|b| 1u64 << b).filter(|s| pt.page_sizes() & s != 0).collect();
    let mut h = Harness {
        granule: pt.granule(),
        top: 1 << pt.ias_bits(),
        sizes,
        pt,
        model: Model::default(),
    };
    for op in input.ops.into_iter().take(64) {
        match op {
            Op::Map { at, pages, shift, prot } => {
                let iova = h.iova(at);
                let len = u64::from(pages) * h.granule;
                let prot = Prot::from_bits_truncate(u32::from(prot));
                let phys = h.phys(iova, shift);
                h.map(iova, len, phys, prot, false);
            }
            Op::MapPage { at, size_index, shift } => {
                let size = h.sizes[usize::from(size_index) % h.sizes.len()];
                let iova = h.iova(at) / size * size;
                let phys = h.phys(iova, shift);
                h.map(iova, size, phys, Prot::READ | Prot::WRITE, true);
            }
            Op::Unmap { at, pages } => {
                let iova = h.iova(at);
                h.unmap(iova, u64::from(pages) * h.granule);
            }
            Op::Translate { at } => {
                let iova = at % h.top;
                h.check(iova);
            }
        }
    }
});
