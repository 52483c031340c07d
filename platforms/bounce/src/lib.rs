//! Bounce buffering for devices that cannot reach a buffer, in the manner
//! of Linux's swiotlb.
//!
//! A device with a 32-bit mask cannot reach a buffer above 4 GiB; a device
//! with an alignment rule cannot take a buffer that breaks it.
//! [`BouncePlatform`] wraps any platform (the direct backend, the IOMMU
//! backend) and, only when the inner platform refuses a buffer as
//! unreachable, misaligned or crossing a boundary, maps a copy in a pool of
//! 2 KiB slots the device can reach instead:
//! - at most 128 contiguous slots (256 KiB) per mapping;
//! - the bounce address keeps the original's low bits that the device's
//!   `min_align_mask` names (NVMe needs the offset within 4 KiB);
//! - the copy is made at map and at `sync_for_device` (in every direction,
//!   so a device that writes less than the buffer cannot leak old pool
//!   contents back, as Linux does since 5.19), and copied back at
//!   `sync_for_cpu` and unmap for directions the device writes;
//! - the pool itself is mapped once through the inner platform, which does
//!   the cache maintenance on it;
//! - a full pool is [`BounceExhausted`](dma_core::ErrorKind::BounceExhausted).
//!
//! # Example
//!
//! ```
//! use dma_core::{DeviceConstraints, HostMemory, StreamingMapping, ToDevice};
//! use dma_bounce::BouncePlatform;
//! use dma_direct::DirectPlatform;
//!
//! // A device that wants 64-byte-aligned buffers.
//! let c = DeviceConstraints::builder().alignment(64).build()?;
//! let p = BouncePlatform::new(DirectPlatform::x86_coherent(HostMemory, c), HostMemory, 64)?;
//! let buf = vec![0x5au8; 100];
//! let m = StreamingMapping::<_, ToDevice, _>::map(&p, buf)?;
//! assert_eq!(m.dma_addr().as_u64() % 64, 0, "bounced if the Vec was not 64-aligned");
//! let _buf = m.unmap()?;
//! # Ok::<(), dma_core::Error>(())
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(test)]
extern crate std;

mod pool;

use core::fmt;
use core::ptr::NonNull;

use dma_coherence::{HardwareCoherent, PhysicalCore};
use dma_core::{
    CoherentRegion, DeviceConstraints, DmaAddr, DmaAlloc, DmaAttrs, DmaDirection, DmaMap,
    ErrorKind, PhysAddr, PhysMemory, RawMapping, Result,
};

use pool::{BouncePool, Placement, Rules};
pub use pool::{MAX_SLOTS_PER_MAPPING, SLOT_SIZE};
use spin::Mutex;

/// Any platform, with bouncing for the buffers it cannot serve.
pub struct BouncePlatform<P: DmaMap, M: PhysMemory> {
    inner: P,
    memory: M,
    pool: Mutex<BouncePool<M>>,
    /// The whole pool as mapped through `inner`.
    pool_map: RawMapping,
}

impl<P: DmaMap, M: PhysMemory + Clone> BouncePlatform<P, M> {
    /// Wraps `inner` with a pool of at least `slots` 2 KiB slots, allocated
    /// from `memory` below the device's mask and mapped through `inner`.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) for no slots; the environment's
    /// allocation errors; the inner platform's error when even the pool is
    /// out of the device's reach.
    pub fn new(inner: P, memory: M, slots: usize) -> Result<Self> {
        let mask = inner.constraints().dma_mask();
        let pool = BouncePool::new(memory.clone(), slots, mask)?;
        let (phys, len) = (pool.phys(), pool.bytes());
        // SAFETY: the pool's pages are ours, stay allocated while mapped,
        // and are unmapped once, in Drop.
        let dma = unsafe { inner.map(phys, len, DmaDirection::Bidirectional, DmaAttrs::empty())? };
        Ok(Self {
            inner,
            memory,
            pool: Mutex::new(pool),
            pool_map: RawMapping {
                phys,
                dma,
                len,
                dir: DmaDirection::Bidirectional,
                attrs: DmaAttrs::empty(),
            },
        })
    }
}

impl<P: DmaMap, M: PhysMemory> BouncePlatform<P, M> {
    /// The wrapped platform.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Slots in the pool, and how many are in use.
    pub fn pool_usage(&self) -> (usize, usize) {
        let pool = self.pool.lock();
        (pool.slots(), pool.used())
    }

    /// Whether a mapping's device address lies in the pool.
    pub fn is_bounced(&self, dma: DmaAddr) -> bool {
        self.pool_offset(dma).is_some()
    }

