//! Fuzzes the split virtqueue's used-ring parsing: chains are added and
//! published while a hostile device writes anything anywhere in the
//! descriptor table, available and used rings; `poll` must hand every
//! chain's buffers back once with a length within its writable bytes, fail
//! only with device-fault kinds, and `reset` must return the rest.
#![no_main]

use std::sync::Arc;

use dma_core::{Coherent, DmaAddr};
use dma_ring::virtio::Segment;
use dma_ring::{slot_vec, AtomicDoorbell, MemoryView};
use dma_ring_fuzz::{platform, Ledger, Scribble};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use dma_ring::virtio::split::{SplitLayout as Layout, SplitQueue as Queue};

/// Queue sizes 2 to 64.
const MAX_SHIFT: u8 = 6;

include!("virtqueue_used.rs.inc");
