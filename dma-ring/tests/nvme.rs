//! NVMe queue pair against a model controller: function, batching, a
//! controller on another thread, and a hostile controller.

mod common;

use std::sync::Arc;

use common::{iterations, NvmeController};
use dma_coherence::HardwareCoherent;
use dma_core::{Coherent, DeviceConstraints, HostMemory};
use dma_direct::DirectPlatform;
use dma_ring::nvme::{
    opcode, NvmeCommand, NvmeCompletion, NvmeDoorbells, NvmeQueueConfig, NvmeQueuePair, NvmeStatus,
};
use dma_ring::{AtomicDoorbell, MemoryView, RingErrorKind, Slot};
use tock_registers::registers::WriteOnly;

type Platform = DirectPlatform<HostMemory, HardwareCoherent>;
type Qp =
    NvmeQueuePair<Coherent<[u64], &'static Platform>, Arc<AtomicDoorbell>, u32, Vec<Slot<u32>>>;

fn platform() -> &'static Platform {
    Box::leak(Box::new(DirectPlatform::x86_coherent(
        HostMemory,
        DeviceConstraints::UNCONSTRAINED,
    )))
}

struct Rig {
    qp: Qp,
    ctrl: NvmeController<MemoryView>,
    sq_db: Arc<AtomicDoorbell>,
    cq_db: Arc<AtomicDoorbell>,
}

impl Rig {
    fn new(sq_size: u32, cq_size: u32) -> Self {
        let sq_db = Arc::new(AtomicDoorbell::default());
        let cq_db = Arc::new(AtomicDoorbell::default());
        let config = NvmeQueueConfig {
            qid: 1,
            sq_size,
            cq_size,
        };
        let doorbells = NvmeDoorbells {
            sq_tail: sq_db.clone(),
            cq_head: cq_db.clone(),
        };
        let qp = Qp::allocate(platform(), config, doorbells).unwrap();
        // SAFETY: the views are used only while `qp` lives (same Rig).
        let (sq, cq) = unsafe {
            (
                MemoryView::of(qp.sq_memory()),
                MemoryView::of(qp.cq_memory()),
            )
        };
        Self {
            ctrl: NvmeController::new(sq, sq_size, cq, cq_size, 1),
            qp,
            sq_db,
            cq_db,
        }
    }

    fn read(lba: u32) -> NvmeCommand {
        let mut c = NvmeCommand::new(opcode::READ);
        c.cdw10[0] = lba;
        c
    }

    fn run_device(&mut self) -> u32 {
        self.ctrl.process(self.sq_db.value(), self.cq_db.value())
    }
}

#[test]
fn odd_sizes_wrap_many_passes_and_the_phase_inverts() {
    let mut rig = Rig::new(5, 3);
    let mut next = 0u32;
    let mut done = Vec::new();
    for _ in 0..40 {
        while rig.qp.can_push() {
            rig.qp.push(Rig::read(next), next).unwrap();
            next += 1;
        }
        rig.qp.ring_doorbell();
        rig.run_device();
        rig.qp
            .drain(|c| {
                assert!(c.status.is_success());
                assert_eq!(
                    c.dw0,
                    c.buffers + 1,
                    "the completion belongs to its buffers"
                );
                done.push(c.buffers);
            })
            .unwrap();
    }
    assert_eq!(done, (0..next).collect::<Vec<_>>());
    assert!(next >= 40, "at most cq_size - 1 = 2 in flight per round");
    assert_eq!(rig.qp.in_flight(), 0);
}

#[test]
fn a_batch_rings_each_doorbell_once() {
    let mut rig = Rig::new(64, 64);
    for i in 0..32 {
        rig.qp.push(Rig::read(i), i).unwrap();
    }
    assert_eq!(rig.sq_db.rings(), 0, "push alone does not ring");
    assert!(rig.qp.ring_doorbell());
    assert!(!rig.qp.ring_doorbell(), "nothing new: no second ring");
    assert_eq!((rig.sq_db.rings(), rig.sq_db.value()), (1, 32));
    assert_eq!(rig.run_device(), 32);
    assert_eq!(rig.qp.drain(|_| ()).unwrap(), 32);
    assert_eq!((rig.cq_db.rings(), rig.cq_db.value()), (1, 32));
}

