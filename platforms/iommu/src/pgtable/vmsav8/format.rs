//! The shape of a VMSAv8-64 translation regime: granule, input size and
//! stage decide how many levels there are, which bits each resolves, where
//! the walk starts and which levels may hold blocks.
//!
//! Facts from the Arm ARM (DDI 0487 K.a, D8.2 "Translation process" and
//! D8.3 "Translation table descriptor formats"), for a 48-bit output
//! address without FEAT_LPA/LPA2:
//! - a granule of `2^g` bytes makes tables of `2^g` bytes holding
//!   `2^(g-3)` descriptors, so each level resolves `g - 3` bits and level 3
//!   resolves the bits just above the page offset;
//! - blocks exist at levels 1 and 2 with the 4 KiB granule (1 GiB, 2 MiB),
//!   and only at level 2 with 16 KiB (32 MiB) and 64 KiB (512 MiB); the
//!   larger blocks those granules define need a 52-bit output address;
//! - the walk starts at the level whose table covers the input size, with
//!   a smaller table there when the input size does not fill it;
//! - at stage 2 up to 16 tables may be concatenated at the initial level
//!   instead of a walk one level deeper. Like Linux's io-pgtable-arm, we
//!   concatenate when the walk would otherwise start at level 0 with at
//!   most 16 entries (4 KiB granule and 40 to 43 input bits; 16 KiB and 48
//!   bits, where a level-0 start needs FEAT_LPA2).

use dma_core::{Error, ErrorKind, Result};

/// Output address bits the descriptors carry.
pub const OAS_BITS: u32 = 48;

/// The deepest level.
pub const LAST_LEVEL: u8 = 3;

/// Stage-2 tables concatenated at most at the initial level.
const MAX_CONCATENATED: u64 = 16;

/// The translation granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4 KiB pages; 2 MiB and 1 GiB blocks.
    K4,
    /// 16 KiB pages; 32 MiB blocks.
    K16,
    /// 64 KiB pages; 512 MiB blocks.
    K64,
}

impl Granule {
    /// log2 of the page size.
    #[inline]
    pub const fn shift(self) -> u32 {
        match self {
            Self::K4 => 12,
            Self::K16 => 14,
            Self::K64 => 16,
        }
    }

    /// The page size in bytes.
    #[inline]
    pub const fn size(self) -> u64 {
        1 << self.shift()
    }

    /// Input bits each level resolves: a table is one page of 8-byte
    /// descriptors.
    #[inline]
    pub const fn bits_per_level(self) -> u32 {
        self.shift() - 3
    }

    /// Whether a block descriptor is allowed at `level` (D8.3).
    #[inline]
    pub const fn has_blocks_at(self, level: u8) -> bool {
        match self {
            Self::K4 => level == 1 || level == 2,
            Self::K16 | Self::K64 => level == 2,
        }
    }
}

/// Which translation stage the tables are for: their attribute bits
/// differ (D8.4, D8.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Stage 1: AP\[2:1\], AttrIndx into MAIR, nG with an ASID.
    One,
    /// Stage 2: S2AP read and write bits, MemAttr directly, no ASID.
    Two,
}

/// A complete table format: granule, input size and stage, with the walk
/// geometry they imply.
///
/// ```
/// use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage};
///
/// let f = Format::new(Granule::K64, 42, Stage::One)?;
/// assert_eq!((f.start_level(), f.root_entries()), (2, 1 << 13));
/// let f = Format::new(Granule::K4, 40, Stage::Two)?;
/// assert_eq!((f.start_level(), f.root_entries()), (1, 1024), "two tables concatenated");
/// # Ok::<(), dma_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Format {
    granule: Granule,
    ias_bits: u32,
    stage: Stage,
    start_level: u8,
}

impl Format {
    /// The smallest input size supported.
    pub const MIN_IAS_BITS: u32 = 32;
    /// The largest input size supported (no FEAT_LVA).
    pub const MAX_IAS_BITS: u32 = 48;

    /// Stage 1, 4 KiB granule, 48-bit input: what an SMMUv3 context
    /// descriptor usually points at.
    pub const STAGE1_4K_48: Self = Self::layout(Granule::K4, 48, Stage::One);

