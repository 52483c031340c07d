//! Stream table entries and context descriptors (Arm IHI 0070 E.a, §5.2
//! "Stream Table Entry" and §5.4 "Context Descriptor"), as the little-endian
//! 64-bit words the SMMU reads.

use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage};
use static_assertions::{assert_eq_size, const_assert_eq};

/// A stream table entry: 64 bytes, 64-byte aligned (§5.2).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ste(pub [u64; 8]);

/// A context descriptor: 64 bytes, 64-byte aligned (§5.4).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextDescriptor(pub [u64; 8]);

assert_eq_size!(Ste, [u8; 64]);
const_assert_eq!(core::mem::align_of::<Ste>(), 64);
assert_eq_size!(ContextDescriptor, [u8; 64]);
const_assert_eq!(core::mem::align_of::<ContextDescriptor>(), 64);

/// STE.Config (`STE[3:1]`, §5.2): what the SMMU does with a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum StreamConfig {
    /// Abort every transaction (reported as no event).
    Abort = 0b000,
    /// Stage 1 and stage 2 bypassed.
    Bypass = 0b100,
    /// Stage 1 translates, stage 2 bypassed.
    Stage1 = 0b101,
}

/// Memory attributes for the SMMU's own fetches of tables and queues and
/// for the page-table walks a context descriptor describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkAttrs {
    /// Normal write-back cacheable, Inner Shareable (coherent with the CPU's
    /// cached view).
    WriteBack,
    /// Normal non-cacheable, Outer Shareable (the memory is mapped
    /// non-cacheable on the CPU, or cleaned to it).
    NonCacheable,
}

impl WalkAttrs {
    /// (inner/outer cacheability, shareability) field values: 0b01 =
    /// write-back read/write-allocate, 0b00 = non-cacheable; 0b11 inner,
    /// 0b10 outer shareable.
    pub const fn fields(self) -> (u64, u64) {
        match self {
            Self::WriteBack => (0b01, 0b11),
            Self::NonCacheable => (0b00, 0b10),
        }
    }
}

// STE word 0.
const STE_V: u64 = 1 << 0;
const STE_CONFIG_SHIFT: u32 = 1;
const STE_S1CONTEXTPTR_MASK: u64 = 0x000f_ffff_ffff_ffc0;
// STE word 1.
const STE_S1CIR_SHIFT: u32 = 2;
const STE_S1COR_SHIFT: u32 = 4;
const STE_S1CSH_SHIFT: u32 = 6;
/// SHCFG = 0b01: use the incoming shareability (bits `[45:44]`).
const STE_SHCFG_INCOMING: u64 = 0b01 << 44;

impl Ste {
    /// An invalid entry (V = 0): a transaction raises C_BAD_STE.
    pub const INVALID: Self = Self([0; 8]);

    /// A valid entry that aborts every transaction.
    pub const fn abort() -> Self {
        let mut w = [0; 8];
        w[0] = STE_V | (StreamConfig::Abort as u64) << STE_CONFIG_SHIFT;
        Self(w)
    }

    /// A valid entry that passes transactions through untranslated, with
    /// their incoming attributes.
    pub const fn bypass() -> Self {
        let mut w = [0; 8];
        w[0] = STE_V | (StreamConfig::Bypass as u64) << STE_CONFIG_SHIFT;
        w[1] = STE_SHCFG_INCOMING;
        Self(w)
    }

    /// A valid entry translating through stage 1 with the single context
    /// descriptor at `cd` (64-byte aligned; S1Fmt = linear, S1CDMax = 0, so
    /// no substreams), fetched with `cd_attrs`. STRW = 0 (EL1 regime),
    /// EATS = 0 (no ATS).
    pub const fn stage1(cd: u64, cd_attrs: WalkAttrs) -> Self {
        let (cache, share) = cd_attrs.fields();
        let mut w = [0; 8];
        w[0] = STE_V
            | (StreamConfig::Stage1 as u64) << STE_CONFIG_SHIFT
            | (cd & STE_S1CONTEXTPTR_MASK);
        w[1] = cache << STE_S1CIR_SHIFT
            | cache << STE_S1COR_SHIFT
            | share << STE_S1CSH_SHIFT
            | STE_SHCFG_INCOMING;
        Self(w)
    }

    /// STE.V.
    pub const fn is_valid(&self) -> bool {
        self.0[0] & STE_V != 0
    }

    /// STE.Config, raw.
    pub const fn config(&self) -> u64 {
        (self.0[0] >> STE_CONFIG_SHIFT) & 0b111
    }
}