#[test]
fn a_submission_batch_writes_the_tail_back_once_and_rings_once() {
    let mut rig = Rig::new(64, 64);
    let mut batch = rig.qp.batch();
    assert_eq!(batch.room(), 63);
    let cids: Vec<u16> = (0..32)
        .map(|i| batch.push(Rig::read(i), i).unwrap())
        .collect();
    assert_eq!(batch.room(), 31);
    assert!(batch.ring_doorbell());
    assert_eq!((rig.sq_db.rings(), rig.sq_db.value()), (1, 32));
    assert_eq!(rig.qp.in_flight(), 32);
    assert_eq!(rig.run_device(), 32);
    let mut done = Vec::new();
    assert_eq!(rig.qp.drain(|c| done.push((c.cid, c.buffers))).unwrap(), 32);
    assert_eq!(done, cids.into_iter().zip(0..32).collect::<Vec<_>>());
    assert_eq!(rig.qp.in_flight(), 0);
}

#[test]
fn a_dropped_batch_keeps_its_commands_for_the_next_doorbell() {
    let mut rig = Rig::new(8, 8);
    {
        let mut batch = rig.qp.batch();
        batch.push(Rig::read(0), 10).unwrap();
        batch.push(Rig::read(1), 11).unwrap();
    }
    assert_eq!(rig.sq_db.rings(), 0, "dropping a batch does not ring");
    // Single pushes continue from where the batch stopped.
    rig.qp.push(Rig::read(2), 12).unwrap();
    assert!(rig.qp.ring_doorbell());
    assert_eq!(rig.sq_db.value(), 3);
    assert_eq!(rig.run_device(), 3);
    let mut done = Vec::new();
    rig.qp.drain(|c| done.push(c.buffers)).unwrap();
    assert_eq!(done, [10, 11, 12]);
}

#[test]
fn a_batch_and_single_pushes_wrap_an_odd_queue_with_fresh_ids() {
    let mut rig = Rig::new(5, 7);
    let mut seen = std::collections::HashSet::new();
    let mut next = 0;
    for round in 0..20 {
        let mut batch = rig.qp.batch();
        while batch.room() > usize::from(round % 2 == 0) as u32 {
            // 14 generation bits: no id repeats in these 80 commands.
            assert!(seen.insert(batch.push(Rig::read(next), next).unwrap()));
            next += 1;
        }
        drop(batch);
        if rig.qp.can_push() {
            assert!(seen.insert(rig.qp.push(Rig::read(next), next).unwrap()));
            next += 1;
        }
        rig.qp.ring_doorbell();
        rig.run_device();
        let mut done = Vec::new();
        rig.qp.drain(|c| done.push(c.buffers)).unwrap();
        assert_eq!(done.len(), 4, "sq_size - 1 per round");
        assert_eq!(done, (next - 4..next).collect::<Vec<_>>());
    }
    assert_eq!(rig.qp.in_flight(), 0);
}

#[test]
fn a_full_batch_hands_the_buffers_back() {
    // Four slots for a 8-entry SQ: the slot table is the limit.
    let sq_db = Arc::new(AtomicDoorbell::default());
    let cq_db = Arc::new(AtomicDoorbell::default());
    let config = NvmeQueueConfig {
        qid: 1,
        sq_size: 8,
        cq_size: 8,
    };
    let doorbells = NvmeDoorbells {
        sq_tail: sq_db.clone(),
        cq_head: cq_db,
    };
    let p = platform();
    let mem = |bytes: usize| Coherent::zeroed_slice(p, bytes / 8).unwrap();
    let mut qp = NvmeQueuePair::new(
        config,
        mem(8 * 64),
        mem(8 * 16),
        doorbells,
        dma_ring::slot_vec::<u32>(4),
    )
    .unwrap();
    qp.push(Rig::read(0), 0).unwrap();
    let mut batch = qp.batch();
    assert_eq!(batch.room(), 3);
    for i in 1..4 {
        batch.push(Rig::read(i), i).unwrap();
    }
    let rejected = batch.push(Rig::read(4), 4).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Full, 4)
    );
    assert!(batch.ring_doorbell());
    assert_eq!(sq_db.value(), 4);
    assert_eq!(qp.in_flight(), 4);
    assert_eq!(qp.reset().collect::<Vec<_>>(), [0, 1, 2, 3]);
}

