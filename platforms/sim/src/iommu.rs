//! The simulated IOMMU: an Arm VMSAv8-64 table walker for every granule
//! (4, 16, 64 KiB), input sizes up to 48 bits and both stages, and a
//! per-device IOTLB.
//!
//! Written from the Arm ARM (DDI 0487, chapter D8 "The AArch64 Virtual
//! Memory System Architecture"), independently of the `dma-iommu` table
//! writer, so that each checks the other:
//! - a granule of `2^g` bytes: each level resolves `g - 3` bits, level 3
//!   the bits just above the page offset, level `n` the `g - 3` bits above
//!   level `n + 1`'s (D8.2);
//! - the walk starts where the input size says: at stage 1 (T0SZ) the
//!   level whose bits include the top input bit; at stage 2 the level the
//!   stream table names (S2SL0), whose table may be up to 16 concatenated
//!   tables (D8.2.5, "concatenated translation tables");
//! - descriptor bits `[1:0]`: `0bx0` invalid; `0b11` table at levels 0-2
//!   and page at level 3; `0b01` block where the granule has blocks with a
//!   48-bit output (4 KiB: levels 1 and 2; 16 and 64 KiB: level 2),
//!   reserved (translation fault) elsewhere (D8.3.1, D8.3.2);
//! - next-level table and output addresses are bits `[47:g]`; set bits in
//!   `[51:48]` are an address size fault, as are bits `[15:12]` with the
//!   64 KiB granule, which hold OA\[51:48\] there (D8.3, 48-bit output);
//! - AF, bit 10, must be 1, else an access flag fault (D8.4.6; this IOMMU
//!   does not manage the flag in hardware);
//! - stage 1: AP\[2\], bit 7 of a block or page descriptor, and
//!   APTable\[1\], bit 62 of a table descriptor, make the range read-only: a
//!   write is a permission fault (D8.4.1, hierarchical permissions). AP\[1\]
//!   (unprivileged access) does not apply to a device stream here;
//! - stage 2: S2AP\[0\], bit 6, allows reads and S2AP\[1\], bit 7, writes;
//!   tables carry no permissions (D8.4.2);
//! - input addresses beyond the input size fault at the initial level.

use std::collections::{HashMap, VecDeque};

use crate::{Access, FaultKind};

/// The translation granule and page size of the default regime, and the
/// unit the IOTLB caches.
pub const GRANULE: u64 = 4096;
const OA_LIMIT_BITS: u32 = 48;
const HIGH_OA: u64 = 0x000f_0000_0000_0000;
/// Bits 15:12 hold OA\[51:48\] with the 64 KiB granule.
const OA_51_48_64K: u64 = 0xf000;

/// Descriptor bit positions (Arm ARM D8.3).
pub mod desc {
    /// Bit 0: the descriptor is valid.
    pub const VALID: u64 = 1 << 0;
    /// Bit 1: table (levels 0-2) or page (level 3); clear: block.
    pub const TABLE_OR_PAGE: u64 = 1 << 1;
    /// Stage 2, bit 6: S2AP\[0\], reads allowed.
    pub const S2AP_R: u64 = 1 << 6;
    /// Stage 1, bit 7: AP\[2\], read-only.
    pub const AP_RO: u64 = 1 << 7;
    /// Stage 2, bit 7: S2AP\[1\], writes allowed.
    pub const S2AP_W: u64 = 1 << 7;
    /// Bit 10: the access flag.
    pub const AF: u64 = 1 << 10;
    /// Bit 62: APTable\[1\], no writes through this table (stage 1).
    pub const AP_TABLE_RO: u64 = 1 << 62;
}

/// The translation stage: how the walker reads permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Stage 1 (a context descriptor).
    One,
    /// Stage 2 (a stream table entry).
    Two,
}

/// What the walker needs from a CD or STE: granule (TG0 / S2TG), input size
/// (T0SZ / S2T0SZ), stage, and the initial level (derived at stage 1,
/// S2SL0 at stage 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regime {
    granule_shift: u32,
    input_bits: u32,
    stage: Stage,
    start_level: u8,
}

impl Regime {
    /// Stage 1, 4 KiB granule, 48-bit input.
    pub const DEFAULT: Self = Self {
        granule_shift: 12,
        input_bits: 48,
        stage: Stage::One,
        start_level: 0,
    };

    fn stride(granule_shift: u32) -> u32 {
        granule_shift - 3
    }

    /// The lowest input bit `level` resolves.
    fn lsb(granule_shift: u32, level: u8) -> u32 {
        granule_shift + Self::stride(granule_shift) * u32::from(3 - level)
    }

    fn check_geometry(granule_shift: u32, input_bits: u32) -> Option<()> {
        matches!(granule_shift, 12 | 14 | 16).then_some(())?;
        (25..=48).contains(&input_bits).then_some(())
    }

    /// A stage-1 regime: the walk starts at the level holding the top
    /// input bit. `None` for a granule other than 4, 16 or 64 KiB (given as
    /// its log2) or an input size outside 25..=48 bits.
    pub fn stage1(granule_shift: u32, input_bits: u32) -> Option<Self> {
        Self::check_geometry(granule_shift, input_bits)?;
        let start_level = (0..=3u8)
            .rev()
            .find(|&l| input_bits <= Self::lsb(granule_shift, l) + Self::stride(granule_shift))?;
        Some(Self {
            granule_shift,
            input_bits,
            stage: Stage::One,
            start_level,
        })
    }

