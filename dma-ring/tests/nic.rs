//! NIC RX and TX rings against a model NIC, and a hostile one.

mod common;

use std::sync::Arc;

use common::{iterations, NicDevice};
use dma_coherence::HardwareCoherent;
use dma_core::{Coherent, DeviceConstraints, DmaAddr, HostMemory};
use dma_direct::DirectPlatform;
use dma_ring::nic::{NicRxRing, NicTxRing, RxStatus, TxSegment, TxStatus};
use dma_ring::{slot_vec, AtomicDoorbell, MemoryView, RingErrorKind, Slot};
use tock_registers::interfaces::Readable;
use tock_registers::registers::ReadWrite;

type Platform = DirectPlatform<HostMemory, HardwareCoherent>;
type Mem = Coherent<[u64], &'static Platform>;
type Rx = NicRxRing<Mem, Arc<AtomicDoorbell>, u32, Vec<Slot<u32>>>;
type Tx = NicTxRing<Mem, Arc<AtomicDoorbell>, u32, Vec<Slot<u32>>>;

fn platform() -> &'static Platform {
    Box::leak(Box::new(DirectPlatform::x86_coherent(
        HostMemory,
        DeviceConstraints::UNCONSTRAINED,
    )))
}

fn rx(size: u32) -> (Rx, NicDevice<MemoryView>, Arc<AtomicDoorbell>) {
    let mem = Coherent::zeroed_slice(platform(), size as usize * 2).unwrap();
    let tail = Arc::new(AtomicDoorbell::default());
    let ring = NicRxRing::new(mem, size, tail.clone(), slot_vec(size as usize)).unwrap();
    // SAFETY: used while the ring lives.
    let view = unsafe { MemoryView::of(ring.memory()) };
    (ring, NicDevice::new(view, size), tail)
}

fn tx(size: u32) -> (Tx, NicDevice<MemoryView>, Arc<AtomicDoorbell>) {
    let mem = Coherent::zeroed_slice(platform(), size as usize * 2).unwrap();
    let tail = Arc::new(AtomicDoorbell::default());
    let ring = NicTxRing::new(mem, size, tail.clone(), slot_vec(size as usize)).unwrap();
    // SAFETY: used while the ring lives.
    let view = unsafe { MemoryView::of(ring.memory()) };
    (ring, NicDevice::new(view, size), tail)
}

fn buf(i: u32) -> (DmaAddr, u16, u32) {
    (DmaAddr::new(0x10_0000 + u64::from(i) * 0x800), 2048, i)
}

#[test]
fn rx_receives_in_order_and_refills_across_many_laps() {
    let (mut ring, mut nic, tail) = rx(7);
    let mut next = 0;
    assert_eq!(
        ring.refill(|| {
            next += 1;
            Some(buf(next - 1))
        }),
        6
    );
    assert_eq!(tail.rings(), 1, "one tail write for the whole refill");
    let mut got = Vec::new();
    for p in 0..50u32 {
        let addr = nic
            .receive(tail.value(), 64 + p as u16)
            .expect("a posted buffer");
        let r = ring.poll().unwrap().unwrap();
        assert_eq!(addr, 0x10_0000 + u64::from(r.buffer) * 0x800);
        assert_eq!(r.len, 64 + p as u16);
        assert!(r.status.contains(RxStatus::DD | RxStatus::EOP));
        got.push(r.buffer);
        ring.refill(|| {
            next += 1;
            Some(buf(next - 1))
        });
    }
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    assert!(ring.poll().unwrap().is_none());
}

#[test]
fn rx_without_buffers_receives_nothing() {
    let (mut ring, mut nic, tail) = rx(4);
    assert_eq!(nic.receive(tail.value(), 60), None);
    assert!(ring.poll().unwrap().is_none());
    let rejected = ring.post(DmaAddr::new(0x1000), 0, 9).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::BadRequest, 9)
    );
}