#[test]
fn a_full_queue_hands_the_buffers_back() {
    let mut rig = Rig::new(3, 8);
    rig.qp.push(Rig::read(0), 0).unwrap();
    rig.qp.push(Rig::read(1), 1).unwrap();
    let rejected = rig.qp.push(Rig::read(2), 2).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Full, 2)
    );
}

#[test]
fn bad_sizes_and_memory_are_refused() {
    let db = Arc::new(AtomicDoorbell::default());
    let doorbells = || NvmeDoorbells {
        sq_tail: db.clone(),
        cq_head: db.clone(),
    };
    let bad = NvmeQueueConfig {
        qid: 1,
        sq_size: 1,
        cq_size: 4,
    };
    assert!(Qp::allocate(platform(), bad, doorbells()).is_err());
    let config = NvmeQueueConfig {
        qid: 1,
        sq_size: 4,
        cq_size: 4,
    };
    let small = Coherent::<[u64], _>::zeroed_slice(platform(), 4).unwrap();
    let cq = Coherent::<[u64], _>::zeroed_slice(platform(), 8).unwrap();
    let err = NvmeQueuePair::new(config, small, cq, doorbells(), dma_ring::slot_vec::<u32>(4))
        .err()
        .unwrap();
    assert_eq!(err.kind(), RingErrorKind::BadMemory);
}

#[test]
fn tock_register_doorbells_receive_the_tail_and_head() {
    // A doorbell page in RAM, as a simulator or a test would provide it.
    let page = Box::leak(Box::new([0u32; 2]));
    let ptr = page.as_mut_ptr();
    // SAFETY: 8 bytes, 4-aligned, live for the program; the register types
    // are UnsafeCell-based, so writes through a shared reference are fine,
    // and the array is read back only with volatile loads below.
    let regs: &[WriteOnly<u32>; 2] = unsafe { &*ptr.cast::<[WriteOnly<u32>; 2]>() };
    let doorbells = NvmeDoorbells {
        sq_tail: &regs[0],
        cq_head: &regs[1],
    };
    let config = NvmeQueueConfig {
        qid: 1,
        sq_size: 4,
        cq_size: 4,
    };
    let mut qp = NvmeQueuePair::<_, _, u32, _>::allocate(platform(), config, doorbells).unwrap();
    qp.submit(Rig::read(0), 0).unwrap();
    qp.submit(Rig::read(1), 1).unwrap();
    // SAFETY: reading the doorbell words the driver wrote.
    let (sq_tail, cq_head) = unsafe { (ptr.read_volatile(), ptr.add(1).read_volatile()) };
    assert_eq!((sq_tail, cq_head), (2, 0));
}

#[test]
fn a_controller_on_another_thread() {
    let Rig {
        mut qp,
        mut ctrl,
        sq_db,
        cq_db,
    } = Rig::new(33, 17);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let device = {
        let (stop, sq_db, cq_db) = (stop.clone(), sq_db.clone(), cq_db.clone());
        std::thread::spawn(move || {
            let mut ran = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                ran += ctrl.process(sq_db.value(), cq_db.value());
                std::hint::spin_loop();
            }
            ran
        })
    };
    // Wraps the ring dozens of times (a few times under Miri).
    let total = iterations(5000, 300);
    let (mut sent, mut got) = (0u32, 0u32);
    while got < total {
        while sent < total && qp.can_push() {
            qp.push(Rig::read(sent), sent).unwrap();
            sent += 1;
        }
        qp.ring_doorbell();
        got += qp.drain(|c| assert_eq!(c.dw0, c.buffers + 1)).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(device.join().unwrap(), total);
}

// ---- a hostile controller ----

fn entry(rig: &Rig, cid: u16, sq_head: u16, phase: bool) -> NvmeCompletion {
    NvmeCompletion {
        sq_head,
        sq_id: rig.ctrl.qid,
        cid,
        status: NvmeStatus::SUCCESS.with_phase(phase),
        ..Default::default()
    }
}

