//! Loom models of every ring protocol: the driver on one thread, a device
//! model on another, sharing `LoomMemory`, whose data words are loom cells
//! (an access not ordered after the other side's conflicting access fails
//! the model as a causality violation) and whose flag words are relaxed
//! loom atomics (only the barriers order anything). The models check that
//! the device never reads a descriptor the driver has not published and
//! the driver never reads a completion's payload before its flag, and the
//! values each side sees are checked as well.
//!
//! The `*_fails_without_*` models switch one of the crate's barriers off
//! and must fail.
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
use dma_ring::virtio::packed::{PackedLayout, PackedQueue};
use dma_ring::virtio::split::{SplitLayout, SplitQueue};
use dma_ring::virtio::Segment;
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

/// Event-index notification: the driver publishes then reads
/// `avail_event`; the device, before sleeping, sets `avail_event` then
/// re-reads the available index. With the full barriers on both sides one
/// of them always sees the other: no request is left without a
/// notification (virtio 1.2 §2.7.10, §2.7.13.4).
fn split_event_idx_model() {
    let layout = SplitLayout::new(2).unwrap();
    let mem = memory(layout.bytes, 0x60000);
    let notify = Arc::new(AtomicDoorbell::new(0));
    let mut vq =
        SplitQueue::new(mem.clone(), 2, 7, notify.clone(), true, slot_vec::<u32>(2)).unwrap();
    let device = thread::spawn(move || {
        let dev = SplitDevice::new(mem, 2);
        // Going to sleep: ask for a notification at index 0, then re-check.
        dev.set_avail_event(0);
        dma_coherence::barrier::dma_full();
        // SAFETY: inside the available ring.
        let seen = unsafe { dma_ring::RingMemory::load_flag(&*dev.mem, dev.layout.avail_idx()) };
        seen != 0
    });
    vq.add(&[Segment::new(DmaAddr::new(0x1000), 8)], &[], 0)
        .unwrap();
    let notified = vq.notify();
    let device_saw_it = device.join().unwrap();
    assert!(notified || device_saw_it, "lost notification");
    if notified {
        assert_eq!(notify.value(), 7);
    }
}

#[test]
fn loom_virtio_split_event_idx_never_loses_a_notification() {
    assert!(explore(split_event_idx_model) > 1);
}

// No sabotage model for the full barrier here: loom does not explore the
// store-buffering outcome (both relaxed loads reading the old values) that
// leaving it out would allow, so such a model would pass either way.

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
