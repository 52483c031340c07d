//! Physically contiguous blocks aligned beyond the environment's page: page
//! tables (a 16 or 64 KiB granule, or concatenated stage-2 tables, on
//! 4 KiB pages) and the platform's coherent allocations (whole granules,
//! so that mapping them exposes nothing else to the device).
//!
//! [`PhysMemory`] aligns only to its page, so a more aligned block is
//! carved out of an allocation padded by the alignment less a page, and
//! the allocation is remembered (which needs `alloc`) so that it can be
//! freed whole.

#[cfg(feature = "alloc")]
use alloc::collections::BTreeMap;
use core::ptr::NonNull;

use dma_core::{Cacheability, Pages, PhysAddr, PhysMemory, Result};
#[cfg(not(feature = "alloc"))]
use dma_core::{Error, ErrorKind};

use crate::pgtable::vmsav8::OAS_BITS;

/// A block's memory: where the CPU reaches it and where a device or walker
/// does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) cpu: NonNull<u8>,
    pub(crate) phys: PhysAddr,
}

/// The environment's memory, handing out aligned blocks below the 48-bit
/// output address size of the tables.
pub(crate) struct AlignedAlloc<M: PhysMemory> {
    pub(crate) memory: M,
    /// Padded allocations, by the aligned block's physical address.
    #[cfg(feature = "alloc")]
    padded: BTreeMap<u64, Pages>,
}

impl<M: PhysMemory> AlignedAlloc<M> {
    pub(crate) fn new(memory: M) -> Self {
        Self {
            memory,
            #[cfg(feature = "alloc")]
            padded: BTreeMap::new(),
        }
    }

    fn pages_for(&self, bytes: u64) -> usize {
        let page = self.memory.page_size() as u64;
        bytes.div_ceil(page) as usize
    }

    /// A zeroed block of `bytes`, aligned to `align` (a power of two), with
    /// the CPU mapping `cacheability` asks for.
    pub(crate) fn alloc(
        &mut self,
        bytes: u64,
        align: u64,
        cacheability: Cacheability,
    ) -> Result<Block> {
        let max_phys = (1 << OAS_BITS) - 1;
        let count = self.pages_for(bytes);
        let pages = self.memory.alloc_pages(count, cacheability, max_phys)?;
        if pages.phys.as_u64() % align == 0 {
            return Ok(Block {
                cpu: pages.cpu,
                phys: pages.phys,
            });
        }
        // SAFETY: just allocated, never shared.
        unsafe { self.memory.free_pages(pages) };
        self.alloc_padded(count, align, cacheability)
    }

    #[cfg(feature = "alloc")]
    fn alloc_padded(
        &mut self,
        count: usize,
        align: u64,
        cacheability: Cacheability,
    ) -> Result<Block> {
        let max_phys = (1 << OAS_BITS) - 1;
        let padded = count + self.pages_for(align) - 1;
        let pages = self.memory.alloc_pages(padded, cacheability, max_phys)?;
        let skip = pages.phys.as_u64().next_multiple_of(align) - pages.phys.as_u64();
        // SAFETY: `skip` is a multiple of the page below `align` (the
        // allocation is page-aligned), so `skip` plus the `count` pages
        // asked for fit in the `count + align/page - 1` pages allocated.
        let cpu = unsafe { pages.cpu.add(skip as usize) };
        let phys = PhysAddr::new(pages.phys.as_u64() + skip);
        self.padded.insert(phys.as_u64(), pages);
        Ok(Block { cpu, phys })
    }

    #[cfg(not(feature = "alloc"))]
    fn alloc_padded(
        &mut self,
        _count: usize,
        align: u64,
        _cacheability: Cacheability,
    ) -> Result<Block> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "blocks aligned beyond the environment's page (tables larger than it) need the `alloc` feature",
        )
        .len(align))
    }

    /// Returns a block from [`alloc`](Self::alloc).
    ///
    /// # Safety
    ///
    /// `block` came from `alloc(bytes, _, cacheability)` on this allocator,
    /// is freed once, and nothing (CPU, device or walker) reaches it
    /// afterwards.
    pub(crate) unsafe fn free(&mut self, block: Block, bytes: u64, cacheability: Cacheability) {
        #[cfg(feature = "alloc")]
        if let Some(pages) = self.padded.remove(&block.phys.as_u64()) {
            // SAFETY: the padded allocation holding `block`, freed once
            // (removed from the record), as the caller promises.
            unsafe { self.memory.free_pages(pages) };
            return;
        }
        let pages = Pages {
            cpu: block.cpu,
            phys: block.phys,
            count: self.pages_for(bytes),
            cacheability,
        };
        // SAFETY: an unpadded block is exactly the allocation `alloc` made
        // for `bytes` with this cacheability; the caller promises it is
        // freed once and unused.
        unsafe { self.memory.free_pages(pages) };
    }
}
