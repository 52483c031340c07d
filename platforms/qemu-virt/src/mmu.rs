//! The CPU's identity map and the MMU switch-on.
//!
//! With the MMU off every data access is Device memory, so nothing is
//! cached and `dc` maintenance has nothing to act on. The image turns on
//! an identity map (virtual = physical, so no address changes under the
//! running code) with a 4 KiB granule and a 39-bit space (`T0SZ = 25`,
//! walks start at level 1, Arm ARM D8.2 "Translation process"):
//!
//! | range | mapping | memory type (MAIR index) |
//! | --- | --- | --- |
//! | `0x0000_0000..0x4000_0000` | 1 GiB block | Device-nGnRE (0), never executable |
//! | RAM up to the uncached pool | 2 MiB blocks | Normal write-back (1) |
//! | the uncached pool to RAM end | 2 MiB blocks | Normal non-cacheable (2) |
//! | `0x40_0000_0000..0x40_4000_0000` (ECAM) | 1 GiB block | Device-nGnRE (0), never executable |
//!
//! The rest of the space faults. Normal memory is Inner Shareable; the
//! walks themselves are write-back cacheable, Inner Shareable (TCR_EL1).
//! The same descriptor format is what the SMMU walks for stage 1
//! (VMSAv8-64), so these helpers also describe device page tables.

use bitflags::bitflags;

use crate::memmap::{ECAM_BASE, RAM_BASE, RAM_END, UNCACHED_BASE};

bitflags! {
    /// Bits of a VMSAv8-64 block or table descriptor (Arm ARM D8.3.1/D8.3.2,
    /// "VMSAv8-64 translation table format descriptors").
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Descriptor: u64 {
        /// Bit 0: the descriptor is valid.
        const VALID = 1 << 0;
        /// Bit 1: a table (levels 0..=2) or page (level 3) descriptor; clear
        /// for a block.
        const TABLE_OR_PAGE = 1 << 1;
        /// AP[1]: EL0 (unprivileged) access allowed. A device's untagged
        /// transactions through an SMMU count as unprivileged.
        const AP_EL0 = 1 << 6;
        /// AP[2]: read-only.
        const AP_RO = 1 << 7;
        /// `SH[1:0]` = 0b11: Inner Shareable.
        const SH_INNER = 0b11 << 8;
        /// `SH[1:0]` = 0b10: Outer Shareable.
        const SH_OUTER = 0b10 << 8;
        /// Access flag: set, or the first access faults (no hardware AF here).
        const AF = 1 << 10;
        /// Not global.
        const NG = 1 << 11;
        /// Privileged execute-never.
        const PXN = 1 << 53;
        /// Unprivileged execute-never.
        const UXN = 1 << 54;
    }
}

/// MAIR attribute index of Device-nGnRE memory.
pub const ATTR_DEVICE: u64 = 0;
/// MAIR attribute index of Normal write-back memory.
pub const ATTR_NORMAL_WB: u64 = 1;
/// MAIR attribute index of Normal non-cacheable memory.
pub const ATTR_NORMAL_NC: u64 = 2;

/// MAIR_EL1 (Arm ARM D17.2.97): attr0 = 0x04 Device-nGnRE, attr1 = 0xff
/// Normal Inner/Outer write-back non-transient read/write-allocate,
/// attr2 = 0x44 Normal Inner/Outer non-cacheable. The SMMU context
/// descriptors use the same value, so device page tables share the indices.
pub const MAIR: u64 = 0x04 | 0xff << 8 | 0x44 << 16;

/// Entries in a 4 KiB translation table.
pub const ENTRIES: usize = 512;
/// Bytes mapped by a level-1 block with a 4 KiB granule.
pub const L1_BLOCK: u64 = 1 << 30;
/// Bytes mapped by a level-2 block with a 4 KiB granule.
pub const L2_BLOCK: u64 = 1 << 21;
/// Mask of the output address bits `[47:12]` in a descriptor.
pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// TCR_EL1.T0SZ: a 39-bit space, walks starting at level 1.
pub const T0SZ: u64 = 25;

/// A block descriptor for output address `pa` with MAIR index `attr`.
pub const fn block(pa: u64, attr: u64, flags: Descriptor) -> u64 {
    (pa & ADDR_MASK) | attr << 2 | flags.bits() | Descriptor::VALID.bits() | Descriptor::AF.bits()
}

/// A table descriptor pointing at the next-level table at `pa`.
pub const fn table(pa: u64) -> u64 {
    (pa & ADDR_MASK) | Descriptor::TABLE_OR_PAGE.bits() | Descriptor::VALID.bits()
}

const DEVICE: Descriptor = Descriptor::PXN.union(Descriptor::UXN);
const NORMAL: Descriptor = Descriptor::SH_INNER;
const NORMAL_NC: Descriptor = Descriptor::SH_OUTER
    .union(Descriptor::PXN)
    .union(Descriptor::UXN);

