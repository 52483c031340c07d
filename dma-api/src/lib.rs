//! Vocabulary and contracts for portable DMA.
//!
//! This crate is what a driver author writes against. It defines
//! - the address newtypes [`PhysAddr`] and [`DmaAddr`], which keep "where the
//!   CPU's memory is" apart from "what the device is told";
//! - transfer directions as types ([`ToDevice`], [`FromDevice`],
//!   [`Bidirectional`]) and as a value ([`DmaDirection`]);
//! - a device's limits as a validated [`DeviceConstraints`] (a busdma tag);
//! - [`DmaAttrs`], and an [`Error`] with a matchable [`ErrorKind`];
//! - the platform contract: [`DmaMap`] (streaming), [`DmaAlloc`]
//!   (coherent) and [`PhysMemory`] (the environment's pages and address
//!   translation), all `unsafe` traits with their promises written down;
//! - safe owning types over any platform: [`Coherent`] allocations,
//!   [`StreamingMapping`]s whose direction decides which syncs exist, and
//!   [`DmaPool`]s of small blocks.
//!
//! Backends live in other crates: `dma-direct` (physical addressing, with
//! the x86-coherent and ARM-non-coherent presets), `dma-iommu`,
//! `dma-bounce`, and `dma-sim` (mock hardware for tests).
//!
//! # Example
//!
//! Driver code is written against the platform traits, so it runs on any
//! backend. Map a receive buffer, let the device fill it, and take it back:
//!
//! ```
//! use dma_core::{DmaBuf, DmaMap, FromDevice, Result, StreamingMapping};
//!
//! fn receive<P: DmaMap>(platform: &P) -> Result<DmaBuf> {
//!     // A buffer the device writes must own its cache lines whole on a
//!     // non-coherent platform: `for_device` aligns and pads it so.
//!     let buf = DmaBuf::for_device(platform, 2048)?;
//!     // `?` keeps the error; match on the `MapError` to get the buffer back.
//!     let mut rx = StreamingMapping::<_, FromDevice, _>::map(platform, buf)?;
//!     let dma = rx.dma_addr(); // write this into the device's descriptor
//!     # let _ = dma;
//!     // ... the device writes, the driver sees the completion ...
//!     rx.sync_for_cpu();
//!     rx.unmap()
//! }
//! ```
//!
//! `dma-direct`'s documentation runs the same on a concrete platform.
//!
//! # Features
//!
//! - `alloc` (default): owning types over heap buffers, [`DmaPool`],
//!   [`DmaBuf`] and [`HostMemory`].
//! - `embedded-dma`: [`embedded::EmbeddedMapping`], streaming mappings of
//!   the `'static` buffers embassy and the embedded HALs pass around.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;

mod addr;
mod attrs;
mod buffer;
mod coherent;
mod constraints;
mod direction;
#[cfg(feature = "embedded-dma")]
pub mod embedded;
mod error;
mod memory;
#[cfg(feature = "alloc")]
mod ownership;
mod platform;
mod pod;
#[cfg(feature = "alloc")]
mod pool;
mod streaming;
mod volatile;

pub use addr::{DmaAddr, PhysAddr};
pub use attrs::DmaAttrs;
#[cfg(feature = "alloc")]
pub use buffer::DmaBuf;
pub use buffer::{DmaBuffer, RawBuffer};
pub use coherent::Coherent;
pub use constraints::{ConstraintsBuilder, DeviceConstraints};
pub use direction::{
    Bidirectional, DeviceReads, DeviceWrites, Direction, DmaDirection, FromDevice, ToDevice,
};
pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "alloc")]
pub use memory::HostMemory;
pub use memory::{Cacheability, Pages, PhysMemory};
#[cfg(feature = "alloc")]
pub use ownership::CpuOwned;
pub use platform::{CoherentRegion, CpuAccess, DmaAlloc, DmaMap, RawMapping, SgEntry};
pub use pod::DmaPod;
#[cfg(feature = "alloc")]
pub use pool::{DmaPool, PoolBlock};
pub use streaming::{DmaSegment, MapError, StreamingMapping};
