//! The platform contract: what a backend must do, and what its callers must
//! promise.
//!
//! Two traits, one concern each, in the spirit of embedded-hal:
//! [`DmaMap`] for streaming mappings (Linux's `dma_map_*` / `dma_sync_*`,
//! busdma's `bus_dmamap_load` / `bus_dmamap_sync`) and [`DmaAlloc`] for
//! coherent allocations (`dma_alloc_coherent`, `bus_dmamem_alloc`). Both are
//! `unsafe` to implement, because the safe owning types in this crate trust
//! what they return, and have `unsafe` methods, because a backend cannot
//! check that the memory it is handed is owned and stays put.
//!
//! Most users never call these methods: they use
//! [`Coherent`](crate::Coherent), [`StreamingMapping`](crate::StreamingMapping)
//! and [`DmaPool`](crate::DmaPool), which uphold the caller contracts.

use core::ptr::NonNull;

use crate::{DeviceConstraints, DmaAddr, DmaAttrs, DmaDirection, PhysAddr, Result};

/// A live streaming mapping, as the platform sees it: what was mapped, where
/// the device sees it, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawMapping {
    /// Physical address of the first byte of the CPU buffer.
    pub phys: PhysAddr,
    /// What the device was told to use (bounce slot or IOVA included).
    pub dma: DmaAddr,
    /// Length in bytes.
    pub len: usize,
    /// The direction it was mapped with.
    pub dir: DmaDirection,
    /// The attributes it was mapped with.
    pub attrs: DmaAttrs,
}

/// One scatter-gather entry: a physically contiguous CPU range and, once
/// mapped, where the device sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SgEntry {
    /// Physical address of the range.
    pub phys: PhysAddr,
    /// Length in bytes.
    pub len: usize,
    /// The device address, valid after [`DmaMap::map_sg`].
    pub dma: DmaAddr,
}

impl SgEntry {
    /// An unmapped entry.
    pub const fn new(phys: PhysAddr, len: usize) -> Self {
        Self {
            phys,
            len,
            dma: DmaAddr::ZERO,
        }
    }

    /// The entry as a single mapping, for syncing it on its own.
    pub const fn as_raw(&self, dir: DmaDirection, attrs: DmaAttrs) -> RawMapping {
        RawMapping {
            phys: self.phys,
            dma: self.dma,
            len: self.len,
            dir,
            attrs,
        }
    }
}

/// A CPU access to a mapped buffer, as [`DmaMap::cpu_access`] is told of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuAccess {
    /// The CPU copies bytes out of the buffer.
    Read,
    /// The CPU copies bytes into the buffer.
    Write,
}

/// Streaming DMA: making CPU memory visible to one device, and moving its
/// ownership between CPU and device.
///
/// A platform value serves one device: its [`constraints`](Self::constraints)
/// are that device's.
///
/// # Safety
///
/// Implementations promise that
/// - after `map` returns `Ok(dma)`, the device can access exactly the `len`
///   bytes at `phys` (or a bounce copy kept in step with them by the syncs)
///   through `dma..dma + len`, until `unmap`, within the device's mask and
///   alignment and, where the backend chooses the device address (an IOVA,
///   a bounce slot), within one boundary window; a backend that keeps the
///   buffer's own address (direct) crosses a boundary only where the buffer
///   does, since the boundary is a segment rule that callers keep when they
///   build segments (as dma-sg's tables do), as in Linux;
/// - `sync_for_device` makes the CPU's writes to the range visible to the
///   device, and `sync_for_cpu` makes the device's writes visible to the
///   CPU, for the direction mapped;
/// - `unmap` ends the device's access through `dma` (where the hardware can
///   enforce it) and leaves the CPU buffer holding the device's data for
///   directions the device writes, unless `SKIP_CPU_SYNC` was given;
/// - no byte outside the mapped ranges changes because of any of these
///   methods, whether by a store, a copy, or cache maintenance: in
///   particular an invalidation must never discard a CPU write to a
///   neighbour sharing a cache line with a mapping. On a non-coherent cache
///   a backend therefore refuses (or bounces) a range the device writes
///   that does not own its cache lines whole; `dma_coherence::physical`
///   holds the shared checks and the argument;
/// - a `map` or `map_sg` that returns an error leaves nothing mapped and no
///   byte of memory changed.
pub unsafe trait DmaMap {
    /// The device's constraints.
    fn constraints(&self) -> &DeviceConstraints;

