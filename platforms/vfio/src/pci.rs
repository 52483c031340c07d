//! PCI addresses and what sysfs says about a device: its driver and its
//! IOMMU group.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Result, VfioError};

/// A PCI function's address, `domain:bus:device.function`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciAddress {
    /// PCI domain (segment).
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub device: u8,
    /// Function number (0..8).
    pub function: u8,
}

impl FromStr for PciAddress {
    type Err = VfioError;

    /// Parses `DDDD:BB:DD.F` or `BB:DD.F` (domain 0), hexadecimal.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || VfioError::BadPciAddress(s.to_string());
        let hex = |part: &str, digits: usize| -> Result<u32> {
            if part.len() != digits || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(part, 16).map_err(|_| bad())
        };
        let (rest, function) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, dev] => (hex(d, 4)?, hex(b, 2)?, hex(dev, 2)?),
            [b, dev] => (0, hex(b, 2)?, hex(dev, 2)?),
            _ => return Err(bad()),
        };
        let function = hex(function, 1)?;
        if device >= 32 || function >= 8 {
            return Err(bad());
        }
        Ok(Self {
            domain: domain as u16,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// The file name a symlink in sysfs points to (`.../drivers/vfio-pci` →
/// `vfio-pci`).
fn link_name(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// A PCI device as sysfs shows it.
#[derive(Clone, Debug)]
pub(crate) struct SysfsDevice {
    address: PciAddress,
    dir: PathBuf,
}

impl SysfsDevice {
    /// Looks the device up under `root` (normally `/sys/bus/pci/devices`).
    pub(crate) fn find(root: &Path, address: PciAddress) -> Result<Self> {
        let dir = root.join(address.to_string());
        if !dir.exists() {
            return Err(VfioError::NoSuchDevice(address.to_string()));
        }
        Ok(Self { address, dir })
    }

    /// The driver it is bound to.
    pub(crate) fn driver(&self) -> Option<String> {
        link_name(&self.dir.join("driver"))
    }

    /// Its IOMMU group, checking first that vfio-pci owns the device (on
    /// arm64 the group appears only once a driver binds).
    pub(crate) fn vfio_group(&self) -> Result<u32> {
        let driver = self.driver();
        if driver.as_deref() != Some("vfio-pci") {
            return Err(VfioError::NotBound {
                device: self.address.to_string(),
                driver,
            });
        }
        let group = link_name(&self.dir.join("iommu_group"))
            .ok_or_else(|| VfioError::NoIommu(self.address.to_string()))?;
        group
            .parse()
            .map_err(|_| VfioError::NoIommu(self.address.to_string()))
    }
}

/// The devices in IOMMU group `group`, for a not-viable message.
pub(crate) fn group_members(group: u32) -> Vec<String> {
    let dir = format!("/sys/kernel/iommu_groups/{group}/devices");
    let mut members: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    members.sort();
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_short_addresses() {
        let a: PciAddress = "0000:00:02.0".parse().unwrap();
        assert_eq!((a.domain, a.bus, a.device, a.function), (0, 0, 2, 0));
        let b: PciAddress = "3a:1f.7".parse().unwrap();
        assert_eq!((b.domain, b.bus, b.device, b.function), (0, 0x3a, 0x1f, 7));
        assert_eq!(b.to_string(), "0000:3a:1f.7");
    }

    #[test]
    fn refuses_malformed_addresses() {
        for s in [
            "",
            "0000:00:02",
            "00:02",
            "0000:00:20.0",
            "0000:00:02.8",
            "000:00:02.0",
            "0000:00:02.0x",
            "g000:00:02.0",
            "0000-00-02.0",
            "1:2:3:4.0",
        ] {
            let e = s.parse::<PciAddress>().unwrap_err();
            assert!(matches!(e, VfioError::BadPciAddress(_)), "{s}: {e}");
            assert!(e.to_string().contains("domain:bus:device.function"));
        }
    }

    #[test]
    fn missing_device_is_no_such_device() {
        let dir = std::env::temp_dir().join(format!("dma-vfio-sysfs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let e = SysfsDevice::find(&dir, "0000:00:02.0".parse().unwrap()).unwrap_err();
        assert!(matches!(e, VfioError::NoSuchDevice(_)), "{e}");
        assert!(e.to_string().contains("lspci"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unbound_and_wrongly_bound_devices_say_how_to_bind() {
        let root = std::env::temp_dir().join(format!("dma-vfio-bind-{}", std::process::id()));
        let dev = root.join("0000:00:02.0");
        fs::create_dir_all(&dev).unwrap();
        let found = SysfsDevice::find(&root, "0000:00:02.0".parse().unwrap()).unwrap();
        let e = found.vfio_group().unwrap_err();
        assert!(matches!(e, VfioError::NotBound { driver: None, .. }), "{e}");
        std::os::unix::fs::symlink("../../drivers/nvme", dev.join("driver")).unwrap();
        let e = found.vfio_group().unwrap_err();
        assert!(e.to_string().contains("bound to nvme"), "{e}");
        assert!(e.to_string().contains("driver_override"), "{e}");
        fs::remove_file(dev.join("driver")).unwrap();
        std::os::unix::fs::symlink("../../drivers/vfio-pci", dev.join("driver")).unwrap();
        let e = found.vfio_group().unwrap_err();
        assert!(matches!(e, VfioError::NoIommu(_)), "{e}");
        std::os::unix::fs::symlink("../../../kernel/iommu_groups/7", dev.join("iommu_group"))
            .unwrap();
        assert_eq!(found.vfio_group().unwrap(), 7);
        fs::remove_dir_all(&root).unwrap();
    }
}