/// The level-1 table of the identity map; the RAM gigabyte points at the
/// level-2 table at `l2_phys`.
pub const fn identity_l1(l2_phys: u64) -> [u64; ENTRIES] {
    let mut t = [0u64; ENTRIES];
    t[0] = block(0, ATTR_DEVICE, DEVICE);
    t[(RAM_BASE / L1_BLOCK) as usize] = table(l2_phys);
    t[(ECAM_BASE / L1_BLOCK) as usize] = block(ECAM_BASE & !(L1_BLOCK - 1), ATTR_DEVICE, DEVICE);
    t
}

/// The level-2 table of the identity map covering RAM's gigabyte.
pub const fn identity_l2_ram() -> [u64; ENTRIES] {
    let mut t = [0u64; ENTRIES];
    let mut pa = RAM_BASE;
    while pa < RAM_END {
        let i = ((pa - RAM_BASE) / L2_BLOCK) as usize;
        t[i] = if pa < UNCACHED_BASE {
            block(pa, ATTR_NORMAL_WB, NORMAL)
        } else {
            block(pa, ATTR_NORMAL_NC, NORMAL_NC)
        };
        pa += L2_BLOCK;
    }
    t
}

/// What a walk of a two-level table pair (level 1 + level 2) finds for `va`:
/// the output address and MAIR index, or `None` for a fault. `l2_at` gives
/// the level-2 table a table descriptor names.
pub fn walk<'a>(
    l1: &[u64; ENTRIES],
    l2_at: impl Fn(u64) -> Option<&'a [u64; ENTRIES]>,
    va: u64,
) -> Option<(u64, u64)> {
    if va >> (64 - T0SZ) != 0 {
        return None;
    }
    let d1 = l1[(va / L1_BLOCK) as usize % ENTRIES];
    let attr = |d: u64| (d >> 2) & 0b111;
    match d1 & 0b11 {
        0b01 => Some((
            (d1 & ADDR_MASK & !(L1_BLOCK - 1)) | (va % L1_BLOCK),
            attr(d1),
        )),
        0b11 => {
            let l2 = l2_at(d1 & ADDR_MASK)?;
            let d2 = l2[((va / L2_BLOCK) % ENTRIES as u64) as usize];
            (d2 & 0b11 == 0b01).then(|| {
                (
                    (d2 & ADDR_MASK & !(L2_BLOCK - 1)) | (va % L2_BLOCK),
                    attr(d2),
                )
            })
        }
        _ => None,
    }
}

/// TCR_EL1 for the identity map (Arm ARM D17.2.131): T0SZ = 25, walks
/// Inner/Outer write-back cacheable and Inner Shareable, 4 KiB granule,
/// TTBR1 walks disabled (EPD1), and the intermediate physical address size
/// `ips` (the PARange field of ID_AA64MMFR0_EL1).
pub const fn tcr(ips: u64) -> u64 {
    const IRGN0_WB: u64 = 0b01 << 8;
    const ORGN0_WB: u64 = 0b01 << 10;
    const SH0_INNER: u64 = 0b11 << 12;
    const TG0_4K: u64 = 0b00 << 14;
    const EPD1: u64 = 1 << 23;
    const TG1_4K: u64 = 0b10 << 30;
    T0SZ | IRGN0_WB | ORGN0_WB | SH0_INNER | TG0_4K | EPD1 | TG1_4K | (ips & 0b111) << 32
}

/// The identity map's two tables, page aligned as TTBR0 and table
/// descriptors require.
#[repr(C, align(4096))]
pub struct IdentityTables {
    l1: [u64; ENTRIES],
    l2: [u64; ENTRIES],
}

static_assertions::const_assert_eq!(core::mem::size_of::<IdentityTables>(), 8192);

#[cfg(target_arch = "aarch64")]
mod enable {
    use core::cell::UnsafeCell;

    use super::*;

    struct Tables(UnsafeCell<IdentityTables>);
    // SAFETY: the tables are written once, by `enable_identity_map`, whose
    // caller guarantees a single CPU runs it before anything else uses them.
    unsafe impl Sync for Tables {}

    static TABLES: Tables = Tables(UnsafeCell::new(IdentityTables {
        l1: [0; ENTRIES],
        l2: [0; ENTRIES],
    }));

