//! Arm VMSAv8-64 stage-1 translation tables, 4 KiB granule, 48-bit input
//! address: the format an SMMUv3 walks for a stage-1 context descriptor
//! (SMMUv3, IHI 0070, §5.4 "Context Descriptor": TTB0, T0SZ = 16,
//! TG0 = 4 KiB, MAIR0).
//!
//! References are to the Arm Architecture Reference Manual for A-profile,
//! DDI 0487 (K.a), chapter D8 "The AArch64 Virtual Memory System
//! Architecture":
//! - D8.2 "Translation process": with a 4 KiB granule each level resolves
//!   9 bits; a 48-bit input address starts at level 0 (bits 47:39), then
//!   level 1 (38:30), level 2 (29:21), level 3 (20:12). Blocks exist at
//!   level 1 (1 GiB) and level 2 (2 MiB), not at level 0.
//! - D8.3 "Translation table descriptor formats": bits 1:0 are `0b11` for
//!   a table (levels 0-2) or a page (level 3), `0b01` for a block (levels 1
//!   and 2); anything with bit 0 clear is invalid. The output or next-table
//!   address is bits 47:12 (47:21 for a 2 MiB block, 47:30 for 1 GiB).
//! - D8.4 "Memory access control": stage-1 data access permissions
//!   AP\[2:1\] in bits 7:6 (AP\[2\] = read-only, AP\[1\] = unprivileged
//!   access allowed); UXN (54) and PXN (53) forbid instruction fetch.
//! - D8.5 "Hardware updates to the translation tables": the access flag
//!   (bit 10); we set it, so no access-flag fault or hardware update is
//!   needed.
//! - D8.6 "Memory region attributes": AttrIndx (bits 4:2) selects one of
//!   the eight attributes in MAIR (see [`MAIR`]); SH (bits 9:8) is the
//!   shareability of Normal memory.
//!
//! Leaf attributes follow Linux's `io-pgtable-arm` for stage 1: nG (bit 11)
//! so translations are tagged by the context's ASID, AP\[1\] set because an
//! SMMU's transactions are unprivileged by default, XN because devices do
//! not execute what they DMA, AttrIndx [`MAIR_IDX_CACHED`] with inner
//! shareability for coherent devices ([`Prot::CACHE`]) and
//! [`MAIR_IDX_NON_CACHEABLE`] with outer shareability otherwise.
//!
//! Descriptors are read and written with volatile accesses, one aligned
//! 64-bit word at a time (single-copy atomic for the walker, D8.2), and a
//! new table is filled and made visible before the descriptor that points
//! at it (a `dma_wmb`, or a clean where the walk is not coherent).
//!
//! Intermediate tables are kept when the mappings under them go; they are
//! freed with the whole table. Freeing them on unmap would need a
//! walk-cache invalidation before the page is reused, for little gain on a
//! domain whose footprint is bounded by its peak.

use core::fmt;
use core::ptr::NonNull;

use dma_coherence::{barrier, CacheMaintenance};
use dma_core::{Cacheability, Error, ErrorKind, Pages, PhysAddr, PhysMemory, Result};

use super::{IoPageTable, Prot};
use crate::fault::{Access, FaultKind};

/// The granule: 4 KiB.
pub const GRANULE: u64 = 4096;
/// Input address bits.
pub const IAS_BITS: u32 = 48;
/// Output address bits the descriptors carry.
pub const OAS_BITS: u32 = 48;
/// Descriptors per table.
pub const ENTRIES: usize = 512;
/// Bits resolved per level.
const BITS_PER_LEVEL: u32 = 9;
/// The deepest level.
const LAST_LEVEL: u8 = 3;

/// The `MAIR_EL1`-format value our AttrIndx values refer to, for the
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

