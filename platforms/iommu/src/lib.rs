//! The IOMMU-translated DMA backend.
#![no_std]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(feature = "alloc")]
pub mod iova;
pub mod fault;
pub mod pgtable;
mod sync;

pub use fault::{Access, DeviceId, Fault, FaultKind};
