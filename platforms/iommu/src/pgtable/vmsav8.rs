//! Arm VMSAv8-64 translation tables, the format an SMMUv3 walks: 4 KiB,
//! 16 KiB and 64 KiB granules, input sizes of 32 to 48 bits, stage 1 (a
//! context descriptor's TTB0, T0SZ, TG0, MAIR0) and stage 2 (an STE's
//! S2TTB, S2T0SZ, S2TG, S2SL0).
//!
//! References are to the Arm Architecture Reference Manual for A-profile,
//! DDI 0487 (K.a), chapter D8 "The AArch64 Virtual Memory System
//! Architecture":
//! - D8.2 "Translation process": the geometry, in [`Format`];
//! - D8.3 "Translation table descriptor formats": bits 1:0 are `0b11` for
//!   a table (levels 0-2) or a page (level 3), `0b01` for a block where the
//!   granule allows one; anything with bit 0 clear is invalid. The output
//!   or next-table address is bits 47:granule ([`Descriptor`]);
//! - D8.4 "Memory access control" and D8.6 "Memory region attributes": the
//!   leaf attributes of each stage ([`Descriptor::attributes`]);
//! - D8.5 "Hardware updates to the translation tables": the access flag
//!   (bit 10); we set it, so no access-flag fault or hardware update is
//!   needed.
//!
//! Descriptors are read and written with volatile accesses, one aligned
//! 64-bit word at a time (single-copy atomic for the walker, D8.2), and a
//! new table is filled and made visible before the descriptor that points
//! at it (a `dma_wmb`, or a clean where the walk is not coherent).
//!
//! Intermediate tables are kept when the mappings under them go; they are
//! freed with the whole table. Freeing them on unmap would need a
//! walk-cache invalidation before the page is reused, for little gain on a
//! domain whose footprint is bounded by its peak. Because a linked table
//! is never unlinked, a run of pages inside one last-level table (every
//! streaming mapping up to the smallest block size that does not cross a
//! table) is mapped and unmapped in one walk, and the last last-level
//! table found is remembered, so the next run in the same block skips the
//! upper levels: the common map and unmap cost the same whatever else is
//! mapped.

mod desc;
mod format;

use core::fmt;

use dma_coherence::{barrier, CacheMaintenance};
use dma_core::{Cacheability, Error, ErrorKind, PhysAddr, PhysMemory, Result};

use crate::aligned::{AlignedAlloc, Block as TableMem};
pub use desc::{
    Decoded, DescBits, Descriptor, ADDR_MASK, MAIR, MAIR_IDX_CACHED, MAIR_IDX_DEVICE,
    MAIR_IDX_NON_CACHEABLE, S2_MEMATTR_CACHED, S2_MEMATTR_DEVICE, S2_MEMATTR_NON_CACHEABLE,
    SH_INNER, SH_OUTER,
};
pub use format::{Format, Granule, Stage, LAST_LEVEL, OAS_BITS};

use super::{IoPageTable, Leaf, Prot};
use crate::fault::{Access, FaultKind};

/// The default format's granule: 4 KiB.
pub const GRANULE: u64 = 4096;
/// The default format's input address bits.
pub const IAS_BITS: u32 = 48;

/// A successful walk: where an IOVA goes, and what the leaf allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address of the byte at the IOVA.
    pub phys: PhysAddr,
    /// The level of the leaf.
    pub level: u8,
    /// The leaf's size.
    pub size: u64,
    /// The leaf descriptor itself.
    pub leaf: Descriptor,
    /// The stage, which says how to read the leaf's permissions.
    pub stage: Stage,
}

impl Translation {
    /// Whether the leaf lets a device make `access`: the access flag is
    /// set and, at stage 1, AP\[1\] opens it to unprivileged accesses and,
    /// for a write, AP\[2\] is clear; at stage 2, the S2AP bit for the
    /// access is set.
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
        let allowed = match (self.stage, access) {
            (Stage::One, Access::Read) => bits.contains(DescBits::AP_UNPRIV),
            (Stage::One, Access::Write) => {
                bits.contains(DescBits::AP_UNPRIV) && !bits.contains(DescBits::AP_RDONLY)
            }
            (Stage::Two, Access::Read) => bits.contains(DescBits::S2AP_READ),
            (Stage::Two, Access::Write) => bits.contains(DescBits::S2AP_WRITE),
        };
        if allowed {
            Ok(())
        } else {
            Err(FaultKind::Permission {
                level: Some(self.level),
            })
        }
    }
}

