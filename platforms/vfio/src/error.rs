//! What can go wrong opening and driving a device through VFIO, each case
//! with the fix in its message.

use std::fmt;
use std::io;

/// A VFIO failure. Its [`Display`](fmt::Display) says what to do about it.
#[derive(Debug)]
#[non_exhaustive]
pub enum VfioError {
    /// The PCI address is not `DDDD:BB:DD.F` (or `BB:DD.F`).
    BadPciAddress(String),
    /// No PCI device has that address.
    NoSuchDevice(String),
    /// The device has no IOMMU group: the machine has no IOMMU, or it is off.
    NoIommu(String),
    /// The device is bound to another driver (or none).
    NotBound {
        /// The device.
        device: String,
        /// The driver it is bound to, if any.
        driver: Option<String>,
    },
    /// `/dev/vfio/vfio` is missing: the VFIO modules are not loaded.
    VfioNotLoaded,
    /// Opening `/dev/vfio/*` or an ioctl was refused for lack of privileges.
    NoPrivileges(String),
    /// The group is already open (VFIO lets one open file use a group: another
    /// process, or a [`VfioDevice`](crate::VfioDevice) this process still holds).
    GroupBusy {
        /// The IOMMU group.
        group: u32,
    },
    /// Some device in the group is bound to a non-VFIO driver.
    GroupNotViable {
        /// The IOMMU group.
        group: u32,
        /// The group's other devices.
        members: Vec<String>,
    },
    /// The kernel refused the type-1 IOMMU because the platform cannot
    /// remap interrupts.
    NoInterruptRemapping,
    /// The kernel does not offer the type-1 IOMMU.
    NoType1Iommu,
    /// Pinning memory for a DMA mapping hit `RLIMIT_MEMLOCK`.
    MemlockTooLow {
        /// The current soft limit in bytes (`None`: unlimited or unknown).
        limit: Option<u64>,
        /// The size of the mapping that failed.
        wanted: u64,
    },
    /// An IOVA range lies outside the ranges the container reports usable.
    OutsideIovaRanges {
        /// First IOVA.
        iova: u64,
        /// Length in bytes.
        len: u64,
    },
    /// The device lacks something the request needs (a region, an
    /// interrupt index, an mmappable BAR).
    Unsupported(String),
    /// Any other system call failure.
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl VfioError {
    /// Wraps an OS error, classifying the ones with a known fix.
    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => {
                Self::NoPrivileges(format!("{what}: {source}"))
            }
            _ => Self::Io { what, source },
        }
    }

    /// Opening `/dev/vfio/<group>` failed: `EBUSY` means another open file
    /// has the group.
    pub(crate) fn group_open(group: u32, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EBUSY) => Self::GroupBusy { group },
            _ => Self::io("open the VFIO group", source),
        }
    }

    /// `VFIO_IOMMU_MAP_DMA` of `wanted` bytes failed: `ENOMEM` is the
    /// pinning limit (`limit`, the soft `RLIMIT_MEMLOCK`).
    pub(crate) fn map_dma(source: io::Error, wanted: u64, limit: Option<u64>) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOMEM) => Self::MemlockTooLow { limit, wanted },
            _ => Self::io("VFIO_IOMMU_MAP_DMA", source),
        }
    }
}

/// The shell commands that bind a device to vfio-pci, for messages.
fn bind_hint(device: &str) -> String {
    format!(
        "bind it with: modprobe vfio-pci; echo vfio-pci > /sys/bus/pci/devices/{device}/driver_override; \
         echo {device} > /sys/bus/pci/devices/{device}/driver/unbind (if bound); \
         echo {device} > /sys/bus/pci/drivers_probe"
    )
}