#[test]
fn rx_full_ring_hands_the_buffer_back() {
    let (mut ring, _, _) = rx(3);
    ring.post(buf(0).0, 2048, 0).unwrap();
    ring.post(buf(1).0, 2048, 1).unwrap();
    let rejected = ring.post(buf(2).0, 2048, 2).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Full, 2)
    );
}

#[test]
fn tx_sends_multi_segment_packets_and_returns_buffers() {
    let (mut ring, mut nic, tail) = tx(5);
    for p in 0..20u32 {
        let segs = [
            TxSegment {
                addr: DmaAddr::new(0x1000 + u64::from(p)),
                len: 14,
            },
            TxSegment {
                addr: DmaAddr::new(0x9000 + u64::from(p)),
                len: 1000,
            },
        ];
        ring.transmit(&segs, p).unwrap();
        ring.ring_doorbell();
        assert!(ring.poll().unwrap().is_none(), "not sent yet");
        let sent = nic.transmit(tail.value());
        assert_eq!(
            sent,
            [(0x1000 + u64::from(p), 14), (0x9000 + u64::from(p), 1000)]
        );
        let done = ring.poll().unwrap().unwrap();
        assert_eq!(done.buffers, p);
        assert!(done.status.contains(TxStatus::DD));
    }
    assert_eq!(ring.free(), 4);
}

#[test]
fn tx_refuses_bad_and_oversized_packets() {
    let (mut ring, _, _) = tx(3);
    let seg = TxSegment {
        addr: DmaAddr::new(0x1000),
        len: 60,
    };
    assert_eq!(
        ring.transmit(&[], 1).unwrap_err().kind(),
        RingErrorKind::BadRequest
    );
    assert_eq!(
        ring.transmit(&[seg; 3], 2).unwrap_err().kind(),
        RingErrorKind::BadRequest
    );
    ring.transmit(&[seg], 3).unwrap();
    let r = ring.transmit(&[seg; 2], 4).unwrap_err();
    assert_eq!((r.kind(), r.buffers), (RingErrorKind::Full, 4));
}

#[test]
fn a_tock_register_tail_receives_the_doorbell() {
    let block = Box::leak(Box::new([0u32; 1]));
    // SAFETY: 4 bytes, 4-aligned, live for the program; register types
    // are UnsafeCell-based.
    let tail: &ReadWrite<u32> = unsafe { &*block.as_mut_ptr().cast::<ReadWrite<u32>>() };
    let mem = Coherent::zeroed_slice(platform(), 16).unwrap();
    let mut ring = NicRxRing::<Mem, _, u32, _>::new(mem, 8, tail, slot_vec(8)).unwrap();
    ring.post(DmaAddr::new(0x4000), 2048, 1).unwrap();
    assert_eq!(tail.get(), 0, "posting alone does not ring");
    ring.ring_doorbell();
    assert_eq!((ring.bytes(), tail.get()), (128, 1));
}

// ---- a hostile NIC ----

#[test]
fn rx_length_beyond_the_posted_buffer_is_an_error_and_breaks_the_ring() {
    let (mut ring, nic, _) = rx(4);
    ring.post(DmaAddr::new(0x1000), 256, 5).unwrap();
    ring.ring_doorbell();
    nic.raw_write_back(0, 257, 0x0003);
    let err = ring.poll().unwrap_err();
    assert_eq!(
        (err.kind(), err.value()),
        (RingErrorKind::LengthTooLarge, Some(257))
    );
    assert_eq!(ring.poll().unwrap_err().kind(), RingErrorKind::Broken);
    assert_eq!(
        ring.post(DmaAddr::new(0x2000), 256, 6).unwrap_err().buffers,
        6
    );
    assert_eq!(ring.reset().collect::<Vec<_>>(), [5]);
    assert!(!ring.is_broken());
}

