//! A Linux user-space DMA backend over VFIO.
//!
//! A PCI device bound to `vfio-pci` is opened through the container and
//! group API ([`VfioDevice::open`]) with the type-1 IOMMU; [`VfioPlatform`]
//! implements `dma-core`'s [`DmaMap`](dma_core::DmaMap) and
//! [`DmaAlloc`](dma_core::DmaAlloc) over its container, so every driver in
//! the family runs on it: device addresses are IOVAs from `dma-iommu`'s
//! allocator inside the usable IOVA ranges the kernel reports, and the
//! kernel's IOMMU keeps the device inside its mappings. Registers are
//! reached through the mmapped BAR ([`Bar::registers`] lays a
//! tock-registers block over it; [`Bar::as_ptr`] hands it to a driver that
//! takes a BAR pointer, like `dma-drivers`' NVMe `Controller`), interrupts through MSI-X vectors routed to eventfds
//! ([`Interrupt`]).
//!
//! The kernel interface is the legacy container/group API: the Debian 6.1
//! kernel this is tested on has no iommufd (`IOMMUFD` and
//! `VFIO_DEVICE_CDEV` are off), so the iommufd path is not implemented.
//!
//! # Binding a device to vfio-pci (and back)
//!
//! Do this only for a device nothing on the machine uses (never the disk
//! the system runs from): unbinding a disk from its driver removes it from
//! the system.
//!
//! ```text
//! modprobe vfio-pci
//! D=0000:01:00.0                                   # lspci -D names it
//! echo vfio-pci > /sys/bus/pci/devices/$D/driver_override
//! echo $D > /sys/bus/pci/devices/$D/driver/unbind  # if a driver has it
//! echo $D > /sys/bus/pci/drivers_probe             # vfio-pci takes it
//! ls -l /sys/bus/pci/devices/$D/iommu_group        # its group: /dev/vfio/N
//! # ... run the program (root, or own /dev/vfio/N and raise ulimit -l) ...
//! echo $D > /sys/bus/pci/drivers/vfio-pci/unbind   # give it back:
//! echo > /sys/bus/pci/devices/$D/driver_override
//! echo $D > /sys/bus/pci/drivers_probe             # its own driver again
//! ```
//!
//! Every device in the IOMMU group must be bound to vfio-pci (or to no
//! driver) for the group to be viable.
//!
//! # Example
//!
//! ```no_run
//! use dma_core::{DeviceConstraints, DmaBuf};
//! use dma_vfio::{VfioDevice, VfioPlatform};
//!
//! let device = VfioDevice::open("0000:01:00.0")?;
//! device.enable_bus_master()?;
//! let platform = VfioPlatform::new(&device, DeviceConstraints::UNCONSTRAINED)?;
//! let buffer = DmaBuf::for_device(&platform, 4096)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg(target_os = "linux")]

mod container;
mod device;
mod error;
mod memory;
mod pci;
mod platform;
mod sys;

pub use container::{IovaRange, VfioContainer};
pub use device::{Bar, Interrupt, VfioDevice};
pub use error::{Result, VfioError};
pub use memory::PageSource;
pub use pci::PciAddress;
pub use platform::VfioPlatform;
pub use sys::DmaMapFlags;
