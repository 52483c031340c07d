//! Cache maintenance and barriers for DMA on coherent and non-coherent CPUs.
//!
//! On a non-coherent CPU (many ARM and RISC-V SoCs) a device reads stale RAM
//! unless the CPU cleaned its cache first, and the CPU reads stale lines
//! unless it invalidated them after the device wrote. This crate provides
//! - [`CacheMaintenance`], the per-architecture clean / invalidate /
//!   clean+invalidate by address range, and [`HardwareCoherent`], the no-op
//!   policy for coherent hardware;
//! - the [`plan`] of which operation each direction needs at each
//!   [`SyncPoint`], and [`sync`] to carry it out;
//! - [`barrier`]s named for what they order.
//!
//! # Example
//!
//! ```
//! use dma_api::{DmaAttrs, DmaDirection};
//! use dma_coherence::{plan, sync, CacheOp, HardwareCoherent, SyncPoint};
//!
//! // What a receive buffer needs before the CPU reads it:
//! assert_eq!(plan(DmaDirection::FromDevice, SyncPoint::ForCpu), Some(CacheOp::Invalidate));
//!
//! // On coherent hardware the sync compiles to nothing.
//! let buf = [0u8; 64];
//! // SAFETY: the range is a live local array that this code owns.
//! unsafe {
//!     sync(&HardwareCoherent, buf.as_ptr() as usize, buf.len(),
//!          DmaDirection::FromDevice, SyncPoint::ForCpu, DmaAttrs::empty(), false)
//! };
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod barrier;
mod maintenance;
mod plan;

pub use maintenance::{CacheMaintenance, HardwareCoherent};
pub use plan::{plan, sync, CacheOp, SyncPoint};
