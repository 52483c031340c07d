//! Scatter-gather for DMA: tables built under device constraints, mapped
//! through any platform, and encoded into the formats devices read.
//!
//! Real buffers are virtually contiguous and physically scattered; devices
//! limit segment size, boundaries, address width and segment count. This
//! crate turns the one into what the other accepts:
//!
//! 1. **Build** an [`SgTable`] from physical pages, physical ranges or a
//!    virtually contiguous buffer (translated page by page), with Linux's
//!    `sg_alloc_table_from_pages` semantics (the offset applies to the
//!    first entry; contiguous pages coalesce; the maximum segment is whole
//!    pages; appending continues the last entry) under the device's
//!    [`SgLimits`] (boundary, alignment, mask, segment count).
//! 2. **Map** it through any [`DmaMap`](dma_core::DmaMap) platform with
//!    [`MappedSgTable`], which owns what it maps, merges entries whose
//!    device addresses are contiguous into [`DmaSegment`]s (an IOMMU places
//!    the whole table in one IOVA range), syncs all or part of it as its
//!    direction allows, and unmaps on drop.
//! 3. **Encode** the segments for the device, straight into DMA memory with
//!    volatile stores: NVMe PRPs and SGLs with list memory from
//!    [`nvme::NvmePools`] ([`nvme`]), the generic 16-byte hardware SG entry
//!    ([`hw`]) and virtio descriptor chains ([`virtio`]).
//!
//! Every bad input is a typed [`dma_core::Error`]; nothing here panics on
//! input.
//!
//! # Example
//!
//! A 12 KiB read into a heap buffer, mapped on an x86 machine and described
//! to an NVMe controller, whose data pointers must be dword-aligned:
//!
//! ```
//! use dma_core::{DeviceConstraints, DmaBuf, FromDevice, HostMemory};
//! use dma_direct::DirectPlatform;
//! use dma_sg::{nvme, MappedSgTable, SgLimits};
//!
//! let c = DeviceConstraints::builder().addr_bits(64).alignment(4).build()?;
//! let platform = DirectPlatform::x86_coherent(HostMemory, c);
//! let pools = nvme::NvmePools::new(&platform, 4096, 8, 32)?;
//!
//! // Aligned as the device asks (a `Vec<u8>` need not be).
//! let buffer = DmaBuf::for_device(&platform, 12 * 1024)?;
//! let mut rx = MappedSgTable::<_, FromDevice, _, _>::map(&platform, buffer, SgLimits::new(4096, &c)?)?;
//! let prps = nvme::encode_prp(&pools, rx.segments())?;
//! // Write prps.prp1() and prps.prp2() into the command, ring the doorbell,
//! // wait for the completion; then:
//! drop(prps); // list memory back to the pools
//! rx.sync_for_cpu();
//! let data: DmaBuf = rx.unmap()?;
//! assert_eq!(data.len(), 12 * 1024);
//! # Ok::<(), dma_core::Error>(())
//! ```
//!
//! # The generic hardware SG entry
//!
//! The format the mock hardware's DMA engine reads, specified in [`hw`]:
//! 16-byte entries, 16-byte aligned, little-endian: `addr: u64` at byte 0,
//! `len: u32` (1 to 2^32 - 1) at byte 8, `flags: u32` at byte 12 with bit 0
//! `FINAL` marking the last entry and bits 31:1 reserved (zero; a device
//! rejects an entry with any set, or with a zero length, or one that wraps,
//! or a table with no `FINAL` within its size).
//!
//! # Features
//!
//! - `alloc` (default): heap-backed tables (`SgTable<Vec<SgEntry>>`) and
//!   the NVMe encoders, whose list memory comes from `dma-core`'s DMA pools.
//!   Without it, tables live in a fixed [`SgArray`], and [`hw`], [`virtio`],
//!   the SGL descriptor type and the PRP layout, entry iterator and walker
//!   remain.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod hw;
pub mod nvme;
pub mod virtio;

mod limits;
mod mapped;
mod segment;
mod storage;
mod table;

pub use limits::SgLimits;
pub use mapped::{ExternalPages, MappedSgTable};
pub use segment::{DeviceSegments, DmaSegment};
pub use storage::{SgArray, SgStorage};
pub use table::SgTable;
