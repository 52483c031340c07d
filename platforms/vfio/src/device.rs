//! A PCI device opened through its VFIO group: configuration space, BARs
//! and MSI-X.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use crate::container::VfioContainer;
use crate::error::{Result, VfioError};
use crate::pci::{self, PciAddress, SysfsDevice};
use crate::sys::{self, GroupFlags, IrqSetFlags, RegionFlags};

/// PCI command register offset in configuration space.
const PCI_COMMAND: u64 = 0x04;
/// Command register: respond to memory space accesses.
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: the device may master the bus (issue DMA).
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// A PCI device bound to vfio-pci, opened with its own container and the
/// type-1 IOMMU.
///
/// Dropping it disables its interrupts and bus mastering, then closes the
/// device, the group (detaching it from the container) and, once the last
/// [`Arc`] of the container goes, the container, which unmaps every DMA
/// mapping still in it.
#[derive(Debug)]
pub struct VfioDevice {
    // Field order is drop order: device, then group, then container.
    device: File,
    group: OwnedFd,
    container: Arc<VfioContainer>,
    address: PciAddress,
    info: sys::DeviceInfo,
}

impl VfioDevice {
    /// Opens the device at `address` (`0000:01:00.0`): checks it is bound
    /// to vfio-pci, opens its group, checks the group is viable, attaches
    /// it to a new container with the type-1 IOMMU, and gets the device.
    ///
    /// # Errors
    ///
    /// Each step's failure as its [`VfioError`] variant, with the fix in
    /// its message. Everything opened before the failure is closed again.
    pub fn open(address: &str) -> Result<Self> {
        let address: PciAddress = address.parse()?;
        let sysfs = SysfsDevice::find(Path::new("/sys/bus/pci/devices"), address)?;
        let group_no = sysfs.vfio_group()?;
        let container = VfioContainer::open()?;
        let group: OwnedFd = OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/vfio/{group_no}"))
            .map_err(|e| VfioError::group_open(group_no, e))?
            .into();
        let mut status = sys::GroupStatus {
            argsz: core::mem::size_of::<sys::GroupStatus>() as u32,
            flags: 0,
        };
        // SAFETY: the kernel reads and writes `status` only (argsz bytes).
        unsafe { sys::ioctl_ptr(group.as_fd(), sys::GROUP_GET_STATUS, &mut status) }
            .map_err(|e| VfioError::io("VFIO_GROUP_GET_STATUS", e))?;
        if !GroupFlags::from_bits_truncate(status.flags).contains(GroupFlags::VIABLE) {
            return Err(VfioError::GroupNotViable {
                group: group_no,
                members: pci::group_members(group_no),
            });
        }
        let mut container_fd = container.as_raw_fd();
        // SAFETY: the kernel reads one int (the container fd) through the
        // pointer.
        unsafe { sys::ioctl_ptr(group.as_fd(), sys::GROUP_SET_CONTAINER, &mut container_fd) }
            .map_err(|e| VfioError::io("VFIO_GROUP_SET_CONTAINER", e))?;
        let container = Arc::new(VfioContainer::set_type1(container)?);
        let name = CString::new(address.to_string())
            .map_err(|_| VfioError::BadPciAddress(address.to_string()))?;
        // SAFETY: the kernel reads the NUL-terminated name only.
        let fd = unsafe {
            sys::ioctl_ptr(
                group.as_fd(),
                sys::GROUP_GET_DEVICE_FD,
                name.as_ptr().cast_mut(),
            )
        }
        .map_err(|e| VfioError::io("VFIO_GROUP_GET_DEVICE_FD", e))?;
        // SAFETY: on success the ioctl returned a new fd that nothing else owns.
        let device = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut info = sys::DeviceInfo {
            argsz: core::mem::size_of::<sys::DeviceInfo>() as u32,
            ..Default::default()
        };
        // SAFETY: the kernel writes at most argsz bytes into `info`.
        unsafe { sys::ioctl_ptr(device.as_fd(), sys::DEVICE_GET_INFO, &mut info) }
            .map_err(|e| VfioError::io("VFIO_DEVICE_GET_INFO", e))?;
        Ok(Self {
            device,
            group,
            container,
            address,
            info,
        })
    }

