//! Queues on real (host) memory with a device model's view of them, for
//! the virtio tests.

use std::sync::Arc;

use super::{PackedDevice, SplitDevice};
use dma_coherence::HardwareCoherent;
use dma_core::{Coherent, DeviceConstraints, DmaAddr, HostMemory};
use dma_direct::DirectPlatform;
use dma_ring::virtio::packed::{PackedLayout, PackedQueue};
use dma_ring::virtio::split::{SplitLayout, SplitQueue};
use dma_ring::virtio::{IndirectLayout, Segment};
use dma_ring::{slot_vec, AtomicDoorbell, MemoryView, Slot};

pub type Platform = DirectPlatform<HostMemory, HardwareCoherent>;
pub type Mem = Coherent<[u64], &'static Platform>;
pub type Split = SplitQueue<Mem, Arc<AtomicDoorbell>, u32, Vec<Slot<u32>>>;
pub type Packed = PackedQueue<Mem, Arc<AtomicDoorbell>, u32, Vec<Slot<u32>>>;

pub fn platform() -> &'static Platform {
    Box::leak(Box::new(DirectPlatform::x86_coherent(
        HostMemory,
        DeviceConstraints::UNCONSTRAINED,
    )))
}

/// `bytes` of zeroed coherent memory.
pub fn memory(bytes: usize) -> Mem {
    Coherent::zeroed_slice(platform(), bytes.div_ceil(8)).unwrap()
}

pub fn split(size: u16, event_idx: bool) -> (Split, SplitDevice<MemoryView>, Arc<AtomicDoorbell>) {
    let layout = SplitLayout::new(size).unwrap();
    let db = Arc::new(AtomicDoorbell::default());
    let q = SplitQueue::new(
        memory(layout.bytes),
        size,
        3,
        db.clone(),
        event_idx,
        slot_vec(size.into()),
    )
    .unwrap();
    // SAFETY: the queue owns the ring memory; each test uses the device
    // (which holds the view) only while the queue it came with is alive.
    let view = unsafe { MemoryView::of(q.memory()) };
    (q, SplitDevice::new(view, size), db)
}

pub fn packed(
    size: u16,
    event_idx: bool,
) -> (Packed, PackedDevice<MemoryView>, Arc<AtomicDoorbell>) {
    let layout = PackedLayout::new(size).unwrap();
    let db = Arc::new(AtomicDoorbell::default());
    let q = PackedQueue::new(
        memory(layout.bytes),
        size,
        3,
        db.clone(),
        event_idx,
        slot_vec(size.into()),
    )
    .unwrap();
    // SAFETY: the queue owns the ring memory; each test uses the device
    // (which holds the view) only while the queue it came with is alive.
    let view = unsafe { MemoryView::of(q.memory()) };
    (q, PackedDevice::new(view, size), db)
}

/// Indirect tables for a queue of `size` with `entries` per table.
pub fn tables(size: u16, entries: u16) -> Mem {
    memory(IndirectLayout::new(size, entries).unwrap().bytes)
}

/// A split queue with indirect tables of `entries`, and its device, which
/// sees the tables.
pub fn split_indirect(size: u16, entries: u16) -> (Split, SplitDevice<MemoryView>) {
    let (mut q, mut dev, _) = split(size, false);
    assert!(q
        .set_indirect(tables(size, entries), entries)
        .unwrap()
        .is_none());
    // SAFETY: used while the queue (which holds the tables) lives.
    dev.tables = Some(unsafe { MemoryView::of(q.indirect_memory().unwrap()) });
    (q, dev)
}

/// A packed queue with indirect tables of `entries`, and its device.
pub fn packed_indirect(size: u16, entries: u16) -> (Packed, PackedDevice<MemoryView>) {
    let (mut q, mut dev, _) = packed(size, false);
    assert!(q
        .set_indirect(tables(size, entries), entries)
        .unwrap()
        .is_none());
    // SAFETY: used while the queue (which holds the tables) lives.
    dev.tables = Some(unsafe { MemoryView::of(q.indirect_memory().unwrap()) });
    (q, dev)
}

pub fn seg(addr: u64, len: u32) -> Segment {
    Segment::new(DmaAddr::new(addr), len)
}
