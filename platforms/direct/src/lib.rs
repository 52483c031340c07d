//! The direct-mapped DMA backend.
//!
//! Many systems have no IOMMU: the device sees physical memory, sometimes
//! through a fixed bus offset (a SoC whose DMA window starts elsewhere than
//! its RAM). [`DirectPlatform`] implements the `dma-core` platform contract
//! for them, generic over
//! - the environment's memory ([`PhysMemory`]: bare-metal identity map,
//!   hosted process, mock hardware), and
//! - the cache policy ([`CacheMaintenance`]: [`HardwareCoherent`] for x86
//!   and coherent interconnects, per-architecture maintenance otherwise).
//!
//! # Presets
//!
//! - [`DirectPlatform::x86_coherent`]: PCIe snoops the caches, so `map` is
//!   an address computation and a range check and every sync compiles to
//!   nothing (the `zero_cost` bench and the `zero_cost_asm` example show
//!   it).
//! - `DirectPlatform::arm_noncoherent` (aarch64 only): `dc` maintenance
//!   with the line size from CTR_EL0. [`DirectPlatform::noncoherent`] is the
//!   same shape with any [`CacheMaintenance`] (riscv64 Zicbom, x86 flushes,
//!   the simulator's cache) on every target.
//!
//! # Non-coherent platforms
//!
//! - Streaming syncs follow the `dma-coherence` plan: clean for the device,
//!   invalidate for the CPU after the device wrote.
//! - A buffer the device writes must start and end on a cache-line boundary
//!   (`dma_coherence::partial_lines`): `map` refuses anything else with
//!   [`ErrorKind::Misaligned`]. [`DmaMap::dma_alignment`] is the line size;
//!   `DmaBuf::for_device` starts buffers on it, and a length that is a
//!   multiple of it ends them on one (only the requested length is mapped,
//!   not the allocation's padding).
//! - Coherent allocations are asked of the environment as
//!   [`Cacheability::Uncached`](dma_core::Cacheability::Uncached), as Linux arm64 remaps `dma_alloc_coherent`
//!   memory: ring code polls descriptors and completion entries, and
//!   keeping cached memory coherent by maintenance would put a cache
//!   operation in every poll and every field write, and could not stop the
//!   CPU from speculatively caching a line the device is about to write. An
//!   environment that cannot map memory uncached (a hosted process) refuses
//!   with [`ErrorKind::Unsupported`], and the coherent allocation fails
//!   instead of being silently incoherent.
//!
//! # Example
//!
//! ```
//! use dma_core::{DeviceConstraints, HostMemory, StreamingMapping, ToDevice};
//! use dma_direct::DirectPlatform;
//!
//! let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
//! let tx = StreamingMapping::<_, ToDevice, _>::map(&platform, vec![0xa5u8; 1514])?;
//! // On x86 the device address is the physical address.
//! assert_eq!(tx.dma_addr().as_u64(), tx.raw().phys.as_u64());
//! let _frame: Vec<u8> = tx.unmap()?;
//! # Ok::<(), dma_core::Error>(())
//! ```
//!
//! A receive buffer on a non-coherent aarch64 platform comes from
//! `DmaBuf::for_device`, which starts on a cache line; a length that is a
//! whole number of lines makes it own its lines whole:
//!
//! ```
//! # #[cfg(target_arch = "aarch64")] {
//! use dma_core::{DeviceConstraints, DmaBuf, FromDevice, HostMemory, StreamingMapping};
//! use dma_direct::DirectPlatform;
//!
//! let platform = DirectPlatform::arm_noncoherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
//! let buf = DmaBuf::for_device(&platform, 2048)?;
//! let mut rx = StreamingMapping::<_, FromDevice, _>::map(&platform, buf)?;
//! // ... the device writes, the driver sees the completion ...
//! rx.sync_for_cpu(); // dc civac over the buffer's lines (EL0), then dsb sy
//! let _packet = rx.unmap()?;
//! # }
//! # Ok::<(), dma_core::Error>(())
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

use core::ptr::NonNull;

use dma_coherence::{PhysicalCore, SyncPoint};
use dma_core::{
    CoherentRegion, DeviceConstraints, DmaAddr, DmaAlloc, DmaAttrs, DmaDirection, DmaMap, Error,
    ErrorKind, PhysAddr, PhysMemory, RawMapping, Result,
};

