//! Loom models of every ring protocol: the driver on one thread, a device
//! model on another, sharing `LoomMemory`, whose data words are loom cells
//! (an access not ordered after the other side's conflicting access fails
//! the model as a causality violation) and whose flag words are relaxed
//! loom atomics (only the barriers order anything). The models check that
//! the device never reads a descriptor the driver has not published and
//! the driver never reads a completion's payload before its flag, and the
//! values each side sees are checked as well.
//!
//! The `*_fails_without_*` models switch the crate's barriers that order
//! one access off (`sync::sabotage`) and must fail: with loom's
//! "Causality violation" where the unordered access is a plain data
//! access, with the model's own message ("lost", a stale flag or index)
//! where it is a flag word.
//!
//! Run: `RUSTFLAGS="--cfg dma_loom" LOOM_MAX_PREEMPTIONS=2 cargo test
//! --release -p dma-ring --lib --tests loom`.
#![cfg(dma_loom)]

mod common;

use std::sync::Arc;

use common::{NicDevice, NvmeController, PackedDevice, SplitDevice};
use dma_core::DmaAddr;
use dma_ring::nic::{NicRxRing, NicTxRing, TxSegment};
use dma_ring::nvme::{
    opcode, NvmeCommand, NvmeDoorbells, NvmeQueueConfig, NvmeQueuePair, NvmeStatus,
};
use dma_ring::sync::{sabotage, Barrier};
use dma_ring::virtio::packed::{EventFlags, PackedLayout, PackedQueue};
use dma_ring::virtio::split::{SplitLayout, SplitQueue};
use dma_ring::virtio::{IndirectLayout, Segment};
use dma_ring::{slot_vec, AtomicDoorbell, LoomMemory};
use loom::thread;

fn memory(bytes: usize, dma: u64) -> Arc<LoomMemory> {
    Arc::new(LoomMemory::new(bytes, DmaAddr::new(dma)))
}

/// Runs a model under loom and returns how many executions it explored:
/// a model that explores only one proves nothing, so the tests check it.
fn explore(model: impl Fn() + Sync + Send + 'static) -> usize {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    loom::model(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        model();
    });
    let n = count.load(std::sync::atomic::Ordering::Relaxed);
    println!("explored {n} executions");
    n
}

/// Spins on `f` until it yields a value, letting the other thread run.
fn wait<R>(mut f: impl FnMut() -> Option<R>) -> R {
    loop {
        if let Some(r) = f() {
            return r;
        }
        thread::yield_now();
    }
}

// ---- NVMe: 3-entry SQ and CQ, two batches of two commands, one doorbell
// each: both queues wrap, the phase inverts, SQ slots are rewritten after
// the device consumed them, and a batch is fetched in any interleaving.

const NVME_BATCHES: u32 = 2;
const NVME_BATCH: u32 = 2;

fn nvme_model() {
    nvme_model_with(Submit::OneByOne, false);
}

/// The same, reaping each batch with `poll_many`: the tags it finds are
/// read first and one barrier covers all of their payloads.
fn nvme_batch_model() {
    nvme_model_with(Submit::OneByOne, true);
}

/// The same, submitting each batch through `NvmeQueuePair::batch`, which
/// keeps the SQ tail and the slot bookkeeping aside until it rings.
fn nvme_submit_batch_model() {
    nvme_model_with(Submit::Batch, true);
}

#[derive(Clone, Copy, PartialEq)]
enum Submit {
    OneByOne,
    Batch,
}

