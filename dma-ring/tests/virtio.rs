//! Virtio split and packed virtqueues against model devices, notification
//! suppression, and a hostile device.

mod common;

use common::queues::{packed, seg, split};
use common::{iterations, SplitDevice};
use dma_ring::virtio::packed::EventFlags;
use dma_ring::virtio::split::SplitLayout;
use dma_ring::{MemoryView, RingErrorKind};

#[test]
fn split_layout_follows_the_spec_alignment() {
    let l = SplitLayout::new(256).unwrap();
    // avail: 16 * 256; used: avail + 6 + 2 * 256 = 4614, rounded up to 4;
    // end: used + 6 + 8 * 256.
    assert_eq!((l.avail, l.used, l.bytes), (4096, 4616, 6670));
    assert_eq!(l.used % 4, 0);
    assert_eq!(l.used_event(), l.avail + 4 + 512);
    assert!(SplitLayout::new(3).is_err() && SplitLayout::new(0).is_err());
}

#[test]
#[cfg_attr(miri, ignore = "70,000 requests; too slow under Miri")]
fn split_chains_round_trip_past_the_16_bit_index_wrap() {
    let (mut q, mut dev, _) = split(4, false);
    for r in 0..70_000u32 {
        let base = u64::from(r) << 12;
        q.add(
            &[seg(base, 16)],
            &[seg(base + 0x100, 512), seg(base + 0x400, 4)],
            r,
        )
        .unwrap();
        q.notify();
        let chain = dev.pop().unwrap();
        assert_eq!(
            chain.descs,
            [
                (base, 16, false),
                (base + 0x100, 512, true),
                (base + 0x400, 4, true)
            ]
        );
        assert_eq!(chain.writable(), 516);
        dev.push_used(chain.id.into(), 100);
        let used = q.poll().unwrap().unwrap();
        assert_eq!((used.buffers, used.len), (r, 100));
    }
    assert_eq!(q.num_free(), 4);
}

#[test]
fn split_batches_and_out_of_order_completion() {
    let (mut q, mut dev, db) = split(8, false);
    let heads: Vec<u16> = (0..4)
        .map(|r| q.add(&[seg(0x1000 * (r + 1), 8)], &[], r as u32).unwrap())
        .collect();
    assert!(q.notify());
    assert_eq!(
        (db.rings(), db.value()),
        (1, 3),
        "one notification with the queue index"
    );
    let chains: Vec<_> = std::iter::from_fn(|| dev.pop()).collect();
    assert_eq!(chains.len(), 4);
    for c in chains.iter().rev() {
        dev.push_used(c.id.into(), 0);
    }
    let got: Vec<u32> = std::iter::from_fn(|| q.poll().unwrap())
        .map(|u| u.buffers)
        .collect();
    assert_eq!(got, [3, 2, 1, 0]);
    assert_eq!(heads.len(), 4);
    assert_eq!(q.num_free(), 8);
}

#[test]
fn split_notification_suppression() {
    let (mut q, _dev, db) = split(8, false);
    _dev.set_no_notify(true);
    q.add(&[seg(0x1000, 8)], &[], 0).unwrap();
    assert!(!q.notify(), "NO_NOTIFY respected");
    let (mut q, dev, db2) = split(8, true);
    dev.set_avail_event(1); // wake me when index 1 is passed (the 2nd request)
    q.add(&[seg(0x1000, 8)], &[], 0).unwrap();
    assert!(!q.notify(), "event index not reached");
    q.add(&[seg(0x2000, 8)], &[], 1).unwrap();
    assert!(q.notify(), "event index crossed");
    assert_eq!((db.rings(), db2.rings()), (0, 1));
}

#[test]
fn split_used_event_follows_the_driver() {
    let (mut q, mut dev, _) = split(4, true);
    q.add(&[seg(0x1000, 8)], &[], 0).unwrap();
    q.notify();
    let c = dev.pop().unwrap();
    dev.push_used(c.id.into(), 0);
    q.poll().unwrap().unwrap();
    assert_eq!(dev.used_event(), 1);
}

#[test]
fn split_full_and_bad_requests_hand_buffers_back() {
    let (mut q, _, _) = split(2, false);
    assert_eq!(
        q.add(&[], &[], 1).unwrap_err().kind(),
        RingErrorKind::BadRequest
    );
    assert_eq!(
        q.add(&[seg(0, 1); 3], &[], 2).unwrap_err().kind(),
        RingErrorKind::BadRequest
    );
    let huge = [seg(0, u32::MAX), seg(0, 1)];
    assert_eq!(
        q.add(&[], &huge, 3).unwrap_err().kind(),
        RingErrorKind::BadRequest
    );
    q.add(&[seg(0, 1)], &[], 4).unwrap();
    let r = q.add(&[seg(0, 1); 2], &[], 5).unwrap_err();
    assert_eq!((r.kind(), r.buffers), (RingErrorKind::Full, 5));
}