#[test]
fn an_out_of_range_command_id_is_an_error_and_breaks_the_queue() {
    // 5 usable slots: 3 index bits, so index 7 names no slot.
    let mut rig = Rig::new(6, 6);
    rig.qp.submit(Rig::read(0), 0).unwrap();
    rig.ctrl.fetch();
    rig.ctrl.raw_post(0, entry(&rig, 7, 1, true));
    let err = rig.qp.poll().unwrap_err();
    assert_eq!(err.kind(), RingErrorKind::UnknownId);
    assert!(err.kind().is_device_fault());
    assert!(rig.qp.is_broken());
    assert_eq!(rig.qp.poll().unwrap_err().kind(), RingErrorKind::Broken);
    let rejected = rig.qp.submit(Rig::read(1), 1).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Broken, 1)
    );
    let mut batch = rig.qp.batch();
    assert_eq!(batch.room(), 0);
    let rejected = batch.push(Rig::read(2), 2).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Broken, 2)
    );
    assert!(!batch.ring_doorbell(), "nothing pushed, nothing rung");
    // After the controller reset: the in-flight buffer comes back once.
    assert_eq!(rig.qp.reset().collect::<Vec<_>>(), [0]);
    assert!(!rig.qp.is_broken());
    assert_eq!(rig.qp.in_flight(), 0);
}

#[test]
fn a_repeated_completion_never_returns_a_buffer_twice() {
    let mut rig = Rig::new(8, 8);
    let a = rig.qp.push(Rig::read(0), 100).unwrap();
    rig.qp.push(Rig::read(1), 101).unwrap();
    rig.qp.ring_doorbell();
    rig.ctrl.fetch();
    rig.ctrl.complete(a, NvmeStatus::SUCCESS, 0);
    rig.ctrl.complete(a, NvmeStatus::SUCCESS, 0); // again
    assert_eq!(rig.qp.poll().unwrap().unwrap().buffers, 100);
    assert_eq!(
        rig.qp.poll().unwrap_err().kind(),
        RingErrorKind::NotInFlight
    );
    assert_eq!(rig.qp.reset().collect::<Vec<_>>(), [101]);
}

#[test]
fn a_stale_entry_with_its_phase_flipped_is_refused() {
    // Pass 1 fills CQ slot 0 with cid A. On pass 2 the controller flips
    // only the phase of that stale entry: its cid's generation is old.
    let mut rig = Rig::new(3, 2);
    rig.qp.submit(Rig::read(0), 0).unwrap();
    rig.run_device();
    let first = rig.qp.poll().unwrap().unwrap();
    rig.qp.release_completions();
    rig.qp.submit(Rig::read(1), 1).unwrap();
    rig.run_device(); // slot 1, then the CQ wraps: phase 0 next
    rig.qp.drain(|c| assert_eq!(c.buffers, 1)).unwrap();
    rig.qp.submit(Rig::read(2), 2).unwrap(); // reuses first's slot
    let stale = entry(&rig, first.cid, 0, false);
    rig.ctrl.raw_post(
        0,
        NvmeCompletion {
            sq_head: 0,
            ..stale
        },
    );
    let err = rig.qp.poll().unwrap_err();
    assert_eq!(err.kind(), RingErrorKind::NotInFlight);
    assert_eq!(rig.qp.reset().collect::<Vec<_>>(), [2]);
}

#[test]
fn a_completion_with_nothing_in_flight_is_refused() {
    let mut rig = Rig::new(4, 4);
    rig.ctrl.raw_post(0, entry(&rig, 0, 0, true));
    assert_eq!(
        rig.qp.poll().unwrap_err().kind(),
        RingErrorKind::UnexpectedCompletion
    );
}

#[test]
fn a_completion_for_another_queue_is_refused() {
    let mut rig = Rig::new(4, 4);
    let cid = rig.qp.submit(Rig::read(0), 0).unwrap();
    rig.ctrl.raw_post(
        0,
        NvmeCompletion {
            sq_id: 9,
            ..entry(&rig, cid, 1, true)
        },
    );
    assert_eq!(rig.qp.poll().unwrap_err().kind(), RingErrorKind::WrongQueue);
}