#[test]
fn rx_done_bit_on_a_descriptor_never_handed_over_is_an_error() {
    let (mut ring, nic, _) = rx(4);
    ring.post(DmaAddr::new(0x1000), 256, 5).unwrap(); // no doorbell yet
    nic.raw_write_back(0, 60, 0x0003);
    assert_eq!(
        ring.poll().unwrap_err().kind(),
        RingErrorKind::UnexpectedCompletion
    );
    assert_eq!(ring.reset().count(), 1);
}

#[test]
fn rx_done_bit_beyond_the_posted_buffers_is_ignored_and_nothing_is_returned() {
    let (mut ring, nic, _) = rx(4);
    nic.raw_write_back(2, 60, 0x0003);
    assert!(ring.poll().unwrap().is_none());
}

#[test]
fn tx_done_bit_before_the_doorbell_is_an_error() {
    let (mut ring, nic, _) = tx(4);
    ring.transmit(
        &[TxSegment {
            addr: DmaAddr::new(0x1000),
            len: 60,
        }],
        1,
    )
    .unwrap();
    nic.raw_write_back(0, 0, 0x0001);
    assert_eq!(
        ring.poll().unwrap_err().kind(),
        RingErrorKind::UnexpectedCompletion
    );
    assert_eq!(ring.poll().unwrap_err().kind(), RingErrorKind::Broken);
    assert_eq!(ring.reset().collect::<Vec<_>>(), [1]);
}

#[test]
fn rx_a_device_on_another_thread() {
    let (mut ring, mut nic, tail) = rx(64);
    // Wraps the ring dozens of times (a few times under Miri).
    let total = iterations(5000, 300);
    let device = {
        let tail = tail.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while n < total {
                if nic.receive(tail.value(), (n % 1500) as u16 + 1).is_some() {
                    n += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let (mut next, mut got) = (0u32, 0u32);
    while got < total {
        ring.refill(|| {
            next += 1;
            Some(buf(next - 1))
        });
        while let Some(r) = ring.poll().unwrap() {
            assert_eq!(r.buffer, got);
            assert_eq!(r.len, (got % 1500) as u16 + 1);
            got += 1;
        }
    }
    device.join().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "65,535 descriptors; the slot table's unit tests cover the drain under Miri"
)]
fn a_ring_of_65536_hands_back_the_buffer_at_descriptor_65535_on_reset() {
    let (mut ring, mut nic, tail) = rx(65536);
    let mut next = 0;
    assert_eq!(
        ring.refill(|| {
            next += 1;
            Some(buf(next - 1))
        }),
        65535
    );
    nic.receive(tail.value(), 60).unwrap();
    assert_eq!(ring.poll().unwrap().unwrap().buffer, 0);
    // The tail wraps onto descriptor 65535.
    ring.post(buf(65535).0, 2048, 65535).unwrap();
    let mut back: Vec<u32> = ring.reset().collect();
    back.sort();
    assert_eq!(back, (1..=65535).collect::<Vec<_>>());
}

#[test]
fn a_leaked_reset_drain_refuses_new_buffers_until_reset_hands_them_back() {
    let (mut rx, _, _) = rx(4);
    rx.post(buf(1).0, 2048, 1).unwrap();
    rx.post(buf(2).0, 2048, 2).unwrap();
    std::mem::forget(rx.reset());
    let rejected = rx.post(buf(3).0, 2048, 3).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Unreclaimed, 3)
    );
    assert_eq!(rx.reset().collect::<Vec<_>>(), [1, 2]);
    rx.post(buf(3).0, 2048, 3).unwrap();

    let (mut tx, _, _) = tx(4);
    let seg = TxSegment {
        addr: buf(1).0,
        len: 64,
    };
    tx.transmit(&[seg], 1).unwrap();
    std::mem::forget(tx.reset());
    let rejected = tx.transmit(&[seg], 2).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Unreclaimed, 2)
    );
    assert_eq!(tx.reset().collect::<Vec<_>>(), [1]);
    tx.transmit(&[seg], 2).unwrap();
}
