//! DMA pools: many small, aligned blocks of coherent memory carved from
//! whole pages (Linux's `dma_pool`), for PRP lists, command buffers and
//! other per-request device structures.

use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::volatile::VolatileBytes;
use crate::{CoherentRegion, DmaAddr, DmaAlloc, DmaAttrs, DmaPod, Error, ErrorKind, Result};

/// The unit a pool allocates from its platform: at least one page.
const MIN_CHUNK: usize = 4096;

/// Bits in one bitmap word. `usize` words keep the pool lock-free on
/// targets without 64-bit atomics (thumbv7em).
const BITS: usize = usize::BITS as usize;

/// A fixed-capacity pool of equal blocks of coherent memory.
///
/// Every block starts at a multiple of the pool's alignment and never
/// crosses a multiple of its boundary (in device addresses), as Linux's
/// `dma_pool_create(name, dev, size, align, boundary)` promises. The pool
/// allocates all its chunks up front and never grows, so allocation is
/// bounded and cannot fail for lack of memory once the pool exists; an empty
/// pool is [`PoolExhausted`](ErrorKind::PoolExhausted). Allocation and free
/// are lock-free, so one pool may serve several CPUs.
///
/// ```
/// use dma_core::{DmaAlloc, DmaPool, Result};
///
/// fn prp_lists<P: DmaAlloc>(platform: &P) -> Result<()> {
///     // 256-byte blocks, 256-aligned, never crossing 4 KiB: a PRP-list pool.
///     let pool = DmaPool::new(platform, 256, 256, Some(4096), 64)?;
///     let mut block = pool.alloc()?;
///     block.write_at::<u64>(0, 0x1000)?;
///     assert!(block.dma_addr().is_aligned(256));
///     Ok(())
/// }
/// ```
pub struct DmaPool<P: DmaAlloc> {
    platform: P,
    chunks: Vec<Chunk>,
    /// Where block `i` of every chunk starts, relative to the chunk.
    offsets: Vec<usize>,
    /// One bit per block, chunk-major; set = in use or unusable.
    used: Vec<AtomicUsize>,
    /// Bits set at creation because the block would cross the boundary in
    /// that chunk's device addresses; never freed.
    reserved: Vec<usize>,
    /// Where the next search starts, to spread allocations.
    hint: AtomicUsize,
    block_size: usize,
}

impl<P: DmaAlloc> DmaPool<P> {
    /// Creates a pool of at least `capacity` blocks of `block_size` bytes,
    /// each aligned to `align` and never crossing `boundary`.
    ///
    /// Platforms promise only page-aligned chunks, so an alignment above
    /// 4 KiB costs each chunk up to `align - 4096` bytes of slack, from which
    /// the first block is moved up to its alignment.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) for a zero block size or capacity;
    /// [`InvalidConstraints`](ErrorKind::InvalidConstraints) when `align` or
    /// `boundary` is not a power of two or the boundary is smaller than a
    /// block; [`OutOfMemory`](ErrorKind::OutOfMemory) when the pool's size
    /// or its bookkeeping overflows or cannot be allocated; whatever the
    /// platform's allocation returns.
    pub fn new(
        platform: P,
        block_size: usize,
        align: usize,
        boundary: Option<usize>,
        capacity: usize,
    ) -> Result<Self> {
        if block_size == 0 || capacity == 0 {
            return Err(Error::new(
                ErrorKind::ZeroSize,
                "pool with zero-sized blocks or no capacity",
            ));
        }
        if !align.is_power_of_two() {
            return Err(Error::new(
                ErrorKind::InvalidConstraints,
                "pool alignment must be a power of two",
            ));
        }
        if let Some(b) = boundary {
            if !b.is_power_of_two() || b < block_size {
                return Err(Error::new(
                    ErrorKind::InvalidConstraints,
                    "pool boundary must be a power of two no smaller than a block",
                ));
            }
        }
        let too_large = || {
            Error::new(
                ErrorKind::OutOfMemory,
                "DMA pool too large: ask for fewer or smaller blocks",
            )
            .len(capacity as u64)
        };
        let stride = block_size.checked_next_multiple_of(align).ok_or(
            Error::new(ErrorKind::InvalidConstraints, "block size overflows")
                .len(block_size as u64),
        )?;
        let chunk_size = stride
            .max(MIN_CHUNK)
            .checked_next_multiple_of(MIN_CHUNK)
            .ok_or_else(too_large)?;
        // Chunks are only page-aligned (DmaAlloc's promise), so an alignment
        // above a page needs room to move the first block up to it.
        let slack = align.saturating_sub(MIN_CHUNK);
        let alloc_size = chunk_size.checked_add(slack).ok_or_else(too_large)?;
        let offsets = block_offsets(chunk_size, block_size, stride, boundary);
        let per_chunk = offsets.len();
        let chunk_count = capacity.div_ceil(per_chunk);
        let total = chunk_count.checked_mul(per_chunk).ok_or_else(too_large)?;

        let mut pool = Self {
            platform,
            chunks: Vec::new(),
            offsets,
            used: Vec::new(),
            reserved: Vec::new(),
            hint: AtomicUsize::new(0),
            block_size,
        };
        let words = total.div_ceil(BITS);
        pool.chunks
            .try_reserve_exact(chunk_count)
            .map_err(|_| too_large())?;
        pool.reserved
            .try_reserve_exact(words)
            .map_err(|_| too_large())?;
        pool.used
            .try_reserve_exact(words)
            .map_err(|_| too_large())?;
        pool.reserved.resize(words, 0);
        // Blocks past the last whole chunk's count in the final bitmap word.
        for bit in total..words * BITS {
            pool.reserved[bit / BITS] |= 1 << (bit % BITS);
        }
        for c in 0..chunk_count {
            let region = pool
                .platform
                .alloc_coherent(alloc_size, DmaAttrs::empty())?;
            // The distance from the chunk's device address up to the
            // alignment: zero for a page-aligned chunk and an alignment of
            // at most a page.
            let skew = (align - (region.dma.as_u64() % align as u64) as usize) % align;
            pool.chunks.push(Chunk { region, skew });
            for (i, &off) in pool.offsets.iter().enumerate() {
                let start = region.dma.as_u64() + (skew + off) as u64;
                let end = start + block_size as u64 - 1;
                // A chunk whose device address is not even page-aligned (a
                // bus offset) may not fit its last blocks once skewed; and
                // one whose device address is not boundary-aligned (a bus
                // offset, an IOVA) has blocks that straddle a boundary line.
                let overflows = skew + off + block_size > region.size;
                let crosses = boundary.is_some_and(|b| start / b as u64 != end / b as u64);
                if overflows || crosses {
                    let bit = c * per_chunk + i;
                    pool.reserved[bit / BITS] |= 1 << (bit % BITS);
                }
            }
        }
        pool.used
            .extend(pool.reserved.iter().map(|&r| AtomicUsize::new(r)));
        Ok(pool)
    }

