//! The VFIO user API (`include/uapi/linux/vfio.h`): ioctl numbers and the
//! `#[repr(C)]` argument structs this crate uses, with their sizes pinned.
//!
//! Every VFIO ioctl is `_IO(';', 100 + n)`: the argument's size travels in
//! its `argsz` field, not in the ioctl number.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use bitflags::bitflags;
use static_assertions::const_assert_eq;

/// `_IO(VFIO_TYPE, VFIO_BASE + n)` with `VFIO_TYPE = ';'`, `VFIO_BASE = 100`.
const fn vfio_io(n: u64) -> u64 {
    ((b';' as u64) << 8) | (100 + n)
}

/// `VFIO_GET_API_VERSION`: returns [`API_VERSION`].
pub const GET_API_VERSION: u64 = vfio_io(0);
/// `VFIO_CHECK_EXTENSION`: returns > 0 when the extension is supported.
pub const CHECK_EXTENSION: u64 = vfio_io(1);
/// `VFIO_SET_IOMMU`: selects the container's IOMMU model.
pub const SET_IOMMU: u64 = vfio_io(2);
/// `VFIO_GROUP_GET_STATUS`.
pub const GROUP_GET_STATUS: u64 = vfio_io(3);
/// `VFIO_GROUP_SET_CONTAINER`: the argument points to the container fd.
pub const GROUP_SET_CONTAINER: u64 = vfio_io(4);
/// `VFIO_GROUP_UNSET_CONTAINER`.
pub const GROUP_UNSET_CONTAINER: u64 = vfio_io(5);
/// `VFIO_GROUP_GET_DEVICE_FD`: the argument is the device name string.
pub const GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
/// `VFIO_DEVICE_GET_INFO`.
pub const DEVICE_GET_INFO: u64 = vfio_io(7);
/// `VFIO_DEVICE_GET_REGION_INFO`.
pub const DEVICE_GET_REGION_INFO: u64 = vfio_io(8);
/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub const DEVICE_GET_IRQ_INFO: u64 = vfio_io(9);
/// `VFIO_DEVICE_SET_IRQS`.
pub const DEVICE_SET_IRQS: u64 = vfio_io(10);
/// `VFIO_DEVICE_RESET`.
pub const DEVICE_RESET: u64 = vfio_io(11);
/// `VFIO_IOMMU_GET_INFO` (type 1).
pub const IOMMU_GET_INFO: u64 = vfio_io(12);
/// `VFIO_IOMMU_MAP_DMA` (type 1).
pub const IOMMU_MAP_DMA: u64 = vfio_io(13);
/// `VFIO_IOMMU_UNMAP_DMA` (type 1).
pub const IOMMU_UNMAP_DMA: u64 = vfio_io(14);

/// `VFIO_API_VERSION`.
pub const API_VERSION: i32 = 0;
/// `VFIO_TYPE1_IOMMU`.
pub const TYPE1_IOMMU: u64 = 1;
/// `VFIO_TYPE1v2_IOMMU`: type 1 with whole-mapping unmap semantics.
pub const TYPE1V2_IOMMU: u64 = 3;

/// PCI region indexes (`VFIO_PCI_*_REGION_INDEX`).
pub const PCI_BAR0_REGION_INDEX: u32 = 0;
/// The configuration space region.
pub const PCI_CONFIG_REGION_INDEX: u32 = 7;
/// PCI interrupt indexes: MSI-X (`VFIO_PCI_MSIX_IRQ_INDEX`).
pub const PCI_MSIX_IRQ_INDEX: u32 = 2;

/// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`.
pub const IOMMU_CAP_IOVA_RANGE: u16 = 1;

bitflags! {
    /// `vfio_group_status.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct GroupFlags: u32 {
        /// Every device in the group is bound to a VFIO driver (or none).
        const VIABLE = 1 << 0;
        /// The group is attached to a container.
        const CONTAINER_SET = 1 << 1;
    }

    /// `vfio_region_info.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct RegionFlags: u32 {
        /// The region can be read with `pread`.
        const READ = 1 << 0;
        /// The region can be written with `pwrite`.
        const WRITE = 1 << 1;
        /// The region can be mmapped.
        const MMAP = 1 << 2;
        /// The info carries capabilities.
        const CAPS = 1 << 3;
    }

    /// `vfio_irq_set.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IrqSetFlags: u32 {
        /// No data: with `ACTION_TRIGGER` and count 0, disables the index.
        const DATA_NONE = 1 << 0;
        /// The data is an array of eventfds (`-1` unassigns one).
        const DATA_EVENTFD = 1 << 2;
        /// Signal the eventfd when the interrupt fires.
        const ACTION_TRIGGER = 1 << 5;
    }

    /// `vfio_iommu_type1_dma_map.flags`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DmaMapFlags: u32 {
        /// The device may read the memory.
        const READ = 1 << 0;
        /// The device may write the memory.
        const WRITE = 1 << 1;
    }
}

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GroupStatus {
    /// Size of this struct.
    pub argsz: u32,
    /// [`GroupFlags`].
    pub flags: u32,
}

/// `struct vfio_device_info` (the fields before `cap_offset`, which
/// kernels before 4.x lack; `argsz` tells the kernel how much we read).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceInfo {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of interrupt indexes.
    pub num_irqs: u32,
}

/// `struct vfio_region_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RegionInfo {
    /// Size of this struct.
    pub argsz: u32,
    /// [`RegionFlags`].
    pub flags: u32,
    /// Which region.
    pub index: u32,
    /// Offset of the first capability, when `flags` has `CAPS`.
    pub cap_offset: u32,
    /// Region size in bytes.
    pub size: u64,
    /// Offset of the region in the device fd (for pread, pwrite and mmap).
    pub offset: u64,
}

