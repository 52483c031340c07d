//! The board's [`PhysMemory`]: RAM under a linear (identity, on the board)
//! map, and two page pools, one in write-back RAM and one in the
//! non-cacheable region, from which DMA pages are handed out.

use core::ptr::NonNull;

use dma_core::{Cacheability, Error, ErrorKind, Pages, PhysAddr, PhysMemory};

/// The size of the pages the pools hand out.
pub const PAGE_SIZE: usize = 4096;

/// Why a board without a non-cacheable pool refuses uncached pages.
const NO_UNCACHED_POOL: &str =
    "the board maps no non-cacheable memory: use a hardware-coherent cache policy";

/// A linear translation between CPU and physical addresses over one range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearMap {
    /// CPU address of the range's first byte.
    pub cpu: usize,
    /// Physical address of the range's first byte.
    pub phys: u64,
    /// Length in bytes.
    pub len: u64,
}

impl LinearMap {
    /// The translation of `[phys, phys + len)`, if it lies in the range.
    fn to_cpu(self, phys: u64, len: u64) -> Option<usize> {
        let off = phys.checked_sub(self.phys)?;
        (off.checked_add(len)? <= self.len).then(|| self.cpu + off as usize)
    }

    fn to_phys(self, cpu: usize, len: u64) -> Option<u64> {
        let off = cpu.checked_sub(self.cpu)? as u64;
        (off.checked_add(len)? <= self.len).then_some(self.phys + off)
    }
}

/// A first-fit page allocator over `WORDS * 64` pages at most, one bit a
/// page, behind a spin lock.
pub struct PagePool<const WORDS: usize> {
    phys: u64,
    pages: usize,
    used: spin::Mutex<[u64; WORDS]>,
}

impl<const WORDS: usize> PagePool<WORDS> {
    /// A pool of `pages` pages from physical `phys` (page aligned). Pages
    /// beyond `WORDS * 64` are not used.
    pub const fn new(phys: u64, pages: usize) -> Self {
        let pages = if pages < WORDS * 64 {
            pages
        } else {
            WORDS * 64
        };
        Self {
            phys,
            pages,
            used: spin::Mutex::new([0; WORDS]),
        }
    }

    fn is_used(used: &[u64; WORDS], page: usize) -> bool {
        used[page / 64] & 1 << (page % 64) != 0
    }

    fn set(used: &mut [u64; WORDS], first: usize, count: usize, value: bool) {
        for page in first..first + count {
            if value {
                used[page / 64] |= 1 << (page % 64);
            } else {
                used[page / 64] &= !(1 << (page % 64));
            }
        }
    }

    /// Takes `count` contiguous pages ending at or below `max_phys`;
    /// returns the physical address of the first.
    fn alloc(&self, count: usize, max_phys: u64) -> Result<u64, Error> {
        let mut used = self.used.lock();
        let mut run = 0;
        for page in 0..self.pages {
            if Self::is_used(&used, page) {
                run = 0;
                continue;
            }
            run += 1;
            if run == count {
                let first = page + 1 - count;
                let phys = self.phys + (first * PAGE_SIZE) as u64;
                if phys + (count * PAGE_SIZE) as u64 - 1 > max_phys {
                    return Err(Error::new(
                        ErrorKind::Unreachable,
                        "no free pages below the requested limit",
                    )
                    .at(phys));
                }
                Self::set(&mut used, first, count, true);
                return Ok(phys);
            }
        }
        Err(Error::new(ErrorKind::OutOfMemory, "page pool exhausted").len(count as u64))
    }

    /// Whether `[phys, phys + count pages)` lies in the pool.
    fn owns(&self, phys: u64, count: usize) -> bool {
        phys >= self.phys
            && (phys - self.phys) % PAGE_SIZE as u64 == 0
            && (phys - self.phys) / PAGE_SIZE as u64 + count as u64 <= self.pages as u64
    }

    fn free(&self, phys: u64, count: usize) {
        let first = ((phys - self.phys) / PAGE_SIZE as u64) as usize;
        Self::set(&mut self.used.lock(), first, count, false);
    }