#[test]
fn an_sq_head_beyond_the_doorbell_is_refused() {
    let mut rig = Rig::new(8, 8);
    let cid = rig.qp.submit(Rig::read(0), 0).unwrap();
    rig.qp.push(Rig::read(1), 1).unwrap(); // written, not yet announced
    rig.ctrl.raw_post(0, entry(&rig, cid, 2, true));
    let err = rig.qp.poll().unwrap_err();
    assert_eq!(
        (err.kind(), err.value()),
        (RingErrorKind::IndexJump, Some(2))
    );
    let mut fresh = Rig::new(8, 8);
    let cid = fresh.qp.submit(Rig::read(0), 0).unwrap();
    fresh.ctrl.raw_post(0, entry(&fresh, cid, 40, true));
    assert_eq!(
        fresh.qp.poll().unwrap_err().kind(),
        RingErrorKind::IndexJump
    );
}

#[test]
fn an_sq_head_past_the_end_of_a_wrapped_queue_is_refused() {
    // SQ head at 6 of 8, the announced tail wrapped round to 2: a reported
    // head of 9 is 3 entries on from 6 by subtraction, inside the 4
    // announced, but names no entry.
    let mut rig = Rig::new(8, 8);
    for i in 0..6 {
        rig.qp.push(Rig::read(i), i).unwrap();
    }
    rig.qp.ring_doorbell();
    assert_eq!(rig.run_device(), 6);
    assert_eq!(rig.qp.drain(|_| ()).unwrap(), 6);
    let cids: Vec<u16> = (0..4)
        .map(|i| rig.qp.push(Rig::read(i), 10 + i).unwrap())
        .collect();
    rig.qp.ring_doorbell();
    rig.ctrl.raw_post(6, entry(&rig, cids[0], 9, true));
    let err = rig.qp.poll_many(4, |_| ()).unwrap_err();
    assert_eq!(
        (err.kind(), err.value()),
        (RingErrorKind::IndexJump, Some(9))
    );
    let mut back: Vec<u32> = rig.qp.reset().collect();
    back.sort();
    assert_eq!(back, [10, 11, 12, 13], "each buffer once");
}

#[test]
fn an_error_status_is_returned_with_the_buffers() {
    let mut rig = Rig::new(4, 4);
    let cid = rig.qp.submit(Rig::read(0), 7).unwrap();
    rig.ctrl.fetch();
    rig.ctrl.complete(cid, NvmeStatus::new(2, 0x81), 0);
    let c = rig.qp.poll().unwrap().unwrap();
    assert_eq!(
        (c.buffers, c.status.code_type(), c.status.code()),
        (7, 2, 0x81)
    );
    assert!(!c.status.is_success());
}

// ---- batched reaping ----

#[test]
fn poll_many_reaps_in_order_up_to_max_across_the_wrap() {
    // 7-entry CQ, 6 in flight per round: every round wraps the CQ and
    // flips the phase inside one call; `max` splits the rounds.
    let mut rig = Rig::new(7, 7);
    let mut next = 0u32;
    let mut done = Vec::new();
    for _ in 0..10 {
        while rig.qp.can_push() {
            rig.qp.push(Rig::read(next), next).unwrap();
            next += 1;
        }
        rig.qp.ring_doorbell();
        assert_eq!(rig.run_device(), 6);
        let first = rig.qp.poll_many(4, |c| done.push(c.buffers)).unwrap();
        assert_eq!(first, 4, "stops at max");
        let rest = rig
            .qp
            .poll_many(u32::MAX, |c| {
                assert_eq!(c.dw0, c.buffers + 1);
                done.push(c.buffers);
            })
            .unwrap();
        assert_eq!(rest, 2, "stops at the first entry not posted");
        assert_eq!(rig.qp.poll_many(8, |_| ()).unwrap(), 0);
        assert!(rig.qp.release_completions());
    }
    assert_eq!(done, (0..next).collect::<Vec<_>>());
    assert_eq!(rig.qp.in_flight(), 0);
}