bitflags::bitflags! {
    /// The bits of a VMSAv8-64 descriptor other than the address (Arm ARM
    /// DDI 0487, D8.3).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct DescBits: u64 {
        /// Bit 0: the descriptor is valid.
        const VALID = 1 << 0;
        /// Bit 1: table (levels 0-2) or page (level 3); clear for a block.
        const TABLE_OR_PAGE = 1 << 1;
        /// Bits 4:2: AttrIndx, an index into [`MAIR`].
        const ATTR_INDX = 0b111 << 2;
        /// Bit 5: NS (ignored by a Non-secure stream).
        const NS = 1 << 5;
        /// Bit 6: AP\[1\], unprivileged (EL0-class) access allowed.
        const AP_UNPRIV = 1 << 6;
        /// Bit 7: AP\[2\], read-only.
        const AP_RDONLY = 1 << 7;
        /// Bits 9:8: SH, shareability.
        const SH = 0b11 << 8;
        /// Bit 10: AF, the access flag.
        const AF = 1 << 10;
        /// Bit 11: nG, not global: tagged with the ASID.
        const NG = 1 << 11;
        /// Bit 52: Contiguous hint.
        const CONTIGUOUS = 1 << 52;
        /// Bit 53: PXN, no privileged execution.
        const PXN = 1 << 53;
        /// Bit 54: UXN / XN, no unprivileged execution.
        const UXN = 1 << 54;
    }
}

/// SH value for inner shareable Normal memory.
pub const SH_INNER: u64 = 0b11 << 8;
/// SH value for outer shareable Normal memory.
pub const SH_OUTER: u64 = 0b10 << 8;
/// Bits 47:12: the output or next-level table address.
pub const ADDR_MASK: u64 = ((1 << OAS_BITS) - 1) & !(GRANULE - 1);

/// One 64-bit translation table descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Descriptor(pub u64);

static_assertions::assert_eq_size!(Descriptor, u64);
static_assertions::assert_eq_align!(Descriptor, u64);

/// A descriptor decoded for `level`.
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
        /// 4 KiB, 2 MiB or 1 GiB.
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

    /// A leaf (block at levels 1-2, page at level 3) mapping `oa` with the
    /// attributes of `prot`.
    pub fn leaf(level: u8, oa: PhysAddr, prot: Prot) -> Self {
        let kind = if level == LAST_LEVEL {
            DescBits::VALID | DescBits::TABLE_OR_PAGE
        } else {
            DescBits::VALID
        };
        Self((oa.as_u64() & ADDR_MASK) | kind.bits() | Self::attributes(prot))
    }

    /// The attribute bits a leaf carries for `prot` (everything but the
    /// address and bits 1:0).
    pub fn attributes(prot: Prot) -> u64 {
        let mut bits =
            DescBits::AF | DescBits::NG | DescBits::AP_UNPRIV | DescBits::PXN | DescBits::UXN;
        if !prot.contains(Prot::WRITE) {
            bits |= DescBits::AP_RDONLY;
        }
        let (idx, sh) = if prot.contains(Prot::CACHE) {
            (MAIR_IDX_CACHED, SH_INNER)
        } else {
            (MAIR_IDX_NON_CACHEABLE, SH_OUTER)
        };
        bits.bits() | (u64::from(idx) << 2) | sh
    }

    /// Bit 0.
    pub const fn is_valid(self) -> bool {
        self.0 & 1 != 0
    }

    /// Decodes the descriptor as found at `level`.
    pub const fn decode(self, level: u8) -> Decoded {
        if !self.is_valid() {
            return Decoded::Invalid;
        }
        let page_or_table = self.0 & DescBits::TABLE_OR_PAGE.bits() != 0;
        match (level, page_or_table) {
            (0..=2, true) => Decoded::Table(PhysAddr::new(self.0 & ADDR_MASK)),
            (3, true) | (1..=2, false) => {
                let size = level_size(level);
                Decoded::Leaf {
                    oa: PhysAddr::new(self.0 & ADDR_MASK & !(size - 1)),
                    size,
                }
            }
            _ => Decoded::Reserved,
        }
    }

    /// AttrIndx, bits 4:2.
    pub const fn attr_index(self) -> u8 {
        ((self.0 >> 2) & 0b111) as u8
    }

    /// SH, bits 9:8.
    pub const fn shareability(self) -> u8 {
        ((self.0 >> 8) & 0b11) as u8
    }

    /// The leaf's attribute bits, without address and type.
    const fn leaf_attributes(self) -> u64 {
        self.0 & !ADDR_MASK & !0b11
    }
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Descriptor({:#018x})", self.0)
    }
}

