//! An e1000-style NIC: legacy RX/TX descriptor rings with write-back
//! descriptor-done bits.
//!
//! The descriptor rings themselves are `dma-ring`'s
//! [`nic`](dma_ring::nic) module; [`spec`] holds the driver side of the
//! register file.

pub mod spec;
