//! An e1000-style NIC: legacy RX/TX descriptor rings with write-back
//! descriptor-done bits.
//!
//! The descriptor rings themselves are `dma-ring`'s
//! [`nic`](dma_ring::nic) module; [`spec`] holds the driver side of the
//! register file; [`NicDriver`] (feature `alloc`) is a polled driver on
//! top of both, generic over the platform, the waiter and how the
//! register block is reached.

#[cfg(feature = "alloc")]
mod driver;
pub mod spec;

#[cfg(feature = "alloc")]
pub use driver::{NicDriver, NicDriverConfig, NicDriverStats, TxCompletion, MAX_FRAME};