/// Bytes one entry at `level` covers: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
pub const fn level_size(level: u8) -> u64 {
    GRANULE << (BITS_PER_LEVEL * (LAST_LEVEL - level) as u32)
}

/// The index of `iova`'s entry in its table at `level`.
pub const fn level_index(level: u8, iova: u64) -> usize {
    ((iova / level_size(level)) % ENTRIES as u64) as usize
}

/// A successful walk: where an IOVA goes, and what the leaf allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the byte at the IOVA.
    pub phys: PhysAddr,
    /// The level of the leaf (1, 2 or 3).
    pub level: u8,
    /// The leaf's size: 1 GiB, 2 MiB or 4 KiB.
    pub size: u64,
    /// The leaf descriptor itself.
    pub leaf: Descriptor,
}

impl Translation {
    /// Whether the leaf lets an unprivileged device make `access`: the
    /// access flag is set, AP\[1\] opens it to unprivileged accesses and,
    /// for a write, AP\[2\] is clear.
    ///
    /// # Errors
    ///
    /// The fault an IOMMU raises otherwise.
    pub fn check(&self, access: Access) -> core::result::Result<(), FaultKind> {
        let bits = DescBits::from_bits_retain(self.leaf.0);
        if !bits.contains(DescBits::AF) {
            return Err(FaultKind::AccessFlag {
                level: Some(self.level),
            });
        }
        let denied = !bits.contains(DescBits::AP_UNPRIV)
            || (access == Access::Write && bits.contains(DescBits::AP_RDONLY));
        if denied {
            return Err(FaultKind::Permission {
                level: Some(self.level),
            });
        }
        Ok(())
    }
}

/// Walks the tables at `root` for `iova` as an SMMU would, reading each
/// descriptor with `read` (given the physical address of the 8-byte
/// descriptor; `None` is an external abort).
///
/// This is the reference walker: the software IOMMU in this crate and the
/// mock hardware use it, so faults in tests come from the real format.
///
/// ```
/// use dma_core::PhysAddr;
/// use dma_iommu::pgtable::vmsav8::walk;
/// use dma_iommu::FaultKind;
///
/// // An all-zero root table translates nothing.
/// let fault = walk(PhysAddr::new(0x4000_0000), 0x1000, |_| Some(0)).unwrap_err();
/// assert_eq!(fault, FaultKind::Translation { level: Some(0) });
/// ```
///
/// # Errors
///
/// The fault: [`AddressSize`](FaultKind::AddressSize) beyond 48 bits,
/// [`Translation`](FaultKind::Translation) at the level of an invalid or
/// reserved descriptor, [`WalkAbort`](FaultKind::WalkAbort) when `read`
/// fails.
pub fn walk(
    root: PhysAddr,
    iova: u64,
    mut read: impl FnMut(PhysAddr) -> Option<u64>,
) -> core::result::Result<Translation, FaultKind> {
    if iova >> IAS_BITS != 0 {
        return Err(FaultKind::AddressSize);
    }
    let mut table = root;
    for level in 0..=LAST_LEVEL {
        let at = PhysAddr::new(table.as_u64() + 8 * level_index(level, iova) as u64);
        let desc = Descriptor(read(at).ok_or(FaultKind::WalkAbort { level: Some(level) })?);
        match desc.decode(level) {
            Decoded::Table(next) => table = next,
            Decoded::Leaf { oa, size } => {
                return Ok(Translation {
                    phys: PhysAddr::new(oa.as_u64() + (iova & (size - 1))),
                    level,
                    size,
                    leaf: desc,
                })
            }
            Decoded::Invalid | Decoded::Reserved => {
                return Err(FaultKind::Translation { level: Some(level) })
            }
        }
    }
    Err(FaultKind::Translation {
        level: Some(LAST_LEVEL),
    })
}

