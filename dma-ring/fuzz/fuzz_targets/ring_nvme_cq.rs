//! Fuzzes the NVMe completion-queue parsing: commands are pushed and
//! announced, while a hostile controller writes anything anywhere in both
//! queues; `poll`, `poll_many` and `drain` must hand every buffer back once,
//! fail only with device-fault kinds, and `reset` must return the rest.
#![no_main]

use std::sync::Arc;

use dma_ring::nvme::{opcode, NvmeCommand, NvmeDoorbells, NvmeQueueConfig, NvmeQueuePair};
use dma_ring::{AtomicDoorbell, MemoryView};
use dma_ring_fuzz::{platform, Ledger, Scribble};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Push,
    RingDoorbell,
    Cq(Scribble),
    Sq(Scribble),
    Poll,
    PollMany(u8),
    Drain,
    Release,
    Reset,
}

#[derive(Arbitrary, Debug)]
struct Input {
    sq_size: u8,
    cq_size: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let config = NvmeQueueConfig {
        qid: 1,
        sq_size: 2 + u32::from(input.sq_size % 63),
        cq_size: 2 + u32::from(input.cq_size % 63),
    };
    let doorbells = NvmeDoorbells {
        sq_tail: Arc::new(AtomicDoorbell::default()),
        cq_head: Arc::new(AtomicDoorbell::default()),
    };
    let mut qp = NvmeQueuePair::allocate(platform(), config, doorbells).unwrap();
    // SAFETY: the views are used only while `qp` lives (this closure).
    let (sq, cq) = unsafe { (MemoryView::of(qp.sq_memory()), MemoryView::of(qp.cq_memory())) };
    let mut ledger = Ledger::default();
    for op in input.ops.iter().take(512) {
        match *op {
            Op::Push => {
                let token = ledger.token();
                ledger.submitted(token, 0, qp.push(NvmeCommand::new(opcode::READ), token));
            }
            Op::RingDoorbell => {
                qp.ring_doorbell();
            }
            Op::Cq(s) => s.apply(&cq),
            Op::Sq(s) => s.apply(&sq),
            Op::Poll => match qp.poll() {
                Ok(Some(done)) => ledger.completed(done.buffers, 0),
                Ok(None) => {}
                Err(e) => ledger.failed(e.kind()),
            },
            Op::PollMany(max) => {
                if let Err(e) = qp.poll_many(max.into(), |done| ledger.completed(done.buffers, 0)) {
                    ledger.failed(e.kind());
                }
            }
            Op::Drain => {
                if let Err(e) = qp.drain(|done| ledger.completed(done.buffers, 0)) {
                    ledger.failed(e.kind());
                }
            }
            Op::Release => {
                qp.release_completions();
            }
            Op::Reset => ledger.reset(qp.reset()),
        }
    }
    ledger.reset(qp.reset());
});