    fn pool_offset(&self, dma: DmaAddr) -> Option<usize> {
        let off = dma.offset_from(self.pool_map.dma)?;
        (off < self.pool_map.len as u64).then_some(off as usize)
    }

    fn rules(&self) -> Rules {
        let c = self.inner.constraints();
        Rules {
            dma_base: self.pool_map.dma.as_u64(),
            min_align_mask: c.min_align_mask(),
            alignment: c.alignment(),
            boundary: c.boundary(),
        }
    }

    /// The original buffers' side of the physical-backend core: the bounds
    /// and translation check for the copies. The copies are CPU accesses,
    /// so no cache policy applies to the original; the pool's maintenance
    /// is the inner platform's.
    fn originals(&self) -> PhysicalCore<'_, HardwareCoherent, M> {
        PhysicalCore::new(&HardwareCoherent, &self.memory)
    }

    /// Copies between the original and its bounce slots.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) when the range does not lie
    /// within `m`, the environment's error when the original cannot be
    /// translated; nothing is copied then.
    ///
    /// # Safety
    ///
    /// The placement is live for the mapping `m` (its slots hold `m.len`
    /// bytes from the placement's offset), and neither the CPU (through
    /// references) nor the device touches either range meanwhile.
    unsafe fn copy(
        &self,
        pool: &BouncePool<M>,
        p: Placement,
        m: &RawMapping,
        offset: usize,
        len: usize,
        to_device: bool,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let cpu = self.originals().cpu_range(m, offset, len)?;
        let slot = pool.cpu(p.pool_offset() + offset);
        let (src, dst) = if to_device { (cpu, slot) } else { (slot, cpu) };
        // SAFETY: both ranges are `len` bytes of memory this mapping owns
        // (the caller's promise), in different allocations (the pool is
        // ours alone), so they do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_ptr(), len) };
        Ok(())
    }

    /// Maps a copy of the buffer in the pool.
    ///
    /// # Safety
    ///
    /// As for `DmaMap::map`.
    unsafe fn bounce(&self, m: &RawMapping) -> Result<DmaAddr> {
        let (phys, len) = (m.phys, m.len);
        dma_coherence::check_span(phys, len)?;
        // Every copy reaches the original through the environment's
        // translation: refuse now rather than fail to copy later.
        self.originals().cpu_range(m, 0, len)?;
        let mut pool = self.pool.lock();
        let p = pool.alloc(phys, len, self.rules())?;
        // Always copy in, whatever the direction: the device may write less
        // than the whole buffer, and the rest must come back unchanged
        // (Linux's fix for CVE-2022-0854).
        // SAFETY: the caller owns the buffer; the slots were just taken.
        if let Err(e) = unsafe { self.copy(&pool, p, m, 0, len, true) } {
            pool.free(p);
            return Err(e);
        }
        drop(pool);
        // SAFETY: a range inside the live pool mapping.
        unsafe {
            self.inner
                .sync_for_device(&self.pool_map, p.pool_offset(), len)
        };
        Ok(DmaAddr::new(
            self.pool_map.dma.as_u64() + p.pool_offset() as u64,
        ))
    }
}

/// Whether an inner refusal is one bouncing can fix.
fn bounceable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Unreachable | ErrorKind::Misaligned | ErrorKind::CrossesBoundary
    )
}