/// Walks the tables of `format` at `root` for `iova` as an SMMU would,
/// reading each descriptor with `read` (given the physical address of the
/// 8-byte descriptor; `None` is an external abort).
///
/// This is the reference walker: the software IOMMU in this crate uses it,
/// so faults in tests come from the real format. (The mock hardware has its
/// own, written separately, to cross-check this one.)
///
/// ```
/// use dma_core::PhysAddr;
/// use dma_iommu::pgtable::vmsav8::{walk, Format};
/// use dma_iommu::FaultKind;
///
/// // An all-zero root table translates nothing.
/// let f = Format::default();
/// let fault = walk(&f, PhysAddr::new(0x4000_0000), 0x1000, |_| Some(0)).unwrap_err();
/// assert_eq!(fault, FaultKind::Translation { level: Some(0) });
/// ```
///
/// # Errors
///
/// The fault: [`AddressSize`](FaultKind::AddressSize) beyond the input
/// size, [`Translation`](FaultKind::Translation) at the level of an invalid
/// or reserved descriptor, [`WalkAbort`](FaultKind::WalkAbort) when `read`
/// fails.
pub fn walk(
    format: &Format,
    root: PhysAddr,
    iova: u64,
    mut read: impl FnMut(PhysAddr) -> Option<u64>,
) -> core::result::Result<Translation, FaultKind> {
    if iova >> format.ias_bits() != 0 {
        return Err(FaultKind::AddressSize);
    }
    let mut table = root;
    for level in format.start_level()..=LAST_LEVEL {
        let at = PhysAddr::new(table.as_u64() + 8 * format.index(level, iova));
        let desc = Descriptor(read(at).ok_or(FaultKind::WalkAbort { level: Some(level) })?);
        match desc.decode(format, level) {
            Decoded::Table(next) => table = next,
            Decoded::Leaf { oa, size } => {
                return Ok(Translation {
                    phys: PhysAddr::new(oa.as_u64() + (iova & (size - 1))),
                    level,
                    size,
                    leaf: desc,
                    stage: format.stage(),
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

/// VMSAv8-64 tables of one [`Format`], kept in memory from `M` and cleaned
/// with `C` when the IOMMU's walk is not coherent.
///
/// ```
/// use dma_core::{HostMemory, PhysAddr};
/// use dma_coherence::HardwareCoherent;
/// use dma_iommu::pgtable::{vmsav8::Vmsav8Table, IoPageTable, Prot};
///
/// let mut pt = Vmsav8Table::new(HostMemory, HardwareCoherent)?;
/// // SAFETY: nothing walks these tables; the "physical" range is never touched.
/// unsafe { pt.map(0x20_0000, PhysAddr::new(0x4020_0000), 0x20_0000, Prot::READ)? };
/// assert_eq!(pt.translate(0x20_1234).map(|l| l.size), Some(0x20_0000));
/// assert_eq!(pt.unmap(0x20_1000, 0x1000)?, 0x1000); // splits the 2 MiB block
/// assert_eq!(pt.iova_to_phys(0x20_1234), None);
/// assert_eq!(pt.iova_to_phys(0x20_2000), Some(PhysAddr::new(0x4020_2000)));
/// # Ok::<(), dma_core::Error>(())
/// ```
///
/// Other granules, input sizes and stage 2 come from
/// [`with_format`](Self::with_format).
///
/// Dropping it frees the table memory: whoever pointed an IOMMU at
/// [`root`](IoPageTable::root) detaches it first
/// (the IOMMU platform does).
pub struct Vmsav8Table<M: PhysMemory, C: CacheMaintenance> {
    alloc: AlignedAlloc<M>,
    cache: C,
    format: Format,
    root: TableMem,
    tables: usize,
    /// The last last-level table [`leaf_table`](Self::leaf_table) found,
    /// by the IOVA block it covers (`iova >> level_shift(LAST_LEVEL - 1)`),
    /// so mappings in the same block skip the upper levels. Sound because
    /// a table, once linked, stays the table for its block until the whole
    /// table is dropped: no path unlinks or replaces a table descriptor
    /// (`clear` invalidates leaves only, `split_at` replaces a block leaf,
    /// `install_leaf` writes only into invalid slots).
    last_leaf_table: Option<(u64, PhysAddr)>,
}

// SAFETY: the table owns its memory exclusively (from `alloc_pages`), and all
// mutation needs `&mut self`; sending it sends that ownership.
unsafe impl<M: PhysMemory + Send, C: CacheMaintenance + Send> Send for Vmsav8Table<M, C> {}
// SAFETY: `&self` methods only read descriptors (volatile loads).
unsafe impl<M: PhysMemory + Sync, C: CacheMaintenance + Sync> Sync for Vmsav8Table<M, C> {}

impl<M: PhysMemory, C: CacheMaintenance> Vmsav8Table<M, C> {
    /// An empty stage-1 table with a 4 KiB granule and a 48-bit input
    /// ([`Format::STAGE1_4K_48`]).
    ///
    /// # Errors
    ///
    /// As for [`with_format`](Self::with_format).
    pub fn new(memory: M, cache: C) -> Result<Self> {
        Self::with_format(memory, cache, Format::STAGE1_4K_48)
    }

    /// An empty table of `format`: one zeroed initial table.
    ///
    /// # Errors
    ///
    /// Whatever the environment's allocation fails with;
    /// [`Unsupported`](ErrorKind::Unsupported) when a table is larger than
    /// the environment's page and the `alloc` feature is off.
    pub fn with_format(memory: M, cache: C, format: Format) -> Result<Self> {
        let mut alloc = AlignedAlloc::new(memory);
        let bytes = format.table_bytes(format.start_level());
        let root = alloc.alloc(bytes, bytes, Cacheability::Cached)?;
        let table = Self {
            alloc,
            cache,
            format,
            root,
            tables: 1,
            last_leaf_table: None,
        };
        table.publish_table(root, format.start_level());
        Ok(table)
    }

    /// The format.
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// Whether the IOMMU's walk snoops the CPU caches; when it does not,
    /// every descriptor write is cleaned to memory.
    pub fn walk_is_coherent(&self) -> bool {
        self.cache.is_coherent()
    }

    /// How many tables exist, the initial one included.
    pub fn table_pages(&self) -> usize {
        self.tables
    }

    /// The environment's memory.
    pub fn memory(&self) -> &M {
        &self.alloc.memory
    }

    /// Walks for `iova` through this table's memory.
    ///
    /// # Errors
    ///
    /// As for [`walk`].
    pub fn walk(&self, iova: u64) -> core::result::Result<Translation, FaultKind> {
        walk(&self.format, self.root.phys, iova, |at| {
            self.read_at(at).ok().map(|d| d.0)
        })
    }

    fn entry_addr(table: PhysAddr, index: u64) -> PhysAddr {
        PhysAddr::new(table.as_u64() + 8 * index)
    }

    fn read_at(&self, at: PhysAddr) -> Result<Descriptor> {
        let p = self.alloc.memory.phys_to_virt(at, 8)?;
        // SAFETY: the environment maps these 8 bytes at `p`; `at` is an 8-aligned descriptor inside
        // one of our tables (the walk follows only descriptors we wrote). Volatile because the
        // IOMMU reads (and with HTTU could write) it.
        Ok(Descriptor(unsafe {
            p.cast::<u64>().as_ptr().read_volatile()
        }))
    }

    fn read(&self, table: PhysAddr, index: u64) -> Result<Descriptor> {
        self.read_at(Self::entry_addr(table, index))
    }

    fn write(&self, table: PhysAddr, index: u64, desc: Descriptor) -> Result<()> {
        let p = self
            .alloc
            .memory
            .phys_to_virt(Self::entry_addr(table, index), 8)?;
        // SAFETY: an aligned descriptor inside a table we own, mapped for 8
        // bytes at `p`; a single aligned 64-bit store, so the walker sees
        // the old or the new descriptor, never a mix.
        unsafe { p.cast::<u64>().as_ptr().write_volatile(desc.0) };
        if !self.cache.is_coherent() {
            // SAFETY: the 8 bytes are mapped (we just wrote them).
            unsafe { self.cache.clean(p.as_ptr() as usize, 8) };
        }
        Ok(())
    }

    /// Makes a freshly written table visible to the walker before any
    /// descriptor points at it.
    fn publish_table(&self, table: TableMem, level: u8) {
        if self.cache.is_coherent() {
            barrier::publish_descriptors();
        } else {
            let bytes = self.format.table_bytes(level) as usize;
            // SAFETY: the table's memory is ours and mapped at `cpu`.
            unsafe { self.cache.clean(table.cpu.as_ptr() as usize, bytes) };
        }
    }

    /// A zeroed table for `level`, not yet linked.
    fn alloc_table(&mut self, level: u8) -> Result<TableMem> {
        let bytes = self.format.table_bytes(level);
        let table = self.alloc.alloc(bytes, bytes, Cacheability::Cached)?;
        self.tables += 1;
        Ok(table)
    }

    fn check_range(&self, iova: u64, size: u64) -> Result<()> {
        let granule = self.format.granule().size();
        if size == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-size page-table range").at(iova));
        }
        // The granule is a power of two: a mask, not a division.
        if (iova | size) & (granule - 1) != 0 {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "page-table range not aligned to the granule",
            )
            .at(iova)
            .len(size));
        }
        match iova.checked_add(size) {
            Some(end) if end <= 1 << self.format.ias_bits() => Ok(()),
            _ => Err(Error::new(
                ErrorKind::OutOfRange,
                "IOVA range beyond the table's input address size",
            )
            .at(iova)
            .len(size)),
        }
    }

    /// `align` is a leaf size, a power of two.
    fn check_output(&self, phys: u64, size: u64, align: u64) -> Result<()> {
        if phys & (align - 1) != 0 {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "physical address not aligned to the page size",
            )
            .at(phys));
        }
        if phys.checked_add(size).is_none_or(|end| end > 1 << OAS_BITS) {
            return Err(Error::new(
                ErrorKind::Unreachable,
                "physical range beyond the 48-bit output address size",
            )
            .at(phys)
            .len(size));
        }
        Ok(())
    }

    fn check_prot(prot: Prot) -> Result<()> {
        if prot.intersects(Prot::READ | Prot::WRITE) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Unsupported,
                "mapping without read or write permission",
            ))
        }
    }

    fn check_free(&self, iova: u64, size: u64) -> Result<()> {
        let start = self.format.start_level();
        if self.any_entry(self.root.phys, start, iova, iova + size, false)? {
            return Err(
                Error::new(ErrorKind::AlreadyMapped, "IOVA range overlaps a mapping")
                    .at(iova)
                    .len(size),
            );
        }
        Ok(())
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
        let size = self.format.level_size(level);
        let mut addr = start;
        while addr < end {
            let next = (addr / size + 1).saturating_mul(size).min(end);
            match self
                .read(table, self.format.index(level, addr))?
                .decode(&self.format, level)
            {
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

    /// The first index and the number of pages of `[iova, iova + size)`
    /// when it is a run of pages in one last-level table that no block
    /// could map (shorter than the smallest block, so every piece of it is
    /// a page for [`fitting_level`](Self::fitting_level)). A 4 KiB buffer's
    /// mapping always is; such a run is mapped and unmapped with one walk.
    fn page_run(&self, iova: u64, size: u64) -> Option<(u64, u64)> {
        let block_shift = self.format.level_shift(LAST_LEVEL - 1);
        let last = iova + size - 1;
        (size >> block_shift == 0 && (iova ^ last) >> block_shift == 0).then(|| {
            let shift = self.format.granule().shift();
            (self.format.index(LAST_LEVEL, iova), size >> shift)
        })
    }

    /// The last-level table `iova` lies under, creating missing tables on
    /// the way when `create`. `None` when a block, a reserved descriptor or
    /// (without `create`) a missing table is in the way: the general path
    /// handles those.
    fn leaf_table(&mut self, iova: u64, create: bool) -> Result<Option<PhysAddr>> {
        let block = iova >> self.format.level_shift(LAST_LEVEL - 1);
        if let Some((cached, table)) = self.last_leaf_table {
            if cached == block {
                return Ok(Some(table));
            }
        }
        let mut table = self.root.phys;
        for level in self.format.start_level()..LAST_LEVEL {
            let index = self.format.index(level, iova);
            table = match self.read(table, index)?.decode(&self.format, level) {
                Decoded::Table(next) => next,
                Decoded::Invalid if create => {
                    let next = self.alloc_table(level + 1)?;
                    self.publish_table(next, level + 1);
                    self.write(table, index, Descriptor::table(next.phys))?;
                    next.phys
                }
                _ => return Ok(None),
            };
        }
        self.last_leaf_table = Some((block, table));
        Ok(Some(table))
    }

    /// [`map`](IoPageTable::map)'s one-walk path for a [`page_run`](Self::page_run)
    /// whose pages are all unmapped: `false` (nothing written) otherwise,
    /// and the general path then maps or refuses it. Tables it creates are
    /// fresh, so a refusal here never follows a table allocation.
    fn map_run(&mut self, iova: u64, phys: u64, size: u64, prot: Prot) -> Result<bool> {
        let Some((first, pages)) = self.page_run(iova, size) else {
            return Ok(false);
        };
        let Some(table) = self.leaf_table(iova, true)? else {
            return Ok(false);
        };
        for index in first..first + pages {
            if self.read(table, index)?.is_valid() {
                return Ok(false);
            }
        }
        let granule = self.format.granule().size();
        for i in 0..pages {
            let oa = PhysAddr::new(phys + i * granule);
            let leaf = Descriptor::leaf(&self.format, LAST_LEVEL, oa, prot);
            if let Err(e) = self.write(table, first + i, leaf) {
                // A refused map changes nothing: take back what this call
                // wrote, as the general path does.
                for index in first..first + i {
                    let _ = self.write(table, index, Descriptor::INVALID);
                }
                return Err(e);
            }
        }
        Ok(true)
    }

    /// Unmaps `size` bytes at `iova` in one walk if they are a page run
    /// (pages of one last-level table, shorter than the smallest block)
    /// whose every page maps to `phys` onwards
    /// (`Some(true)`), the way a mapping of `phys` made them. `Some(false)`:
    /// some page does not, and nothing changed. `None`: not a page run, or
    /// a block or missing table is in the way; use
    /// [`unmap`](IoPageTable::unmap) after checking the mapping.
    ///
    /// # Errors
    ///
    /// The environment's, reading or writing a descriptor.
    pub fn unmap_run(&mut self, iova: u64, phys: PhysAddr, size: u64) -> Result<Option<bool>> {
        self.check_range(iova, size)?;
        let Some((first, pages)) = self.page_run(iova, size) else {
            return Ok(None);
        };
        let Some(table) = self.leaf_table(iova, false)? else {
            return Ok(None);
        };
        let granule = self.format.granule().size();
        for i in 0..pages {
            let expect = PhysAddr::new(phys.as_u64() + i * granule);
            match self
                .read(table, first + i)?
                .decode(&self.format, LAST_LEVEL)
            {
                Decoded::Leaf { oa, .. } if oa == expect => {}
                _ => return Ok(Some(false)),
            }
        }
        for index in first..first + pages {
            self.write(table, index, Descriptor::INVALID)?;
        }
        Ok(Some(true))
    }

    /// The level of the largest leaf that can map the next piece.
    fn fitting_level(&self, iova: u64, phys: u64, remaining: u64) -> u8 {
        (self.format.start_level()..LAST_LEVEL)
            .find(|&level| {
                let s = self.format.level_size(level);
                self.format.has_leaf_at(level) && iova % s == 0 && phys % s == 0 && remaining >= s
            })
            .unwrap_or(LAST_LEVEL)
    }

    /// Writes one leaf at `iova`: at `target` if no table is in the way,
    /// else (when `exact` is false) at the deepest level below an empty
    /// table left by earlier unmaps. Creates tables on the way. Returns the
    /// bytes it maps.
    fn install_leaf(
        &mut self,
        iova: u64,
        phys: u64,
        target: u8,
        exact: bool,
        prot: Prot,
    ) -> Result<u64> {
        let mut table = self.root.phys;
        for level in self.format.start_level()..=LAST_LEVEL {
            let index = self.format.index(level, iova);
            let desc = self.read(table, index)?;
            table = match desc.decode(&self.format, level) {
                Decoded::Invalid if level >= target => {
                    let leaf = Descriptor::leaf(&self.format, level, PhysAddr::new(phys), prot);
                    self.write(table, index, leaf)?;
                    return Ok(self.format.level_size(level));
                }
                Decoded::Invalid => {
                    let next = self.alloc_table(level + 1)?;
                    self.publish_table(next, level + 1);
                    self.write(table, index, Descriptor::table(next.phys))?;
                    next.phys
                }
                // An empty table left by earlier unmaps: map below it.
                Decoded::Table(next) if level < target || !exact => next,
                Decoded::Table(_) => {
                    return Err(Error::new(
                        ErrorKind::AlreadyMapped,
                        "a table from earlier mappings holds this page's slot: map it with `map` instead",
                    )
                    .at(iova))
                }
                Decoded::Leaf { .. } | Decoded::Reserved => {
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
        if addr >> self.format.ias_bits() != 0 {
            return Ok(());
        }
        let mut table = self.root.phys;
        for level in self.format.start_level()..LAST_LEVEL {
            let index = self.format.index(level, addr);
            let desc = self.read(table, index)?;
            table = match desc.decode(&self.format, level) {
                Decoded::Table(next) => next,
                Decoded::Leaf { oa, size } => {
                    if addr % size == 0 {
                        return Ok(());
                    }
                    // Replace the block by a table of the same translations
                    // one level down, as Linux's arm_lpae_split_blk_unmap
                    // does; the unmapped part is invalidated by the caller
                    // afterwards, which also drops the cached block.
                    let child = level + 1;
                    let page = self.alloc_table(child)?;
                    let attrs = desc.leaf_attributes() | Descriptor::kind(child);
                    let step = self.format.level_size(child);
                    let entries = page.cpu.cast::<u64>();
                    for i in 0..self.format.entries(child) {
                        let d = (oa.as_u64() + i * step) | attrs;
                        // SAFETY: i < the entries of the table we just
                        // allocated, whose memory holds them all.
                        unsafe { entries.add(i as usize).as_ptr().write_volatile(d) };
                    }
                    self.publish_table(page, child);
                    self.write(table, index, Descriptor::table(page.phys))?;
                    page.phys
                }
                Decoded::Invalid | Decoded::Reserved => return Ok(()),
            };
        }
        Ok(())
    }

    /// Clears every leaf inside `[start, end)`, which `split_at` made
    /// leaf-aligned. Returns the bytes cleared.
    fn clear(&mut self, table: PhysAddr, level: u8, start: u64, end: u64) -> Result<u64> {
        let size = self.format.level_size(level);
        let mut addr = start;
        let mut cleared = 0;
        while addr < end {
            let next = (addr / size + 1).saturating_mul(size).min(end);
            let index = self.format.index(level, addr);
            match self.read(table, index)?.decode(&self.format, level) {
                Decoded::Leaf { size: bytes, .. } => {
                    self.write(table, index, Descriptor::INVALID)?;
                    cleared += bytes;
                }
                Decoded::Table(t) => cleared += self.clear(t, level + 1, addr, next)?,
                Decoded::Invalid | Decoded::Reserved => {}
            }
            addr = next;
        }
        Ok(cleared)
    }

    fn free_tables(&mut self, table: TableMem, level: u8) {
        if level < LAST_LEVEL {
            for index in 0..self.format.entries(level) {
                let desc = self
                    .read(table.phys, index)
                    .map(|d| d.decode(&self.format, level));
                if let Ok(Decoded::Table(phys)) = desc {
                    let bytes = self.format.table_bytes(level + 1) as usize;
                    if let Ok(cpu) = self.alloc.memory.phys_to_virt(phys, bytes) {
                        self.free_tables(TableMem { cpu, phys }, level + 1);
                    }
                }
            }
        }
        let bytes = self.format.table_bytes(level);
        // SAFETY: every table came from `alloc_table(level)` (or is the root, from `alloc` of the
        // same size), is reachable from the root exactly once, and is freed once here; the owner
        // (Drop) guarantees the IOMMU no longer walks it.
        unsafe { self.alloc.free(table, bytes, Cacheability::Cached) };
    }
}

impl<M: PhysMemory, C: CacheMaintenance> IoPageTable for Vmsav8Table<M, C> {
    fn granule(&self) -> u64 {
        self.format.granule().size()
    }

    fn page_sizes(&self) -> u64 {
        self.format.page_sizes()
    }

    fn ias_bits(&self) -> u32 {
        self.format.ias_bits()
    }

    fn root(&self) -> PhysAddr {
        self.root.phys
    }

    unsafe fn map(&mut self, iova: u64, phys: PhysAddr, size: u64, prot: Prot) -> Result<()> {
        self.check_range(iova, size)?;
        let phys = phys.as_u64();
        self.check_output(phys, size, self.granule())?;
        Self::check_prot(prot)?;
        if self.map_run(iova, phys, size, prot)? {
            return Ok(());
        }
        self.check_free(iova, size)?;
        let mut done = 0;
        while done < size {
            let (at, to) = (iova + done, phys + done);
            let level = self.fitting_level(at, to, size - done);
            match self.install_leaf(at, to, level, false, prot) {
                Ok(bytes) => done += bytes,
                Err(e) => {
                    // Only a table allocation can fail here (the range was free):
                    // take back what this call mapped.
                    if done > 0 {
                        let start = self.format.start_level();
                        let _ = self.clear(self.root.phys, start, iova, iova + done);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    unsafe fn map_page(
        &mut self,
        iova: u64,
        phys: PhysAddr,
        page_size: u64,
        prot: Prot,
    ) -> Result<()> {
        let Some(level) = self.format.leaf_level(page_size) else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "no leaf of this size in the table's format (see `page_sizes`)",
            )
            .len(page_size));
        };
        self.check_range(iova, page_size)?;
        if iova % page_size != 0 {
            return Err(
                Error::new(ErrorKind::Misaligned, "IOVA not aligned to the page size").at(iova),
            );
        }
        let phys = phys.as_u64();
        self.check_output(phys, page_size, page_size)?;
        Self::check_prot(prot)?;
        self.check_free(iova, page_size)?;
        self.install_leaf(iova, phys, level, true, prot).map(drop)
    }

    fn unmap(&mut self, iova: u64, size: u64) -> Result<u64> {
        self.check_range(iova, size)?;
        let end = iova + size;
        let start = self.format.start_level();
        if self.any_entry(self.root.phys, start, iova, end, true)? {
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
        self.clear(self.root.phys, start, iova, end)
    }

    fn translate(&self, iova: u64) -> Option<Leaf> {
        self.walk(iova).ok().map(|t| Leaf {
            phys: t.phys,
            size: t.size,
        })
    }
}

impl<M: PhysMemory, C: CacheMaintenance> Drop for Vmsav8Table<M, C> {
    /// Frees every table. The owner detaches the tables from the IOMMU
    /// (and invalidates its caches) first.
    fn drop(&mut self) {
        let start = self.format.start_level();
        self.free_tables(self.root, start);
    }
}

impl<M: PhysMemory, C: CacheMaintenance> fmt::Debug for Vmsav8Table<M, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vmsav8Table")
            .field("format", &self.format)
            .field("root", &self.root.phys)
            .field("tables", &self.tables)
            .field("walk_is_coherent", &self.walk_is_coherent())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "alloc"))]
mod selftest;
#[cfg(all(test, feature = "alloc"))]
mod tests;