// The cache policies a `DirectPlatform` is generic over, so that a user
// names its type without depending on dma-coherence.
#[cfg(target_arch = "aarch64")]
pub use dma_coherence::arch::aarch64::Aarch64Maintenance;
#[cfg(target_arch = "riscv64")]
pub use dma_coherence::arch::riscv64::ZicbomMaintenance;
#[cfg(target_arch = "x86_64")]
pub use dma_coherence::arch::x86_64::X86Maintenance;
pub use dma_coherence::{CacheMaintenance, HardwareCoherent};

/// The crate's README, whose mapping example (the same as the workspace
/// README's) runs here as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// A fixed translation from physical to device addresses:
/// `dma = phys - phys_base + dma_base`, for `phys >= phys_base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusOffset {
    /// The first physical address the device can see.
    pub phys_base: PhysAddr,
    /// The device address of `phys_base`.
    pub dma_base: DmaAddr,
}

impl BusOffset {
    /// The identity: device addresses are physical addresses.
    pub const IDENTITY: Self = Self {
        phys_base: PhysAddr::ZERO,
        dma_base: DmaAddr::ZERO,
    };

    /// The device address of `phys`.
    ///
    /// # Errors
    ///
    /// [`Unreachable`](ErrorKind::Unreachable) below `phys_base`,
    /// [`AddressOverflow`](ErrorKind::AddressOverflow) past 64 bits.
    #[inline(always)]
    pub fn to_dma(&self, phys: PhysAddr) -> Result<DmaAddr> {
        let off = phys.offset_from(self.phys_base).ok_or(
            Error::new(
                ErrorKind::Unreachable,
                "physical address below the bus window",
            )
            .at(phys.as_u64()),
        )?;
        self.dma_base.checked_add(off).ok_or(
            Error::new(ErrorKind::AddressOverflow, "bus address overflows 64 bits")
                .at(phys.as_u64()),
        )
    }

    /// The highest physical address whose device address is at most `mask`.
    fn max_phys(&self, mask: u64) -> u64 {
        match mask.checked_sub(self.dma_base.as_u64()) {
            Some(room) => self.phys_base.as_u64().saturating_add(room),
            None => 0,
        }
    }
}

/// The direct-mapped backend for one device.
#[derive(Clone, Debug)]
pub struct DirectPlatform<M: PhysMemory, C: CacheMaintenance> {
    memory: M,
    cache: C,
    bus: BusOffset,
    constraints: DeviceConstraints,
}

impl<M: PhysMemory> DirectPlatform<M, HardwareCoherent> {
    /// The x86-coherent preset: identity bus addresses and no cache
    /// maintenance (PCIe snoops the CPU caches).
    pub fn x86_coherent(memory: M, constraints: DeviceConstraints) -> Self {
        Self::new(memory, HardwareCoherent, BusOffset::IDENTITY, constraints)
    }
}

#[cfg(target_arch = "aarch64")]
impl<M: PhysMemory> DirectPlatform<M, Aarch64Maintenance> {
    /// The ARM non-coherent preset: identity bus addresses and `dc`
    /// maintenance to the point of coherency, the line size read from
    /// CTR_EL0 (see [`Aarch64Maintenance::probe`] for the EL0 / EL1 choice).
    ///
    /// Buffers the device writes must own their cache lines whole, and
    /// coherent allocations are asked of `memory` uncached (see the crate
    /// docs).
    pub fn arm_noncoherent(memory: M, constraints: DeviceConstraints) -> Self {
        Self::noncoherent(memory, Aarch64Maintenance::probe(), constraints)
    }
}

impl<M: PhysMemory, C: CacheMaintenance> DirectPlatform<M, C> {
    /// A direct platform with identity bus addresses and the given cache
    /// policy: the non-coherent shape for any architecture's maintenance.
    pub fn noncoherent(memory: M, cache: C, constraints: DeviceConstraints) -> Self {
        Self::new(memory, cache, BusOffset::IDENTITY, constraints)
    }

    /// A direct platform with any cache policy and bus offset.
    pub fn new(memory: M, cache: C, bus: BusOffset, constraints: DeviceConstraints) -> Self {
        Self {
            memory,
            cache,
            bus,
            constraints,
        }
    }

    /// The environment's memory.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// The cache policy.
    pub fn cache(&self) -> &C {
        &self.cache
    }

    /// The bus offset.
    pub fn bus(&self) -> BusOffset {
        self.bus
    }

    /// The checks and syncs every physical backend shares.
    #[inline(always)]
    fn core(&self) -> PhysicalCore<'_, C, M> {
        PhysicalCore::new(&self.cache, &self.memory)
    }

    /// Translates and checks a range against the device's reach.
    #[inline(always)]
    fn device_range(&self, phys: PhysAddr, len: usize) -> Result<DmaAddr> {
        dma_coherence::check_span(phys, len)?;
        let dma = self.bus.to_dma(phys)?;
        self.constraints.check_reachable(dma, len as u64)?;
        if !dma.is_aligned(self.constraints.alignment()) {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "buffer start breaks the device's alignment",
            )
            .at(dma.as_u64())
            .len(len as u64));
        }
        Ok(dma)
    }
}

