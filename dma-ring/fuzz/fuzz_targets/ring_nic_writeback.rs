//! Fuzzes the NIC rings' write-back parsing: RX buffers are posted and TX
//! packets queued while a hostile NIC writes anything anywhere in both
//! descriptor rings; `poll` must hand every buffer back once with a length
//! within the posted one, fail only with device-fault kinds, and `reset`
//! must return the rest.
#![no_main]

use std::sync::Arc;

use dma_core::{Coherent, DmaAddr};
use dma_ring::nic::{NicRxRing, NicTxRing, TxSegment};
use dma_ring::{slot_vec, AtomicDoorbell, MemoryView};
use dma_ring_fuzz::{platform, Ledger, Scribble};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Post(u16),
    Transmit(u8),
    RxDoorbell,
    TxDoorbell,
    Rx(Scribble),
    Tx(Scribble),
    RxPoll,
    TxPoll,
    RxReset,
    TxReset,
}

#[derive(Arbitrary, Debug)]
struct Input {
    rx_size: u8,
    tx_size: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let rx_size = 2 + u32::from(input.rx_size % 63);
    let tx_size = 2 + u32::from(input.tx_size % 63);
    let mem = |size: u32| Coherent::zeroed_slice(platform(), size as usize * 2).unwrap();
    let mut rx = NicRxRing::new(
        mem(rx_size),
        rx_size,
        Arc::new(AtomicDoorbell::default()),
        slot_vec(rx_size as usize),
    )
    .unwrap();
    let mut tx = NicTxRing::new(
        mem(tx_size),
        tx_size,
        Arc::new(AtomicDoorbell::default()),
        slot_vec(tx_size as usize),
    )
    .unwrap();
    // SAFETY: the views are used only while the rings live (this closure).
    let (rx_view, tx_view) = unsafe { (MemoryView::of(rx.memory()), MemoryView::of(tx.memory())) };
    let (mut rx_ledger, mut tx_ledger) = (Ledger::default(), Ledger::default());
    for op in input.ops.iter().take(512) {
        match *op {
            Op::Post(len) => {
                let token = rx_ledger.token();
                let addr = DmaAddr::new(u64::from(token) << 12);
                rx_ledger.submitted(token, len.into(), rx.post(addr, len, token));
            }
            Op::Transmit(n) => {
                let token = tx_ledger.token();
                let segments: Vec<TxSegment> = (0..n % 5)
                    .map(|i| TxSegment {
                        addr: DmaAddr::new(u64::from(token) << 12 | u64::from(i) << 8),
                        len: 60,
                    })
                    .collect();
                tx_ledger.submitted(token, 0, tx.transmit(&segments, token));
            }
            Op::RxDoorbell => {
                rx.ring_doorbell();
            }
            Op::TxDoorbell => {
                tx.ring_doorbell();
            }
            Op::Rx(s) => s.apply(&rx_view),
            Op::Tx(s) => s.apply(&tx_view),
            Op::RxPoll => match rx.poll() {
                Ok(Some(got)) => rx_ledger.completed(got.buffer, got.len.into()),
                Ok(None) => {}
                Err(e) => rx_ledger.failed(e.kind()),
            },
            Op::TxPoll => match tx.poll() {
                Ok(Some(sent)) => tx_ledger.completed(sent.buffers, 0),
                Ok(None) => {}
                Err(e) => tx_ledger.failed(e.kind()),
            },
            Op::RxReset => rx_ledger.reset(rx.reset()),
            Op::TxReset => tx_ledger.reset(tx.reset()),
        }
    }
    rx_ledger.reset(rx.reset());
    tx_ledger.reset(tx.reset());
});
