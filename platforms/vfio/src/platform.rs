//! [`VfioPlatform`]: `dma-core`'s platform traits over a VFIO container.
//!
//! Device addresses are IOVAs from `dma-iommu`'s [`IovaAllocator`], whose
//! window is the largest usable IOVA range the container reports (within
//! the device's DMA mask), and mappings are made with the container's map
//! ioctl, which also pins the pages.
//!
//! "Physical" addresses here are this process's virtual addresses: user
//! space never sees physical ones, and the IOMMU translates IOVAs straight
//! to the pinned pages behind them.
//!
//! # Coherence
//!
//! The platform is coherent, on x86_64 and on arm64 alike. Linux's VFIO
//! only accepts devices whose IOMMU enforces cache coherency (it refuses
//! the others when the device is registered), so the device snoops the CPU
//! caches and syncs are no-ops; ordering is the ring code's barriers.
//! User space could not do better for a non-coherent device anyway: x86
//! can flush lines (`clflush`) but arm64 Linux lets EL0 clean
//! (`dc cvac`/`dc civac`) and not invalidate, and neither can make a
//! mapping uncached. [`DmaMap::dma_alignment`] is therefore 1.
//!
//! # Memory the device only reads
//!
//! Before a read-only mapping, its pages are faulted in writable
//! (`populate_writable`), because the kernel would otherwise pin the
//! shared zero page for memory the CPU has not written yet, and a later
//! CPU write would never reach the device.
//!
//! # Granularity
//!
//! The IOMMU maps whole pages, so a streaming mapping exposes the rest of
//! its first and last page to the device too (as Linux's IOMMU DMA API
//! does); give the device page-aligned buffers when that matters.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use dma_core::{
    CoherentRegion, DeviceConstraints, DmaAddr, DmaAlloc, DmaAttrs, DmaDirection, DmaMap, Error,
    ErrorKind, PhysAddr, RawMapping,
};
use dma_iommu::iova::{CpuId, IovaAllocator, IovaRange};

use crate::container::VfioContainer;
use crate::error::VfioError;
use crate::memory::{Anon, PageSource, PAGE};
use crate::sys::DmaMapFlags;
use crate::VfioDevice;

/// log2 of the IOVA page size.
const PAGE_SHIFT: u32 = PAGE.trailing_zeros();

/// One live IOMMU mapping.
#[derive(Debug)]
struct Live {
    /// First mapped byte of process memory (page-aligned).
    vaddr: u64,
    /// Mapped length (whole pages).
    size: u64,
    /// The IOVA block it occupies.
    range: IovaRange,
    /// The memory, when the platform allocated it (coherent allocations).
    memory: Option<Anon>,
}

/// A device's DMA platform over its VFIO container.
///
/// Streaming mappings and coherent allocations are IOMMU mappings in the
/// container; dropping the platform unmaps whatever is still mapped (a
/// forgotten mapping's buffer is then simply no longer reachable).
#[derive(Debug)]
pub struct VfioPlatform {
    container: Arc<VfioContainer>,
    iova: IovaAllocator,
    constraints: DeviceConstraints,
    live: Mutex<BTreeMap<u64, Live>>,
}

impl VfioPlatform {
    /// A platform for `device` with the device's addressing `constraints`.
    ///
    /// # Errors
    ///
    /// [`VfioError::Unsupported`] when the IOMMU's smallest page is not
    /// 4 KiB, or no usable IOVA range lies within the DMA mask.
    pub fn new(device: &VfioDevice, constraints: DeviceConstraints) -> Result<Self, VfioError> {
        let container = Arc::clone(device.container());
        if container.min_page_size() != PAGE as u64 {
            return Err(VfioError::Unsupported(format!(
                "IOMMU page size {:#x}; this platform maps 4 KiB pages",
                container.min_page_size()
            )));
        }
        let (start, end) = iova_window(&container, constraints.dma_mask()).ok_or_else(|| {
            VfioError::Unsupported("no usable IOVA range within the device's DMA mask".into())
        })?;
        let iova = IovaAllocator::new(start >> PAGE_SHIFT, (end >> PAGE_SHIFT) + 1, 1, 0)
            .map_err(|_| VfioError::Unsupported("empty IOVA window".into()))?;
        Ok(Self {
            container,
            iova,
            constraints,
            live: Mutex::new(BTreeMap::new()),
        })
    }