impl fmt::Display for VfioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPciAddress(s) => write!(
                f,
                "bad PCI address {s:?}: give it as domain:bus:device.function, e.g. 0000:01:00.0 (see lspci -D)"
            ),
            Self::NoSuchDevice(s) => write!(
                f,
                "no PCI device {s}: list the devices with lspci -D or ls /sys/bus/pci/devices"
            ),
            Self::NoIommu(s) => write!(
                f,
                "{s} has no IOMMU group: enable the IOMMU (VT-d/AMD-Vi/SMMU in firmware, intel_iommu=on or amd_iommu=on on the kernel command line)"
            ),
            Self::NotBound { device, driver } => {
                match driver {
                    Some(d) => write!(f, "{device} is bound to {d}, not vfio-pci; ")?,
                    None => write!(f, "{device} is bound to no driver; ")?,
                }
                f.write_str(&bind_hint(device))
            }
            Self::VfioNotLoaded => f.write_str(
                "/dev/vfio/vfio is missing: load the VFIO modules (modprobe vfio-pci)",
            ),
            Self::NoPrivileges(s) => write!(
                f,
                "permission denied ({s}): run as root, or chown the /dev/vfio/<group> node to your user and raise its memlock limit"
            ),
            Self::GroupBusy { group } => write!(
                f,
                "IOMMU group {group} is already open (one user at a time): stop the program using /dev/vfio/{group} \
                 (fuser -v /dev/vfio/{group} names it), or drop the VfioDevice this process already holds"
            ),
            Self::GroupNotViable { group, members } => write!(
                f,
                "IOMMU group {group} is not viable: every device in it must be bound to vfio-pci or unbound (members: {})",
                members.join(", ")
            ),
            Self::NoInterruptRemapping => f.write_str(
                "the kernel refused the type-1 IOMMU: no interrupt remapping; enable it (intel_iommu=on with intremap, a GICv3 ITS on arm64) \
                 or, knowing the device can then forge interrupts, load vfio_iommu_type1 with allow_unsafe_interrupts=1",
            ),
            Self::NoType1Iommu => f.write_str(
                "the kernel offers no type-1 IOMMU to VFIO: load vfio_iommu_type1 (modprobe vfio_iommu_type1)",
            ),
            Self::MemlockTooLow { limit, wanted } => {
                match limit {
                    Some(l) => write!(f, "cannot pin {wanted} bytes for DMA: the memlock limit is {l} bytes; ")?,
                    None => write!(f, "cannot pin {wanted} bytes for DMA (memlock limit); ")?,
                }
                f.write_str("raise it (ulimit -l, or memlock in /etc/security/limits.conf) or run as root")
            }
            Self::OutsideIovaRanges { iova, len } => write!(
                f,
                "IOVA {iova:#x}+{len:#x} lies outside the container's usable IOVA ranges: pick an address inside one (VfioContainer::iova_ranges)"
            ),
            Self::Unsupported(s) => write!(f, "unsupported: {s}"),
            Self::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for VfioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result with a [`VfioError`].
pub type Result<T> = core::result::Result<T, VfioError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn refused_privileges_are_told_apart_from_other_failures() {
        for errno in [libc::EACCES, libc::EPERM] {
            let e = VfioError::io("open the VFIO group", os(errno));
            assert!(matches!(e, VfioError::NoPrivileges(_)), "{e}");
            assert!(e.to_string().contains("run as root"), "{e}");
        }
        let e = VfioError::io("VFIO_DEVICE_RESET", os(libc::EIO));
        assert!(matches!(e, VfioError::Io { .. }), "{e}");
    }

    #[test]
    fn a_busy_group_names_the_fix() {
        let e = VfioError::group_open(7, os(libc::EBUSY));
        assert!(matches!(e, VfioError::GroupBusy { group: 7 }), "{e}");
        assert!(e.to_string().contains("fuser -v /dev/vfio/7"), "{e}");
        let e = VfioError::group_open(7, os(libc::EACCES));
        assert!(matches!(e, VfioError::NoPrivileges(_)), "{e}");
        let e = VfioError::group_open(7, os(libc::ENOENT));
        assert!(matches!(e, VfioError::Io { .. }), "{e}");
    }

    #[test]
    fn a_pinning_refusal_is_the_memlock_limit() {
        let e = VfioError::map_dma(os(libc::ENOMEM), 1 << 20, Some(65536));
        assert!(
            matches!(
                e,
                VfioError::MemlockTooLow {
                    limit: Some(65536),
                    wanted: 0x10_0000
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("the memlock limit is 65536 bytes"),
            "{e}"
        );
        let e = VfioError::map_dma(os(libc::EEXIST), 4096, None);
        assert!(matches!(e, VfioError::Io { .. }), "{e}");
    }
}