    /// A stage-2 regime starting at `start_level`, whose initial table
    /// resolves the remaining input bits: at least one, and at most the
    /// level's own bits plus four (16 concatenated tables). `None` when the
    /// combination is invalid.
    pub fn stage2(granule_shift: u32, input_bits: u32, start_level: u8) -> Option<Self> {
        Self::check_geometry(granule_shift, input_bits)?;
        if start_level > 3 {
            return None;
        }
        let lsb = Self::lsb(granule_shift, start_level);
        let bits = input_bits.checked_sub(lsb).filter(|&b| b >= 1)?;
        (bits <= Self::stride(granule_shift) + 4).then_some(Self {
            granule_shift,
            input_bits,
            stage: Stage::Two,
            start_level,
        })
    }

    /// The initial level.
    pub fn start_level(&self) -> u8 {
        self.start_level
    }

    fn has_block(&self, level: u8) -> bool {
        match self.granule_shift {
            12 => level == 1 || level == 2,
            _ => level == 2,
        }
    }
}

/// A successful walk: where the IOVA's 4 KiB page lives and what the leaf
/// allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Physical address of the 4 KiB page holding the IOVA (inside a larger
    /// page or block for those).
    pub page: u64,
    /// False if a stage-1 AP\[2\] or APTable\[1\] on the way, or a clear
    /// stage-2 S2AP\[1\], made it read-only.
    pub writable: bool,
    /// False if a stage-2 S2AP\[0\] is clear.
    pub readable: bool,
    /// The level of the leaf descriptor.
    pub level: u8,
    /// The size of the leaf (page or block) in bytes.
    pub size: u64,
}

/// Walks the stage-1, 4 KiB-granule, 48-bit tables rooted at `root` for
/// `iova` ([`Regime::DEFAULT`]; see [`walk_regime`]).
///
/// # Errors
///
/// The fault the hardware would raise, with its level.
pub fn walk(
    root: u64,
    iova: u64,
    access: Access,
    read: impl FnMut(u64) -> Option<u64>,
) -> Result<Leaf, FaultKind> {
    walk_regime(&Regime::DEFAULT, root, iova, access, read)
}

/// Walks the tables of `regime` rooted at `root` for `iova`, reading each
/// descriptor with `read` (which returns `None` for memory the walker may
/// not read). Permission is checked for `access`.
///
/// # Errors
///
/// The fault the hardware would raise, with its level.
pub fn walk_regime(
    regime: &Regime,
    root: u64,
    iova: u64,
    access: Access,
    mut read: impl FnMut(u64) -> Option<u64>,
) -> Result<Leaf, FaultKind> {
    let g = regime.granule_shift;
    let oa_mask = ((1u64 << OA_LIMIT_BITS) - 1) & !((1u64 << g) - 1);
    let start = regime.start_level;
    if iova >> regime.input_bits != 0 {
        return Err(FaultKind::Translation { level: start });
    }
    let mut table = root & oa_mask;
    let (mut readable, mut writable) = (true, true);
    for level in start..=3u8 {
        let lsb = Regime::lsb(g, level);
        let width = if level == start {
            regime.input_bits - lsb
        } else {
            Regime::stride(g)
        };
        let index = (iova >> lsb) & ((1u64 << width) - 1);
        let d = read(table + index * 8).ok_or(FaultKind::WalkAbort { level })?;
        if d & desc::VALID == 0 {
            return Err(FaultKind::Translation { level });
        }
        if d & HIGH_OA != 0 || (g == 16 && d & OA_51_48_64K != 0) {
            return Err(FaultKind::AddressSize { level });
        }
        let is_table_or_page = d & desc::TABLE_OR_PAGE != 0;
        if level < 3 && is_table_or_page {
            if regime.stage == Stage::One && d & desc::AP_TABLE_RO != 0 {
                writable = false;
            }
            table = d & oa_mask;
            continue;
        }
        // A leaf: a page at level 3, a block where the granule has them;
        // the 0b01 encoding anywhere else is reserved.
        if !is_table_or_page && !regime.has_block(level) {
            return Err(FaultKind::Translation { level });
        }
        if d & desc::AF == 0 {
            return Err(FaultKind::AccessFlag { level });
        }
        match regime.stage {
            Stage::One => writable &= d & desc::AP_RO == 0,
            Stage::Two => {
                readable = d & desc::S2AP_R != 0;
                writable = d & desc::S2AP_W != 0;
            }
        }
        let allowed = match access {
            Access::Read => readable,
            Access::Write => writable,
        };
        if !allowed {
            return Err(FaultKind::Permission { level });
        }
        let size = 1u64 << lsb;
        let base = d & oa_mask & !(size - 1);
        let page = base + (iova & (size - 1) & !(GRANULE - 1));
        return Ok(Leaf {
            page,
            writable,
            readable,
            level,
            size,
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
            readable: true,
            level: 3,
            size: GRANULE,
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