// ---- hostile split device ----

#[test]
fn split_used_index_jumping_beyond_what_was_posted_is_an_error() {
    let (mut q, dev, _) = split(4, false);
    q.add(&[seg(0x1000, 8)], &[], 0).unwrap();
    q.notify();
    dev.raw_used_idx(2);
    let err = q.poll().unwrap_err();
    assert_eq!(
        (err.kind(), err.value()),
        (RingErrorKind::IndexJump, Some(2))
    );
    assert_eq!(q.poll().unwrap_err().kind(), RingErrorKind::Broken);
    assert_eq!(q.reset().collect::<Vec<_>>(), [0]);
    assert_eq!(q.num_free(), 4);
}

#[test]
fn split_used_id_out_of_range_not_a_head_or_repeated_is_an_error() {
    for bad in [9u32, 1, 0] {
        let (mut q, mut dev, _) = split(4, false);
        // One 2-descriptor chain at head 0 (descriptor 1 is not a head).
        q.add(&[seg(0x1000, 8)], &[seg(0x2000, 8)], 7).unwrap();
        q.add(&[seg(0x3000, 8)], &[], 8).unwrap();
        q.notify();
        let first = dev.pop().unwrap();
        if bad == 0 {
            dev.push_used(first.id.into(), 0);
            assert_eq!(q.poll().unwrap().unwrap().buffers, 7);
        }
        dev.push_used(bad, 0);
        let kind = q.poll().unwrap_err().kind();
        let want = if bad == 9 {
            RingErrorKind::UnknownId
        } else {
            RingErrorKind::NotInFlight
        };
        assert_eq!(kind, want, "id {bad}");
        let mut back: Vec<u32> = q.reset().collect();
        back.sort();
        assert_eq!(
            back,
            if bad == 0 { vec![8] } else { vec![7, 8] },
            "each buffer once"
        );
    }
}

#[test]
fn split_length_beyond_the_writable_buffers_is_an_error() {
    let (mut q, mut dev, _) = split(4, false);
    q.add(&[seg(0x1000, 8)], &[seg(0x2000, 64)], 1).unwrap();
    q.notify();
    let c = dev.pop().unwrap();
    dev.push_used(c.id.into(), 65);
    assert_eq!(q.poll().unwrap_err().kind(), RingErrorKind::LengthTooLarge);
    assert_eq!(q.reset().collect::<Vec<_>>(), [1]);
}

// ---- packed ----

#[test]
fn packed_chains_round_trip_with_wrap_counters_on_an_odd_size() {
    let (mut q, mut dev, _) = packed(5, false);
    for r in 0..100u32 {
        let base = u64::from(r) << 12;
        q.add(&[seg(base, 16)], &[seg(base + 0x100, 512)], r)
            .unwrap();
        q.notify();
        let chain = dev.pop().unwrap();
        assert_eq!(chain.descs, [(base, 16, false), (base + 0x100, 512, true)]);
        dev.push_used(chain.id, 512, 2);
        let used = q.poll().unwrap().unwrap();
        assert_eq!((used.buffers, used.len), (r, 512));
    }
    assert_eq!(q.num_free(), 5);
}

#[test]
fn packed_batch_and_out_of_order_completion() {
    let (mut q, mut dev, db) = packed(8, false);
    for r in 0..4 {
        q.add(&[seg(0x1000 * (r + 1), 8)], &[], r as u32).unwrap();
    }
    assert!(q.notify());
    assert_eq!(db.rings(), 1);
    let chains: Vec<_> = std::iter::from_fn(|| dev.pop()).collect();
    for c in chains.iter().rev() {
        dev.push_used(c.id, 0, 1);
    }
    let got: Vec<u32> = std::iter::from_fn(|| q.poll().unwrap())
        .map(|u| u.buffers)
        .collect();
    assert_eq!(got, [3, 2, 1, 0]);
}

