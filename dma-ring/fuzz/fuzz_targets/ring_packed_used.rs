//! Fuzzes the packed virtqueue's used-descriptor parsing: chains are added and
//! published while a hostile device writes anything anywhere in the
//! descriptor ring and the event suppression structures; `poll` must hand every
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
use dma_ring::virtio::packed::{PackedLayout as Layout, PackedQueue as Queue};

/// Queue sizes 2 to 128.
const MAX_SHIFT: u8 = 7;

include!("virtqueue_used.rs.inc");
