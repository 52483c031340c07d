//! The machine's physical memory, as the `dma-core` environment sees it.

use std::alloc::Layout;
use std::ptr::NonNull;

use dma_core::{Cacheability, Error, ErrorKind, Pages, PhysAddr, PhysMemory, Result};

use crate::{host, Sim};

/// The sim's [`PhysMemory`]: pages from the host allocator, and heap
/// buffers a driver translates, at physical addresses of the machine's own
/// seeded layout (see below). Every cacheability is provided; uncached and
/// write-combining pages bypass the cache model.
///
/// Allocations are recorded: the IOMMU walks tables only inside them, and
/// coherent allocations learn their cacheability from them.
///
/// # Physical addresses
///
/// A physical address here is not the host address: each allocation, and
/// each buffer `virt_to_phys` first sees, starts at a fresh sim page after
/// a seeded gap, in the order the program makes them, so the same seed
/// gives the same addresses (in reports too) wherever the host heap put
/// the buffers. Only a buffer's offset within its cache line is its own
/// (a buffer aligned to the line starts a sim page), and buffers sharing a
/// host cache line keep their distance, since they share the line.
/// Allocations go above 4 GiB when the limit allows, else below it;
/// translated heap buffers lie above 256 GiB (a 32- or 36-bit device
/// needs bouncing for them, as it would for arbitrary heap memory).
/// Allocation addresses are never reused within a machine; a buffer's
/// address is reused only after sixteen newer buffers were unmapped, so a
/// device's stale access soon after an unmap faults rather than reaching
/// another buffer.
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
// are exclusively the caller's until freed; translation goes through the
// machine's physical map, where each host range has one sim range
// (contiguous both ways, so phys_to_virt inverts virt_to_phys exactly);
// the limit is checked when the pages are placed.
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
        let host = cpu.as_ptr().expose_provenance() as u64;
        let len = layout.size() as u64;
        let placed = self.sim.machine.with(|s, _| {
            let phys = s.phys.alloc(host, len, max_phys)?;
            s.allocations.insert(phys, (len, cacheability, host));
            s.stats.pages_allocated += count as u64;
            Ok(phys)
        });
        let phys = match placed {
            Ok(phys) => phys,
            Err(e) => {
                // SAFETY: just allocated with this layout, never shared.
                unsafe { std::alloc::dealloc(raw, layout) };
                return Err(e);
            }
        };
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
        let host = pages.cpu.as_ptr().expose_provenance() as u64;
        let known = self.sim.machine.with(|s, _| {
            let phys = pages.phys.as_u64();
            let ours = s.allocations.get(&phys).is_some_and(|a| a.2 == host);
            if ours {
                s.allocations.remove(&phys);
                s.phys.free(phys);
            }
            ours
        });
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
        let host = cpu.as_ptr().expose_provenance() as u64;
        let phys = self
            .sim
            .machine
            .with(|s, _| s.phys.translate(host, len as u64))?;
        Ok(PhysAddr::new(phys))
    }

    fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> Result<NonNull<u8>> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length translation"));
        }
        let machine = &self.sim.machine;
        // The extent the map used last answers without the lock; anything
        // else is a locked lookup (which publishes what it finds).
        let host = machine
            .xlate
            .to_host(phys.as_u64(), len as u64)
            .or_else(|| machine.with(|s, _| s.phys.to_host(phys.as_u64(), len as u64)))
            .ok_or(
                Error::new(
                    ErrorKind::NotContiguous,
                    "not sim memory: the address was never given out by this machine's \
                     SimMemory, or its allocation was freed or its buffer retired",
                )
                .at(phys.as_u64())
                .len(len as u64),
            )?;
        NonNull::new(host::ptr(host)).ok_or(Error::new(
            ErrorKind::NotContiguous,
            "physical address 0 has no mapping",
        ))
    }
}
