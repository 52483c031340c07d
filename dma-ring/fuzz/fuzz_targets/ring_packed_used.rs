//! Fuzzes the packed virtqueue's used-descriptor parsing: chains are added and
//! published while a hostile device writes anything anywhere in the
//! descriptor ring and the event suppression structures; `poll` must hand every
//! chain's buffers back once with a length within its writable bytes, fail
//! only with device-fault kinds, and `reset` must return the rest.
#![no_main]

use std::sync::Arc;

use dma_core::{Coherent, DmaAddr};
use dma_ring::virtio::packed::{PackedLayout, PackedQueue};
use dma_ring::virtio::Segment;
use dma_ring::{slot_vec, AtomicDoorbell, MemoryView};
use dma_ring_fuzz::{platform, Ledger, Scribble};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Add { readable: u8, writable: u8, len: u16 },
    Notify,
    Device(Scribble),
    Poll,
    Interrupts(bool),
    Reset,
}

#[derive(Arbitrary, Debug)]
struct Input {
    size_shift: u8,
    event_idx: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let size = 1u16 << (1 + input.size_shift % 7);
    let layout = PackedLayout::new(size).unwrap();
    let mem = Coherent::zeroed_slice(platform(), layout.bytes.div_ceil(8)).unwrap();
    let notify = Arc::new(AtomicDoorbell::default());
    let mut q = PackedQueue::new(mem, size, 0, notify, input.event_idx, slot_vec(size.into())).unwrap();
    // SAFETY: the view is used only while `q` lives (this closure).
    let view = unsafe { MemoryView::of(q.memory()) };
    let mut ledger = Ledger::default();
    for op in input.ops.iter().take(512) {
        match *op {
            Op::Add { readable, writable, len } => {
                let token = ledger.token();
                let seg = |i: u8| Segment::new(DmaAddr::new(u64::from(token) << 16 | u64::from(i) << 8), len.into());
                let r: Vec<Segment> = (0..readable % 4).map(seg).collect();
                let w: Vec<Segment> = (4..4 + writable % 4).map(seg).collect();
                let writable_bytes = u32::from(len) * w.len() as u32;
                ledger.submitted(token, writable_bytes, q.add(&r, &w, token));
            }
            Op::Notify => {
                q.notify();
            }
            Op::Device(s) => s.apply(&view),
            Op::Poll => match q.poll() {
                Ok(Some(used)) => ledger.completed(used.buffers, used.len),
                Ok(None) => {}
                Err(e) => ledger.failed(e.kind()),
            },
            Op::Interrupts(on) => q.set_interrupts(on),
            Op::Reset => ledger.reset(q.reset()),
        }
    }
    ledger.reset(q.reset());
});