// SAFETY: map checks reach and alignment and returns the bus translation of
// the caller's own memory, which the device then accesses directly; the
// checks and syncs are dma-coherence's PhysicalCore, whose module docs argue
// that they make the CPU side visible as the contract says and change no
// byte outside a mapped range, invalidation included.
unsafe impl<M: PhysMemory, C: CacheMaintenance> DmaMap for DirectPlatform<M, C> {
    #[inline(always)]
    fn constraints(&self) -> &DeviceConstraints {
        &self.constraints
    }

    #[inline(always)]
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        self.memory.virt_to_phys(cpu, len)
    }

    #[inline(always)]
    fn dma_alignment(&self) -> usize {
        self.core().dma_alignment()
    }

    #[inline(always)]
    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<DmaAddr> {
        self.core().prepare_map(phys, len, dir)?;
        let dma = self.device_range(phys, len)?;
        let raw = RawMapping {
            phys,
            dma,
            len,
            dir,
            attrs,
        };
        // SAFETY: checked by prepare_map; the caller owns the range (map's
        // contract).
        unsafe { self.core().after_map(&raw)? };
        Ok(dma)
    }

    #[inline(always)]
    unsafe fn unmap(&self, mapping: &RawMapping) -> Result<()> {
        // SAFETY: the mapping is live until this returns and the device has
        // stopped (unmap's contract).
        unsafe { self.core().before_unmap(mapping) }
    }

    #[inline(always)]
    unsafe fn sync_for_cpu(&self, mapping: &RawMapping, offset: usize, len: usize) {
        // An error means the environment no longer translates a range it
        // translated at map; the trait has no way to report it here, and
        // unmap's sync will.
        // SAFETY: live mapping, range inside it (the caller's contract).
        let _ = unsafe { self.core().sync(mapping, offset, len, SyncPoint::ForCpu) };
    }

    #[inline(always)]
    unsafe fn sync_for_device(&self, mapping: &RawMapping, offset: usize, len: usize) {
        // An error means the environment no longer translates a range it
        // translated at map; the trait has no way to report it here, and
        // unmap's sync will.
        // SAFETY: live mapping, range inside it (the caller's contract).
        let _ = unsafe { self.core().sync(mapping, offset, len, SyncPoint::ForDevice) };
    }
}

// SAFETY: pages come zeroed and exclusive from the environment, below the
// physical limit that keeps their bus addresses under the DMA mask (checked
// again after translation); on a non-coherent cache policy they are asked
// for uncached, which is what keeps them coherent without maintenance.
unsafe impl<M: PhysMemory, C: CacheMaintenance> DmaAlloc for DirectPlatform<M, C> {
    fn alloc_coherent(&self, size: usize, attrs: DmaAttrs) -> Result<CoherentRegion> {
        if size == 0 {
            return Err(Error::new(
                ErrorKind::ZeroSize,
                "zero-sized coherent allocation",
            ));
        }
        let page = self.memory.page_size();
        let count = size.div_ceil(page);
        let cacheability = self.core().coherent_cacheability(attrs);
        let max_phys = self.bus.max_phys(self.constraints.dma_mask());
        let pages = self.memory.alloc_pages(count, cacheability, max_phys)?;
        let bytes = count * page;
        let dma = match self.device_range(pages.phys, bytes) {
            Ok(d) => d,
            Err(e) => {
                // SAFETY: just allocated, never shared.
                unsafe { self.memory.free_pages(pages) };
                return Err(e);
            }
        };
        Ok(CoherentRegion {
            cpu: pages.cpu,
            dma,
            size: bytes,
        })
    }

    unsafe fn free_coherent(&self, region: CoherentRegion, attrs: DmaAttrs) -> Result<()> {
        let page = self.memory.page_size();
        let count = region.size / page;
        let phys = self.memory.virt_to_phys(region.cpu, region.size)?;
        let cacheability = self.core().coherent_cacheability(attrs);
        // SAFETY: the caller promises the region came from alloc_coherent with
        // these attrs, so these are the pages (same count, address and
        // cacheability) the environment gave us; freed once.
        unsafe {
            self.memory.free_pages(dma_core::Pages {
                cpu: region.cpu,
                phys,
                count,
                cacheability,
            })
        };
        Ok(())
    }
}