#[test]
fn poll_many_reaps_a_long_run_in_one_call() {
    // More than a batch of 32, in one call, one CQ head doorbell.
    let chunk = 32;
    let mut rig = Rig::new(128, 128);
    for i in 0..chunk + 5 {
        rig.qp.push(Rig::read(i), i).unwrap();
    }
    rig.qp.ring_doorbell();
    assert_eq!(rig.run_device(), chunk + 5);
    let mut got = Vec::new();
    assert_eq!(rig.qp.drain(|c| got.push(c.buffers)).unwrap(), chunk + 5);
    assert_eq!(got, (0..chunk + 5).collect::<Vec<_>>());
    assert_eq!((rig.cq_db.rings(), rig.cq_db.value()), (1, chunk + 5));
}

#[test]
fn poll_many_hands_over_the_entries_before_a_bad_one_then_breaks() {
    let mut rig = Rig::new(8, 8);
    for i in 0..3 {
        rig.qp.push(Rig::read(i), 10 + i).unwrap();
    }
    rig.qp.ring_doorbell();
    let first = rig.ctrl.fetch();
    rig.ctrl.complete(first.cid(), NvmeStatus::SUCCESS, 0);
    // The second entry repeats the first's id: refused, the first counts.
    rig.ctrl.fetch();
    rig.ctrl.complete(first.cid(), NvmeStatus::SUCCESS, 0);
    let mut got = Vec::new();
    let err = rig.qp.poll_many(8, |c| got.push(c.buffers)).unwrap_err();
    assert_eq!(err.kind(), RingErrorKind::NotInFlight);
    assert_eq!(got, [10]);
    assert!(rig.qp.is_broken());
    assert!(rig.qp.release_completions(), "the good entry is released");
    assert_eq!(rig.cq_db.value(), 1);
    assert_eq!(
        rig.qp.poll_many(8, |_| ()).unwrap_err().kind(),
        RingErrorKind::Broken
    );
    let mut back: Vec<u32> = rig.qp.reset().collect();
    back.sort();
    assert_eq!(back, [11, 12], "each remaining buffer once");
}

#[test]
fn poll_many_refuses_an_sq_head_moving_backwards_inside_a_chunk() {
    let mut rig = Rig::new(8, 8);
    let a = rig.qp.push(Rig::read(0), 0).unwrap();
    let b = rig.qp.push(Rig::read(1), 1).unwrap();
    rig.qp.ring_doorbell();
    rig.ctrl.raw_post(0, entry(&rig, a, 2, true));
    rig.ctrl.raw_post(1, entry(&rig, b, 1, true)); // head 2, then 1
    let mut got = Vec::new();
    let err = rig.qp.poll_many(8, |c| got.push(c.buffers)).unwrap_err();
    assert_eq!(err.kind(), RingErrorKind::IndexJump);
    assert_eq!(got, [0]);
    assert_eq!(rig.qp.reset().collect::<Vec<_>>(), [1]);
}

#[test]
fn a_replayed_completion_for_a_reused_slot_of_a_huge_queue_is_refused() {
    // 65536 entries and as many slots offered: ids must keep generation
    // bits, so the reused slot's new id differs from the old one.
    let mut rig = Rig::new(65536, 65536);
    let old = rig.qp.submit(Rig::read(0), 1).unwrap();
    rig.ctrl.fetch();
    rig.ctrl.complete(old, NvmeStatus::SUCCESS, 0);
    assert_eq!(rig.qp.poll().unwrap().unwrap().buffers, 1);
    let new = rig.qp.submit(Rig::read(1), 2).unwrap();
    assert_ne!(old, new, "the reused slot's id carries a new generation");
    // The controller replays the old completion before running the new
    // command: the new request's buffer must not come back.
    rig.ctrl.complete(old, NvmeStatus::SUCCESS, 0);
    assert_eq!(
        rig.qp.poll().unwrap_err().kind(),
        RingErrorKind::NotInFlight
    );
    assert_eq!(rig.qp.reset().collect::<Vec<_>>(), [2]);
}