#[test]
fn packed_event_suppression() {
    let (mut q, dev, db) = packed(8, true);
    dev.set_event(0, EventFlags::Disable as u16);
    q.add(&[seg(0x1000, 8)], &[], 0).unwrap();
    assert!(!q.notify());
    dev.set_event(2 | 1 << 15, EventFlags::Desc as u16); // at descriptor 2, wrap 1
    q.add(&[seg(0x2000, 8)], &[], 1).unwrap();
    assert!(!q.notify(), "descriptor 1 published, event at 2");
    q.add(&[seg(0x3000, 8)], &[], 2).unwrap();
    assert!(q.notify(), "descriptor 2 published");
    dev.set_event(0, EventFlags::Enable as u16);
    q.add(&[seg(0x4000, 8)], &[], 3).unwrap();
    assert!(q.notify());
    assert_eq!(db.rings(), 2);
    q.set_interrupts(true);
    // SAFETY: reading the driver event area through the device's view.
    let flags = unsafe { dma_ring::RingMemory::load_flag(&dev.mem, dev.layout.driver_event + 2) };
    assert_eq!(flags, EventFlags::Desc as u16);
}

#[test]
fn packed_ids_carry_a_generation_so_stale_ids_are_refused() {
    let (mut q, mut dev, _) = packed(4, false);
    let a = q.add(&[seg(0x1000, 8)], &[], 1).unwrap();
    q.notify();
    let c = dev.pop().unwrap();
    dev.push_used(c.id, 0, 1);
    q.poll().unwrap().unwrap();
    let b = q.add(&[seg(0x2000, 8)], &[], 2).unwrap();
    assert_ne!(a, b);
    dev.pop().unwrap();
    dev.push_used(a, 0, 1); // the old id again
    assert_eq!(q.poll().unwrap_err().kind(), RingErrorKind::NotInFlight);
    assert_eq!(q.reset().collect::<Vec<_>>(), [2]);
}

#[test]
fn packed_hostile_used_descriptors() {
    // Used flags with nothing in flight.
    let (mut q, dev, _) = packed(4, false);
    dev.raw_used(0, 0, 0, true);
    assert_eq!(
        q.poll().unwrap_err().kind(),
        RingErrorKind::UnexpectedCompletion
    );
    // A length beyond the writable bytes.
    let (mut q, mut dev, _) = packed(4, false);
    q.add(&[], &[seg(0x1000, 64)], 1).unwrap();
    let c = dev.pop().unwrap();
    dev.push_used(c.id, 65, 1);
    assert_eq!(q.poll().unwrap_err().kind(), RingErrorKind::LengthTooLarge);
    assert_eq!(q.reset().collect::<Vec<_>>(), [1]);
    // An id outside the table (4 slots: 2 index bits, so index 3 exists
    // but is vacant; use a 3-entry queue where index 3 does not).
    let (mut q, mut dev, _) = packed(3, false);
    q.add(&[seg(0x1000, 8)], &[], 1).unwrap();
    dev.pop().unwrap();
    dev.push_used(3, 0, 1);
    assert_eq!(q.poll().unwrap_err().kind(), RingErrorKind::UnknownId);
    // Used bits that do not match the driver's wrap counter are not used.
    let (mut q, dev, _) = packed(4, false);
    q.add(&[seg(0x1000, 8)], &[], 1).unwrap();
    dev.raw_used(0, 0, 0, false);
    assert!(q.poll().unwrap().is_none());
}

#[test]
fn packed_a_device_on_another_thread() {
    let (mut q, mut dev, _) = packed(64, false);
    // Wraps the ring dozens of times (a few times under Miri).
    let total = iterations(5000, 300);
    let device = std::thread::spawn(move || {
        let mut n = 0;
        while n < total {
            match dev.pop() {
                Some(c) => {
                    dev.push_used(c.id, c.writable(), c.descs.len() as u16);
                    n += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
    });
    let (mut sent, mut got) = (0u32, 0u32);
    while got < total {
        while sent < total && q.num_free() >= 2 {
            q.add(
                &[seg(u64::from(sent), 8)],
                &[seg(0x1000, u32::from(sent as u16))],
                sent,
            )
            .unwrap();
            sent += 1;
        }
        q.notify();
        while let Some(u) = q.poll().unwrap() {
            assert_eq!((u.buffers, u.len), (got, u32::from(got as u16)));
            got += 1;
        }
    }
    device.join().unwrap();
}

#[test]
fn split_refuses_a_used_chain_that_was_added_but_never_published() {
    let (mut q, mut dev, _) = split(8, false);
    q.add(&[seg(0x1000, 8)], &[], 1).unwrap();
    q.notify();
    let published = dev.pop().unwrap();
    let hidden = q.add(&[seg(0x2000, 8)], &[], 2).unwrap(); // not published
                                                            // The device uses the hidden chain in the published one's place.
    dev.push_used(hidden.into(), 0);
    let err = q.poll().unwrap_err();
    assert_eq!(err.kind(), RingErrorKind::UnexpectedCompletion);
    assert_eq!(err.value(), Some(u64::from(hidden)));
    let mut back: Vec<u32> = q.reset().collect();
    back.sort();
    assert_eq!(back, [1, 2]);
    let _ = published;
}

#[test]
fn a_leaked_reset_drain_refuses_new_chains_until_reset_hands_them_back() {
    let (mut s, _, _) = split(4, false);
    let (mut p, _, _) = packed(4, false);
    s.add(&[seg(0x1000, 8)], &[], 1).unwrap();
    p.add(&[seg(0x1000, 8)], &[], 1).unwrap();
    std::mem::forget(s.reset());
    std::mem::forget(p.reset());
    let rejected = s.add(&[seg(0x1000, 8)], &[], 2).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Unreclaimed, 2)
    );
    let rejected = p.add(&[seg(0x1000, 8)], &[], 2).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::Unreclaimed, 2)
    );
    assert_eq!(s.reset().collect::<Vec<_>>(), [1]);
    assert_eq!(p.reset().collect::<Vec<_>>(), [1]);
    s.add(&[seg(0x1000, 8)], &[], 2).unwrap();
    p.add(&[seg(0x1000, 8)], &[], 2).unwrap();
}