    /// Translates a CPU buffer to the physical address of its first byte.
    ///
    /// # Errors
    ///
    /// [`NotContiguous`](crate::ErrorKind::NotContiguous) when the range is
    /// not physically contiguous, [`ZeroSize`](crate::ErrorKind::ZeroSize)
    /// for `len == 0`.
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr>;

    /// The alignment and size granule in bytes a buffer the device writes
    /// should have so that no cache line is shared with other data (the
    /// cache line size on non-coherent platforms, 1 on coherent ones).
    /// Linux calls this `ARCH_DMA_MINALIGN`.
    fn dma_alignment(&self) -> usize;

    /// Maps `len` bytes at `phys` for the device and hands them to it
    /// (syncs for the device unless `SKIP_CPU_SYNC`).
    ///
    /// # Errors
    ///
    /// A typed error when the range is empty, overflows, or cannot be made
    /// reachable; nothing is mapped then.
    ///
    /// # Safety
    ///
    /// The caller owns the range, it stays allocated and is not accessed by
    /// the CPU other than through this platform's syncs until it is
    /// unmapped, and it is unmapped at most once.
    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<DmaAddr>;

    /// Ends a mapping, syncing for the CPU first where the direction needs
    /// it (unless `SKIP_CPU_SYNC`).
    ///
    /// # Errors
    ///
    /// [`NotMapped`](crate::ErrorKind::NotMapped) when the platform can tell
    /// the mapping is not live; the caller must then assume the device may
    /// still reach the buffer.
    ///
    /// # Safety
    ///
    /// `mapping` is exactly what a successful `map` on this platform
    /// described, not yet unmapped, and the device has stopped using it.
    unsafe fn unmap(&self, mapping: &RawMapping) -> Result<()>;

    /// Gives `len` bytes at `offset` within the mapping back to the CPU.
    ///
    /// # Safety
    ///
    /// `mapping` is live on this platform, `offset + len <= mapping.len`,
    /// and the device has finished writing the range.
    unsafe fn sync_for_cpu(&self, mapping: &RawMapping, offset: usize, len: usize);

    /// Hands `len` bytes at `offset` within the mapping back to the device.
    ///
    /// # Safety
    ///
    /// `mapping` is live on this platform and `offset + len <= mapping.len`.
    unsafe fn sync_for_device(&self, mapping: &RawMapping, offset: usize, len: usize);

    /// Told, before it happens, of each CPU read or write of `len` bytes at
    /// `offset` within a live mapping made by the safe owning types
    /// ([`StreamingMapping`](crate::StreamingMapping), `dma-sg`'s
    /// `MappedSgTable`). Checking and simulating platforms use it to see
    /// CPU accesses to bytes the device owns; the default does nothing and
    /// compiles away. Nothing may rely on it for soundness: accesses
    /// through raw pointers and the unsafe API never reach it.
    #[inline(always)]
    fn cpu_access(&self, mapping: &RawMapping, offset: usize, len: usize, access: CpuAccess) {
        let _ = (mapping, offset, len, access);
    }

