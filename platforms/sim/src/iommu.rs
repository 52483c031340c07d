//! The simulated IOMMU: an Arm VMSAv8-64 stage-1 table walker for the 4 KiB
//! granule and 48-bit input addresses, and a per-device IOTLB.
//!
//! Written from the Arm ARM (DDI 0487, chapter D8 "The AArch64 Virtual
//! Memory System Architecture"), independently of the `dma-iommu` table
//! writer, so that each checks the other:
//! - four lookup levels; level `n` indexes with IOVA bits
//!   `[47 - 9n : 39 - 9n]` (D8.2, 4 KB translation granule);
//! - descriptor bits `[1:0]`: `0bx0` invalid; `0b11` table at levels 0-2
//!   and page at level 3; `0b01` block at levels 1 (1 GiB) and 2 (2 MiB),
//!   reserved (translation fault) at levels 0 and 3 (D8.3.1, D8.3.2);
//! - next-level table and output addresses are bits `[47:12]`; set bits in
//!   `[51:48]` are an address size fault (D8.3, 48-bit output);
//! - AF, bit 10, must be 1, else an access flag fault (D8.4.6; this IOMMU
//!   does not manage the flag in hardware);
//! - AP\[2\], bit 7 of a block or page descriptor, and APTable\[1\], bit 62 of
//!   a table descriptor, make the range read-only: a write is a permission
//!   fault (D8.4.1, hierarchical permissions). AP\[1\] (unprivileged access)
//!   does not apply to a device stream here.
//! - input addresses at or above 2^48 fault at level 0 (T0SZ = 16).

use std::collections::{HashMap, VecDeque};

use crate::{Access, FaultKind};

/// The translation granule and page size.
pub const GRANULE: u64 = 4096;
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
const HIGH_OA: u64 = 0x000f_0000_0000_0000;

/// Descriptor bit positions (Arm ARM D8.3).
pub mod desc {
    /// Bit 0: the descriptor is valid.
    pub const VALID: u64 = 1 << 0;
    /// Bit 1: table (levels 0-2) or page (level 3); clear: block.
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// Bit 7: AP\[2\], read-only.
    pub const AP_RO: u64 = 1 << 7;
    /// Bit 10: the access flag.
    pub const AF: u64 = 1 << 10;
    /// Bit 62: APTable\[1\], no writes through this table.
    pub const AP_TABLE_RO: u64 = 1 << 62;
}

/// A successful walk: where the IOVA's 4 KiB page lives and whether it may
/// be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Physical address of the 4 KiB page holding the IOVA (inside a block
    /// for block mappings).
    pub page: u64,
    /// False if AP\[2\] or an APTable\[1\] on the way made it read-only.
    pub writable: bool,
    /// The level of the leaf descriptor (1, 2 or 3).
    pub level: u8,
}

/// Walks the stage-1 tables rooted at `root` for `iova`, reading each
/// descriptor with `read` (which returns `None` for memory the walker may
/// not read). Permission is checked for `access`.
///
/// # Errors
///
/// The fault the hardware would raise, with its level.
pub fn walk(
    root: u64,
    iova: u64,
    access: Access,
    mut read: impl FnMut(u64) -> Option<u64>,
) -> Result<Leaf, FaultKind> {
    if iova >> 48 != 0 {
        return Err(FaultKind::Translation { level: 0 });
    }
    let mut table = root & OA_MASK;
    let mut writable = true;
    for level in 0u8..4 {
        let shift = 39 - 9 * u32::from(level);
        let index = (iova >> shift) & 0x1ff;
        let d = read(table + index * 8).ok_or(FaultKind::WalkAbort { level })?;
        if d & desc::VALID == 0 {
            return Err(FaultKind::Translation { level });
        }
        if d & HIGH_OA != 0 {
            return Err(FaultKind::AddressSize { level });
        }
        let is_table_or_page = d & desc::TABLE_OR_PAGE != 0;
        if level < 3 && is_table_or_page {
            if d & desc::AP_TABLE_RO != 0 {
                writable = false;
            }
            table = d & OA_MASK;
            continue;
        }
        // A leaf: a page at level 3, a block at levels 1 and 2. A block at
        // level 0 or the 0b01 encoding at level 3 is reserved.
        if (level == 3 && !is_table_or_page) || level == 0 {
            return Err(FaultKind::Translation { level });
        }
        if d & desc::AF == 0 {
            return Err(FaultKind::AccessFlag { level });
        }
        if d & desc::AP_RO != 0 {
            writable = false;
        }
        if access == Access::Write && !writable {
            return Err(FaultKind::Permission { level });
        }
        let block = 1u64 << shift;
        let base = d & OA_MASK & !(block - 1);
        let page = base + (iova & (block - 1) & !(GRANULE - 1));
        return Ok(Leaf {
            page,
            writable,
            level,
        });
    }
    unreachable!("level 3 always returns")
}