/// The available ring's flags, as the device reads them.
fn avail_flags(dev: &SplitDevice<MemoryView>) -> u16 {
    // SAFETY: inside the available ring.
    unsafe { dma_ring::RingMemory::load_flag(&dev.mem, dev.layout.avail_flags()) }
}

#[test]
fn with_event_idx_interrupt_suppression_leaves_avail_flags_zero_and_poll_keeps_used_event() {
    let (mut q, mut dev, _) = split(8, true);
    q.set_interrupts(false);
    assert_eq!(
        avail_flags(&dev),
        0,
        "§2.7.7.1: flags stay 0 with EVENT_IDX"
    );
    for r in 0..3 {
        q.add(&[seg(0x1000, 8)], &[], r).unwrap();
    }
    q.notify();
    for _ in 0..3 {
        let chain = dev.pop().unwrap();
        dev.push_used(chain.id.into(), 0);
    }
    for _ in 0..3 {
        q.poll().unwrap().unwrap();
    }
    assert_eq!(dev.used_event(), 0, "poll leaves used_event while disabled");
    q.set_interrupts(true);
    assert_eq!(dev.used_event(), 3);
    assert_eq!(avail_flags(&dev), 0);

    // A delayed interrupt: after 4 more used buffers, and poll keeps it.
    q.interrupt_after(4).unwrap();
    assert_eq!(dev.used_event(), 6);
    q.add(&[seg(0x1000, 8)], &[], 9).unwrap();
    q.notify();
    let chain = dev.pop().unwrap();
    dev.push_used(chain.id.into(), 0);
    q.poll().unwrap().unwrap();
    assert_eq!(dev.used_event(), 6);
    assert_eq!(
        q.interrupt_after(0).unwrap_err().kind(),
        RingErrorKind::BadRequest
    );
    assert_eq!(
        q.interrupt_after(9).unwrap_err().kind(),
        RingErrorKind::BadRequest
    );
}

#[test]
fn without_event_idx_suppression_is_the_no_interrupt_flag() {
    let (mut q, dev, _) = split(8, false);
    q.set_interrupts(false);
    assert_eq!(avail_flags(&dev), 1);
    q.set_interrupts(true);
    assert_eq!(avail_flags(&dev), 0);
    assert_eq!(
        q.interrupt_after(1).unwrap_err().kind(),
        RingErrorKind::BadRequest
    );
}

#[test]
fn a_chain_longer_than_u32_max_bytes_in_total_is_refused() {
    // §2.7.5.2: readable and writable bytes together must fit 2^32 - 1.
    let (mut s, _, _) = split(8, false);
    let (mut p, _, _) = packed(8, false);
    let big = [seg(0x1000, u32::MAX - 8)];
    let more = [seg(0x2000, 16)];
    let rejected = s.add(&big, &more, 1).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::BadRequest, 1)
    );
    let rejected = p.add(&big, &more, 2).unwrap_err();
    assert_eq!(
        (rejected.kind(), rejected.buffers),
        (RingErrorKind::BadRequest, 2)
    );
    let rejected = s
        .add(&[seg(0x1000, u32::MAX), seg(0x2000, 1)], &[], 3)
        .unwrap_err();
    assert_eq!(rejected.kind(), RingErrorKind::BadRequest);
    s.add(&[seg(0x1000, u32::MAX - 16)], &more, 4).unwrap();
}
