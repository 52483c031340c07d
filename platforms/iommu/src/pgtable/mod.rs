//! I/O page tables: the format the IOMMU walks, behind a trait so that
//! another format (Intel VT-d second level, RISC-V IOMMU Sv48) can follow
//! without touching the platform.
//!
//! [`vmsav8`] is the Arm VMSAv8-64 format an SMMUv3 walks: 4, 16 and 64 KiB
//! granules, 32- to 48-bit inputs, stage 1 and stage 2.

pub mod vmsav8;

use dma_core::{PhysAddr, Result};

bitflags::bitflags! {
    /// What a device may do through a mapping, and how it is cached.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Prot: u32 {
        /// The device may read.
        const READ = 1 << 0;
        /// The device may write.
        const WRITE = 1 << 1;
        /// The device is coherent with the CPU caches: map the memory
        /// cacheable and inner shareable (Linux's `IOMMU_CACHE`); without
        /// it the mapping is non-cacheable, so a non-coherent device's
        /// accesses reach RAM as the cache maintenance expects.
        const CACHE = 1 << 2;
    }
}

/// One translation: where an IOVA goes, and the size of the leaf (page or
/// block) that maps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The physical address of the byte at the IOVA.
    pub phys: PhysAddr,
    /// The leaf's size in bytes, one of [`IoPageTable::page_sizes`].
    pub size: u64,
}

/// A page-table format an IOMMU walks: map, unmap and translate ranges of
/// I/O virtual addresses.
///
/// Implementations keep their table pages in DMA memory the IOMMU reads,
/// and make every write visible to the walker before returning (cleaning
/// the cache where the walk is not coherent). Errors leave the
/// translations exactly as they were.
pub trait IoPageTable {
    /// The smallest page, in bytes; every address and size is a multiple.
    fn granule(&self) -> u64;

    /// Every leaf size the format has, as a mask of sizes (each a power of
    /// two; Linux's `pgsize_bitmap`).
    fn page_sizes(&self) -> u64;

    /// Input (IOVA) address bits.
    fn ias_bits(&self) -> u32;

    /// The physical address of the top-level table, for the IOMMU's
    /// context (an SMMUv3 CD's TTB0, a VT-d context entry's SLPTPTR).
    fn root(&self) -> PhysAddr;

    /// Maps `size` bytes at `iova` to `phys`, using the largest leaves
    /// alignment and size allow.
    ///
    /// # Errors
    ///
    /// `ZeroSize`, `Misaligned` (not granule-aligned), `OutOfRange` (beyond
    /// the input address size), `Unreachable` (beyond the output address
    /// size), `AlreadyMapped` (any part is mapped), `Unsupported` (neither
    /// read nor write), `OutOfMemory` (no page for a table). Nothing is
    /// mapped then.
    ///
    /// # Safety
    ///
    /// The caller owns the physical range for as long as it stays mapped:
    /// the device reaches it from now on.
    unsafe fn map(&mut self, iova: u64, phys: PhysAddr, size: u64, prot: Prot) -> Result<()>;

    /// Maps exactly one leaf of `page_size` bytes (one of
    /// [`page_sizes`](Self::page_sizes)) at `iova` to `phys`, both aligned
    /// to it.
    ///
    /// # Errors
    ///
    /// As for [`map`](Self::map), and `Unsupported` for a size the format
    /// has no leaf of, `Misaligned` for addresses not aligned to it,
    /// `AlreadyMapped` where a table left by earlier mappings holds the
    /// leaf's slot. Nothing is mapped then.
    ///
    /// # Safety
    ///
    /// As for [`map`](Self::map).
    unsafe fn map_page(
        &mut self,
        iova: u64,
        phys: PhysAddr,
        page_size: u64,
        prot: Prot,
    ) -> Result<()>;

    /// Unmaps `size` bytes at `iova`, splitting blocks that straddle the
    /// range's ends, and returns the bytes unmapped (all of `size`: the
    /// call unmaps everything or nothing). The IOTLB still holds the old
    /// translations until the caller invalidates them.
    ///
    /// # Errors
    ///
    /// `ZeroSize`, `Misaligned`, `OutOfRange`, `NotMapped` (any part is
    /// not mapped), `OutOfMemory` (no page to split a block). Nothing is
    /// unmapped then.
    fn unmap(&mut self, iova: u64, size: u64) -> Result<u64>;

    /// The translation of `iova` and the size of its leaf, or `None`.
    fn translate(&self, iova: u64) -> Option<Leaf>;

    /// The physical address `iova` translates to, or `None`.
    fn iova_to_phys(&self, iova: u64) -> Option<PhysAddr> {
        self.translate(iova).map(|leaf| leaf.phys)
    }
}