// SAFETY: a buffer the inner platform maps is passed through unchanged; a
// bounced one is served from slots of the pool, which the inner platform
// mapped for the device, kept in step with the buffer by copies at map,
// sync and unmap in the directions the contract names, with the inner
// platform's cache maintenance on the pool; slots are exclusive to one
// mapping until its unmap; nothing outside the buffer or its slots is
// written.
unsafe impl<P: DmaMap, M: PhysMemory> DmaMap for BouncePlatform<P, M> {
    fn constraints(&self) -> &DeviceConstraints {
        self.inner.constraints()
    }

    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        self.inner.virt_to_phys(cpu, len)
    }

    fn dma_alignment(&self) -> usize {
        self.inner.dma_alignment()
    }

    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<DmaAddr> {
        // SAFETY: the caller's promise is passed on.
        match unsafe { self.inner.map(phys, len, dir, attrs) } {
            Err(e) if bounceable(e.kind()) => {
                let m = RawMapping {
                    phys,
                    dma: DmaAddr::ZERO,
                    len,
                    dir,
                    attrs,
                };
                // SAFETY: the caller's promise for `map` is passed on; `m` describes exactly the caller's range.
                unsafe { self.bounce(&m) }
            }
            other => other,
        }
    }

    unsafe fn unmap(&self, m: &RawMapping) -> Result<()> {
        let Some(pool_offset) = self.pool_offset(m.dma) else {
            // SAFETY: the caller's promise is passed on.
            return unsafe { self.inner.unmap(m) };
        };
        let mut pool = self.pool.lock();
        let p = pool.find(pool_offset, m.phys, m.len)?;
        let device_wrote = m.dir != DmaDirection::ToDevice;
        let mut copied = Ok(());
        if device_wrote && !m.attrs.contains(DmaAttrs::SKIP_CPU_SYNC) {
            // SAFETY: a range inside the live pool mapping; the device stopped.
            unsafe {
                self.inner
                    .sync_for_cpu(&self.pool_map, p.pool_offset(), m.len)
            };
            // SAFETY: the placement is live for this mapping (found above).
            // A failure is reported once the slots are free again.
            copied = unsafe { self.copy(&pool, p, m, 0, m.len, false) };
        }
        pool.free(p);
        copied
    }

    unsafe fn sync_for_cpu(&self, m: &RawMapping, offset: usize, len: usize) {
        let Some(pool_offset) = self.pool_offset(m.dma) else {
            // SAFETY: the caller's promise is passed on.
            return unsafe { self.inner.sync_for_cpu(m, offset, len) };
        };
        if m.dir == DmaDirection::ToDevice {
            return;
        }
        let pool = self.pool.lock();
        // SAFETY: inside the live pool mapping; the device finished the range.
        unsafe {
            self.inner
                .sync_for_cpu(&self.pool_map, pool_offset + offset, len)
        };
        let p = Placement {
            slot: pool_offset / SLOT_SIZE,
            slots: 0,
            offset: pool_offset % SLOT_SIZE,
        };
        // An error means the environment no longer translates the original
        // it translated at map; the trait cannot report it here, and unmap's
        // copy will.
        // SAFETY: the caller promises the mapping is live and the range in it.
        let _ = unsafe { self.copy(&pool, p, m, offset, len, false) };
    }

    unsafe fn sync_for_device(&self, m: &RawMapping, offset: usize, len: usize) {
        let Some(pool_offset) = self.pool_offset(m.dma) else {
            // SAFETY: the caller's promise is passed on.
            return unsafe { self.inner.sync_for_device(m, offset, len) };
        };
        let pool = self.pool.lock();
        let p = Placement {
            slot: pool_offset / SLOT_SIZE,
            slots: 0,
            offset: pool_offset % SLOT_SIZE,
        };
        // In every direction, as at map (see `bounce`).
        // SAFETY: the caller promises the mapping is live and the range in it.
        // On an error (as in sync_for_cpu) the slots keep their contents.
        let _ = unsafe { self.copy(&pool, p, m, offset, len, true) };
        drop(pool);
        // SAFETY: inside the live pool mapping.
        unsafe {
            self.inner
                .sync_for_device(&self.pool_map, pool_offset + offset, len)
        };
    }
}

// SAFETY: forwards unchanged: coherent memory is allocated where the device
// reaches it by the inner platform, never bounced.
unsafe impl<P: DmaMap + DmaAlloc, M: PhysMemory> DmaAlloc for BouncePlatform<P, M> {
    fn alloc_coherent(&self, size: usize, attrs: DmaAttrs) -> Result<CoherentRegion> {
        self.inner.alloc_coherent(size, attrs)
    }

    unsafe fn free_coherent(&self, region: CoherentRegion, attrs: DmaAttrs) -> Result<()> {
        // SAFETY: the caller's promise is passed on.
        unsafe { self.inner.free_coherent(region, attrs) }
    }
}

impl<P: DmaMap, M: PhysMemory> Drop for BouncePlatform<P, M> {
    /// Unmaps the pool from the device; the pool's pages are freed unless a
    /// forgotten mapping still holds slots.
    fn drop(&mut self) {
        // SAFETY: mapped once in `new`, unmapped once here; bounced mappings
        // borrow `self`, so none is in use unless forgotten, and then the
        // pool leaks rather than frees its pages.
        let _ = unsafe { self.inner.unmap(&self.pool_map) };
    }
}

impl<P: DmaMap + fmt::Debug, M: PhysMemory> fmt::Debug for BouncePlatform<P, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (slots, used) = self.pool_usage();
        f.debug_struct("BouncePlatform")
            .field("inner", &self.inner)
            .field("pool", &self.pool_map)
            .field("slots", &slots)
            .field("used", &used)
            .finish()
    }
}
