//! The two DMA pools Linux's NVMe PCI driver keeps per device: whole
//! memory pages for long PRP lists and SGL segments, and 256-byte blocks
//! for short ones, so that a small I/O does not pin a page.

use dma_core::{DmaAlloc, DmaPool, Error, ErrorKind, PoolBlock, Result};

use super::prp::check_page_size;

/// Size of a small-pool block: 32 PRP entries or 16 SGL descriptors.
pub const SMALL_BLOCK: usize = 256;

/// List memory for NVMe commands: a pool of memory pages and a pool of
/// 256-byte blocks, both fixed-capacity and allocated up front.
///
/// Page blocks are aligned to the controller's memory page size (CC.MPS),
/// so a PRP list in one ends exactly at a memory page boundary where the
/// chain pointer belongs. Small blocks never cross a memory page.
///
/// ```
/// use dma_core::{DeviceConstraints, HostMemory};
/// use dma_direct::DirectPlatform;
/// use dma_sg::nvme::NvmePools;
///
/// let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
/// let pools = NvmePools::new(&platform, 4096, 16, 64)?;
/// assert_eq!(pools.page_size(), 4096);
/// # Ok::<(), dma_core::Error>(())
/// ```
pub struct NvmePools<P: DmaAlloc> {
    pages: DmaPool<P>,
    small: DmaPool<P>,
    page_size: usize,
}

impl<P: DmaAlloc + Clone> NvmePools<P> {
    /// Pools of `page_blocks` memory pages of `page_size` bytes (the
    /// controller's CC.MPS) and `small_blocks` 256-byte blocks.
    ///
    /// # Errors
    ///
    /// [`InvalidConstraints`](ErrorKind::InvalidConstraints) for a page
    /// size NVMe cannot use (a power of two from 4 KiB to 128 MiB),
    /// [`ZeroSize`](ErrorKind::ZeroSize) for an empty pool, or whatever the
    /// platform's coherent allocation returns.
    pub fn new(
        platform: P,
        page_size: usize,
        page_blocks: usize,
        small_blocks: usize,
    ) -> Result<Self> {
        check_page_size(page_size as u64)?;
        let pages = DmaPool::new(platform.clone(), page_size, page_size, None, page_blocks)?;
        let small = DmaPool::new(
            platform,
            SMALL_BLOCK,
            SMALL_BLOCK,
            Some(page_size),
            small_blocks,
        )?;
        Ok(Self {
            pages,
            small,
            page_size,
        })
    }
}

impl<P: DmaAlloc> NvmePools<P> {
    /// The controller's memory page size these pools serve.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Free blocks in the page pool and in the small pool.
    pub fn available(&self) -> (usize, usize) {
        (self.pages.available(), self.small.available())
    }

    /// A block for `bytes` of list: a small block when it fits, else a
    /// memory page.
    pub(crate) fn alloc_for(&self, bytes: usize) -> Result<PoolBlock<'_, P>> {
        if bytes <= SMALL_BLOCK {
            self.small.alloc()
        } else {
            self.alloc_page()
        }
    }

    /// A whole memory page, checked to be page-aligned in device addresses.
    pub(crate) fn alloc_page(&self) -> Result<PoolBlock<'_, P>> {
        let block = self.pages.alloc()?;
        if !block.dma_addr().is_aligned(self.page_size as u64) {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "list page is not aligned to the memory page size",
            )
            .at(block.dma_addr().as_u64()));
        }
        Ok(block)
    }
}

impl<P: DmaAlloc> core::fmt::Debug for NvmePools<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NvmePools")
            .field("page_size", &self.page_size)
            .field("pages", &self.pages)
            .field("small", &self.small)
            .finish()
    }
}
