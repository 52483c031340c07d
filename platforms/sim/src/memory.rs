//! The machine's physical memory, as the `dma-core` environment sees it.

use std::alloc::Layout;
use std::ptr::NonNull;

use dma_core::{Cacheability, Error, ErrorKind, Pages, PhysAddr, PhysMemory, Result};

use crate::Sim;

/// The sim's [`PhysMemory`]: pages from the host allocator, identity
/// translated (a sim physical address is the host address, so heap buffers
/// a driver maps are sim memory too). Every cacheability is provided;
/// uncached and write-combining pages bypass the cache model.
///
/// Allocations are recorded: the IOMMU walks tables only inside them, and
/// coherent allocations learn their cacheability from them.
#[derive(Clone, Debug)]
pub struct SimMemory {
    pub(crate) sim: Sim,
}

impl SimMemory {
    /// The page size.
    pub const PAGE_SIZE: usize = 4096;

    fn layout(count: usize) -> Result<Layout> {
        count
            .checked_mul(Self::PAGE_SIZE)
            .and_then(|size| Layout::from_size_align(size, Self::PAGE_SIZE).ok())
            .ok_or(Error::new(ErrorKind::OutOfMemory, "page count too large").len(count as u64))
    }

    /// The machine.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }
}

// SAFETY: pages come zeroed and page-aligned from the global allocator and
// are exclusively the caller's until freed; translation is the identity,
// exact and contiguous; the limit is checked after allocation.
unsafe impl PhysMemory for SimMemory {
    fn page_size(&self) -> usize {
        Self::PAGE_SIZE
    }

    fn alloc_pages(
        &self,
        count: usize,
        cacheability: Cacheability,
        max_phys: u64,
    ) -> Result<Pages> {
        if count == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero pages requested"));
        }
        let layout = Self::layout(count)?;
        // SAFETY: non-zero size (count >= 1).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let cpu =
            NonNull::new(raw).ok_or(Error::new(ErrorKind::OutOfMemory, "host allocator failed"))?;
        let phys = cpu.as_ptr().expose_provenance() as u64;
        if phys + (layout.size() as u64 - 1) > max_phys {
            // SAFETY: just allocated with this layout, never shared.
            unsafe { std::alloc::dealloc(raw, layout) };
            return Err(Error::new(
                ErrorKind::Unreachable,
                "sim memory lies above the requested limit",
            )
            .at(phys));
        }
        self.sim.machine.with(|s, _| {
            s.allocations
                .insert(phys, (layout.size() as u64, cacheability));
            s.stats.pages_allocated += count as u64;
        });
        Ok(Pages {
            cpu,
            phys: PhysAddr::new(phys),
            count,
            cacheability,
        })
    }

    unsafe fn free_pages(&self, pages: Pages) {
        let Ok(layout) = Self::layout(pages.count) else {
            return;
        };
        let known = self
            .sim
            .machine
            .with(|s, _| s.allocations.remove(&pages.phys.as_u64()).is_some());
        if known {
            // SAFETY: the caller promises the pages came from alloc_pages,
            // which used exactly this layout, and are freed once (the record
            // removed above confirms it).
            unsafe { std::alloc::dealloc(pages.cpu.as_ptr(), layout) };
        }
    }

    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length translation"));
        }
        Ok(PhysAddr::new(cpu.as_ptr().expose_provenance() as u64))
    }

    fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> Result<NonNull<u8>> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length translation"));
        }
        let addr = usize::try_from(phys.as_u64()).map_err(|_| {
            Error::new(
                ErrorKind::NotContiguous,
                "physical address beyond the host's pointer width",
            )
        })?;
        NonNull::new(std::ptr::with_exposed_provenance_mut(addr)).ok_or(Error::new(
            ErrorKind::NotContiguous,
            "physical address 0 has no mapping",
        ))
    }
}