#[test]
fn a_completion_for_a_command_never_announced_is_refused() {
    let mut rig = Rig::new(8, 8);
    let announced = rig.qp.submit(Rig::read(0), 1).unwrap();
    let hidden = rig.qp.push(Rig::read(1), 2).unwrap(); // no doorbell
    rig.ctrl.fetch();
    // The controller reports the announced command fetched, then claims
    // the hidden one too.
    rig.ctrl.raw_post(0, entry(&rig, hidden, 1, true));
    let err = rig.qp.poll().unwrap_err();
    assert_eq!(err.kind(), RingErrorKind::UnexpectedCompletion);
    assert_eq!(err.value(), Some(u64::from(hidden)));
    assert!(rig.qp.is_broken());
    let mut back = rig.qp.reset().collect::<Vec<_>>();
    back.sort();
    assert_eq!(back, [1, 2]);
    let _ = announced;
}

#[test]
fn a_leaked_reset_drain_refuses_new_commands_until_reset_hands_the_buffers_back() {
    let mut rig = Rig::new(8, 8);
    rig.qp.submit(Rig::read(0), 1).unwrap();
    rig.qp.submit(Rig::read(1), 2).unwrap();
    std::mem::forget(rig.qp.reset());
    let rejected = rig.qp.submit(Rig::read(2), 3).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Unreclaimed, 3)
    );
    let rejected = rig.qp.batch().push(Rig::read(2), 4).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Unreclaimed, 4)
    );
    let mut back = rig.qp.reset().collect::<Vec<_>>();
    back.sort();
    assert_eq!(back, [1, 2], "nothing dropped, nothing lost");
    rig.qp.submit(Rig::read(2), 5).unwrap();
}

#[test]
fn a_leaked_batch_is_taken_over_as_if_dropped_and_loses_no_buffer() {
    let mut rig = Rig::new(8, 8);
    let mut batch = rig.qp.batch();
    batch.push(Rig::read(0), 10).unwrap();
    batch.push(Rig::read(1), 11).unwrap();
    std::mem::forget(batch);
    assert_eq!(rig.qp.in_flight(), 2, "the leaked batch's commands count");
    assert!(rig.qp.can_push());
    // The next push lands after them, in a fresh slot and SQ entry.
    rig.qp.push(Rig::read(2), 12).unwrap();
    assert!(rig.qp.ring_doorbell());
    assert_eq!(rig.sq_db.value(), 3, "one doorbell announces all three");
    assert_eq!(rig.run_device(), 3);
    let mut done = Vec::new();
    rig.qp.drain(|c| done.push(c.buffers)).unwrap();
    assert_eq!(done, [10, 11, 12], "every buffer back once, none dropped");
    assert_eq!(rig.qp.in_flight(), 0);
}

#[test]
fn a_leaked_full_batch_leaves_no_room() {
    let mut rig = Rig::new(4, 4);
    let mut batch = rig.qp.batch();
    for i in 0..3 {
        batch.push(Rig::read(i), i).unwrap();
    }
    std::mem::forget(batch);
    assert!(!rig.qp.can_push());
    let rejected = rig.qp.push(Rig::read(3), 3).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Full, 3)
    );
    let mut back = rig.qp.reset().collect::<Vec<_>>();
    back.sort();
    assert_eq!(
        back,
        [0, 1, 2],
        "reset hands the leaked batch's buffers back"
    );
}

#[test]
fn a_completion_for_a_leaked_batch_command_is_refused() {
    let mut rig = Rig::new(8, 8);
    rig.qp.submit(Rig::read(0), 1).unwrap();
    let mut batch = rig.qp.batch();
    let hidden = batch.push(Rig::read(1), 2).unwrap();
    std::mem::forget(batch);
    rig.ctrl.fetch();
    // The controller claims the command the leaked batch never announced.
    rig.ctrl.raw_post(0, entry(&rig, hidden, 1, true));
    let err = rig.qp.poll().unwrap_err();
    assert_eq!(err.kind(), RingErrorKind::UnexpectedCompletion);
    assert_eq!(err.value(), Some(u64::from(hidden)));
    let mut back = rig.qp.reset().collect::<Vec<_>>();
    back.sort();
    assert_eq!(back, [1, 2]);
}
