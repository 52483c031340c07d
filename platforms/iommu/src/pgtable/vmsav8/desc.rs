//! The 64-bit descriptor (Arm ARM DDI 0487 K.a, D8.3) and the attribute
//! bits each stage gives a leaf (D8.4 "Memory access control", D8.6
//! "Memory region attributes").

use core::fmt;

use dma_core::PhysAddr;

use super::format::{Format, Stage, LAST_LEVEL, OAS_BITS};
use crate::pgtable::Prot;

/// The `MAIR_EL1`-format value stage-1 AttrIndx values refer to, for the
/// context descriptor's MAIR0 (Arm ARM DDI 0487, D19.2 "MAIR_EL1"; SMMUv3
/// CD.MAIR0):
///
/// | AttrIndx | byte | meaning |
/// | --- | --- | --- |
/// | 0 ([`MAIR_IDX_CACHED`]) | `0xff` | Normal, inner and outer write-back non-transient, read- and write-allocate |
/// | 1 ([`MAIR_IDX_NON_CACHEABLE`]) | `0x44` | Normal, inner and outer non-cacheable |
/// | 2 ([`MAIR_IDX_DEVICE`]) | `0x04` | Device-nGnRE (not used for DMA memory; kept for MSI doorbells) |
pub const MAIR: u64 = 0xff | (0x44 << 8) | (0x04 << 16);
/// AttrIndx of cacheable Normal memory.
pub const MAIR_IDX_CACHED: u8 = 0;
/// AttrIndx of non-cacheable Normal memory.
pub const MAIR_IDX_NON_CACHEABLE: u8 = 1;
/// AttrIndx of Device-nGnRE memory.
pub const MAIR_IDX_DEVICE: u8 = 2;

/// Stage-2 MemAttr\[3:0\] (bits 5:2) for Normal, inner and outer
/// write-back cacheable memory (D8.6.5, without FEAT_S2FWB).
pub const S2_MEMATTR_CACHED: u8 = 0b1111;
/// Stage-2 MemAttr for Normal, inner and outer non-cacheable memory.
pub const S2_MEMATTR_NON_CACHEABLE: u8 = 0b0101;
/// Stage-2 MemAttr for Device-nGnRE memory.
pub const S2_MEMATTR_DEVICE: u8 = 0b0001;

bitflags::bitflags! {
    /// The bits of a VMSAv8-64 descriptor other than the address (Arm ARM
    /// DDI 0487, D8.3). Bits 7:2 mean different things at the two stages.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct DescBits: u64 {
        /// Bit 0: the descriptor is valid.
        const VALID = 1 << 0;
        /// Bit 1: table (levels 0-2) or page (level 3); clear for a block.
        const TABLE_OR_PAGE = 1 << 1;
        /// Stage 1, bits 4:2: AttrIndx, an index into [`MAIR`].
        const ATTR_INDX = 0b111 << 2;
        /// Stage 1, bit 5: NS (ignored by a Non-secure stream).
        const NS = 1 << 5;
        /// Stage 1, bit 6: AP\[1\], unprivileged (EL0-class) access allowed.
        const AP_UNPRIV = 1 << 6;
        /// Stage 1, bit 7: AP\[2\], read-only.
        const AP_RDONLY = 1 << 7;
        /// Stage 2, bits 5:2: MemAttr.
        const S2_MEMATTR = 0b1111 << 2;
        /// Stage 2, bit 6: S2AP\[0\], reads allowed.
        const S2AP_READ = 1 << 6;
        /// Stage 2, bit 7: S2AP\[1\], writes allowed.
        const S2AP_WRITE = 1 << 7;
        /// Bits 9:8: SH, shareability.
        const SH = 0b11 << 8;
        /// Bit 10: AF, the access flag.
        const AF = 1 << 10;
        /// Stage 1, bit 11: nG, not global: tagged with the ASID.
        const NG = 1 << 11;
        /// Bit 52: Contiguous hint.
        const CONTIGUOUS = 1 << 52;
        /// Stage 1, bit 53: PXN, no privileged execution; stage 2: XN\[0\].
        const PXN = 1 << 53;
        /// Stage 1, bit 54: UXN / XN, no unprivileged execution; stage 2:
        /// XN\[1\].
        const UXN = 1 << 54;
    }
}

/// SH value for inner shareable Normal memory.
pub const SH_INNER: u64 = 0b11 << 8;
/// SH value for outer shareable Normal memory.
pub const SH_OUTER: u64 = 0b10 << 8;
/// Bits 47:12: the widest output or next-level table address field (4 KiB
/// granule); larger granules use fewer low bits ([`Format::addr_mask`]).
pub const ADDR_MASK: u64 = ((1 << OAS_BITS) - 1) & !0xfff;

/// One 64-bit translation table descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Descriptor(pub u64);

static_assertions::assert_eq_size!(Descriptor, u64);
static_assertions::assert_eq_align!(Descriptor, u64);