    /// The IOVA window the allocator hands out, `[start, end]` inclusive.
    pub fn iova_window(&self) -> (u64, u64) {
        let (s, e) = self.iova.window();
        (s << PAGE_SHIFT, (e << PAGE_SHIFT) - 1)
    }

    /// How many IOMMU mappings are live.
    pub fn live_mappings(&self) -> usize {
        self.lock().len()
    }

    /// Where a coherent allocation's pages came from; `None` when `region`
    /// is not a live allocation of this platform.
    pub fn page_source(&self, region: &CoherentRegion) -> Option<PageSource> {
        self.lock()
            .get(&region.dma.as_u64())
            .and_then(|l| l.memory.as_ref().map(|m| m.source))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Live>> {
        // A panic while holding the lock leaves the map consistent (every
        // update is one insert or remove), so poisoning is ignored.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Maps `size` bytes (whole pages) at `vaddr` at a fresh IOVA.
    ///
    /// # Safety
    ///
    /// As for [`VfioContainer::map_dma`].
    unsafe fn map_pages(
        &self,
        vaddr: u64,
        size: u64,
        flags: DmaMapFlags,
        memory: Option<Anon>,
    ) -> dma_core::Result<u64> {
        let range = self.iova.alloc(CpuId(0), size >> PAGE_SHIFT)?;
        let iova = range.start(PAGE_SHIFT);
        // SAFETY: the caller's promise for the memory; the IOVA block is
        // ours alone.
        if let Err(e) = unsafe { self.container.map_dma(vaddr, iova, size, flags) } {
            self.iova.free(CpuId(0), range);
            return Err(dma_error(&e).at(iova).len(size));
        }
        self.lock().insert(
            iova,
            Live {
                vaddr,
                size,
                range,
                memory,
            },
        );
        Ok(iova)
    }

    /// Ends the mapping at `iova` if it maps `vaddr` and is a coherent
    /// allocation exactly when `coherent`.
    fn unmap_pages(&self, iova: u64, vaddr: u64, coherent: bool) -> dma_core::Result<Option<Anon>> {
        let mut live = self.lock();
        let matches = live
            .get(&iova)
            .is_some_and(|l| l.vaddr == vaddr && l.memory.is_some() == coherent);
        if !matches {
            return Err(Error::new(ErrorKind::NotMapped, "no live VFIO mapping there").at(iova));
        }
        let Some(l) = live.remove(&iova) else {
            return Err(Error::new(ErrorKind::NotMapped, "no live VFIO mapping there").at(iova));
        };
        match self.container.unmap_dma(iova, l.size) {
            Ok(n) if n == l.size => {
                self.iova.free(CpuId(0), l.range);
                Ok(l.memory)
            }
            _ => {
                // The device may still reach the pages: keep them and their
                // IOVAs out of reuse.
                live.insert(iova, l);
                Err(Error::new(ErrorKind::NotMapped, "the kernel refused the VFIO unmap").at(iova))
            }
        }
    }
}

impl Drop for VfioPlatform {
    fn drop(&mut self) {
        let live = core::mem::take(&mut *self.lock());
        for (iova, l) in live {
            if self.container.unmap_dma(iova, l.size).is_err() {
                // Still reachable by the device: never hand the pages back.
                core::mem::forget(l.memory);
            }
        }
    }
}

/// The largest usable IOVA range within `mask`, page-aligned, never
/// including IOVA 0 (a zero device address reads as a driver bug).
fn iova_window(container: &VfioContainer, mask: u64) -> Option<(u64, u64)> {
    container
        .iova_ranges()
        .iter()
        .filter_map(|r| {
            let start = r
                .start
                .max(PAGE as u64)
                .checked_next_multiple_of(PAGE as u64)?;
            let end = r.end.min(mask);
            let end = (end.checked_add(1)? & !(PAGE as u64 - 1)).checked_sub(1)?;
            (start < end).then_some((start, end))
        })
        .max_by_key(|(s, e)| e - s)
}

/// Makes the pages of `vaddr..vaddr + size` this process's own, writable,
/// before a read-only pin.
///
/// The map ioctl pins a mapping the device only reads without breaking
/// copy-on-write (no `FOLL_WRITE`), so a page the CPU never wrote is the
/// shared zero page, and that is what gets pinned (uncharged: it is a
/// reserved page). The CPU's next write (`StreamingMapping::write` while
/// mapped, then a sync for the device) moves the buffer to a fresh page,
/// and the device would go on reading zeros. `MADV_POPULATE_WRITE` (Linux
/// 5.14) faults every page in writable without changing a byte. It fails
/// on memory this process cannot write (then the CPU cannot write it
/// either, so nothing goes stale) and on older kernels, which keep the
/// problem: there, write a buffer before mapping it for the device.
fn populate_writable(vaddr: u64, size: u64) {
    // SAFETY: an madvise on whole pages of this process's address space; MADV_POPULATE_WRITE only
    // faults pages in (breaking copy-on-write), it changes no byte any Rust object holds, and a
    // failure changes nothing.
    unsafe {
        libc::madvise(
            vaddr as usize as *mut libc::c_void,
            size as usize,
            libc::MADV_POPULATE_WRITE,
        )
    };
}

/// The IOMMU permissions for a direction (Linux's `dma_info_to_prot`).
fn map_flags(dir: DmaDirection) -> DmaMapFlags {
    match dir {
        DmaDirection::ToDevice => DmaMapFlags::READ,
        DmaDirection::FromDevice => DmaMapFlags::WRITE,
        DmaDirection::Bidirectional => DmaMapFlags::READ | DmaMapFlags::WRITE,
    }
}

/// `dma-core`'s error for a failed map ioctl (its messages are static, so
/// the fix goes in the message and the details are lost).
fn dma_error(e: &VfioError) -> Error {
    match e {
        VfioError::MemlockTooLow { .. } => Error::new(
            ErrorKind::OutOfMemory,
            "cannot pin memory for DMA: raise the memlock limit (ulimit -l) or run as root",
        ),
        VfioError::OutsideIovaRanges { .. } => Error::new(
            ErrorKind::Unreachable,
            "IOVA outside the container's usable ranges",
        ),
        _ => Error::new(
            ErrorKind::Unsupported,
            "the VFIO map ioctl failed: the kernel log (dmesg) says why",
        ),
    }
}

// SAFETY: a successful `map` has the IOMMU translate exactly the pages
// holding `phys..phys + len` (process memory, identity "physical") at the
// returned IOVA, inside the allocator's window, which lies in one usable
// range within the DMA mask; `unmap` removes the translation (checked by
// the size the kernel reports) before the IOVA is reused. The device is
// cache-coherent (VFIO refuses others), so the syncs have nothing to do,
// and nothing here writes CPU memory.
unsafe impl DmaMap for VfioPlatform {
    fn constraints(&self) -> &DeviceConstraints {
        &self.constraints
    }

    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> dma_core::Result<PhysAddr> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length translation"));
        }
        Ok(PhysAddr::new(cpu.as_ptr() as usize as u64))
    }