    /// The device's PCI address.
    pub fn address(&self) -> PciAddress {
        self.address
    }

    /// The container (the device's IOMMU address space).
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    /// Number of regions and interrupt indexes the device has.
    pub fn counts(&self) -> (u32, u32) {
        (self.info.num_regions, self.info.num_irqs)
    }

    fn region(&self, index: u32) -> Result<sys::RegionInfo> {
        if index >= self.info.num_regions {
            return Err(VfioError::Unsupported(format!(
                "region {index}: the device has {} regions",
                self.info.num_regions
            )));
        }
        let mut r = sys::RegionInfo {
            argsz: core::mem::size_of::<sys::RegionInfo>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: the kernel writes at most argsz bytes into `r`.
        unsafe { sys::ioctl_ptr(self.device.as_fd(), sys::DEVICE_GET_REGION_INFO, &mut r) }
            .map_err(|e| VfioError::io("VFIO_DEVICE_GET_REGION_INFO", e))?;
        Ok(r)
    }

    /// Reads a 16-bit configuration space register.
    pub fn config_read_u16(&self, offset: u64) -> Result<u16> {
        let r = self.region(sys::PCI_CONFIG_REGION_INDEX)?;
        let mut b = [0u8; 2];
        self.device
            .read_exact_at(&mut b, r.offset + offset)
            .map_err(|e| VfioError::io("read PCI configuration space", e))?;
        Ok(u16::from_le_bytes(b))
    }

    /// Writes a 16-bit configuration space register.
    pub fn config_write_u16(&self, offset: u64, value: u16) -> Result<()> {
        let r = self.region(sys::PCI_CONFIG_REGION_INDEX)?;
        self.device
            .write_all_at(&value.to_le_bytes(), r.offset + offset)
            .map_err(|e| VfioError::io("write PCI configuration space", e))
    }

    /// Lets the device issue DMA: sets Memory Space and Bus Master in the
    /// command register (vfio-pci leaves Bus Master off; without it a
    /// controller may report ready and then never complete a command).
    pub fn enable_bus_master(&self) -> Result<()> {
        let cmd = self.config_read_u16(PCI_COMMAND)?;
        self.config_write_u16(PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)
    }

    /// Stops the device from issuing DMA.
    pub fn disable_bus_master(&self) -> Result<()> {
        let cmd = self.config_read_u16(PCI_COMMAND)?;
        self.config_write_u16(PCI_COMMAND, cmd & !PCI_COMMAND_MASTER)
    }

    /// Maps BAR `index` (0..=5) into this process.
    ///
    /// # Errors
    ///
    /// [`VfioError::Unsupported`] for a BAR that is absent or cannot be
    /// mmapped; the mmap's own failure.
    pub fn map_bar(&self, index: u32) -> Result<Bar> {
        if index > 5 {
            return Err(VfioError::Unsupported(format!(
                "BAR {index}: PCI has BARs 0..=5"
            )));
        }
        let r = self.region(sys::PCI_BAR0_REGION_INDEX + index)?;
        let flags = RegionFlags::from_bits_truncate(r.flags);
        if r.size == 0
            || !flags.contains(RegionFlags::MMAP | RegionFlags::READ | RegionFlags::WRITE)
        {
            return Err(VfioError::Unsupported(format!(
                "BAR {index} is absent or cannot be mmapped (size {:#x}, flags {flags:?})",
                r.size
            )));
        }
        let len = usize::try_from(r.size).map_err(|_| {
            VfioError::Unsupported(format!("BAR {index} larger than the address space"))
        })?;
        // SAFETY: a new shared mapping of the device fd at the region's
        // offset; it aliases no Rust object.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.device.as_raw_fd(),
                r.offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(VfioError::io("mmap the BAR", io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast())
            .ok_or_else(|| VfioError::Unsupported("mmap placed the BAR at address 0".into()))?;
        Ok(Bar { ptr, len })
    }

    /// Number of MSI-X vectors the device offers.
    pub fn msix_vectors(&self) -> Result<u32> {
        let mut info = sys::IrqInfo {
            argsz: core::mem::size_of::<sys::IrqInfo>() as u32,
            index: sys::PCI_MSIX_IRQ_INDEX,
            ..Default::default()
        };
        // SAFETY: the kernel writes at most argsz bytes into `info`.
        unsafe { sys::ioctl_ptr(self.device.as_fd(), sys::DEVICE_GET_IRQ_INFO, &mut info) }
            .map_err(|e| VfioError::io("VFIO_DEVICE_GET_IRQ_INFO", e))?;
        Ok(info.count)
    }

    /// Routes MSI-X vector `vector` to a new eventfd.
    ///
    /// # Errors
    ///
    /// [`VfioError::Unsupported`] when the device has no such vector.
    pub fn enable_msix(&self, vector: u32) -> Result<Interrupt> {
        let [irq] = self.enable_msix_vectors::<1>(vector)?;
        Ok(irq)
    }

    /// Routes the `N` MSI-X vectors from `first` each to a new eventfd,
    /// in one call: vfio-pci (before Linux 6.5) sizes MSI-X when it is
    /// first enabled, so vectors a driver uses together must be routed
    /// together (`enable_msix(0)` then `enable_msix(1)` fails with
    /// `EINVAL`).
    ///
    /// # Errors
    ///
    /// [`VfioError::Unsupported`] when `N` is 0 or the device has fewer
    /// than `first + N` vectors; the eventfd and ioctl failures.
    pub fn enable_msix_vectors<const N: usize>(&self, first: u32) -> Result<[Interrupt; N]> {
        let count = self.msix_vectors()?;
        let end = u32::try_from(N).ok().and_then(|n| first.checked_add(n));
        let Some(end) = end.filter(|&end| N > 0 && end <= count) else {
            return Err(VfioError::Unsupported(format!(
                "MSI-X vectors {first}..{first}+{N}: the device has {count}"
            )));
        };
        let irqs = (first..end)
            .map(|vector| {
                // SAFETY: eventfd takes no pointers.
                let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
                if raw < 0 {
                    return Err(VfioError::io("eventfd", io::Error::last_os_error()));
                }
                // SAFETY: eventfd returned a new fd that nothing else owns.
                let event = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
                Ok(Interrupt { event, vector })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut set = sys::IrqSet::<N> {
            argsz: core::mem::size_of::<sys::IrqSet<N>>() as u32,
            flags: (IrqSetFlags::DATA_EVENTFD | IrqSetFlags::ACTION_TRIGGER).bits(),
            index: sys::PCI_MSIX_IRQ_INDEX,
            start: first,
            count: N as u32,
            fds: core::array::from_fn(|i| irqs[i].event.as_raw_fd()),
        };
        // SAFETY: the kernel reads argsz bytes: the header and N fds.
        unsafe { sys::ioctl_ptr(self.device.as_fd(), sys::DEVICE_SET_IRQS, &mut set) }
            .map_err(|e| VfioError::io("VFIO_DEVICE_SET_IRQS", e))?;
        // `irqs` has N entries (one per vector of `first..end`).
        irqs.try_into()
            .map_err(|_| VfioError::Unsupported("MSI-X vector count changed".into()))
    }

    /// Turns every MSI-X vector off.
    pub fn disable_msix(&self) -> Result<()> {
        let mut set = sys::IrqSet::<1> {
            argsz: sys::IRQ_SET_HEADER,
            flags: (IrqSetFlags::DATA_NONE | IrqSetFlags::ACTION_TRIGGER).bits(),
            index: sys::PCI_MSIX_IRQ_INDEX,
            start: 0,
            count: 0,
            fds: [-1],
        };
        // SAFETY: the kernel reads the 20-byte header only (argsz).
        unsafe { sys::ioctl_ptr(self.device.as_fd(), sys::DEVICE_SET_IRQS, &mut set) }
            .map(drop)
            .map_err(|e| VfioError::io("VFIO_DEVICE_SET_IRQS (disable)", e))
    }

    /// Resets the function (`VFIO_DEVICE_RESET`).
    pub fn reset(&self) -> Result<()> {
        sys::ioctl_val(self.device.as_fd(), sys::DEVICE_RESET, 0)
            .map(drop)
            .map_err(|e| VfioError::io("VFIO_DEVICE_RESET", e))
    }
}

impl Drop for VfioDevice {
    fn drop(&mut self) {
        // Best effort: closing the device fd makes the kernel do the same
        // (vfio-pci disables the device and resets it where it can).
        let _ = self.disable_msix();
        let _ = self.disable_bus_master();
        // Detach the group explicitly, so the container is idle before
        // its last reference goes.
        let _ = sys::ioctl_val(self.group.as_fd(), sys::GROUP_UNSET_CONTAINER, 0);
    }
}

/// A BAR mapped into this process. Access is through a tock-registers
/// block laid over it ([`Bar::registers`]): volatile, whole registers.
#[derive(Debug)]
pub struct Bar {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is device memory reached only through volatile
// register accesses; which thread issues them does not matter.
unsafe impl Send for Bar {}
// SAFETY: `&Bar` gives only volatile whole-register accesses through
// tock-registers' cells, which are atomic with respect to each other on the
// bus; concurrent register accesses are the driver's protocol, not UB.
unsafe impl Sync for Bar {}

impl Bar {
    /// The BAR's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: absent BARs are refused by [`VfioDevice::map_bar`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte of the mapping, for drivers that take a BAR as a
    /// pointer and a size (valid as long as `self`).
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The register block `T` at byte `offset` of the BAR.
    ///
    /// # Errors
    ///
    /// [`VfioError::Unsupported`] when `T` does not fit there or is
    /// misaligned.
    ///
    /// # Safety
    ///
    /// `T` is a register block: a `#[repr(C)]` struct of tock-registers
    /// registers (interior-mutable, accessed only by volatile reads and
    /// writes), matching the device's layout at `offset`.
    pub unsafe fn registers<T>(&self, offset: usize) -> Result<&T> {
        let fits = offset
            .checked_add(core::mem::size_of::<T>())
            .is_some_and(|end| end <= self.len);
        let addr = self.ptr.as_ptr() as usize + offset;
        if !fits || addr % core::mem::align_of::<T>() != 0 {
            return Err(VfioError::Unsupported(format!(
                "a {}-byte register block at BAR offset {offset:#x} (BAR is {:#x} bytes)",
                core::mem::size_of::<T>(),
                self.len
            )));
        }
        // SAFETY: in bounds and aligned (checked above); the mapping lives as long as `self`; the
        // caller promises T is made of registers that are only accessed volatilely, so no plain
        // reference to device-written bytes is ever read as ordinary memory.
        Ok(unsafe { &*(addr as *const T) })
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: the mapping came from mmap with this length, and every
        // reference into it borrows `self`, so none outlives the unmap.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An MSI-X vector delivered to an eventfd.
#[derive(Debug)]
pub struct Interrupt {
    event: File,
    vector: u32,
}

impl Interrupt {
    /// The vector.
    pub fn vector(&self) -> u32 {
        self.vector
    }

    /// Waits up to `timeout` for the interrupt, returning how many fired
    /// since the last wait (0: timed out).
    pub fn wait(&self, timeout: Duration) -> Result<u64> {
        let mut pfd = libc::pollfd {
            fd: self.event.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: poll reads and writes the one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(VfioError::io("poll the interrupt eventfd", e));
        }
        self.take()
    }

    /// The count fired since the last wait, without blocking.
    pub fn take(&self) -> Result<u64> {
        let mut b = [0u8; 8];
        match std::io::Read::read(&mut &self.event, &mut b) {
            Ok(8) => Ok(u64::from_ne_bytes(b)),
            Ok(_) => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(VfioError::io("read the interrupt eventfd", e)),
        }
    }
}