/// A descriptor decoded for its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Bit 0 clear: translation fault.
    Invalid,
    /// A pointer to the next level's table.
    Table(PhysAddr),
    /// A block or page mapping `size` bytes at `oa`.
    Leaf {
        /// The output address of the first byte.
        oa: PhysAddr,
        /// The leaf's size: the level's entry size.
        size: u64,
    },
    /// A block descriptor where the granule has none (level 0, or level 3
    /// with bits 1:0 = `0b01`): architecturally a translation fault.
    Reserved,
}

impl Descriptor {
    /// The invalid descriptor.
    pub const INVALID: Self = Self(0);

    /// A table descriptor pointing at the next-level table at `table`.
    pub const fn table(table: PhysAddr) -> Self {
        Self((table.as_u64() & ADDR_MASK) | DescBits::VALID.bits() | DescBits::TABLE_OR_PAGE.bits())
    }

    /// A leaf (block or page) at `level` of `format` mapping `oa` with the
    /// attributes of `prot`.
    pub fn leaf(format: &Format, level: u8, oa: PhysAddr, prot: Prot) -> Self {
        Self(
            (oa.as_u64() & format.addr_mask())
                | Self::kind(level)
                | Self::attributes(format.stage(), prot),
        )
    }

    /// Bits 1:0 of a leaf at `level`: `0b11` for a page, `0b01` for a block.
    pub const fn kind(level: u8) -> u64 {
        if level == LAST_LEVEL {
            0b11
        } else {
            0b01
        }
    }

    /// The attribute bits a leaf carries for `prot` at `stage` (everything
    /// but the address and bits 1:0), as Linux's io-pgtable-arm sets them:
    /// - stage 1: AF, nG (tagged by the context's ASID), AP\[1\] (an SMMU's
    ///   transactions are unprivileged by default), AP\[2\] without
    ///   [`Prot::WRITE`], both XN bits, AttrIndx from [`MAIR`];
    /// - stage 2: AF, S2AP read and write as asked (write-only is
    ///   expressible here), both XN bits, MemAttr directly.
    ///
    /// [`Prot::CACHE`] selects write-back memory, inner shareable; without
    /// it the memory is non-cacheable, outer shareable.
    pub fn attributes(stage: Stage, prot: Prot) -> u64 {
        let cached = prot.contains(Prot::CACHE);
        let sh = if cached { SH_INNER } else { SH_OUTER };
        let mut bits = DescBits::AF | DescBits::PXN | DescBits::UXN;
        let memattr = match stage {
            Stage::One => {
                bits |= DescBits::NG | DescBits::AP_UNPRIV;
                if !prot.contains(Prot::WRITE) {
                    bits |= DescBits::AP_RDONLY;
                }
                if cached {
                    MAIR_IDX_CACHED
                } else {
                    MAIR_IDX_NON_CACHEABLE
                }
            }
            Stage::Two => {
                if prot.contains(Prot::READ) {
                    bits |= DescBits::S2AP_READ;
                }
                if prot.contains(Prot::WRITE) {
                    bits |= DescBits::S2AP_WRITE;
                }
                if cached {
                    S2_MEMATTR_CACHED
                } else {
                    S2_MEMATTR_NON_CACHEABLE
                }
            }
        };
        bits.bits() | (u64::from(memattr) << 2) | sh
    }

    /// Bit 0.
    pub const fn is_valid(self) -> bool {
        self.0 & 1 != 0
    }

    /// Decodes the descriptor as found at `level` of `format`.
    pub const fn decode(self, format: &Format, level: u8) -> Decoded {
        if !self.is_valid() {
            return Decoded::Invalid;
        }
        let table_or_page = self.0 & DescBits::TABLE_OR_PAGE.bits() != 0;
        let addr = self.0 & format.addr_mask();
        if level < LAST_LEVEL && table_or_page {
            Decoded::Table(PhysAddr::new(addr))
        } else if table_or_page || format.granule().has_blocks_at(level) {
            let size = format.level_size(level);
            Decoded::Leaf {
                oa: PhysAddr::new(addr & !(size - 1)),
                size,
            }
        } else {
            Decoded::Reserved
        }
    }

    /// Stage 1 AttrIndx, bits 4:2.
    pub const fn attr_index(self) -> u8 {
        ((self.0 >> 2) & 0b111) as u8
    }

    /// Stage 2 MemAttr, bits 5:2.
    pub const fn s2_mem_attr(self) -> u8 {
        ((self.0 >> 2) & 0b1111) as u8
    }

    /// SH, bits 9:8.
    pub const fn shareability(self) -> u8 {
        ((self.0 >> 8) & 0b11) as u8
    }

    /// The leaf's attribute bits, without address and type.
    pub(super) const fn leaf_attributes(self) -> u64 {
        self.0 & !ADDR_MASK & !0b11
    }
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Descriptor({:#018x})", self.0)
    }
}