    /// Maps every entry, filling in `dma`. The default maps them one by one
    /// and unwinds on failure; an IOMMU backend overrides it to place the
    /// whole table in one contiguous IOVA range.
    ///
    /// # Errors
    ///
    /// As for [`map`](Self::map); on error nothing stays mapped.
    ///
    /// # Safety
    ///
    /// As for [`map`](Self::map), for every entry.
    unsafe fn map_sg(
        &self,
        entries: &mut [SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        for i in 0..entries.len() {
            let e = entries[i];
            // SAFETY: the caller's promise for `map` covers every entry.
            match unsafe { self.map(e.phys, e.len, dir, attrs) } {
                Ok(dma) => entries[i].dma = dma,
                Err(err) => {
                    for done in &entries[..i] {
                        // SAFETY: `done` was mapped just above and the device
                        // has not been told about it yet. An unmap failure here
                        // cannot be reported better than the map error.
                        let _ = unsafe { self.unmap(&done.as_raw(dir, attrs)) };
                    }
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Unmaps what [`map_sg`](Self::map_sg) mapped.
    ///
    /// # Errors
    ///
    /// The first unmap error; every entry is still attempted.
    ///
    /// # Safety
    ///
    /// As for [`unmap`](Self::unmap): `entries` are exactly what a successful
    /// `map_sg` filled in, with the same direction and attributes.
    unsafe fn unmap_sg(
        &self,
        entries: &[SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        let mut first = Ok(());
        for e in entries {
            // SAFETY: the caller's promise for `unmap` covers every entry.
            let r = unsafe { self.unmap(&e.as_raw(dir, attrs)) };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Gives every entry of a mapped table back to the CPU. The default
    /// syncs entry by entry; a checking or bounce platform may do more.
    ///
    /// # Safety
    ///
    /// `entries` are exactly what a successful `map_sg` filled in, with the
    /// same direction and attributes, still mapped, and the device has
    /// finished writing them.
    unsafe fn sync_sg_for_cpu(&self, entries: &[SgEntry], dir: DmaDirection, attrs: DmaAttrs) {
        for e in entries {
            // SAFETY: the caller's promise for the table covers each entry,
            // and 0..len is the whole entry.
            unsafe { self.sync_for_cpu(&e.as_raw(dir, attrs), 0, e.len) }
        }
    }

    /// Hands every entry of a mapped table back to the device.
    ///
    /// # Safety
    ///
    /// `entries` are exactly what a successful `map_sg` filled in, with the
    /// same direction and attributes, and still mapped.
    unsafe fn sync_sg_for_device(&self, entries: &[SgEntry], dir: DmaDirection, attrs: DmaAttrs) {
        for e in entries {
            // SAFETY: as in sync_sg_for_cpu.
            unsafe { self.sync_for_device(&e.as_raw(dir, attrs), 0, e.len) }
        }
    }
}

/// A coherent allocation as the platform hands it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoherentRegion {
    /// Where the CPU accesses it.
    pub cpu: NonNull<u8>,
    /// Where the device accesses it.
    pub dma: DmaAddr,
    /// Its size in bytes (the request rounded up to whole pages).
    pub size: usize,
}

// SAFETY: a description of a region; it grants no access by itself.
unsafe impl Send for CoherentRegion {}
// SAFETY: `&CoherentRegion` exposes only addresses and a size (it is
// `Copy`); no method dereferences `cpu`, so sharing it grants no access.
unsafe impl Sync for CoherentRegion {}

/// Coherent DMA memory: memory the CPU and the device may both access at any
/// time and see each other's writes without syncs (barriers are still
/// needed to order them).
///
/// # Safety
///
/// Implementations promise that a region from
/// [`alloc_coherent`](Self::alloc_coherent) is zero-filled, page-aligned on
/// the CPU side, at least `size` bytes, exclusively the caller's until
/// freed, reachable by the device at `dma` within the constraints the
/// platform serves, and coherent: CPU stores become visible to the device
/// and device stores to the CPU with only ordering barriers, no cache
/// maintenance.
pub unsafe trait DmaAlloc {
    /// Allocates at least `size` bytes of coherent memory.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](crate::ErrorKind::ZeroSize),
    /// [`OutOfMemory`](crate::ErrorKind::OutOfMemory),
    /// [`Unreachable`](crate::ErrorKind::Unreachable) when no memory the
    /// device can reach is left, [`Unsupported`](crate::ErrorKind::Unsupported)
    /// when the environment cannot make coherent memory.
    fn alloc_coherent(&self, size: usize, attrs: DmaAttrs) -> Result<CoherentRegion>;

    /// Frees a coherent allocation.
    ///
    /// # Errors
    ///
    /// [`NotMapped`](crate::ErrorKind::NotMapped) when the platform can tell
    /// the region is not a live allocation; it is then leaked, not freed.
    ///
    /// # Safety
    ///
    /// `region` is exactly what `alloc_coherent` on this platform returned,
    /// with the same `attrs`, freed once, and neither the CPU nor the device
    /// accesses it afterwards.
    unsafe fn free_coherent(&self, region: CoherentRegion, attrs: DmaAttrs) -> Result<()>;
}

macro_rules! forward_platform {
    ($($ptr:ty),*) => { $(
        // SAFETY: forwards every call unchanged to the implementation behind
        // the pointer, which upholds the contract.
        unsafe impl<P: DmaMap + ?Sized> DmaMap for $ptr {
            #[inline]
            fn constraints(&self) -> &DeviceConstraints {
                (**self).constraints()
            }
            #[inline]
            fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
                (**self).virt_to_phys(cpu, len)
            }
            #[inline]
            fn dma_alignment(&self) -> usize {
                (**self).dma_alignment()
            }
            #[inline]
            unsafe fn map(&self, phys: PhysAddr, len: usize, dir: DmaDirection, attrs: DmaAttrs) -> Result<DmaAddr> {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).map(phys, len, dir, attrs) }
            }
            #[inline]
            unsafe fn unmap(&self, mapping: &RawMapping) -> Result<()> {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).unmap(mapping) }
            }
            #[inline]
            unsafe fn sync_for_cpu(&self, mapping: &RawMapping, offset: usize, len: usize) {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).sync_for_cpu(mapping, offset, len) }
            }
            #[inline]
            unsafe fn sync_for_device(&self, mapping: &RawMapping, offset: usize, len: usize) {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).sync_for_device(mapping, offset, len) }
            }
            #[inline(always)]
            fn cpu_access(&self, mapping: &RawMapping, offset: usize, len: usize, access: CpuAccess) {
                (**self).cpu_access(mapping, offset, len, access)
            }
            #[inline]
            unsafe fn map_sg(&self, entries: &mut [SgEntry], dir: DmaDirection, attrs: DmaAttrs) -> Result<()> {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).map_sg(entries, dir, attrs) }
            }
            #[inline]
            unsafe fn unmap_sg(&self, entries: &[SgEntry], dir: DmaDirection, attrs: DmaAttrs) -> Result<()> {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).unmap_sg(entries, dir, attrs) }
            }
            #[inline]
            unsafe fn sync_sg_for_cpu(&self, entries: &[SgEntry], dir: DmaDirection, attrs: DmaAttrs) {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).sync_sg_for_cpu(entries, dir, attrs) }
            }
            #[inline]
            unsafe fn sync_sg_for_device(&self, entries: &[SgEntry], dir: DmaDirection, attrs: DmaAttrs) {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).sync_sg_for_device(entries, dir, attrs) }
            }
        }

        // SAFETY: forwards every call unchanged.
        unsafe impl<P: DmaAlloc + ?Sized> DmaAlloc for $ptr {
            #[inline]
            fn alloc_coherent(&self, size: usize, attrs: DmaAttrs) -> Result<CoherentRegion> {
                (**self).alloc_coherent(size, attrs)
            }
            #[inline]
            unsafe fn free_coherent(&self, region: CoherentRegion, attrs: DmaAttrs) -> Result<()> {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).free_coherent(region, attrs) }
            }
        }
    )* };
}

forward_platform!(&P);
#[cfg(feature = "alloc")]
forward_platform!(alloc::sync::Arc<P>, alloc::boxed::Box<P>);
