//! The environment's physical memory: page allocation and address
//! translation.
//!
//! Every backend gets its pages and its virtual-to-physical translation
//! through [`PhysMemory`], so one backend serves bare metal (an identity or
//! fixed-offset map), a hosted test process ([`HostMemory`]) and the mock
//! hardware alike.

use core::ptr::NonNull;

#[cfg(feature = "alloc")]
use crate::{Error, ErrorKind};
use crate::{PhysAddr, Result};

/// How the CPU's mapping of a region treats the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cacheability {
    /// Normal write-back cacheable memory.
    Cached,
    /// Non-cacheable normal memory: every CPU access reaches RAM, so a
    /// non-coherent device and the CPU see the same bytes.
    Uncached,
    /// Non-cacheable, write-combining: stores may be buffered and merged.
    WriteCombine,
}

/// A physically contiguous run of whole pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pages {
    /// The CPU virtual address of the first page.
    pub cpu: NonNull<u8>,
    /// The physical address of the first page.
    pub phys: PhysAddr,
    /// How many pages.
    pub count: usize,
    /// How the CPU mapping treats the cache.
    pub cacheability: Cacheability,
}

// SAFETY: `Pages` is a description (addresses and a count); it grants no
// access by itself. Whoever dereferences `cpu` argues their own safety.
unsafe impl Send for Pages {}
// SAFETY: `&Pages` exposes only the addresses and the count, which are
// `Copy` values; no method dereferences `cpu`, so sharing it shares no memory.
unsafe impl Sync for Pages {}

/// The environment's page allocator and address translation.
///
/// # Safety
///
/// Implementations promise that
/// - [`alloc_pages`](Self::alloc_pages) returns memory that nothing else
///   uses until it is passed to [`free_pages`](Self::free_pages), that is
///   readable and writable by the CPU at `cpu`, zero-filled, aligned to
///   [`page_size`](Self::page_size) both virtually and physically, physically
///   contiguous, mapped with the cacheability asked for, and that lies
///   entirely at or below `max_phys`;
/// - [`virt_to_phys`](Self::virt_to_phys) and
///   [`phys_to_virt`](Self::phys_to_virt) are exact inverses over the whole
///   range they accept: a device access to the physical address touches the
///   same bytes as a CPU access to the virtual one.
///
/// Callers of the safe methods need promise nothing.
pub unsafe trait PhysMemory {
    /// The page size, a power of two (usually 4096).
    fn page_size(&self) -> usize;

    /// Allocates `count` zeroed, physically contiguous pages, all at or
    /// below physical address `max_phys`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ZeroSize`] for `count == 0`, [`ErrorKind::OutOfMemory`]
    /// when none is left, [`ErrorKind::Unreachable`] when no memory below
    /// `max_phys` can be had, [`ErrorKind::Unsupported`] when the
    /// cacheability cannot be provided.
    fn alloc_pages(&self, count: usize, cacheability: Cacheability, max_phys: u64)
        -> Result<Pages>;

    /// Returns pages to the environment.
    ///
    /// # Safety
    ///
    /// `pages` came from `alloc_pages` on this environment, is freed once,
    /// and nothing (CPU or device) accesses it afterwards.
    unsafe fn free_pages(&self, pages: Pages);

    /// Translates `len` bytes at `cpu` to the physical address of the first
    /// byte.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotContiguous`] when the range is not mapped or not
    /// physically contiguous; [`ErrorKind::ZeroSize`] for `len == 0`.
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr>;

    /// Translates `len` bytes at physical `phys` to a CPU pointer (the
    /// linear map).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotContiguous`] when the range has no linear mapping.
    fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> Result<NonNull<u8>>;
}

macro_rules! forward_phys_memory {
    ($($ptr:ty),*) => { $(
        // SAFETY: forwards every call unchanged to the implementation behind
        // the pointer, which upholds the contract.
        unsafe impl<M: PhysMemory + ?Sized> PhysMemory for $ptr {
            #[inline]
            fn page_size(&self) -> usize {
                (**self).page_size()
            }
            #[inline]
            fn alloc_pages(&self, count: usize, cacheability: Cacheability, max_phys: u64) -> Result<Pages> {
                (**self).alloc_pages(count, cacheability, max_phys)
            }
            #[inline]
            unsafe fn free_pages(&self, pages: Pages) {
                // SAFETY: the caller's promise is passed on unchanged.
                unsafe { (**self).free_pages(pages) }
            }
            #[inline]
            fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
                (**self).virt_to_phys(cpu, len)
            }
            #[inline]
            fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> Result<NonNull<u8>> {
                (**self).phys_to_virt(phys, len)
            }
        }
    )* };
}

forward_phys_memory!(&M);
#[cfg(feature = "alloc")]
forward_phys_memory!(alloc::sync::Arc<M>, alloc::boxed::Box<M>);

