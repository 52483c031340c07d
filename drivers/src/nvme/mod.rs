//! NVMe over PCIe.
//!
//! [`Controller`] brings a controller up behind its BAR0;
//! [`NvmeBlockDriver`] is a whole polled block driver on top of it.
//! The queue pairs themselves (64-byte commands, phase-tagged
//! completions, command identifiers) are `dma-ring`'s
//! [`nvme`](dma_ring::nvme) module; [`spec`] holds the rest of the
//! driver's side of the NVMe Base Specification 2.0c and the NVM Command
//! Set Specification 1.0.

#[cfg(feature = "alloc")]
mod block;
mod controller;
pub mod spec;

#[cfg(feature = "alloc")]
pub use block::{
    prp_pools, IoCompletion, IoOp, NvmeBlockDriver, NvmeDriverConfig, NvmeDriverStats,
    NvmeIdentity, IO_QID, NSID, PAGE_SIZE,
};
pub use controller::{AdminQueues, Controller};