/// VMSAv8-64 stage-1 tables with a 4 KiB granule and a 48-bit input
/// address, kept in pages from `M` and cleaned with `C` when the IOMMU's
/// walk is not coherent.
///
/// ```
/// use dma_core::{HostMemory, PhysAddr};
/// use dma_coherence::HardwareCoherent;
/// use dma_iommu::pgtable::{vmsav8::Vmsav8Table, IoPageTable, Prot};
///
/// let mut pt = Vmsav8Table::new(HostMemory, HardwareCoherent)?;
/// // SAFETY: nothing walks these tables; the "physical" range is never touched.
/// unsafe { pt.map(0x20_0000, PhysAddr::new(0x4020_0000), 0x20_0000, Prot::READ)? };
/// assert_eq!(pt.iova_to_phys(0x20_1234), Some(PhysAddr::new(0x4020_1234)));
/// pt.unmap(0x20_1000, 0x1000)?; // splits the 2 MiB block
/// assert_eq!(pt.iova_to_phys(0x20_1234), None);
/// assert_eq!(pt.iova_to_phys(0x20_2000), Some(PhysAddr::new(0x4020_2000)));
/// # Ok::<(), dma_core::Error>(())
/// ```
///
/// Dropping it frees the table pages: whoever pointed an IOMMU at
/// [`root`](IoPageTable::root) detaches it first
/// (the IOMMU platform does).
pub struct Vmsav8Table<M: PhysMemory, C: CacheMaintenance> {
    memory: M,
    cache: C,
    root: Pages,
    tables: usize,
}

// SAFETY: the table owns its pages exclusively (from `alloc_pages`), and all
// mutation needs `&mut self`; sending it sends that ownership.
unsafe impl<M: PhysMemory + Send, C: CacheMaintenance + Send> Send for Vmsav8Table<M, C> {}
// SAFETY: `&self` methods only read descriptors (volatile loads).
unsafe impl<M: PhysMemory + Sync, C: CacheMaintenance + Sync> Sync for Vmsav8Table<M, C> {}