fn nvme_model_with(submit: Submit, many: bool) {
    let (sq, cq) = (memory(3 * 64, 0x10000), memory(3 * 16, 0x20000));
    let (sq_db, cq_db) = (
        Arc::new(AtomicDoorbell::new(0)),
        Arc::new(AtomicDoorbell::new(0)),
    );
    let config = NvmeQueueConfig {
        qid: 1,
        sq_size: 3,
        cq_size: 3,
    };
    let doorbells = NvmeDoorbells {
        sq_tail: sq_db.clone(),
        cq_head: cq_db.clone(),
    };
    let mut qp = NvmeQueuePair::new(
        config,
        sq.clone(),
        cq.clone(),
        doorbells,
        slot_vec::<u32>(2),
    )
    .unwrap();

    let device = thread::spawn(move || {
        let mut ctrl = NvmeController::new(sq, 3, cq, 3, 1);
        for _ in 0..NVME_BATCHES * NVME_BATCH {
            wait(|| {
                (ctrl.sq_head != sq_db.value() && ctrl.cq_has_room(cq_db.value())).then_some(())
            });
            let cmd = ctrl.fetch();
            // A whole command, never half of one.
            assert_eq!(cmd.opcode(), opcode::READ);
            assert_eq!(cmd.cdw10[1], !cmd.cdw10[0]);
            assert_eq!(cmd.prp1, u64::from(cmd.cdw10[0]) << 12);
            ctrl.complete(cmd.cid(), NvmeStatus::SUCCESS, cmd.cdw10[0] + 1);
        }
    });

    let command = |i: u32| {
        let mut cmd = NvmeCommand::new(opcode::READ);
        cmd.cdw10[0] = i;
        cmd.cdw10[1] = !i;
        cmd.prp1 = u64::from(i) << 12;
        cmd
    };
    for batch in 0..NVME_BATCHES {
        let first = batch * NVME_BATCH;
        if submit == Submit::Batch {
            let mut pushing = qp.batch();
            assert_eq!(pushing.room(), NVME_BATCH);
            for i in first..first + NVME_BATCH {
                pushing.push(command(i), i).unwrap();
            }
            assert!(pushing.ring_doorbell());
        } else {
            for i in first..first + NVME_BATCH {
                qp.push(command(i), i).unwrap();
            }
            qp.ring_doorbell();
        }
        let mut reaped = Vec::new();
        while reaped.len() < NVME_BATCH as usize {
            if many {
                let left = NVME_BATCH - reaped.len() as u32;
                if qp.poll_many(left, |done| reaped.push(done)).unwrap() == 0 {
                    thread::yield_now();
                }
            } else {
                reaped.push(wait(|| qp.poll().unwrap()));
            }
        }
        for (k, done) in (0..).zip(reaped) {
            assert_eq!(done.buffers, batch * NVME_BATCH + k);
            assert_eq!(
                (done.dw0, done.dw1),
                (done.buffers + 1, !(done.buffers + 1)),
                "payload read after the phase tag"
            );
        }
        qp.release_completions();
    }
    device.join().unwrap();
}

