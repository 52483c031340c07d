//! The IOMMU-translated DMA backend.
//!
//! Behind an IOMMU a device sees I/O virtual addresses (IOVAs): the
//! platform gives each mapping a range of IOVA space, writes the page
//! tables the IOMMU walks, and invalidates the IOMMU's TLB on unmap; a
//! device touching anything it was not given faults instead of corrupting
//! memory. This crate provides
//! - [`iova`]: a size-aligned, top-down IOVA allocator (buddy system) with
//!   per-CPU magazines, like Linux's `iova.c` and its rcache;
//! - [`pgtable`]: page-table formats behind [`IoPageTable`], with
//!   [`vmsav8`](pgtable::vmsav8) (Arm VMSAv8-64 stage 1 and 2, 4, 16 and
//!   64 KiB granules, 32- to 48-bit IOVAs, every block size), its exact
//!   descriptor encoding, the MAIR it assumes and a reference walker;
//! - [`IommuHardware`], the small trait the hardware implements (attach,
//!   invalidate a range or an ASID, sync, report faults), and the
//!   [`Fault`] it reports;
//! - [`InvalidationPolicy`]: [`Strict`] or [`Deferred`] (a bounded flush
//!   queue; an IOVA is reused only after its flush);
//! - [`IommuPlatform`], the `dma-core` platform for one device's domain,
//!   generic over the environment's memory and the cache policy;
//! - [`soft::SoftIommu`], a software IOMMU that walks the real tables,
//!   caches translations and records faults, for tests and benches.
//!
//! # Example
//!
//! ```
//! use dma_core::{DeviceConstraints, FromDevice, HostMemory, StreamingMapping};
//! use dma_coherence::HardwareCoherent;
//! use dma_iommu::{soft::SoftIommu, Asid, Deferred, DeviceId, DomainConfig, IommuPlatform};
//!
//! let iommu = SoftIommu::new(HostMemory, 64);
//! let nic = IommuPlatform::new(
//!     HostMemory,
//!     HardwareCoherent,
//!     &iommu,
//!     Deferred::<256>::new(),
//!     DeviceConstraints::builder().addr_bits(32).build()?,
//!     DomainConfig::new(DeviceId(8), Asid(1)),
//! )?;
//! let rx = StreamingMapping::<_, FromDevice, _>::map(&nic, vec![0u8; 1514])?;
//! // The device sees an IOVA below its 32-bit mask, wherever the buffer is.
//! assert!(rx.dma_addr().as_u64() < 1 << 32);
//! iommu.device_write(DeviceId(8), rx.dma_addr(), b"frame").unwrap();
//! let buf = rx.unmap()?;
//! assert_eq!(&buf[..5], b"frame");
//! // After unmap (and the deferred flush) the device is locked out again.
//! nic.on_flush_timeout()?;
//! assert!(iommu.device_read(DeviceId(8), dma_core::DmaAddr::new(0x1000), &mut [0]).is_err());
//! assert!(nic.check_faults().is_err());
//! # Ok::<(), dma_core::Error>(())
//! ```
//!
//! # Features
//!
//! - `alloc` (default): the IOVA allocator, the platform and the software
//!   IOMMU. Without it the page tables, the hardware trait, the fault types
//!   and the invalidation policies remain (none of them allocates).
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

mod aligned;
pub mod fault;
pub mod hw;
pub mod invalidate;
pub mod iova;
pub mod pgtable;
#[cfg(feature = "alloc")]
mod platform;
#[cfg(feature = "alloc")]
pub mod soft;

pub use fault::{Access, DeviceId, Fault, FaultKind};
pub use hw::{Asid, DomainContext, IommuHardware, TableFormat};
pub use invalidate::{Deferred, InvalidationPolicy, Strict};
pub use pgtable::{IoPageTable, Leaf, Prot};
#[cfg(feature = "alloc")]
pub use platform::{DomainConfig, IommuPlatform};