    /// Pages the pool manages.
    pub const fn pages(&self) -> usize {
        self.pages
    }

    /// Pages currently handed out.
    pub fn used_pages(&self) -> usize {
        self.used
            .lock()
            .iter()
            .map(|w| w.count_ones() as usize)
            .sum()
    }
}

/// Pages in the board's cached DMA pool (48 MiB).
pub const CACHED_WORDS: usize = (crate::memmap::CACHED_POOL_SIZE as usize / PAGE_SIZE) / 64;
/// Pages in the board's non-cacheable DMA pool (16 MiB).
pub const UNCACHED_WORDS: usize = (crate::memmap::UNCACHED_POOL_SIZE as usize / PAGE_SIZE) / 64;

/// The board's memory: RAM linearly mapped, DMA pages from two pools.
pub struct BoardMemory {
    ram: LinearMap,
    cached: PagePool<CACHED_WORDS>,
    uncached: PagePool<UNCACHED_WORDS>,
}

impl BoardMemory {
    /// The QEMU `virt` board's memory under the identity map
    /// ([`crate::mmu`]): RAM at 0x4000_0000, pools as in [`crate::memmap`].
    ///
    /// # Safety
    ///
    /// The identity map is on (or the MMU off), the pool regions are used
    /// by nothing else, and only one `BoardMemory` exists.
    pub const unsafe fn qemu_virt() -> Self {
        use crate::memmap::*;
        // SAFETY: the caller's promise is this function's.
        unsafe {
            Self::new(
                LinearMap {
                    cpu: RAM_BASE as usize,
                    phys: RAM_BASE,
                    len: RAM_SIZE,
                },
                CACHED_POOL_BASE,
                UNCACHED_BASE,
            )
        }
    }

    /// Memory over `ram`, with a full cached pool at physical `cached` and a
    /// full non-cacheable pool at `uncached` (each `WORDS * 64` pages).
    ///
    /// # Safety
    ///
    /// `ram` is an exact translation of memory the CPU can access; both
    /// pools lie inside it, are used by nothing else, and are mapped with
    /// the cacheability their names say; only this value hands them out.
    pub const unsafe fn new(ram: LinearMap, cached: u64, uncached: u64) -> Self {
        Self {
            ram,
            cached: PagePool::new(cached, CACHED_WORDS * 64),
            uncached: PagePool::new(uncached, UNCACHED_WORDS * 64),
        }
    }

    /// Memory over `ram` with one cached pool of `pages` pages at physical
    /// `cached` (at most [`CACHED_WORDS`]` * 64`) and no non-cacheable
    /// memory: for a board whose devices snoop the CPU caches and which
    /// maps nothing uncached (riscv64 `virt` in M-mode, where main memory
    /// is cacheable by its PMAs). Uncached requests are refused.
    ///
    /// # Safety
    ///
    /// `ram` is an exact translation of memory the CPU can access; the pool
    /// lies inside it, is used by nothing else, and only this value hands
    /// it out.
    pub const unsafe fn cached_only(ram: LinearMap, cached: u64, pages: usize) -> Self {
        Self {
            ram,
            cached: PagePool::new(cached, pages),
            uncached: PagePool::new(0, 0),
        }
    }

    /// Pages handed out from the (cached, non-cacheable) pools.
    pub fn used_pages(&self) -> (usize, usize) {
        (self.cached.used_pages(), self.uncached.used_pages())
    }
}

// SAFETY: pages come from pools no one else uses (the constructors'
// contract), are handed out once until freed (the bitmap), are zeroed on
// allocation, page aligned physically and (the map being linear from a
// page-aligned base) virtually, contiguous, mapped with the pool's
// cacheability, and checked against `max_phys`. Translation is the linear
// map in both directions, restricted to the RAM range.
unsafe impl PhysMemory for BoardMemory {
    fn page_size(&self) -> usize {
        PAGE_SIZE
    }