#[test]
fn loom_nvme_queue_pair() {
    assert!(explore(nvme_model) > 1);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_nvme_fails_without_before_doorbell() {
    let _off = sabotage(Barrier::BeforeDoorbell);
    loom::model(nvme_model);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_nvme_fails_without_after_completion_flag() {
    let _off = sabotage(Barrier::AfterCompletionFlag);
    loom::model(nvme_model);
}

#[test]
fn loom_nvme_queue_pair_reaping_batches() {
    assert!(explore(nvme_batch_model) > 1);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_nvme_batch_reaping_fails_without_after_completion_flag() {
    let _off = sabotage(Barrier::AfterCompletionFlag);
    loom::model(nvme_batch_model);
}

#[test]
fn loom_nvme_queue_pair_submitting_batches() {
    assert!(explore(nvme_submit_batch_model) > 1);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_nvme_batch_submission_fails_without_before_doorbell() {
    let _off = sabotage(Barrier::BeforeDoorbell);
    loom::model(nvme_submit_batch_model);
}

// ---- NIC RX: 2 descriptors (one buffer posted at a time), three packets:
// the write-back, the DD bit, the refill of a reused descriptor.

const PACKETS: u32 = 3;

fn nic_rx_model() {
    let mem = memory(2 * 16, 0x30000);
    let tail = Arc::new(AtomicDoorbell::new(0));
    let mut rx = NicRxRing::new(mem.clone(), 2, tail.clone(), slot_vec::<u32>(2)).unwrap();
    let device = thread::spawn(move || {
        let mut nic = NicDevice::new(mem, 2);
        for p in 0..PACKETS {
            let addr = wait(|| nic.receive(tail.value(), 60 + p as u16));
            assert_eq!(addr, 0x1000 * u64::from(p + 1), "a whole descriptor");
        }
    });
    for p in 0..PACKETS {
        rx.post(DmaAddr::new(0x1000 * u64::from(p + 1)), 1500, p)
            .unwrap();
        rx.ring_doorbell();
        let got = wait(|| rx.poll().unwrap());
        assert_eq!(
            (got.buffer, got.len, got.checksum),
            (p, 60 + p as u16, 0xabcd)
        );
    }
    device.join().unwrap();
}

#[test]
fn loom_nic_rx_ring() {
    assert!(explore(nic_rx_model) > 1);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_nic_rx_fails_without_after_completion_flag() {
    let _off = sabotage(Barrier::AfterCompletionFlag);
    loom::model(nic_rx_model);
}

/// The NIC reads the descriptor's buffer address after seeing the tail
/// move; without the barrier that read races the driver's write.
#[test]
#[should_panic(expected = "Causality violation")]
fn loom_nic_rx_fails_without_before_doorbell() {
    let _off = sabotage(Barrier::BeforeDoorbell);
    loom::model(nic_rx_model);
}

// ---- NIC TX: 3 descriptors, two-segment packets, DD on the last.

fn nic_tx_model() {
    let mem = memory(3 * 16, 0x40000);
    let tail = Arc::new(AtomicDoorbell::new(0));
    let mut tx = NicTxRing::new(mem.clone(), 3, tail.clone(), slot_vec::<u32>(3)).unwrap();
    let device = thread::spawn(move || {
        let mut nic = NicDevice::new(mem, 3);
        for p in 0..2u64 {
            let sent = wait(|| {
                let s = nic.transmit(tail.value());
                (!s.is_empty()).then_some(s)
            });
            assert_eq!(sent, [(0x100 * (p + 1), 14), (0x2000 * (p + 1), 100)]);
        }
    });
    for p in 0..2u64 {
        let segs = [
            TxSegment {
                addr: DmaAddr::new(0x100 * (p + 1)),
                len: 14,
            },
            TxSegment {
                addr: DmaAddr::new(0x2000 * (p + 1)),
                len: 100,
            },
        ];
        tx.transmit(&segs, p as u32).unwrap();
        tx.ring_doorbell();
        assert_eq!(wait(|| tx.poll().unwrap()).buffers, p as u32);
    }
    device.join().unwrap();
}

#[test]
fn loom_nic_tx_ring() {
    assert!(explore(nic_tx_model) > 1);
}

/// The NIC reads the packet's descriptors after seeing the tail move;
/// without the barrier those reads race the driver's writes.
#[test]
#[should_panic(expected = "Causality violation")]
fn loom_nic_tx_fails_without_before_doorbell() {
    let _off = sabotage(Barrier::BeforeDoorbell);
    loom::model(nic_tx_model);
}

/// The driver rewrites a reaped packet's descriptors for the next one;
/// without the barrier after the DD bit, those writes race the NIC's
/// earlier reads of them.
#[test]
#[should_panic(expected = "Causality violation")]
fn loom_nic_tx_fails_without_after_completion_flag() {
    let _off = sabotage(Barrier::AfterCompletionFlag);
    loom::model(nic_tx_model);
}

// ---- virtio split: 2 entries, one 2-descriptor chain at a time, three
// requests: descriptors reused, used ring wraps.

const REQUESTS: u32 = 3;

/// Request `r` of the virtio models: 16 readable bytes, then 512 writable.
fn chain_request(r: u32) -> ([Segment; 1], [Segment; 1]) {
    let base = 0x1000 * u64::from(r + 1);
    (
        [Segment::new(DmaAddr::new(base), 16)],
        [Segment::new(DmaAddr::new(base + 0x100), 512)],
    )
}

/// What the device must see for request `r`: (address, length, writable).
fn expected_chain(r: u32) -> [(u64, u32, bool); 2] {
    let base = 0x1000 * u64::from(r + 1);
    [(base, 16, false), (base + 0x100, 512, true)]
}

fn split_model() {
    let layout = SplitLayout::new(2).unwrap();
    let mem = memory(layout.bytes, 0x50000);
    let notify = Arc::new(AtomicDoorbell::new(0));
    let mut vq = SplitQueue::new(mem.clone(), 2, 0, notify, false, slot_vec::<u32>(2)).unwrap();
    let device = thread::spawn(move || {
        let mut dev = SplitDevice::new(mem, 2);
        for r in 0..REQUESTS {
            let chain = wait(|| dev.pop());
            assert_eq!(chain.descs, expected_chain(r), "a whole chain");
            dev.push_used(chain.id.into(), 200 + r);
        }
    });
    for r in 0..REQUESTS {
        let (out, inp) = chain_request(r);
        vq.add(&out, &inp, r).unwrap();
        vq.notify();
        let used = wait(|| vq.poll().unwrap());
        assert_eq!((used.buffers, used.len), (r, 200 + r));
    }
    device.join().unwrap();
}

#[test]
fn loom_virtio_split_queue() {
    assert!(explore(split_model) > 1);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_virtio_split_fails_without_publish_descriptors() {
    let _off = sabotage(Barrier::PublishDescriptors);
    loom::model(split_model);
}

/// The driver reads the used element after seeing the used index move;
/// without the barrier that read races the device's write of it.
#[test]
#[should_panic(expected = "Causality violation")]
fn loom_virtio_split_fails_without_after_completion_flag() {
    let _off = sabotage(Barrier::AfterCompletionFlag);
    loom::model(split_model);
}

// ---- virtio packed: 3 entries, 2-descriptor chains, two requests: the
// second chain wraps the ring end and flips the wrap counters.

fn packed_model() {
    let layout = PackedLayout::new(3).unwrap();
    let mem = memory(layout.bytes, 0x70000);
    let notify = Arc::new(AtomicDoorbell::new(0));
    let mut vq = PackedQueue::new(mem.clone(), 3, 0, notify, false, slot_vec::<u32>(3)).unwrap();
    let device = thread::spawn(move || {
        let mut dev = PackedDevice::new(mem, 3);
        for r in 0..2u32 {
            let chain = wait(|| dev.pop());
            assert_eq!(chain.descs, expected_chain(r), "a whole chain");
            dev.push_used(chain.id, 300 + r, 2);
        }
    });
    for r in 0..2u32 {
        let (out, inp) = chain_request(r);
        vq.add(&out, &inp, r).unwrap();
        vq.notify();
        let used = wait(|| vq.poll().unwrap());
        assert_eq!((used.buffers, used.len), (r, 300 + r));
    }
    device.join().unwrap();
}

#[test]
fn loom_virtio_packed_queue() {
    assert!(explore(packed_model) > 1);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_virtio_packed_fails_without_publish_descriptors() {
    let _off = sabotage(Barrier::PublishDescriptors);
    loom::model(packed_model);
}

/// The driver reads the used descriptor's id and length after seeing its
/// flags; without the barrier those reads race the device's writes.
#[test]
#[should_panic(expected = "Causality violation")]
fn loom_virtio_packed_fails_without_after_completion_flag() {
    let _off = sabotage(Barrier::AfterCompletionFlag);
    loom::model(packed_model);
}

// ---- virtio indirect descriptors: each request is one ring descriptor
// over a 2-entry table in table memory of its own, which the device reads
// after the available index (split) or flags (packed). The slot's table is
// rewritten for every request (the freed head or slot is reused), so the
// driver's table writes race the device's reads of the previous request's
// table unless the completion orders them, and the device's table reads
// race the driver's writes unless the publication orders them. No barrier
// is new: `publish_descriptors` orders the table writes with the ring's.

fn split_indirect_model() {
    let layout = SplitLayout::new(2).unwrap();
    let mem = memory(layout.bytes, 0x50000);
    let tables = memory(IndirectLayout::new(2, 2).unwrap().bytes, 0x90000);
    let notify = Arc::new(AtomicDoorbell::new(0));
    let mut vq = SplitQueue::new(mem.clone(), 2, 0, notify, false, slot_vec::<u32>(2)).unwrap();
    assert!(vq.set_indirect(tables.clone(), 2).unwrap().is_none());
    let device = thread::spawn(move || {
        let mut dev = SplitDevice::new(mem, 2);
        dev.tables = Some(tables);
        for r in 0..REQUESTS {
            let chain = wait(|| dev.pop());
            assert!(chain.indirect);
            assert_eq!(chain.descs, expected_chain(r), "a whole table");
            dev.push_used(chain.id.into(), 200 + r);
        }
    });
    for r in 0..REQUESTS {
        let (out, inp) = chain_request(r);
        vq.add_indirect(&out, &inp, r).unwrap();
        vq.notify();
        let used = wait(|| vq.poll().unwrap());
        assert_eq!((used.buffers, used.len), (r, 200 + r));
    }
    device.join().unwrap();
}

#[test]
fn loom_virtio_split_indirect_tables() {
    assert!(explore(split_indirect_model) > 1);
}

/// Without the barrier before the available index, the device's reads of
/// the table race the driver's writes of it.
#[test]
#[should_panic(expected = "Causality violation")]
fn loom_virtio_split_indirect_fails_without_publish_descriptors() {
    let _off = sabotage(Barrier::PublishDescriptors);
    loom::model(split_indirect_model);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_virtio_split_indirect_fails_without_after_completion_flag() {
    let _off = sabotage(Barrier::AfterCompletionFlag);
    loom::model(split_indirect_model);
}

/// Packed: 2 entries, three one-descriptor requests, so the third wraps
/// the ring and flips the wrap counters; every request uses slot 0's
/// table.
fn packed_indirect_model() {
    let layout = PackedLayout::new(2).unwrap();
    let mem = memory(layout.bytes, 0x70000);
    let tables = memory(IndirectLayout::new(2, 2).unwrap().bytes, 0x98000);
    let notify = Arc::new(AtomicDoorbell::new(0));
    let mut vq = PackedQueue::new(mem.clone(), 2, 0, notify, false, slot_vec::<u32>(2)).unwrap();
    assert!(vq.set_indirect(tables.clone(), 2).unwrap().is_none());
    let device = thread::spawn(move || {
        let mut dev = PackedDevice::new(mem, 2);
        dev.tables = Some(tables);
        for r in 0..REQUESTS {
            let chain = wait(|| dev.pop());
            assert!(chain.indirect);
            assert_eq!(chain.descs, expected_chain(r), "a whole table");
            dev.push_used(chain.id, 300 + r, 1);
        }
    });
    for r in 0..REQUESTS {
        let (out, inp) = chain_request(r);
        vq.add_indirect(&out, &inp, r).unwrap();
        vq.notify();
        let used = wait(|| vq.poll().unwrap());
        assert_eq!((used.buffers, used.len), (r, 300 + r));
    }
    device.join().unwrap();
}

#[test]
fn loom_virtio_packed_indirect_tables() {
    assert!(explore(packed_indirect_model) > 1);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_virtio_packed_indirect_fails_without_publish_descriptors() {
    let _off = sabotage(Barrier::PublishDescriptors);
    loom::model(packed_indirect_model);
}

#[test]
#[should_panic(expected = "Causality violation")]
fn loom_virtio_packed_indirect_fails_without_after_completion_flag() {
    let _off = sabotage(Barrier::AfterCompletionFlag);
    loom::model(packed_indirect_model);
}

// ---- virtio device models woken by the notify doorbell: the device looks
// at the ring only after it consumed the driver's notify write, and its one
// read barrier after that write is all that orders its reads (a device's
// DMA reads after an MMIO write reached it are ordered by the driver's
// barriers before the write, nothing else). Unlike the polling models
// above, these check what `notify()` orders before its doorbell.
//
// Every plain descriptor and ring-entry write comes before the
// `publish_descriptors` release that precedes the available index (split)
// or the first descriptor's flags (packed), and a release orders later
// stores too, the doorbell's included. What only the barriers in
// `notify()` order is that index or flags store itself, a flag word (an
// atomic): leaving them out shows as the device, notified, reading the old
// index and finding nothing (the request is lost), not as a causality
// violation. `notify()` has one barrier there, `dma_full` (between the
// publication and the read of the device's suppression state), which
// orders the doorbell as well: `before_doorbell` after it would be
// redundant in the models and on every architecture the barriers map to
// (`dmb osh`, `fence iorw,iorw`, `mfence` order MMIO writes too), so
// `notify()` leaves it out.

/// What the notify register reads while no notification is pending: the
/// driver writes 16-bit queue indices, never this.
const NOT_NOTIFIED: u32 = u32::MAX;

/// The panic of a device model notified before the request was visible.
const LOST: &str = "notified, but the request is not visible: lost";

/// Waits for the driver's write to the notify register and consumes it,
/// then issues the read barrier that stands for the device's reads coming
/// after the MMIO write.
fn wait_for_notify(notify: &AtomicDoorbell, queue: u32) {
    let written = wait(|| notify.take(NOT_NOTIFIED));
    assert_eq!(written, queue, "the queue index");
    dma_coherence::barrier::after_completion_flag();
}

fn split_notified_model() {
    let layout = SplitLayout::new(2).unwrap();
    let mem = memory(layout.bytes, 0x58000);
    let notify = Arc::new(AtomicDoorbell::new(NOT_NOTIFIED));
    let mut vq =
        SplitQueue::new(mem.clone(), 2, 3, notify.clone(), false, slot_vec::<u32>(2)).unwrap();
    let device = thread::spawn(move || {
        let mut dev = SplitDevice::new(mem, 2);
        for r in 0..REQUESTS {
            wait_for_notify(&notify, 3);
            let chain = dev.pop_notified().expect(LOST);
            assert_eq!(chain.descs, expected_chain(r), "a whole chain");
            dev.push_used(chain.id.into(), 200 + r);
        }
    });
    for r in 0..REQUESTS {
        let (out, inp) = chain_request(r);
        vq.add(&out, &inp, r).unwrap();
        assert!(
            vq.notify(),
            "the device never suppresses notifications here"
        );
        let used = wait(|| vq.poll().unwrap());
        assert_eq!((used.buffers, used.len), (r, 200 + r));
    }
    device.join().unwrap();
}

#[test]
fn loom_virtio_split_device_woken_by_notify() {
    assert!(explore(split_notified_model) > 1);
}

/// Without `dma_full` between the available index and the doorbell, the
/// notified device can read the old index: the request is lost.
#[test]
#[should_panic(expected = "notified, but the request is not visible")]
fn loom_virtio_split_notified_fails_without_dma_full() {
    let _no_full_barrier = sabotage(Barrier::Full);
    loom::model(split_notified_model);
}

fn packed_notified_model() {
    let layout = PackedLayout::new(3).unwrap();
    let mem = memory(layout.bytes, 0x78000);
    let notify = Arc::new(AtomicDoorbell::new(NOT_NOTIFIED));
    let mut vq =
        PackedQueue::new(mem.clone(), 3, 5, notify.clone(), false, slot_vec::<u32>(3)).unwrap();
    let device = thread::spawn(move || {
        let mut dev = PackedDevice::new(mem, 3);
        for r in 0..2u32 {
            wait_for_notify(&notify, 5);
            let chain = dev.pop_notified().expect(LOST);
            assert_eq!(chain.descs, expected_chain(r), "a whole chain");
            dev.push_used(chain.id, 300 + r, 2);
        }
    });
    for r in 0..2u32 {
        let (out, inp) = chain_request(r);
        vq.add(&out, &inp, r).unwrap();
        assert!(
            vq.notify(),
            "the device never suppresses notifications here"
        );
        let used = wait(|| vq.poll().unwrap());
        assert_eq!((used.buffers, used.len), (r, 300 + r));
    }
    device.join().unwrap();
}

#[test]
fn loom_virtio_packed_device_woken_by_notify() {
    assert!(explore(packed_notified_model) > 1);
}

/// Without `dma_full` between the first descriptor's flags and the
/// doorbell, the notified device can read the old flags: the request is
/// lost.
#[test]
#[should_panic(expected = "notified, but the request is not visible")]
fn loom_virtio_packed_notified_fails_without_dma_full() {
    let _no_full_barrier = sabotage(Barrier::Full);
    loom::model(packed_notified_model);
}

// ---- The full barrier of event suppression (virtio 1.2 §2.7.7, §2.7.10,
// §2.8.10): each side stores its own state (the driver's new available
// index, the device's wish to be notified; the device's used index, the
// driver's wish to be interrupted) and then loads the other side's. Only a
// full barrier on both sides keeps both loads from returning the old
// values (the store-buffering outcome), which would leave a request with
// no notification or a completion with no interrupt.
//
// What loom 0.7 models here (src/rt/atomic.rs, src/rt/thread.rs): a
// relaxed load may return any store not older than one that happens-before
// it, so with a full barrier missing on one side the stale-both outcome is
// explored and the twins below fail with the models' own message. A
// `fence(SeqCst)` is an AcqRel fence plus a join with one global "SC
// causality" in schedule order, so of two SC fences the later one
// happens-after the earlier: stronger than C11 (where SC fences order but
// do not synchronize), which is enough to forbid the stale-both outcome
// when both fences are there. The twins only ever remove the driver's
// barrier, whose absence C11 and loom both allow to fail, so loom's
// strength cannot hide the failure.

/// The driver publishes a request while the device, which was polling
/// with notifications off, goes to sleep: with `VIRTIO_F_EVENT_IDX` it
/// asks for a notification at the current index (`avail_event`), full
/// barrier, then looks again. One of the two must see the other.
fn split_notify_suppression_model() {
    let layout = SplitLayout::new(2).unwrap();
    let mem = memory(layout.bytes, 0x60000);
    let notify = Arc::new(AtomicDoorbell::new(NOT_NOTIFIED));
    let mut vq =
        SplitQueue::new(mem.clone(), 2, 7, notify.clone(), true, slot_vec::<u32>(2)).unwrap();
    let dev = SplitDevice::new(mem, 2);
    // Polling: no notification wanted for index 0 (`need_event` is false
    // for an event one lap behind).
    dev.set_avail_event(u16::MAX);
    let device = thread::spawn(move || dev.sleep_unless_available());
    vq.add(&[Segment::new(DmaAddr::new(0x1000), 8)], &[], 0)
        .unwrap();
    let notified = vq.notify();
    let device_saw_it = device.join().unwrap();
    assert!(
        notified || device_saw_it,
        "lost notification: the device sleeps with a request available"
    );
    if notified {
        assert_eq!(notify.take(NOT_NOTIFIED), Some(7));
    }
}

#[test]
fn loom_virtio_split_event_idx_never_loses_a_notification() {
    assert!(explore(split_notify_suppression_model) > 1);
}

#[test]
#[should_panic(expected = "lost notification")]
fn loom_virtio_split_event_idx_fails_without_full_barrier() {
    let _off = sabotage(Barrier::Full);
    loom::model(split_notify_suppression_model);
}

/// The driver, which had delayed interrupts, asks for one at the next used
/// entry (`used_event`), full barrier, then checks the used ring once
/// before sleeping; meanwhile the device returns the request, full
/// barrier, and reads `used_event`. Either the driver finds the request or
/// the device interrupts.
fn split_interrupt_suppression_model() {
    let layout = SplitLayout::new(2).unwrap();
    let mem = memory(layout.bytes, 0x64000);
    let notify = Arc::new(AtomicDoorbell::new(NOT_NOTIFIED));
    let mut vq = SplitQueue::new(mem.clone(), 2, 0, notify, true, slot_vec::<u32>(2)).unwrap();
    vq.add(&[], &[Segment::new(DmaAddr::new(0x2000), 64)], 0)
        .unwrap();
    vq.notify();
    // Delayed: interrupt only after two more used entries.
    vq.interrupt_after(2).unwrap();
    let device = thread::spawn(move || {
        let mut dev = SplitDevice::new(mem, 2);
        let chain = wait(|| dev.pop());
        let old = dev.used_idx;
        dev.push_used(chain.id.into(), 64);
        dev.wants_interrupt(old, true)
    });
    vq.set_interrupts(true);
    let found = vq.poll().unwrap();
    let interrupted = device.join().unwrap();
    assert!(
        found.is_some() || interrupted,
        "lost interrupt: the driver sleeps with a used entry unread"
    );
}

#[test]
fn loom_virtio_split_used_event_never_loses_an_interrupt() {
    assert!(explore(split_interrupt_suppression_model) > 1);
}

#[test]
#[should_panic(expected = "lost interrupt")]
fn loom_virtio_split_used_event_fails_without_full_barrier() {
    let _off = sabotage(Barrier::Full);
    loom::model(split_interrupt_suppression_model);
}

/// The packed ring's notification side: the device was polling with
/// notifications disabled and goes to sleep (enable, full barrier, look
/// again) while the driver makes a request available and reads the
/// device's event suppression structure.
fn packed_notify_suppression_model() {
    let layout = PackedLayout::new(2).unwrap();
    let mem = memory(layout.bytes, 0x74000);
    let notify = Arc::new(AtomicDoorbell::new(NOT_NOTIFIED));
    let mut vq =
        PackedQueue::new(mem.clone(), 2, 1, notify.clone(), false, slot_vec::<u32>(2)).unwrap();
    let dev = PackedDevice::new(mem, 2);
    dev.set_event(0, EventFlags::Disable as u16);
    let device = thread::spawn(move || dev.sleep_unless_available());
    vq.add(&[Segment::new(DmaAddr::new(0x1000), 8)], &[], 0)
        .unwrap();
    let notified = vq.notify();
    let device_saw_it = device.join().unwrap();
    assert!(
        notified || device_saw_it,
        "lost notification: the device sleeps with a request available"
    );
    if notified {
        assert_eq!(notify.take(NOT_NOTIFIED), Some(1));
    }
}

#[test]
fn loom_virtio_packed_event_suppression_never_loses_a_notification() {
    assert!(explore(packed_notify_suppression_model) > 1);
}

#[test]
#[should_panic(expected = "lost notification")]
fn loom_virtio_packed_event_suppression_fails_without_full_barrier() {
    let _off = sabotage(Barrier::Full);
    loom::model(packed_notify_suppression_model);
}

/// The packed ring's interrupt side: the driver had interrupts disabled,
/// enables them (full barrier) and checks once; the device writes the used
/// descriptor, full barrier, and reads the driver's event suppression.
fn packed_interrupt_suppression_model() {
    let layout = PackedLayout::new(2).unwrap();
    let mem = memory(layout.bytes, 0x7c000);
    let notify = Arc::new(AtomicDoorbell::new(NOT_NOTIFIED));
    let mut vq = PackedQueue::new(mem.clone(), 2, 0, notify, false, slot_vec::<u32>(2)).unwrap();
    vq.add(&[], &[Segment::new(DmaAddr::new(0x2000), 64)], 0)
        .unwrap();
    vq.notify();
    vq.set_interrupts(false);
    let device = thread::spawn(move || {
        let mut dev = PackedDevice::new(mem, 2);
        let chain = wait(|| dev.pop());
        dev.push_used(chain.id, 64, 1);
        dev.wants_interrupt()
    });
    vq.set_interrupts(true);
    let found = vq.poll().unwrap();
    let interrupted = device.join().unwrap();
    assert!(
        found.is_some() || interrupted,
        "lost interrupt: the driver sleeps with a used entry unread"
    );
}

#[test]
fn loom_virtio_packed_event_suppression_never_loses_an_interrupt() {
    assert!(explore(packed_interrupt_suppression_model) > 1);
}

#[test]
#[should_panic(expected = "lost interrupt")]
fn loom_virtio_packed_interrupt_fails_without_full_barrier() {
    let _off = sabotage(Barrier::Full);
    loom::model(packed_interrupt_suppression_model);
}