impl<M: PhysMemory, C: CacheMaintenance> Vmsav8Table<M, C> {
    /// An empty table: one zeroed level-0 page.
    ///
    /// # Errors
    ///
    /// [`Unsupported`](ErrorKind::Unsupported) when the environment's pages
    /// are not 4 KiB; whatever the environment's allocation fails with.
    pub fn new(memory: M, cache: C) -> Result<Self> {
        if memory.page_size() != GRANULE as usize {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "VMSAv8-64 4 KiB tables need 4 KiB environment pages",
            ));
        }
        let root = memory.alloc_pages(1, Cacheability::Cached, (1 << OAS_BITS) - 1)?;
        let table = Self {
            memory,
            cache,
            root,
            tables: 1,
        };
        table.publish_table(root.cpu);
        Ok(table)
    }

    /// Whether the IOMMU's walk snoops the CPU caches; when it does not,
    /// every descriptor write is cleaned to memory.
    pub fn walk_is_coherent(&self) -> bool {
        self.cache.is_coherent()
    }

    /// How many table pages exist, the root included.
    pub fn table_pages(&self) -> usize {
        self.tables
    }

    /// The environment's memory.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Walks for `iova` through this table's memory.
    ///
    /// # Errors
    ///
    /// As for [`walk`].
    pub fn walk(&self, iova: u64) -> core::result::Result<Translation, FaultKind> {
        walk(self.root.phys, iova, |at| {
            let p = self.memory.phys_to_virt(at, 8).ok()?;
            // SAFETY: `at` is a descriptor inside one of our table pages
            // (the walk only follows descriptors we wrote), 8-aligned, and
            // read with a volatile load as the IOMMU may update it.
            Some(unsafe { p.cast::<u64>().as_ptr().read_volatile() })
        })
    }

    fn entry_ptr(&self, table: PhysAddr, index: usize) -> Result<NonNull<u64>> {
        let page = self.memory.phys_to_virt(table, GRANULE as usize)?;
        // SAFETY: index < 512, so the result stays inside the 4 KiB page.
        Ok(unsafe { page.cast::<u64>().add(index) })
    }

    fn read(&self, table: PhysAddr, index: usize) -> Result<Descriptor> {
        let p = self.entry_ptr(table, index)?;
        // SAFETY: an aligned descriptor inside a table page we own; volatile
        // because the IOMMU reads (and with HTTU could write) it.
        Ok(Descriptor(unsafe { p.as_ptr().read_volatile() }))
    }

    fn write(&self, table: PhysAddr, index: usize, desc: Descriptor) -> Result<()> {
        let p = self.entry_ptr(table, index)?;
        // SAFETY: as in `read`; a single aligned 64-bit store, so the walker
        // sees the old or the new descriptor, never a mix.
        unsafe { p.as_ptr().write_volatile(desc.0) };
        if !self.cache.is_coherent() {
            // SAFETY: the 8 bytes are mapped (we just wrote them).
            unsafe { self.cache.clean(p.as_ptr() as usize, 8) };
        }
        Ok(())
    }

    /// Makes a freshly written table page visible to the walker before any
    /// descriptor points at it.
    fn publish_table(&self, cpu: NonNull<u8>) {
        if self.cache.is_coherent() {
            barrier::publish_descriptors();
        } else {
            // SAFETY: the page is ours and mapped.
            unsafe { self.cache.clean(cpu.as_ptr() as usize, GRANULE as usize) };
        }
    }

    fn alloc_table(&mut self) -> Result<Pages> {
        let pages = self
            .memory
            .alloc_pages(1, Cacheability::Cached, (1 << OAS_BITS) - 1)?;
        if pages.phys.as_u64() & !ADDR_MASK != 0 {
            // SAFETY: just allocated, never shared.
            unsafe { self.memory.free_pages(pages) };
            return Err(Error::new(
                ErrorKind::Unreachable,
                "table page beyond the 48-bit output address size",
            ));
        }
        self.tables += 1;
        Ok(pages)
    }

    fn check_range(iova: u64, size: u64) -> Result<()> {
        if size == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-size page-table range").at(iova));
        }
        if iova % GRANULE != 0 || size % GRANULE != 0 {
            return Err(
                Error::new(ErrorKind::Misaligned, "page-table range not 4 KiB aligned")
                    .at(iova)
                    .len(size),
            );
        }
        match iova.checked_add(size) {
            Some(end) if end <= 1 << IAS_BITS => Ok(()),
            _ => Err(Error::new(
                ErrorKind::OutOfRange,
                "IOVA range beyond the 48-bit input address size",
            )
            .at(iova)
            .len(size)),
        }
    }

    /// Whether `[start, end)`, under `table` at `level`, has any page that
    /// is unmapped (`find_invalid`) or mapped (otherwise). Absent tables
    /// skip whole ranges, so the cost follows the tables present, not the
    /// range's size.
    fn any_entry(
        &self,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
        find_invalid: bool,
    ) -> Result<bool> {
        let size = level_size(level);
        let mut addr = start;
        while addr < end {
            let next = (addr / size + 1).saturating_mul(size).min(end);
            match self.read(table, level_index(level, addr))?.decode(level) {
                Decoded::Invalid | Decoded::Reserved => {
                    if find_invalid {
                        return Ok(true);
                    }
                }
                Decoded::Leaf { .. } => {
                    if !find_invalid {
                        return Ok(true);
                    }
                }
                Decoded::Table(t) => {
                    if self.any_entry(t, level + 1, addr, next, find_invalid)? {
                        return Ok(true);
                    }
                }
            }
            addr = next;
        }
        Ok(false)
    }

    /// Whether a block at `level` can map the next piece.
    fn block_fits(level: u8, iova: u64, phys: u64, remaining: u64) -> bool {
        let s = level_size(level);
        (1..LAST_LEVEL).contains(&level) && iova % s == 0 && phys % s == 0 && remaining >= s
    }

    /// Writes the largest leaf that fits at `iova` (a block where size and
    /// alignment allow and no table is already in the way), creating tables
    /// on the way. Returns the bytes it maps.
    fn install_leaf(&mut self, iova: u64, phys: u64, remaining: u64, prot: Prot) -> Result<u64> {
        let mut table = self.root.phys;
        for level in 0..=LAST_LEVEL {
            let index = level_index(level, iova);
            let desc = self.read(table, index)?;
            let fits = level == LAST_LEVEL || Self::block_fits(level, iova, phys, remaining);
            table = match desc.decode(level) {
                Decoded::Invalid if fits => {
                    let leaf = Descriptor::leaf(level, PhysAddr::new(phys), prot);
                    self.write(table, index, leaf)?;
                    return Ok(level_size(level));
                }
                Decoded::Invalid => {
                    let page = self.alloc_table()?;
                    self.publish_table(page.cpu);
                    self.write(table, index, Descriptor::table(page.phys))?;
                    page.phys
                }
                // An empty table left by earlier unmaps: map below it.
                Decoded::Table(next) if level < LAST_LEVEL => next,
                _ => {
                    return Err(Error::new(ErrorKind::AlreadyMapped, "IOVA already mapped").at(iova))
                }
            };
        }
        Err(Error::new(ErrorKind::AlreadyMapped, "IOVA already mapped").at(iova))
    }

    /// Makes `addr` the start of a leaf (or of an unmapped hole) by
    /// splitting the block around it, level by level. Translations do not
    /// change.
    fn split_at(&mut self, addr: u64) -> Result<()> {
        if addr >= 1 << IAS_BITS {
            return Ok(());
        }
        let mut table = self.root.phys;
        for level in 0..LAST_LEVEL {
            let index = level_index(level, addr);
            let desc = self.read(table, index)?;
            table = match desc.decode(level) {
                Decoded::Table(next) => next,
                Decoded::Leaf { oa, size } => {
                    if addr % size == 0 {
                        return Ok(());
                    }
                    // Replace the block by a table of the same translations
                    // one level down, as Linux's arm_lpae_split_blk_unmap
                    // does; the unmapped part is invalidated by the caller
                    // afterwards, which also drops the cached block.
                    let page = self.alloc_table()?;
                    let child = level + 1;
                    let attrs = desc.leaf_attributes();
                    let kind = if child == LAST_LEVEL { 0b11 } else { 0b01 };
                    let step = level_size(child);
                    let entries = page.cpu.cast::<u64>();
                    for i in 0..ENTRIES {
                        let d = (oa.as_u64() + i as u64 * step) | attrs | kind;
                        // SAFETY: i < 512 entries of a page we just allocated.
                        unsafe { entries.add(i).as_ptr().write_volatile(d) };
                    }
                    self.publish_table(page.cpu);
                    self.write(table, index, Descriptor::table(page.phys))?;
                    page.phys
                }
                Decoded::Invalid | Decoded::Reserved => return Ok(()),
            };
        }
        Ok(())
    }

    /// Clears every leaf inside `[start, end)`, which `split_at` made
    /// leaf-aligned.
    fn clear(&mut self, table: PhysAddr, level: u8, start: u64, end: u64) -> Result<()> {
        let size = level_size(level);
        let mut addr = start;
        while addr < end {
            let next = (addr / size + 1).saturating_mul(size).min(end);
            let index = level_index(level, addr);
            match self.read(table, index)?.decode(level) {
                Decoded::Leaf { .. } => self.write(table, index, Descriptor::INVALID)?,
                Decoded::Table(t) => self.clear(t, level + 1, addr, next)?,
                Decoded::Invalid | Decoded::Reserved => {}
            }
            addr = next;
        }
        Ok(())
    }

    fn free_tables(&mut self, table: PhysAddr, cpu: NonNull<u8>, level: u8) {
        if level < LAST_LEVEL {
            for index in 0..ENTRIES {
                if let Ok(Decoded::Table(t)) = self.read(table, index).map(|d| d.decode(level)) {
                    if let Ok(cpu) = self.memory.phys_to_virt(t, GRANULE as usize) {
                        self.free_tables(t, cpu, level + 1);
                    }
                }
            }
        }
        // SAFETY: every table page came from alloc_pages as one cached page,
        // is reachable from the root exactly once, and is freed once here;
        // the owner (Drop) guarantees the IOMMU no longer walks it.
        unsafe {
            self.memory.free_pages(Pages {
                cpu,
                phys: table,
                count: 1,
                cacheability: Cacheability::Cached,
            })
        };
    }
}

