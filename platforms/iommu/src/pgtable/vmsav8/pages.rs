//! Memory for tables: zeroed blocks aligned to their own size, which may
//! be larger than the environment's page (a 16 or 64 KiB granule, or
//! concatenated stage-2 tables, on 4 KiB pages).
//!
//! [`PhysMemory`] aligns only to its page, so a larger block is carved out
//! of an allocation padded by one block less a page, and the allocation is
//! remembered (which needs `alloc`) so that it can be freed whole.

#[cfg(feature = "alloc")]
use alloc::collections::BTreeMap;
use core::ptr::NonNull;

use dma_core::{Cacheability, Pages, PhysAddr, PhysMemory, Result};
#[cfg(not(feature = "alloc"))]
use dma_core::{Error, ErrorKind};

use super::format::OAS_BITS;

/// A table's memory: where the CPU writes it and where the walker reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TableMem {
    pub(super) cpu: NonNull<u8>,
    pub(super) phys: PhysAddr,
}

/// The environment's memory, handing out size-aligned table blocks.
pub(super) struct TableAllocator<M: PhysMemory> {
    pub(super) memory: M,
    /// Padded allocations, by the aligned block's physical address.
    #[cfg(feature = "alloc")]
    padded: BTreeMap<u64, Pages>,
}

impl<M: PhysMemory> TableAllocator<M> {
    pub(super) fn new(memory: M) -> Self {
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

    /// A zeroed block of `bytes` (a power of two), aligned to `bytes`,
    /// below the 48-bit output address size.
    pub(super) fn alloc(&mut self, bytes: u64) -> Result<TableMem> {
        let max_phys = (1 << OAS_BITS) - 1;
        let count = self.pages_for(bytes);
        let pages = self
            .memory
            .alloc_pages(count, Cacheability::Cached, max_phys)?;
        if pages.phys.as_u64() % bytes == 0 {
            return Ok(TableMem {
                cpu: pages.cpu,
                phys: pages.phys,
            });
        }
        // SAFETY: just allocated, never shared.
        unsafe { self.memory.free_pages(pages) };
        self.alloc_padded(bytes, count)
    }

    #[cfg(feature = "alloc")]
    fn alloc_padded(&mut self, bytes: u64, count: usize) -> Result<TableMem> {
        let max_phys = (1 << OAS_BITS) - 1;
        let padded = count + self.pages_for(bytes) - 1;
        let pages = self
            .memory
            .alloc_pages(padded, Cacheability::Cached, max_phys)?;
        let skip = pages.phys.as_u64().next_multiple_of(bytes) - pages.phys.as_u64();
        // SAFETY: `skip` is less than `bytes`, and `skip + bytes` fits in the
        // `count + bytes/page - 1` pages allocated (`skip` is a multiple of
        // the page, at most `bytes - page`).
        let cpu = unsafe { pages.cpu.add(skip as usize) };
        let phys = PhysAddr::new(pages.phys.as_u64() + skip);
        self.padded.insert(phys.as_u64(), pages);
        Ok(TableMem { cpu, phys })
    }

    #[cfg(not(feature = "alloc"))]
    fn alloc_padded(&mut self, bytes: u64, _count: usize) -> Result<TableMem> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "tables larger than the environment's page need the `alloc` feature (or memory aligned to the table size)",
        )
        .len(bytes))
    }

    /// Returns a block from [`alloc`](Self::alloc).
    ///
    /// # Safety
    ///
    /// `table` came from `alloc(bytes)` on this allocator, is freed once, and
    /// nothing (CPU or walker) reads it afterwards.
    pub(super) unsafe fn free(&mut self, table: TableMem, bytes: u64) {
        #[cfg(feature = "alloc")]
        if let Some(pages) = self.padded.remove(&table.phys.as_u64()) {
            // SAFETY: the padded allocation holding `table`, freed once
            // (removed from the record), as the caller promises.
            unsafe { self.memory.free_pages(pages) };
            return;
        }
        let pages = Pages {
            cpu: table.cpu,
            phys: table.phys,
            count: self.pages_for(bytes),
            cacheability: Cacheability::Cached,
        };
        // SAFETY: an unpadded block is exactly the allocation `alloc` made
        // for `bytes`; the caller promises it is freed once and unused.
        unsafe { self.memory.free_pages(pages) };
    }
}
