//! NVMe over PCIe.
//!
//! The queue pairs themselves (64-byte commands, phase-tagged
//! completions, command identifiers) are `dma-ring`'s
//! [`nvme`](dma_ring::nvme) module; [`spec`] holds the rest of the
//! driver's side of the NVMe Base Specification 2.0c and the NVM Command
//! Set Specification 1.0.

mod controller;
pub mod spec;

pub use controller::{AdminQueues, Controller};