/// The memory of a hosted process, identity-translated: "physical" addresses
/// are the process's virtual addresses.
///
/// It is what a user-space test or a benchmark on a coherent machine runs
/// on. It allocates from the global allocator and can provide only cached
/// memory; asking for anything else is [`ErrorKind::Unsupported`], because
/// a hosted process cannot change its own page attributes.
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug, Default)]
pub struct HostMemory;

#[cfg(feature = "alloc")]
impl HostMemory {
    /// The page size it hands out.
    pub const PAGE_SIZE: usize = 4096;

    fn layout(count: usize) -> Result<core::alloc::Layout> {
        count
            .checked_mul(Self::PAGE_SIZE)
            .and_then(|size| core::alloc::Layout::from_size_align(size, Self::PAGE_SIZE).ok())
            .ok_or(Error::new(ErrorKind::OutOfMemory, "page count too large").len(count as u64))
    }
}

#[cfg(feature = "alloc")]
// SAFETY: pages come zeroed from the global allocator with page alignment and
// are exclusively ours until freed; identity translation is trivially exact
// and "physically contiguous" holds because physical == virtual here.
unsafe impl PhysMemory for HostMemory {
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
        if cacheability != Cacheability::Cached {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a hosted process has only cached memory",
            ));
        }
        let layout = Self::layout(count)?;
        // SAFETY: the layout has non-zero size (count >= 1).
        let raw = unsafe { alloc::alloc::alloc_zeroed(layout) };
        let cpu = NonNull::new(raw).ok_or(Error::new(
            ErrorKind::OutOfMemory,
            "global allocator failed",
        ))?;
        let phys = PhysAddr::new(cpu.as_ptr() as usize as u64);
        if phys.as_u64() + (layout.size() as u64 - 1) > max_phys {
            // SAFETY: just allocated with this layout and never shared.
            unsafe { alloc::alloc::dealloc(raw, layout) };
            return Err(Error::new(
                ErrorKind::Unreachable,
                "host memory lies above the requested limit",
            )
            .at(phys.as_u64()));
        }
        Ok(Pages {
            cpu,
            phys,
            count,
            cacheability,
        })
    }

    unsafe fn free_pages(&self, pages: Pages) {
        // A count alloc_pages could not have returned breaks the caller's
        // promise; leaking is the one safe answer then.
        let Ok(layout) = Self::layout(pages.count) else {
            return;
        };
        // SAFETY: the caller promises these pages came from alloc_pages, which
        // allocated them with exactly this layout, and are freed once.
        unsafe { alloc::alloc::dealloc(pages.cpu.as_ptr(), layout) };
    }

    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length translation"));
        }
        Ok(PhysAddr::new(cpu.as_ptr() as usize as u64))
    }

    fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> Result<NonNull<u8>> {
        let addr = usize::try_from(phys.as_u64()).map_err(|_| {
            Error::new(
                ErrorKind::NotContiguous,
                "physical address beyond the host's pointer width",
            )
        })?;
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length translation"));
        }
        NonNull::new(addr as *mut u8).ok_or(Error::new(
            ErrorKind::NotContiguous,
            "physical address 0 has no mapping",
        ))
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    #[test]
    fn host_memory_round_trips() {
        let m = HostMemory;
        let p = m.alloc_pages(2, Cacheability::Cached, u64::MAX).unwrap();
        assert!(p.phys.is_aligned(4096));
        assert_eq!(m.virt_to_phys(p.cpu, 8192).unwrap(), p.phys);
        assert_eq!(m.phys_to_virt(p.phys, 8192).unwrap(), p.cpu);
        // SAFETY: p came from alloc_pages above and is not used again.
        unsafe { m.free_pages(p) };
    }

    #[test]
    fn host_memory_errors() {
        let m = HostMemory;
        let k = |r: Result<Pages>| r.unwrap_err().kind();
        assert_eq!(
            k(m.alloc_pages(0, Cacheability::Cached, u64::MAX)),
            ErrorKind::ZeroSize
        );
        assert_eq!(
            k(m.alloc_pages(1, Cacheability::Uncached, u64::MAX)),
            ErrorKind::Unsupported
        );
        assert_eq!(
            k(m.alloc_pages(1, Cacheability::Cached, 0xfff)),
            ErrorKind::Unreachable
        );
        assert_eq!(
            k(m.alloc_pages(usize::MAX, Cacheability::Cached, u64::MAX)),
            ErrorKind::OutOfMemory
        );
        assert_eq!(
            m.virt_to_phys(NonNull::dangling(), 0).unwrap_err().kind(),
            ErrorKind::ZeroSize
        );
        assert_eq!(
            m.phys_to_virt(PhysAddr::ZERO, 1).unwrap_err().kind(),
            ErrorKind::NotContiguous
        );
    }
}