/// What a stage-1 context descriptor describes: one TTBR0 address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage1Config {
    /// Physical address of the initial table, aligned to its size (at
    /// least 64 bytes).
    pub ttb0: u64,
    /// The tables' format: a stage-1 VMSAv8-64 format gives the granule
    /// (TG0) and the input size (T0SZ = 64 - bits), which fix the initial
    /// level (48 bits start at level 0 with 4 KiB pages, at level 1 with
    /// 16 or 64 KiB pages).
    pub format: Format,
    /// The MAIR value the page tables' AttrIndx fields index.
    pub mair: u64,
    /// ASID tagging this address space's TLB entries.
    pub asid: u16,
    /// Attributes of the page-table walks.
    pub walk: WalkAttrs,
}

/// CD.TG0 (`CD[7:6]`, §5.4): the TTB0 granule. Its encoding is not the
/// STE's S2TG nor TCR_EL1.TG1's.
pub const fn tg0(granule: Granule) -> u64 {
    match granule {
        Granule::K4 => 0b00,
        Granule::K64 => 0b01,
        Granule::K16 => 0b10,
    }
}

// CD word 0 (§5.4).
const CD_T0SZ_MASK: u64 = 0x3f;
const CD_TG0_SHIFT: u32 = 6;
const CD_IR0_SHIFT: u32 = 8;
const CD_OR0_SHIFT: u32 = 10;
const CD_SH0_SHIFT: u32 = 12;
/// EPD1: no TTBR1 walks. QEMU rejects the CD if TTB1 is enabled with T1SZ = 0.
const CD_EPD1: u64 = 1 << 30;
const CD_V: u64 = 1 << 31;
const CD_IPS_SHIFT: u32 = 32;
/// AA64: AArch64 translation tables.
const CD_AA64: u64 = 1 << 41;
/// R: record faults in the event queue (translation faults are otherwise silent).
const CD_R: u64 = 1 << 45;
/// A: abort faulting transactions (rather than RAZ/WI); QEMU requires it.
const CD_A: u64 = 1 << 46;
const CD_ASET: u64 = 1 << 47;
const CD_ASID_SHIFT: u32 = 48;
// CD word 1.
const CD_TTB_MASK: u64 = 0x000f_ffff_ffff_fff0;

impl ContextDescriptor {
    /// An invalid descriptor (V = 0).
    pub const INVALID: Self = Self([0; 8]);

    /// The descriptor for `cfg`, with output size `ips` (the SMMU_IDR5.OAS
    /// encoding), the format's granule and input size, TTBR1 disabled,
    /// faults recorded and aborted, and ASET = 1 (ASIDs not shared with the
    /// CPU, so broadcast TLB maintenance does not apply). Returns `None`
    /// for a stage-2 format or a table address not aligned to the initial
    /// table's size.
    pub const fn stage1(cfg: &Stage1Config, ips: u8) -> Option<Self> {
        let format = &cfg.format;
        let root_bytes = format.root_entries() * 8;
        let align = if root_bytes < 64 { 64 } else { root_bytes };
        if !matches!(format.stage(), Stage::One) || cfg.ttb0 % align != 0 {
            return None;
        }
        let (cache, share) = cfg.walk.fields();
        let mut w = [0; 8];
        w[0] = ((64 - format.ias_bits() as u64) & CD_T0SZ_MASK)
            | tg0(format.granule()) << CD_TG0_SHIFT
            | cache << CD_IR0_SHIFT
            | cache << CD_OR0_SHIFT
            | share << CD_SH0_SHIFT
            | CD_EPD1
            | CD_V
            | ((ips as u64) & 0b111) << CD_IPS_SHIFT
            | CD_AA64
            | CD_R
            | CD_A
            | CD_ASET
            | (cfg.asid as u64) << CD_ASID_SHIFT;
        w[1] = cfg.ttb0 & CD_TTB_MASK;
        w[3] = cfg.mair;
        Some(Self(w))
    }

    /// CD.TG0 as a granule (`None` for the reserved encoding 0b11).
    pub const fn granule(&self) -> Option<Granule> {
        match (self.0[0] >> CD_TG0_SHIFT) & 0b11 {
            0b00 => Some(Granule::K4),
            0b01 => Some(Granule::K64),
            0b10 => Some(Granule::K16),
            _ => None,
        }
    }

    /// Input address bits: 64 - CD.T0SZ.
    pub const fn input_bits(&self) -> u32 {
        64 - (self.0[0] & CD_T0SZ_MASK) as u32
    }

