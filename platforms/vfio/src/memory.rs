//! Memory for coherent allocations: anonymous mappings, or 2 MiB hugetlbfs
//! pages when the request is that large and the system has some reserved.
//!
//! The map ioctl pins whatever it maps, so the pages never move while the
//! device may reach them.

use std::io;
use std::ptr::NonNull;

/// The huge page size tried for large allocations.
pub const HUGE_PAGE: usize = 2 << 20;
/// The base page size (VFIO's smallest IOMMU page on x86 and arm64 4K
/// kernels).
pub const PAGE: usize = 4096;

/// `MAP_HUGE_2MB`: log2(2 MiB) in the mmap flags' huge-size field.
const MAP_HUGE_2MB: libc::c_int = 21 << libc::MAP_HUGE_SHIFT;

/// Where an allocation's pages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSource {
    /// Anonymous 4 KiB pages.
    Anonymous,
    /// 2 MiB pages from the hugetlbfs pool (`/proc/sys/vm/nr_hugepages`).
    Huge2M,
}

/// An anonymous mapping owned by this process.
#[derive(Debug)]
pub(crate) struct Anon {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
    pub(crate) source: PageSource,
}

impl Anon {
    /// Maps at least `size` zeroed bytes: 2 MiB pages when `size` is at
    /// least one and the pool has them, else 4 KiB pages.
    pub(crate) fn new(size: usize) -> io::Result<Self> {
        if size >= HUGE_PAGE {
            let len = size.div_ceil(HUGE_PAGE) * HUGE_PAGE;
            if let Ok(a) = Self::mmap(len, libc::MAP_HUGETLB | MAP_HUGE_2MB, PageSource::Huge2M) {
                return Ok(a);
            }
        }
        Self::mmap(size.div_ceil(PAGE) * PAGE, 0, PageSource::Anonymous)
    }

    fn mmap(len: usize, extra: libc::c_int, source: PageSource) -> io::Result<Self> {
        // SAFETY: a new private anonymous mapping; it aliases nothing.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len, source })
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: our own mapping of exactly this length; whoever dropped
        // us has ended the device's access (unmapped it from the IOMMU).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