    /// Builds the identity map and turns on the MMU, the data cache and the
    /// instruction cache at EL1.
    ///
    /// # Safety
    ///
    /// Runs at EL1 on the boot CPU, once, with the MMU off (so every access
    /// so far was non-cacheable and no stale line can shadow the tables),
    /// before any other code relies on memory types. Code and data used by
    /// the image must lie inside the map (they do: the image is in RAM).
    pub unsafe fn enable_identity_map() {
        let tables = TABLES.0.get();
        // Stores are aligned 8-byte volatile writes, as Device memory (MMU off)
        // requires, never a memcpy that might use unaligned accesses.
        // SAFETY: the caller guarantees exclusive use; the pointers come from a live static.
        unsafe {
            let l1 = core::ptr::addr_of_mut!((*tables).l1).cast::<u64>();
            let l2 = core::ptr::addr_of_mut!((*tables).l2).cast::<u64>();
            let l1_entries = identity_l1(l2 as u64);
            let l2_entries = identity_l2_ram();
            for i in 0..ENTRIES {
                l1.add(i).write_volatile(l1_entries[i]);
                l2.add(i).write_volatile(l2_entries[i]);
            }
        }
        let mmfr0: u64;
        // SAFETY: reading an ID register has no side effects.
        unsafe {
            core::arch::asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0, options(nomem, nostack))
        };
        let pa_range = (mmfr0 & 0xf).min(5);
        let ttbr0 = tables as u64;
        // The sequence follows Arm ARM D8.11 / D5.10: tables visible (dsb),
        // MAIR/TCR/TTBR0 set, stale TLB entries and instruction cache
        // invalidated, then SCTLR_EL1.{M,C,I} set with context
        // synchronisation (isb) before and after. SCTLR.A (alignment
        // checks) and WXN are cleared.
        // SAFETY: the tables map this code, its stack and data at their own
        // addresses, so execution continues across the switch.
        unsafe {
            core::arch::asm!(
                "dsb ish",
                "msr mair_el1, {mair}",
                "msr tcr_el1, {tcr}",
                "msr ttbr0_el1, {ttbr0}",
                "isb",
                "tlbi vmalle1",
                "ic iallu",
                "dsb ish",
                "isb",
                "mrs {tmp}, sctlr_el1",
                "orr {tmp}, {tmp}, #(1 << 0)",
                "orr {tmp}, {tmp}, #(1 << 2)",
                "orr {tmp}, {tmp}, #(1 << 12)",
                "bic {tmp}, {tmp}, #(1 << 1)",
                "bic {tmp}, {tmp}, #(1 << 19)",
                "msr sctlr_el1, {tmp}",
                "isb",
                mair = in(reg) MAIR,
                tcr = in(reg) tcr(pa_range),
                ttbr0 = in(reg) ttbr0,
                tmp = out(reg) _,
                options(nostack),
            );
        }
    }

    /// SCTLR_EL1's M (MMU), C (data cache) and I (instruction cache) bits.
    pub fn mmu_and_caches_on() -> (bool, bool, bool) {
        let sctlr: u64;
        // SAFETY: reading SCTLR_EL1 at EL1 has no side effects.
        unsafe { core::arch::asm!("mrs {}, sctlr_el1", out(reg) sctlr, options(nomem, nostack)) };
        (sctlr & 1 != 0, sctlr & 1 << 2 != 0, sctlr & 1 << 12 != 0)
    }
}

#[cfg(target_arch = "aarch64")]
pub use enable::{enable_identity_map, mmu_and_caches_on};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memmap::{PCI_MMIO32_BASE, SMMU_BASE, UART_BASE};

    fn lookup(va: u64) -> Option<(u64, u64)> {
        const L2_PHYS: u64 = 0x4010_0000;
        let l1 = identity_l1(L2_PHYS);
        let l2 = identity_l2_ram();
        walk(&l1, |pa| (pa == L2_PHYS).then_some(&l2), va)
    }

    #[test]
    fn identity_map_covers_the_board() {
        assert_eq!(lookup(UART_BASE), Some((UART_BASE, ATTR_DEVICE)));
        assert_eq!(
            lookup(SMMU_BASE + 0x10_0a8),
            Some((SMMU_BASE + 0x10_0a8, ATTR_DEVICE))
        );
        assert_eq!(
            lookup(PCI_MMIO32_BASE + 4),
            Some((PCI_MMIO32_BASE + 4, ATTR_DEVICE))
        );
        assert_eq!(
            lookup(ECAM_BASE + 0x8000),
            Some((ECAM_BASE + 0x8000, ATTR_DEVICE))
        );
        assert_eq!(
            lookup(RAM_BASE + 0x8_0123),
            Some((RAM_BASE + 0x8_0123, ATTR_NORMAL_WB))
        );
        assert_eq!(
            lookup(UNCACHED_BASE - 1),
            Some((UNCACHED_BASE - 1, ATTR_NORMAL_WB))
        );
        assert_eq!(lookup(UNCACHED_BASE), Some((UNCACHED_BASE, ATTR_NORMAL_NC)));
        assert_eq!(lookup(RAM_END - 1), Some((RAM_END - 1, ATTR_NORMAL_NC)));
    }

    #[test]
    fn unmapped_ranges_fault() {
        assert_eq!(lookup(RAM_END), None);
        assert_eq!(lookup(0x8000_0000), None);
        assert_eq!(lookup(1 << 39), None);
    }

    #[test]
    fn descriptor_encodings_match_the_arm_arm() {
        // Device block at 0: valid, block, AttrIndx 0, AF, PXN, UXN.
        assert_eq!(identity_l1(0)[0], 0x0060_0000_0000_0401);
        // Normal WB RAM block: AttrIndx 1 (bit 2), SH inner (0x300), AF.
        assert_eq!(identity_l2_ram()[0], 0x4000_0000 | 0x705);
        assert_eq!(table(0x4010_0000), 0x4010_0003);
        assert_eq!(tcr(5), 0x5_8080_3519);
        assert_eq!(MAIR, 0x44ff04);
    }
}