    fn alloc_pages(
        &self,
        count: usize,
        cacheability: Cacheability,
        max_phys: u64,
    ) -> dma_core::Result<Pages> {
        if count == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero pages requested"));
        }
        let phys = match cacheability {
            Cacheability::Cached => self.cached.alloc(count, max_phys)?,
            Cacheability::Uncached if self.uncached.pages() == 0 => {
                return Err(Error::new(ErrorKind::Unsupported, NO_UNCACHED_POOL))
            }
            Cacheability::Uncached => self.uncached.alloc(count, max_phys)?,
            Cacheability::WriteCombine => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "the board maps no write-combining memory",
                ))
            }
        };
        let len = (count * PAGE_SIZE) as u64;
        let cpu = self
            .ram
            .to_cpu(phys, len)
            .and_then(|a| NonNull::new(a as *mut u8))
            .ok_or(Error::new(ErrorKind::NotContiguous, "pool outside RAM").at(phys))?;
        // SAFETY: the pages were just taken from the pool, so nothing else
        // uses them; they lie in mapped RAM (translated above).
        unsafe { cpu.as_ptr().write_bytes(0, count * PAGE_SIZE) };
        Ok(Pages {
            cpu,
            phys: PhysAddr::new(phys),
            count,
            cacheability,
        })
    }

    unsafe fn free_pages(&self, pages: Pages) {
        let phys = pages.phys.as_u64();
        if self.cached.owns(phys, pages.count) && pages.cacheability == Cacheability::Cached {
            self.cached.free(phys, pages.count);
        } else if self.uncached.owns(phys, pages.count) {
            self.uncached.free(phys, pages.count);
        }
    }

    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> dma_core::Result<PhysAddr> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length translation"));
        }
        self.ram
            .to_phys(cpu.as_ptr() as usize, len as u64)
            .map(PhysAddr::new)
            .ok_or(
                Error::new(ErrorKind::NotContiguous, "address outside RAM")
                    .at(cpu.as_ptr() as usize as u64),
            )
    }

    fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> dma_core::Result<NonNull<u8>> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length translation"));
        }
        self.ram
            .to_cpu(phys.as_u64(), len as u64)
            .and_then(|a| NonNull::new(a as *mut u8))
            .ok_or(Error::new(ErrorKind::NotContiguous, "address outside RAM").at(phys.as_u64()))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    use super::*;

    /// RAM for a test: enough for both pools, identity-less (phys differs).
    struct TestRam {
        ptr: *mut u8,
        layout: Layout,
    }

    const POOLS: usize = (CACHED_WORDS + UNCACHED_WORDS) * 64 * PAGE_SIZE;
    const PHYS: u64 = 0x4000_0000;

    impl TestRam {
        fn new() -> Self {
            let layout = Layout::from_size_align(POOLS, PAGE_SIZE).unwrap();
            // SAFETY: non-zero size.
            let ptr = unsafe { alloc_zeroed(layout) };
            assert!(!ptr.is_null());
            Self { ptr, layout }
        }
        fn memory(&self) -> BoardMemory {
            let ram = LinearMap {
                cpu: self.ptr as usize,
                phys: PHYS,
                len: POOLS as u64,
            };
            let uncached = PHYS + (CACHED_WORDS * 64 * PAGE_SIZE) as u64;
            // SAFETY: the allocation is ours, outlives the memory in each
            // test, and is laid out as the pools expect.
            unsafe { BoardMemory::new(ram, PHYS, uncached) }
        }
    }

    impl Drop for TestRam {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.ptr, self.layout) };
        }
    }

    #[test]
    fn allocates_translates_and_frees() {
        let ram = TestRam::new();
        let m = ram.memory();
        let a = m.alloc_pages(3, Cacheability::Cached, u64::MAX).unwrap();
        let b = m.alloc_pages(1, Cacheability::Uncached, u64::MAX).unwrap();
        assert_eq!(a.phys.as_u64(), PHYS);
        assert!(b.phys.as_u64() >= PHYS + (CACHED_WORDS * 64 * PAGE_SIZE) as u64);
        assert_eq!(m.virt_to_phys(a.cpu, 3 * PAGE_SIZE).unwrap(), a.phys);
        assert_eq!(m.phys_to_virt(b.phys, PAGE_SIZE).unwrap(), b.cpu);
        assert_eq!(m.used_pages(), (3, 1));
        // SAFETY: allocated above, freed once, not used afterwards.
        unsafe {
            m.free_pages(a);
            m.free_pages(b);
        }
        assert_eq!(m.used_pages(), (0, 0));
        // First fit reuses the freed pages.
        let c = m.alloc_pages(1, Cacheability::Cached, u64::MAX).unwrap();
        assert_eq!(c.phys.as_u64(), PHYS);
    }

    #[test]
    fn pages_are_zeroed_and_runs_are_contiguous() {
        let ram = TestRam::new();
        let m = ram.memory();
        let a = m.alloc_pages(1, Cacheability::Cached, u64::MAX).unwrap();
        // SAFETY: the page is ours.
        unsafe { a.cpu.as_ptr().write_bytes(0xaa, PAGE_SIZE) };
        let b = m.alloc_pages(1, Cacheability::Cached, u64::MAX).unwrap();
        // SAFETY: `a` was allocated above and is freed once.
        unsafe { m.free_pages(a) };
        // A two-page run does not fit in the hole before `b`.
        let c = m.alloc_pages(2, Cacheability::Cached, u64::MAX).unwrap();
        assert_eq!(c.phys.as_u64(), b.phys.as_u64() + PAGE_SIZE as u64);
        let d = m.alloc_pages(1, Cacheability::Cached, u64::MAX).unwrap();
        assert_eq!(d.phys.as_u64(), PHYS, "the hole is reused");
        // SAFETY: `d` is a live allocation of one page.
        let first = unsafe { d.cpu.as_ptr().read() };
        assert_eq!(first, 0, "reused pages are zeroed");
    }

    #[test]
    fn a_cached_only_board_refuses_uncached_pages() {
        let ram = TestRam::new();
        let map = LinearMap {
            cpu: ram.ptr as usize,
            phys: PHYS,
            len: POOLS as u64,
        };
        // SAFETY: the allocation is ours and outlives the memory.
        let m = unsafe { BoardMemory::cached_only(map, PHYS, 4) };
        let e = m
            .alloc_pages(1, Cacheability::Uncached, u64::MAX)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("hardware-coherent"), "{e:?}");
        let a = m.alloc_pages(4, Cacheability::Cached, u64::MAX).unwrap();
        assert_eq!(a.phys.as_u64(), PHYS);
        assert_eq!(
            m.alloc_pages(1, Cacheability::Cached, u64::MAX)
                .unwrap_err()
                .kind(),
            ErrorKind::OutOfMemory,
            "the pool has the pages it was given, no more"
        );
        // SAFETY: allocated above, freed once.
        unsafe { m.free_pages(a) };
        assert_eq!(m.used_pages(), (0, 0));
    }

    #[test]
    fn errors_are_typed() {
        let ram = TestRam::new();
        let m = ram.memory();
        let kind = |r: dma_core::Result<Pages>| r.unwrap_err().kind();
        assert_eq!(
            kind(m.alloc_pages(0, Cacheability::Cached, u64::MAX)),
            ErrorKind::ZeroSize
        );
        assert_eq!(
            kind(m.alloc_pages(1, Cacheability::WriteCombine, u64::MAX)),
            ErrorKind::Unsupported
        );
        assert_eq!(
            kind(m.alloc_pages(1, Cacheability::Cached, PHYS)),
            ErrorKind::Unreachable
        );
        assert_eq!(
            kind(m.alloc_pages(UNCACHED_WORDS * 64 + 1, Cacheability::Uncached, u64::MAX)),
            ErrorKind::OutOfMemory
        );
        let outside = NonNull::new((ram.ptr as usize + POOLS) as *mut u8).unwrap();
        assert_eq!(
            m.virt_to_phys(outside, 1).unwrap_err().kind(),
            ErrorKind::NotContiguous
        );
        assert_eq!(
            m.virt_to_phys(outside, 0).unwrap_err().kind(),
            ErrorKind::ZeroSize
        );
        assert_eq!(
            m.phys_to_virt(PhysAddr::new(PHYS - 1), 1)
                .unwrap_err()
                .kind(),
            ErrorKind::NotContiguous
        );
    }
}