impl<M: PhysMemory, C: CacheMaintenance> IoPageTable for Vmsav8Table<M, C> {
    const GRANULE: u64 = GRANULE;

    fn ias_bits(&self) -> u32 {
        IAS_BITS
    }

    fn root(&self) -> PhysAddr {
        self.root.phys
    }

    unsafe fn map(&mut self, iova: u64, phys: PhysAddr, size: u64, prot: Prot) -> Result<()> {
        Self::check_range(iova, size)?;
        let phys = phys.as_u64();
        if phys % GRANULE != 0 {
            return Err(
                Error::new(ErrorKind::Misaligned, "physical address not 4 KiB aligned").at(phys),
            );
        }
        if phys.checked_add(size).is_none_or(|end| end > 1 << OAS_BITS) {
            return Err(Error::new(
                ErrorKind::Unreachable,
                "physical range beyond the 48-bit output address size",
            )
            .at(phys)
            .len(size));
        }
        if !prot.intersects(Prot::READ | Prot::WRITE) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "mapping without read or write permission",
            ));
        }
        if self.any_entry(self.root.phys, 0, iova, iova + size, false)? {
            return Err(
                Error::new(ErrorKind::AlreadyMapped, "IOVA range overlaps a mapping")
                    .at(iova)
                    .len(size),
            );
        }
        let mut done = 0;
        while done < size {
            let mapped = match self.install_leaf(iova + done, phys + done, size - done, prot) {
                Ok(bytes) => bytes,
                Err(e) => {
                    // Only a table allocation can fail here (the range was free):
                    // take back what this call mapped.
                    if done > 0 {
                        let _ = self.clear(self.root.phys, 0, iova, iova + done);
                    }
                    return Err(e);
                }
            };
            done += mapped;
        }
        Ok(())
    }

    fn unmap(&mut self, iova: u64, size: u64) -> Result<()> {
        Self::check_range(iova, size)?;
        let end = iova + size;
        if self.any_entry(self.root.phys, 0, iova, end, true)? {
            return Err(
                Error::new(ErrorKind::NotMapped, "IOVA range not (fully) mapped")
                    .at(iova)
                    .len(size),
            );
        }
        // Splitting changes no translation, so failing after it leaves the
        // mappings as they were.
        self.split_at(iova)?;
        self.split_at(end)?;
        self.clear(self.root.phys, 0, iova, end)
    }

    fn iova_to_phys(&self, iova: u64) -> Option<PhysAddr> {
        self.walk(iova).ok().map(|t| t.phys)
    }
}

impl<M: PhysMemory, C: CacheMaintenance> Drop for Vmsav8Table<M, C> {
    /// Frees every table page. The owner detaches the tables from the IOMMU
    /// (and invalidates its caches) first.
    fn drop(&mut self) {
        self.free_tables(self.root.phys, self.root.cpu, 0);
    }
}

impl<M: PhysMemory, C: CacheMaintenance> fmt::Debug for Vmsav8Table<M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vmsav8Table")
            .field("root", &self.root.phys)
            .field("tables", &self.tables)
            .field("walk_is_coherent", &self.walk_is_coherent())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests;