    fn dma_alignment(&self) -> usize {
        1
    }

    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        _attrs: DmaAttrs,
    ) -> dma_core::Result<DmaAddr> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length mapping"));
        }
        let overflow = || {
            Error::new(ErrorKind::AddressOverflow, "buffer wraps the address space")
                .at(phys.as_u64())
                .len(len as u64)
        };
        let start = phys.align_down(PAGE as u64).ok_or_else(overflow)?;
        let end = phys
            .checked_add(len as u64)
            .and_then(|e| e.align_up(PAGE as u64))
            .ok_or_else(overflow)?;
        let offset = phys.as_u64() - start.as_u64();
        let size = end.as_u64() - start.as_u64();
        let flags = map_flags(dir);
        if !flags.contains(DmaMapFlags::WRITE) {
            populate_writable(start.as_u64(), size);
        }
        // SAFETY: the caller owns the buffer and keeps it until unmap; the
        // rest of its first and last page is exposed too (see the module
        // documentation), which the IOMMU cannot avoid.
        let iova = unsafe { self.map_pages(start.as_u64(), size, flags, None) }?;
        Ok(DmaAddr::new(iova + offset))
    }

    unsafe fn unmap(&self, mapping: &RawMapping) -> dma_core::Result<()> {
        let iova = mapping.dma.as_u64() & !(PAGE as u64 - 1);
        let vaddr = mapping.phys.as_u64() & !(PAGE as u64 - 1);
        self.unmap_pages(iova, vaddr, false).map(drop)
    }

    unsafe fn sync_for_cpu(&self, _mapping: &RawMapping, _offset: usize, _len: usize) {
        // Coherent: the device's writes are in the CPU's view already.
    }

    unsafe fn sync_for_device(&self, _mapping: &RawMapping, _offset: usize, _len: usize) {
        // Coherent: the device snoops the CPU's caches.
    }
}