    /// The size of each block in bytes.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// How many blocks the pool holds in all.
    pub fn capacity(&self) -> usize {
        self.reserved.iter().map(|w| w.count_zeros() as usize).sum()
    }

    /// How many blocks are free right now.
    pub fn available(&self) -> usize {
        self.used
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_zeros() as usize)
            .sum()
    }

    /// Takes a block. Its contents are whatever its last user left.
    ///
    /// # Errors
    ///
    /// [`PoolExhausted`](ErrorKind::PoolExhausted) when every block is in use.
    pub fn alloc(&self) -> Result<PoolBlock<'_, P>> {
        let words = self.used.len();
        let start = self.hint.load(Ordering::Relaxed) % words;
        for w in (start..words).chain(0..start) {
            let word = &self.used[w];
            let mut cur = word.load(Ordering::Relaxed);
            while cur != usize::MAX {
                let bit = (!cur).trailing_zeros();
                match word.compare_exchange_weak(
                    cur,
                    cur | 1 << bit,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.hint.store(w, Ordering::Relaxed);
                        return Ok(self.block(w * BITS + bit as usize));
                    }
                    Err(now) => cur = now,
                }
            }
        }
        Err(Error::new(
            ErrorKind::PoolExhausted,
            "every block of the DMA pool is in use",
        )
        .len(self.block_size as u64))
    }

    /// Takes a block and zeroes it.
    ///
    /// # Errors
    ///
    /// As for [`alloc`](Self::alloc).
    pub fn alloc_zeroed(&self) -> Result<PoolBlock<'_, P>> {
        let block = self.alloc()?;
        block.mem.fill(0, self.block_size, 0)?;
        Ok(block)
    }

    fn block(&self, index: usize) -> PoolBlock<'_, P> {
        let per_chunk = self.offsets.len();
        let Chunk {
            region: chunk,
            skew,
        } = &self.chunks[index / per_chunk];
        let off = skew + self.offsets[index % per_chunk];
        // SAFETY: skew + off + block_size <= the chunk's size (blocks that
        // would not fit are reserved in `new` and never handed out), so the
        // block lies inside the chunk.
        let cpu = unsafe { chunk.cpu.add(off) };
        PoolBlock {
            pool: self,
            index,
            dma: DmaAddr::new(chunk.dma.as_u64() + off as u64),
            // SAFETY: the bit we set gives us this block exclusively until
            // the PoolBlock drops; the chunk lives as long as the pool.
            mem: unsafe { VolatileBytes::new(cpu, self.block_size) },
        }
    }

    fn release(&self, index: usize) {
        self.used[index / BITS].fetch_and(!(1 << (index % BITS)), Ordering::Release);
    }
}

