//! The VFIO container: one IOMMU address space, its usable IOVA ranges,
//! and the map/unmap ioctls.
//!
//! Closing the container's file descriptor unmaps everything still mapped
//! in it and unpins the memory, so dropping a [`VfioContainer`] (with the
//! device it served) leaves nothing mapped, whatever failed before.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{Result, VfioError};
use crate::sys::{self, DmaMapFlags};

/// An inclusive range of IOVAs the IOMMU can translate for this container
/// (the kernel's reserved regions, such as the MSI doorbell window, are
/// holes between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA.
    pub end: u64,
}

impl IovaRange {
    /// Whether `iova..iova + len` lies entirely inside this range.
    pub fn contains(&self, iova: u64, len: u64) -> bool {
        len > 0
            && iova >= self.start
            && iova
                .checked_add(len - 1)
                .is_some_and(|last| last <= self.end)
    }
}

/// A VFIO container with the type-1 IOMMU set, as [`crate::VfioDevice`]
/// makes it.
#[derive(Debug)]
pub struct VfioContainer {
    fd: OwnedFd,
    ranges: Vec<IovaRange>,
    page_sizes: u64,
}

impl VfioContainer {
    /// Opens `/dev/vfio/vfio` and checks the API version and type-1 support.
    pub(crate) fn open() -> Result<OwnedFd> {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/vfio/vfio")
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => VfioError::VfioNotLoaded,
                _ => VfioError::io("open /dev/vfio/vfio", e),
            })?;
        let fd = OwnedFd::from(file);
        let version = sys::ioctl_val(fd.as_fd(), sys::GET_API_VERSION, 0)
            .map_err(|e| VfioError::io("VFIO_GET_API_VERSION", e))?;
        if version != sys::API_VERSION {
            return Err(VfioError::Unsupported(format!(
                "VFIO API version {version}, expected {}",
                sys::API_VERSION
            )));
        }
        Ok(fd)
    }

    /// Sets the type-1 IOMMU on a container that has a group attached, and
    /// reads its page sizes and usable IOVA ranges.
    pub(crate) fn set_type1(fd: OwnedFd) -> Result<Self> {
        let supports =
            |ext| sys::ioctl_val(fd.as_fd(), sys::CHECK_EXTENSION, ext).is_ok_and(|r| r > 0);
        let model = if supports(sys::TYPE1V2_IOMMU) {
            sys::TYPE1V2_IOMMU
        } else if supports(sys::TYPE1_IOMMU) {
            sys::TYPE1_IOMMU
        } else {
            return Err(VfioError::NoType1Iommu);
        };
        sys::ioctl_val(fd.as_fd(), sys::SET_IOMMU, model).map_err(|e| {
            match e.raw_os_error() {
                // vfio_iommu_type1 refuses an IOMMU without interrupt
                // remapping with EPERM (see its allow_unsafe_interrupts).
                Some(libc::EPERM) => VfioError::NoInterruptRemapping,
                _ => VfioError::io("VFIO_SET_IOMMU", e),
            }
        })?;
        let (page_sizes, ranges) = Self::iommu_info(fd.as_fd())?;
        Ok(Self {
            fd,
            ranges,
            page_sizes,
        })
    }

    /// `VFIO_IOMMU_GET_INFO`: page sizes and the IOVA-range capability.
    fn iommu_info(fd: BorrowedFd<'_>) -> Result<(u64, Vec<IovaRange>)> {
        const BUF: usize = 4096;
        // u64 elements keep every struct in the buffer aligned.
        let mut buf = vec![0u64; BUF / 8];
        let header = buf.as_mut_ptr().cast::<sys::IommuInfo>();
        // SAFETY: the buffer is 4096 zeroed, 8-aligned bytes, larger than
        // the header, and we own it.
        unsafe {
            header.write(sys::IommuInfo {
                argsz: BUF as u32,
                ..Default::default()
            })
        };
        // SAFETY: argsz says the kernel may write BUF bytes, all inside the
        // buffer; every byte pattern is a valid `IommuInfo`.
        unsafe { sys::ioctl_ptr(fd, sys::IOMMU_GET_INFO, header) }
            .map_err(|e| VfioError::io("VFIO_IOMMU_GET_INFO", e))?;
        // SAFETY: the buffer is still ours and the header initialised.
        let info = unsafe { header.read() };
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let page_sizes = if info.flags & sys::IOMMU_INFO_PGSIZES != 0 {
            info.iova_pgsizes
        } else {
            4096
        };
        let mut ranges = Vec::new();
        if info.flags & sys::IOMMU_INFO_CAPS != 0 {
            ranges = parse_iova_ranges(&bytes, info.cap_offset as usize);
        }
        if ranges.is_empty() {
            // Kernels before 5.4 report no ranges: everything is usable
            // (the reserved regions then fail at map time).
            ranges.push(IovaRange {
                start: 0,
                end: u64::MAX,
            });
        }
        Ok((page_sizes, ranges))
    }

    /// The usable IOVA ranges, ascending.
    pub fn iova_ranges(&self) -> &[IovaRange] {
        &self.ranges
    }

    /// The IOMMU's page sizes as a bitmap (bit n: 2^n bytes).
    pub fn page_sizes(&self) -> u64 {
        self.page_sizes
    }

    /// The smallest IOMMU page size.
    pub fn min_page_size(&self) -> u64 {
        1 << self.page_sizes.trailing_zeros().min(63)
    }

    /// Fails unless `iova..iova + len` is inside one usable range.
    pub fn check_iova(&self, iova: u64, len: u64) -> Result<()> {
        if self.ranges.iter().any(|r| r.contains(iova, len)) {
            Ok(())
        } else {
            Err(VfioError::OutsideIovaRanges { iova, len })
        }
    }

    /// Maps `size` bytes of this process's memory at `vaddr` for the device
    /// at `iova`, pinning the pages.
    ///
    /// # Errors
    ///
    /// [`VfioError::OutsideIovaRanges`] for an IOVA range the IOMMU cannot
    /// translate, [`VfioError::MemlockTooLow`] when pinning hits the limit,
    /// [`VfioError::Io`] for anything else (`EEXIST`: already mapped there;
    /// `EINVAL`: not page-aligned). Nothing is mapped on error.
    ///
    /// # Safety
    ///
    /// `vaddr..vaddr + size` is memory of this process that stays mapped
    /// (and is not reused for anything the device must not reach) until
    /// [`unmap_dma`](Self::unmap_dma) for this IOVA range returns.
    pub unsafe fn map_dma(
        &self,
        vaddr: u64,
        iova: u64,
        size: u64,
        flags: DmaMapFlags,
    ) -> Result<()> {
        self.check_iova(iova, size)?;
        let mut args = sys::DmaMapArgs {
            argsz: core::mem::size_of::<sys::DmaMapArgs>() as u32,
            flags: flags.bits(),
            vaddr,
            iova,
            size,
        };
        // SAFETY: the kernel reads `args` only (argsz bytes); the caller
        // promises the memory behind vaddr stays valid while mapped.
        unsafe { sys::ioctl_ptr(self.fd.as_fd(), sys::IOMMU_MAP_DMA, &mut args) }
            .map(drop)
            .map_err(|e| VfioError::map_dma(e, size, memlock_limit()))
    }

    /// Unmaps `iova..iova + size`, which [`map_dma`](Self::map_dma) mapped
    /// as one mapping, and returns how many bytes the kernel unmapped.
    pub fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        let mut args = sys::DmaUnmapArgs {
            argsz: core::mem::size_of::<sys::DmaUnmapArgs>() as u32,
            flags: 0,
            iova,
            size,
        };
        // SAFETY: the kernel reads and writes `args` only (argsz bytes).
        unsafe { sys::ioctl_ptr(self.fd.as_fd(), sys::IOMMU_UNMAP_DMA, &mut args) }
            .map_err(|e| VfioError::io("VFIO_IOMMU_UNMAP_DMA", e))?;
        Ok(args.size)
    }
}