    /// The format for `granule`, `ias_bits` of input address and `stage`.
    ///
    /// # Errors
    ///
    /// [`Unsupported`](ErrorKind::Unsupported) for an input size outside
    /// 32..=48 bits.
    pub fn new(granule: Granule, ias_bits: u32, stage: Stage) -> Result<Self> {
        if !(Self::MIN_IAS_BITS..=Self::MAX_IAS_BITS).contains(&ias_bits) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "VMSAv8-64 tables support input sizes of 32 to 48 bits",
            )
            .len(u64::from(ias_bits)));
        }
        Ok(Self::layout(granule, ias_bits, stage))
    }

    const fn layout(granule: Granule, ias_bits: u32, stage: Stage) -> Self {
        let bits = granule.bits_per_level();
        let levels = (ias_bits - granule.shift()).div_ceil(bits);
        let mut start_level = (LAST_LEVEL as u32 + 1 - levels) as u8;
        // A level-0 start means ias_bits > the level-0 shift.
        if matches!(stage, Stage::Two)
            && start_level == 0
            && 1u64 << (ias_bits - (granule.shift() + 3 * bits)) <= MAX_CONCATENATED
        {
            start_level = 1;
        }
        Self {
            granule,
            ias_bits,
            stage,
            start_level,
        }
    }

    /// The granule.
    pub const fn granule(&self) -> Granule {
        self.granule
    }

    /// Input address bits.
    pub const fn ias_bits(&self) -> u32 {
        self.ias_bits
    }

    /// The stage.
    pub const fn stage(&self) -> Stage {
        self.stage
    }

    /// The level the walk starts at.
    pub const fn start_level(&self) -> u8 {
        self.start_level
    }

    /// The lowest input bit `level` resolves.
    #[inline]
    pub const fn level_shift(&self, level: u8) -> u32 {
        self.granule.shift() + self.granule.bits_per_level() * (LAST_LEVEL - level) as u32
    }

    /// Bytes one entry at `level` covers.
    #[inline]
    pub const fn level_size(&self, level: u8) -> u64 {
        1 << self.level_shift(level)
    }

    /// Descriptors in a table at `level`: the initial table holds what the
    /// input size leaves (with any stage-2 concatenation), the others a
    /// full granule.
    #[inline]
    pub const fn entries(&self, level: u8) -> u64 {
        if level == self.start_level {
            self.root_entries()
        } else {
            1 << self.granule.bits_per_level()
        }
    }

    /// Descriptors in the initial table.
    #[inline]
    pub const fn root_entries(&self) -> u64 {
        1 << (self.ias_bits - self.level_shift(self.start_level))
    }

    /// Bytes a table at `level` occupies in memory: its descriptors, but
    /// at least one granule (tables are allocated, and aligned, by the
    /// granule or by their own size when concatenated).
    pub const fn table_bytes(&self, level: u8) -> u64 {
        let bytes = self.entries(level) * 8;
        if bytes > self.granule.size() {
            bytes
        } else {
            self.granule.size()
        }
    }

    /// The index of `iova`'s descriptor in its table at `level`.
    #[inline]
    pub const fn index(&self, level: u8, iova: u64) -> u64 {
        (iova >> self.level_shift(level)) & (self.entries(level) - 1)
    }

    /// Whether a leaf may sit at `level`: a page at level 3, a block where
    /// the granule allows one.
    pub const fn has_leaf_at(&self, level: u8) -> bool {
        level == LAST_LEVEL || self.granule.has_blocks_at(level)
    }

    /// The level whose leaves are `size` bytes, if any.
    pub fn leaf_level(&self, size: u64) -> Option<u8> {
        (self.start_level..=LAST_LEVEL).find(|&l| self.has_leaf_at(l) && self.level_size(l) == size)
    }

    /// Every leaf size, as a bit mask of sizes (Linux's `pgsize_bitmap`).
    pub fn page_sizes(&self) -> u64 {
        (self.start_level..=LAST_LEVEL)
            .filter(|&l| self.has_leaf_at(l))
            .fold(0, |mask, l| mask | self.level_size(l))
    }

    /// Bits 47:shift of a descriptor: the output or next-table address.
    #[inline]
    pub const fn addr_mask(&self) -> u64 {
        ((1 << OAS_BITS) - 1) & !(self.granule.size() - 1)
    }
}

impl Default for Format {
    fn default() -> Self {
        Self::STAGE1_4K_48
    }
}