    /// CD.V.
    pub const fn is_valid(&self) -> bool {
        self.0[0] & CD_V != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ste_encodings() {
        assert_eq!(Ste::abort().0[0], 0b0001);
        assert_eq!(Ste::bypass().0[0], 0b1001);
        assert_eq!(Ste::bypass().config(), 0b100);
        let s = Ste::stage1(0x4700_2040, WalkAttrs::NonCacheable);
        assert_eq!(s.0[0], 0x4700_2040 | 0b1011);
        // S1CIR/S1COR non-cacheable, S1CSH outer (0b10 << 6), SHCFG incoming.
        assert_eq!(s.0[1], 0b10 << 6 | 1 << 44);
        let s = Ste::stage1(0x4700_2000, WalkAttrs::WriteBack);
        assert_eq!(s.0[1], 0b01 << 2 | 0b01 << 4 | 0b11 << 6 | 1 << 44);
        assert!(s.is_valid() && !Ste::INVALID.is_valid());
        assert_eq!(s.config(), StreamConfig::Stage1 as u64);
    }

    fn cfg(granule: Granule, bits: u32) -> Stage1Config {
        Stage1Config {
            ttb0: 0x4400_0000,
            format: Format::new(granule, bits, Stage::One).unwrap(),
            mair: 0x44ff04,
            asid: 7,
            walk: WalkAttrs::WriteBack,
        }
    }

    #[test]
    fn cd_encoding() {
        let cfg = cfg(Granule::K4, 48);
        let cd = ContextDescriptor::stage1(&cfg, 5).unwrap();
        // T0SZ 16, TG0 4K, IR0/OR0 WB, SH0 inner, EPD1, V; IPS 5, AA64, R, A, ASET, ASID 7.
        assert_eq!(
            cd.0[0] & 0xffff_ffff,
            16 | 1 << 8 | 1 << 10 | 3 << 12 | 1 << 30 | 1 << 31
        );
        assert_eq!(
            cd.0[0] >> 32,
            5 | 1 << 9 | 1 << 13 | 1 << 14 | 1 << 15 | 7 << 16
        );
        assert_eq!(cd.0[1], 0x4400_0000);
        assert_eq!(cd.0[3], 0x44ff04);
        assert!(cd.is_valid());
        assert_eq!((cd.granule(), cd.input_bits()), (Some(Granule::K4), 48));
    }

    /// IHI 0070 §5.4: TG0 0b00 = 4 KiB, 0b01 = 64 KiB, 0b10 = 16 KiB; only
    /// TG0 and T0SZ change with the format.
    #[test]
    fn cd_granules_and_input_sizes() {
        let base = ContextDescriptor::stage1(&cfg(Granule::K4, 48), 5).unwrap();
        for (granule, tg, bits) in [
            (Granule::K64, 0b01, 48),
            (Granule::K16, 0b10, 48),
            (Granule::K64, 0b01, 42),
            (Granule::K4, 0b00, 39),
            (Granule::K16, 0b10, 32),
        ] {
            let cd = ContextDescriptor::stage1(&cfg(granule, bits), 5).unwrap();
            assert_eq!((cd.0[0] >> 6) & 0b11, tg, "{granule:?}");
            assert_eq!(cd.0[0] & 0x3f, u64::from(64 - bits), "{granule:?} {bits}");
            assert_eq!((cd.granule(), cd.input_bits()), (Some(granule), bits));
            let others = !(0b11 << 6 | 0x3f);
            assert_eq!(cd.0[0] & others, base.0[0] & others);
            assert_eq!(cd.0[1..], base.0[1..]);
        }
        let reserved = ContextDescriptor([0b11 << 6, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reserved.granule(), None);
    }

    #[test]
    fn cd_rejects_bad_configs() {
        let ok = cfg(Granule::K4, 39);
        assert!(ContextDescriptor::stage1(&ok, 0).is_some());
        let stage2 = Stage1Config {
            format: Format::new(Granule::K4, 39, Stage::Two).unwrap(),
            ..ok
        };
        assert!(ContextDescriptor::stage1(&stage2, 0).is_none());
        assert!(ContextDescriptor::stage1(&Stage1Config { ttb0: 0x1010, ..ok }, 0).is_none());
        // 64 KiB pages, 48 bits: a 64-entry (512-byte) level-1 table.
        let k64 = cfg(Granule::K64, 48);
        assert!(ContextDescriptor::stage1(
            &Stage1Config {
                ttb0: 0x4400_0200,
                ..k64
            },
            0
        )
        .is_some());
        assert!(ContextDescriptor::stage1(
            &Stage1Config {
                ttb0: 0x4400_0100,
                ..k64
            },
            0
        )
        .is_none());
        // 4 KiB pages, 40 bits: a 2-entry level-0 table, still 64-byte aligned.
        let tiny = cfg(Granule::K4, 40);
        assert!(ContextDescriptor::stage1(
            &Stage1Config {
                ttb0: 0x4400_0040,
                ..tiny
            },
            0
        )
        .is_some());
        assert!(ContextDescriptor::stage1(
            &Stage1Config {
                ttb0: 0x4400_0020,
                ..tiny
            },
            0
        )
        .is_none());
    }
}