/// A device's IOTLB: cached walks, by 4 KiB input page, FIFO-replaced.
/// Stale entries survive until invalidated, as on hardware: a backend that
/// forgets to invalidate after an unmap lets the device keep reaching the
/// page (the sim's live-range check then refuses it as a bus error).
#[derive(Debug, Default)]
pub(crate) struct Iotlb {
    entries: HashMap<u64, Leaf>,
    order: VecDeque<u64>,
}

impl Iotlb {
    const CAPACITY: usize = 256;

    pub(crate) fn lookup(&self, iova: u64) -> Option<Leaf> {
        self.entries.get(&(iova / GRANULE)).copied()
    }

    pub(crate) fn insert(&mut self, iova: u64, leaf: Leaf) {
        let key = iova / GRANULE;
        if self.entries.insert(key, leaf).is_none() {
            self.order.push_back(key);
            if self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.entries.remove(&old);
                }
            }
        }
    }

    pub(crate) fn invalidate_all(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub(crate) fn invalidate(&mut self, iova: u64, len: u64) {
        let first = iova / GRANULE;
        let last = iova.saturating_add(len.max(1) - 1) / GRANULE;
        self.entries.retain(|k, _| *k < first || *k > last);
        self.order.retain(|k| *k < first || *k > last);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little table builder: tables are 512-entry arrays in a map.
    struct Tables(HashMap<u64, u64>);

    impl Tables {
        fn set(&mut self, table: u64, index: u64, d: u64) {
            self.0.insert(table + index * 8, d);
        }
        fn read(&self) -> impl FnMut(u64) -> Option<u64> + '_ {
            |a| Some(self.0.get(&a).copied().unwrap_or(0))
        }
    }

    const T: u64 = desc::VALID | desc::TABLE_OR_PAGE;
    const LEAF: u64 = desc::VALID | desc::TABLE_OR_PAGE | desc::AF;

    fn four_level(iova: u64, page: u64, leaf_bits: u64) -> Tables {
        let mut t = Tables(HashMap::new());
        let idx = |l: u32| (iova >> (39 - 9 * l)) & 0x1ff;
        t.set(0x1000, idx(0), 0x2000 | T);
        t.set(0x2000, idx(1), 0x3000 | T);
        t.set(0x3000, idx(2), 0x4000 | T);
        t.set(0x4000, idx(3), page | leaf_bits);
        t
    }

    #[test]
    fn page_translation() {
        let iova = 0x0000_1234_5678_9abc;
        let t = four_level(iova, 0x8000_0000, LEAF);
        let leaf = walk(0x1000, iova, Access::Write, t.read()).unwrap();
        assert_eq!(leaf.page, 0x8000_0000);
        assert_eq!(leaf.level, 3);
        assert!(leaf.writable);
    }

    #[test]
    fn blocks_at_levels_1_and_2() {
        let iova = 0x4_4567_8000u64;
        let mut t = Tables(HashMap::new());
        t.set(0x1000, (iova >> 39) & 0x1ff, 0x2000 | T);
        // 1 GiB block at level 1.
        t.set(
            0x2000,
            (iova >> 30) & 0x1ff,
            0x40_0000_0000 | desc::VALID | desc::AF,
        );
        let leaf = walk(0x1000, iova, Access::Read, t.read()).unwrap();
        assert_eq!(leaf.level, 1);
        assert_eq!(leaf.page, 0x40_0000_0000 + (iova & 0x3fff_f000));
        // 2 MiB block at level 2.
        t.set(0x2000, (iova >> 30) & 0x1ff, 0x3000 | T);
        t.set(
            0x3000,
            (iova >> 21) & 0x1ff,
            0x60_0020_0000 | desc::VALID | desc::AF,
        );
        let leaf = walk(0x1000, iova, Access::Read, t.read()).unwrap();
        assert_eq!(leaf.level, 2);
        assert_eq!(leaf.page, 0x60_0020_0000 + (iova & 0x1f_f000));
    }

    #[test]
    fn faults_name_their_level() {
        let iova = 0x7000;
        let t = four_level(iova, 0x9000, LEAF);
        assert_eq!(
            walk(0x1000, 0x8000, Access::Read, t.read()),
            Err(FaultKind::Translation { level: 3 })
        );
        assert_eq!(
            walk(0x1000, 1 << 48, Access::Read, t.read()),
            Err(FaultKind::Translation { level: 0 })
        );
        let t = four_level(iova, 0x9000, desc::VALID | desc::TABLE_OR_PAGE);
        assert_eq!(
            walk(0x1000, iova, Access::Read, t.read()),
            Err(FaultKind::AccessFlag { level: 3 })
        );
        let t = four_level(iova, 0x9000, LEAF | desc::AP_RO);
        assert!(walk(0x1000, iova, Access::Read, t.read()).is_ok());
        assert_eq!(
            walk(0x1000, iova, Access::Write, t.read()),
            Err(FaultKind::Permission { level: 3 })
        );
        let t = four_level(iova, 0x9000, desc::VALID | desc::AF);
        assert_eq!(
            walk(0x1000, iova, Access::Read, t.read()),
            Err(FaultKind::Translation { level: 3 }),
            "0b01 at level 3 is reserved"
        );
        let t = four_level(iova, 0x1_0000_0000_9000, LEAF);
        assert_eq!(
            walk(0x1000, iova, Access::Read, t.read()),
            Err(FaultKind::AddressSize { level: 3 })
        );
        assert_eq!(
            walk(0x1000, iova, Access::Read, |_| None),
            Err(FaultKind::WalkAbort { level: 0 })
        );
        // A level-0 block is reserved with the 4 KiB granule.
        let mut t0 = Tables(HashMap::new());
        t0.set(0x1000, 0, desc::VALID | desc::AF);
        assert_eq!(
            walk(0x1000, 0x1000, Access::Read, t0.read()),
            Err(FaultKind::Translation { level: 0 })
        );
    }

    #[test]
    fn ap_table_makes_the_subtree_read_only() {
        let iova = 0x20_0000;
        let mut t = four_level(iova, 0x9000, LEAF);
        t.set(0x2000, (iova >> 30) & 0x1ff, 0x3000 | T | desc::AP_TABLE_RO);
        let leaf = walk(0x1000, iova, Access::Read, t.read()).unwrap();
        assert!(!leaf.writable);
        assert_eq!(
            walk(0x1000, iova, Access::Write, t.read()),
            Err(FaultKind::Permission { level: 3 })
        );
    }

    #[test]
    fn iotlb_invalidation() {
        let mut tlb = Iotlb::default();
        let leaf = Leaf {
            page: 0x9000,
            writable: true,
            level: 3,
        };
        tlb.insert(0x1000, leaf);
        tlb.insert(0x2000, leaf);
        assert_eq!(tlb.lookup(0x1fff), Some(leaf));
        tlb.invalidate(0x1000, 1);
        assert_eq!(tlb.lookup(0x1000), None);
        assert_eq!(tlb.lookup(0x2000), Some(leaf));
        tlb.invalidate_all();
        assert_eq!(tlb.len(), 0);
        for i in 0..300 {
            tlb.insert(i * GRANULE, leaf);
        }
        assert_eq!(tlb.len(), Iotlb::CAPACITY);
    }
}