/// One allocation from the platform, carved into blocks.
struct Chunk {
    region: CoherentRegion,
    /// Where block offsets start: the first device address at the pool's
    /// alignment.
    skew: usize,
}

/// Block offsets within one chunk: `stride` apart, moved up to the next
/// boundary where a block would cross one.
fn block_offsets(chunk: usize, size: usize, stride: usize, boundary: Option<usize>) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut off = 0;
    while off + size <= chunk {
        if let Some(b) = boundary {
            if off / b != (off + size - 1) / b {
                off = off.next_multiple_of(b);
                continue;
            }
        }
        offsets.push(off);
        off += stride;
    }
    offsets
}

impl<P: DmaAlloc> Drop for DmaPool<P> {
    fn drop(&mut self) {
        // A block still marked used here was forgotten (mem::forget) and may
        // still be known to a device: leak the chunks rather than free them.
        let leaked = self
            .used
            .iter()
            .zip(&self.reserved)
            .any(|(u, &r)| u.load(Ordering::Acquire) != r);
        if leaked {
            return;
        }
        for Chunk { region, .. } in self.chunks.drain(..) {
            // SAFETY: each chunk came from this platform with empty attrs, is
            // freed once, and no block of it is in use (checked above).
            let _ = unsafe { self.platform.free_coherent(region, DmaAttrs::empty()) };
        }
    }
}

impl<P: DmaAlloc> core::fmt::Debug for DmaPool<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmaPool")
            .field("block_size", &self.block_size)
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .finish()
    }
}

/// One block of a [`DmaPool`], returned to the pool on drop.
pub struct PoolBlock<'pool, P: DmaAlloc> {
    pool: &'pool DmaPool<P>,
    index: usize,
    dma: DmaAddr,
    mem: VolatileBytes,
}

// SAFETY: the block is exclusively ours (its bit is set); the pool's shared
// state is atomics. Sending it is like sending a Box.
unsafe impl<P: DmaAlloc + Sync> Send for PoolBlock<'_, P> {}
// SAFETY: `&self` methods only read; writes need `&mut self`.
unsafe impl<P: DmaAlloc + Sync> Sync for PoolBlock<'_, P> {}

impl<P: DmaAlloc> PoolBlock<'_, P> {
    /// The device address of the block.
    pub fn dma_addr(&self) -> DmaAddr {
        self.dma
    }

    /// The block size in bytes.
    pub fn size(&self) -> usize {
        self.mem.len()
    }

    /// The raw CPU pointer, for volatile access by the caller.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.mem.ptr()
    }

    /// Reads a `T` at byte `offset`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange), [`Misaligned`](ErrorKind::Misaligned).
    pub fn read_at<T: DmaPod>(&self, offset: usize) -> Result<T> {
        self.mem.read(offset)
    }

    /// Writes a `T` at byte `offset`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange), [`Misaligned`](ErrorKind::Misaligned).
    pub fn write_at<T: DmaPod>(&mut self, offset: usize, value: T) -> Result<()> {
        self.mem.write(offset, value)
    }

    /// Writes `values` one after another from byte `offset`, checking the
    /// bounds and alignment once for the whole run (a PRP list page is 512
    /// such writes).
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange), [`Misaligned`](ErrorKind::Misaligned);
    /// nothing is written then.
    pub fn write_slice<T: DmaPod>(&mut self, offset: usize, values: &[T]) -> Result<()> {
        self.mem.write_slice(offset, values)
    }

    /// Copies bytes out.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange).
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.mem.copy_out(offset, dst)
    }

    /// Copies bytes in.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange).
    pub fn copy_in(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        self.mem.copy_in(offset, src)
    }
}

impl<P: DmaAlloc> Drop for PoolBlock<'_, P> {
    fn drop(&mut self) {
        self.pool.release(self.index);
    }
}

impl<P: DmaAlloc> core::fmt::Debug for PoolBlock<'_, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PoolBlock")
            .field("dma", &self.dma)
            .field("size", &self.mem.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_respect_alignment_and_boundary() {
        // 96-byte blocks, 32-aligned, 256 boundary: 0, 96 fit; 192 would
        // cross 256, so the next starts at 256.
        let o = block_offsets(4096, 96, 96, Some(256));
        assert_eq!(&o[..4], &[0, 96, 256, 352]);
        for &off in &o {
            assert_eq!(off / 256, (off + 95) / 256);
            assert!(off + 96 <= 4096);
        }
        let o = block_offsets(4096, 512, 512, None);
        assert_eq!(o.len(), 8);
    }
}
