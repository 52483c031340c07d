//! I/O page tables: the format the IOMMU walks, behind a trait so that
//! another format (Intel VT-d second level, RISC-V IOMMU Sv48) can follow
//! without touching the platform.
//!
//! [`vmsav8`] is the Arm VMSAv8-64 stage-1 format with a 4 KiB granule, the
//! one an SMMUv3 context descriptor points at.

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

/// A page-table format an IOMMU walks: map, unmap and translate ranges of
/// I/O virtual addresses.
///
/// Implementations keep their table pages in DMA memory the IOMMU reads,
/// and make every write visible to the walker before returning (cleaning
/// the cache where the walk is not coherent). Errors leave the
/// translations exactly as they were.
pub trait IoPageTable {
    /// The smallest page, in bytes; every address and size is a multiple.
    const GRANULE: u64;

    /// Input (IOVA) address bits.
    fn ias_bits(&self) -> u32;

    /// The physical address of the top-level table, for the IOMMU's
    /// context (an SMMUv3 CD's TTB0, a VT-d context entry's SLPTPTR).
    fn root(&self) -> PhysAddr;

    /// Maps `size` bytes at `iova` to `phys`, using the largest blocks
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

    /// Unmaps `size` bytes at `iova`, splitting blocks that straddle the
    /// range's ends. The IOTLB still holds the old translations until the
    /// caller invalidates them.
    ///
    /// # Errors
    ///
    /// `ZeroSize`, `Misaligned`, `OutOfRange`, `NotMapped` (any part is
    /// not mapped), `OutOfMemory` (no page to split a block). Nothing is
    /// unmapped then.
    fn unmap(&mut self, iova: u64, size: u64) -> Result<()>;

    /// The physical address `iova` translates to, or `None`.
    fn iova_to_phys(&self, iova: u64) -> Option<PhysAddr>;
}