/// `struct vfio_irq_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IrqInfo {
    /// Size of this struct.
    pub argsz: u32,
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// Which interrupt index.
    pub index: u32,
    /// How many vectors it has.
    pub count: u32,
}

/// `struct vfio_irq_set` followed by `N` eventfds, one per vector from
/// `start` (vfio-pci on kernels before 6.5 sizes MSI-X at its first
/// enable, so vectors used together are routed in one call).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IrqSet<const N: usize> {
    /// Size of the header plus the data actually sent.
    pub argsz: u32,
    /// [`IrqSetFlags`].
    pub flags: u32,
    /// Interrupt index.
    pub index: u32,
    /// First vector.
    pub start: u32,
    /// Number of vectors.
    pub count: u32,
    /// The eventfds, when `DATA_EVENTFD` (`-1`: unroute that vector).
    pub fds: [i32; N],
}

/// Size of `struct vfio_irq_set` without its data.
pub const IRQ_SET_HEADER: u32 = 20;

/// `struct vfio_iommu_type1_info` (header; capabilities follow in the
/// caller's buffer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IommuInfo {
    /// Size of the buffer the kernel may fill.
    pub argsz: u32,
    /// `VFIO_IOMMU_INFO_PGSIZES` (1) | `VFIO_IOMMU_INFO_CAPS` (2).
    pub flags: u32,
    /// Bitmap of supported IOMMU page sizes.
    pub iova_pgsizes: u64,
    /// Offset of the first capability in the buffer.
    pub cap_offset: u32,
    /// Padding.
    pub pad: u32,
}

/// `VFIO_IOMMU_INFO_PGSIZES`.
pub const IOMMU_INFO_PGSIZES: u32 = 1 << 0;
/// `VFIO_IOMMU_INFO_CAPS`.
pub const IOMMU_INFO_CAPS: u32 = 1 << 1;

/// `struct vfio_info_cap_header`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CapHeader {
    /// Capability id.
    pub id: u16,
    /// Its version.
    pub version: u16,
    /// Offset of the next capability from the start of the buffer, 0 at the end.
    pub next: u32,
}

/// `struct vfio_iova_range`: an inclusive range of usable IOVAs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IovaRangeRaw {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA (inclusive).
    pub end: u64,
}

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaMapArgs {
    /// Size of this struct.
    pub argsz: u32,
    /// [`DmaMapFlags`].
    pub flags: u32,
    /// Process virtual address of the memory.
    pub vaddr: u64,
    /// Where the device sees it.
    pub iova: u64,
    /// Length in bytes (a multiple of the IOMMU page size).
    pub size: u64,
}

/// `struct vfio_iommu_type1_dma_unmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaUnmapArgs {
    /// Size of this struct.
    pub argsz: u32,
    /// Flags (none used).
    pub flags: u32,
    /// First IOVA.
    pub iova: u64,
    /// Length in bytes; the kernel writes back how much it unmapped.
    pub size: u64,
}

const_assert_eq!(core::mem::size_of::<GroupStatus>(), 8);
const_assert_eq!(core::mem::size_of::<DeviceInfo>(), 16);
const_assert_eq!(core::mem::size_of::<RegionInfo>(), 32);
const_assert_eq!(core::mem::offset_of!(RegionInfo, size), 16);
const_assert_eq!(core::mem::offset_of!(RegionInfo, offset), 24);
const_assert_eq!(core::mem::size_of::<IrqInfo>(), 16);
const_assert_eq!(
    core::mem::offset_of!(IrqSet<1>, fds),
    IRQ_SET_HEADER as usize
);
const_assert_eq!(
    core::mem::size_of::<IrqSet<2>>(),
    IRQ_SET_HEADER as usize + 8
);
const_assert_eq!(core::mem::size_of::<IommuInfo>(), 24);
const_assert_eq!(core::mem::offset_of!(IommuInfo, cap_offset), 16);
const_assert_eq!(core::mem::size_of::<CapHeader>(), 8);
const_assert_eq!(core::mem::size_of::<IovaRangeRaw>(), 16);
const_assert_eq!(core::mem::size_of::<DmaMapArgs>(), 32);
const_assert_eq!(core::mem::size_of::<DmaUnmapArgs>(), 24);

/// Size of `struct vfio_iommu_type1_info_cap_iova_range` before its ranges.
pub const IOVA_RANGE_CAP_HEADER: usize = 16;

/// Issues an ioctl whose argument is a plain integer.
pub fn ioctl_val(fd: BorrowedFd<'_>, request: u64, arg: u64) -> io::Result<i32> {
    // SAFETY: the request takes an integer argument (or none), so the
    // kernel dereferences no pointer of ours.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg as libc::c_ulong) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Issues an ioctl whose argument points to `arg`.
///
/// # Safety
///
/// `request` reads and writes at most `size_of::<T>()` bytes through its
/// argument (its `argsz` says no more), and `T` is valid for any bytes the
/// kernel writes there.
pub unsafe fn ioctl_ptr<T>(fd: BorrowedFd<'_>, request: u64, arg: *mut T) -> io::Result<i32> {
    // SAFETY: the caller promises the kernel stays within `*arg`, which is
    // valid for reads and writes for the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_header() {
        // From linux/vfio.h, as the C preprocessor expands them.
        assert_eq!(GET_API_VERSION, 0x3b64);
        assert_eq!(GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(IOMMU_UNMAP_DMA, 0x3b72);
    }
}
