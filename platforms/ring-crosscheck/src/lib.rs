//! Cross-checks of dma-ring's virtqueues against device-side code nobody
//! here wrote. The checks are this crate's tests
//! (`tests/virtio_queue.rs`): dma-ring's `SplitQueue` as the driver,
//! rust-vmm's `virtio-queue` `Queue` as the device, both on one
//! `vm-memory` `GuestMemoryMmap` whose guest addresses are the driver's
//! `DmaAddr` values.
//!
//! virtio-queue implements only the split layout, so the packed queue is
//! checked against the project's own device models and the sim's.
#![no_std]