/// The soft `RLIMIT_MEMLOCK`, `None` when unlimited.
fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `lim`, which we own.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    (r == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Walks the capability chain of a `VFIO_IOMMU_GET_INFO` answer for the
/// IOVA-range capability. The chain comes from the kernel but is still
/// bounds-checked: a bad offset ends the walk.
fn parse_iova_ranges(buf: &[u8], mut offset: usize) -> Vec<IovaRange> {
    let u16_at = |o: usize| buf.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        buf.get(o..o + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        buf.get(o..o + 8)
            .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let mut ranges = Vec::new();
    // A chain longer than the buffer has a loop.
    for _ in 0..buf.len() / core::mem::size_of::<sys::CapHeader>() {
        if offset == 0 {
            break;
        }
        let (Some(id), Some(next)) = (u16_at(offset), u32_at(offset + 4)) else {
            break;
        };
        if id == sys::IOMMU_CAP_IOVA_RANGE {
            let count = u32_at(offset + 8).unwrap_or(0) as usize;
            for i in 0..count {
                let at = offset + sys::IOVA_RANGE_CAP_HEADER + i * 16;
                match (u64_at(at), u64_at(at + 8)) {
                    (Some(start), Some(end)) if start <= end => {
                        ranges.push(IovaRange { start, end })
                    }
                    _ => break,
                }
            }
        }
        offset = next as usize;
    }
    ranges.sort_by_key(|r| r.start);
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(buf: &mut [u8], at: usize, id: u16, next: u32, ranges: &[(u64, u64)]) {
        buf[at..at + 2].copy_from_slice(&id.to_ne_bytes());
        buf[at + 2..at + 4].copy_from_slice(&1u16.to_ne_bytes());
        buf[at + 4..at + 8].copy_from_slice(&next.to_ne_bytes());
        buf[at + 8..at + 12].copy_from_slice(&(ranges.len() as u32).to_ne_bytes());
        for (i, (s, e)) in ranges.iter().enumerate() {
            let o = at + 16 + i * 16;
            buf[o..o + 8].copy_from_slice(&s.to_ne_bytes());
            buf[o + 8..o + 16].copy_from_slice(&e.to_ne_bytes());
        }
    }

    #[test]
    fn finds_the_iova_ranges_after_another_capability() {
        let mut buf = vec![0u8; 256];
        // DMA-available capability (id 3) first, then the ranges (the x86
        // guest's: a hole for the interrupt window at 0xfee00000).
        cap(&mut buf, 24, 3, 40, &[]);
        cap(
            &mut buf,
            40,
            1,
            0,
            &[(0xfef0_0000, 0x7f_ffff_ffff), (0, 0xfedf_ffff)],
        );
        let r = parse_iova_ranges(&buf, 24);
        assert_eq!(
            r,
            [
                IovaRange {
                    start: 0,
                    end: 0xfedf_ffff
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0x7f_ffff_ffff
                }
            ]
        );
    }

    #[test]
    fn a_looping_or_truncated_chain_ends_the_walk() {
        let mut buf = vec![0u8; 64];
        cap(&mut buf, 24, 3, 24, &[]); // points at itself
        assert!(parse_iova_ranges(&buf, 24).is_empty());
        let mut buf = vec![0u8; 48];
        cap(&mut buf, 24, 1, 0, &[]);
        buf[32..36].copy_from_slice(&4u32.to_ne_bytes()); // claims 4 ranges
        assert!(parse_iova_ranges(&buf, 24).is_empty());
        assert!(parse_iova_ranges(&buf, 4000).is_empty());
    }

    #[test]
    fn range_containment_is_inclusive_and_overflow_safe() {
        let r = IovaRange {
            start: 0x1000,
            end: 0x1fff,
        };
        assert!(r.contains(0x1000, 0x1000));
        assert!(!r.contains(0x1000, 0x1001));
        assert!(!r.contains(0xfff, 2));
        assert!(!r.contains(0x1000, 0));
        let all = IovaRange {
            start: 0,
            end: u64::MAX,
        };
        assert!(!all.contains(u64::MAX, 2));
        assert!(all.contains(u64::MAX, 1));
    }

    #[test]
    fn outside_ranges_is_a_typed_error() {
        let c = VfioContainer {
            // Any fd will do: check_iova never reaches the kernel.
            fd: OwnedFd::from(File::open("/dev/null").unwrap()),
            ranges: vec![
                IovaRange {
                    start: 0,
                    end: 0x7ff_ffff,
                },
                IovaRange {
                    start: 0x810_0000,
                    end: u64::MAX,
                },
            ],
            page_sizes: 0x4020_1000,
        };
        assert_eq!(c.min_page_size(), 4096);
        let e = c.check_iova(0x800_0000, 0x1000).unwrap_err();
        assert!(matches!(
            e,
            VfioError::OutsideIovaRanges {
                iova: 0x800_0000,
                len: 0x1000
            }
        ));
        assert!(e.to_string().contains("usable IOVA ranges"));
        // SAFETY: the check refuses before any memory is named to the kernel.
        let e = unsafe { c.map_dma(0x1000, 0x7ff_f000, 0x2000, DmaMapFlags::READ) }.unwrap_err();
        assert!(matches!(e, VfioError::OutsideIovaRanges { .. }), "{e}");
        c.check_iova(0x100000, 0x200000).unwrap();
    }
}