// SAFETY: a region is a fresh anonymous mapping (zero-filled, page-aligned,
// ours alone), mapped read-write at an IOVA from the window, coherent as
// argued for `DmaMap`; `free_coherent` unmaps it from the IOMMU before the
// memory is released, and refuses regions it did not hand out.
unsafe impl DmaAlloc for VfioPlatform {
    fn alloc_coherent(&self, size: usize, _attrs: DmaAttrs) -> dma_core::Result<CoherentRegion> {
        if size == 0 {
            return Err(Error::new(
                ErrorKind::ZeroSize,
                "zero-size coherent allocation",
            ));
        }
        let memory = Anon::new(size).map_err(|_| {
            Error::new(ErrorKind::OutOfMemory, "mmap of coherent memory failed").len(size as u64)
        })?;
        let (cpu, len) = (memory.ptr, memory.len);
        let flags = DmaMapFlags::READ | DmaMapFlags::WRITE;
        // SAFETY: the mapping is ours and lives in the live table until
        // free_coherent has unmapped it from the IOMMU.
        let iova = unsafe {
            self.map_pages(
                cpu.as_ptr() as usize as u64,
                len as u64,
                flags,
                Some(memory),
            )
        }?;
        Ok(CoherentRegion {
            cpu,
            dma: DmaAddr::new(iova),
            size: len,
        })
    }

    unsafe fn free_coherent(
        &self,
        region: CoherentRegion,
        _attrs: DmaAttrs,
    ) -> dma_core::Result<()> {
        let vaddr = region.cpu.as_ptr() as usize as u64;
        // Dropping the memory (after the unmap succeeded) releases it.
        self.unmap_pages(region.dma.as_u64(), vaddr, true).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_map_keeps_its_fix_in_the_dma_core_error() {
        let memlock = dma_error(&VfioError::MemlockTooLow {
            limit: Some(65536),
            wanted: 1 << 20,
        });
        assert_eq!(memlock.kind(), ErrorKind::OutOfMemory);
        assert!(memlock.message().contains("ulimit -l"), "{memlock}");
        let hole = dma_error(&VfioError::OutsideIovaRanges {
            iova: 0x800_0000,
            len: 4096,
        });
        assert_eq!(hole.kind(), ErrorKind::Unreachable);
        let other = dma_error(&VfioError::Unsupported("x".into()));
        assert!(other.message().contains("dmesg"), "{other}");
    }
}
