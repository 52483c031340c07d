//! Indirect descriptors (virtio 1.2 §2.7.5.3, §2.8.19) on split and packed
//! queues: the layout the device reads, the driver's checks, and a hostile
//! device.

mod common;

use common::queues::{
    packed, packed_indirect, seg, split, split_indirect, tables, Mem, Packed, Split,
};
use common::{iterations, Chain};
use dma_ring::virtio::packed::PackedFlags;
use dma_ring::virtio::split::DescFlags;
use dma_ring::virtio::split::SplitQueue;
use dma_ring::virtio::{IndirectLayout, Segment, Used};
use dma_ring::{MemoryView, Rejected, RingErrorKind, RingMemory};

/// What the split and packed tests share.
trait Queue {
    fn add(&mut self, r: &[Segment], w: &[Segment], b: u32) -> Result<u16, Rejected<u32>>;
    fn add_indirect(&mut self, r: &[Segment], w: &[Segment], b: u32) -> Result<u16, Rejected<u32>>;
    fn set_indirect(&mut self, t: Mem, entries: u16) -> Result<Option<Mem>, Rejected<Mem>>;
    fn indirect_entries(&self) -> u16;
    fn num_free(&self) -> u16;
    fn notify(&mut self) -> bool;
    fn poll(&mut self) -> dma_ring::Result<Option<Used<u32>>>;
    fn reset_sorted(&mut self) -> Vec<u32>;
}

macro_rules! queue {
    ($t:ty) => {
        impl Queue for $t {
            fn add(&mut self, r: &[Segment], w: &[Segment], b: u32) -> Result<u16, Rejected<u32>> {
                <$t>::add(self, r, w, b)
            }
            fn add_indirect(
                &mut self,
                r: &[Segment],
                w: &[Segment],
                b: u32,
            ) -> Result<u16, Rejected<u32>> {
                <$t>::add_indirect(self, r, w, b)
            }
            fn set_indirect(&mut self, t: Mem, e: u16) -> Result<Option<Mem>, Rejected<Mem>> {
                <$t>::set_indirect(self, t, e)
            }
            fn indirect_entries(&self) -> u16 {
                <$t>::indirect_entries(self)
            }
            fn num_free(&self) -> u16 {
                <$t>::num_free(self)
            }
            fn notify(&mut self) -> bool {
                <$t>::notify(self)
            }
            fn poll(&mut self) -> dma_ring::Result<Option<Used<u32>>> {
                <$t>::poll(self)
            }
            fn reset_sorted(&mut self) -> Vec<u32> {
                let mut back: Vec<u32> = self.reset().collect();
                back.sort();
                back
            }
        }
    };
}
queue!(Split);
queue!(Packed);

/// Request `r`'s segments: `n` of them, the first readable, the rest
/// writable, at distinct addresses and lengths.
fn request(r: u32, n: usize) -> (Vec<Segment>, Vec<Segment>) {
    let segs: Vec<Segment> = (0..n as u64)
        .map(|k| seg(u64::from(r) << 16 | k << 8, 16 + k as u32 + (r & 0xff)))
        .collect();
    let (readable, writable) = segs.split_at(1);
    (readable.to_vec(), writable.to_vec())
}

/// The (address, length, writable) list a device must read for it.
fn expected(readable: &[Segment], writable: &[Segment]) -> Vec<(u64, u32, bool)> {
    let r = readable.iter().map(|s| (s.addr.as_u64(), s.len, false));
    r.chain(writable.iter().map(|s| (s.addr.as_u64(), s.len, true)))
        .collect()
}

fn check_chain(chain: &Chain, indirect: bool, readable: &[Segment], writable: &[Segment]) {
    assert_eq!(chain.indirect, indirect);
    assert_eq!(chain.descs, expected(readable, writable));
}

// ---- what the device reads ----

#[test]
fn split_indirect_request_is_one_indirect_descriptor_over_a_linked_table() {
    let (mut q, dev) = split_indirect(8, 4);
    q.add(&[seg(0x9000, 8)], &[], 0).unwrap(); // head 0: the next head is 1
    let (r, w) = request(1, 3);
    let head = q.add_indirect(&r, &w, 1).unwrap();
    assert_eq!(head, 1);
    assert_eq!(q.num_free(), 6, "one descriptor for three segments");
    let tables = dev.tables.unwrap();
    let base = dev.layout.desc(head);
    let table = 4 * 16; // table 1 of 4 entries
                        // SAFETY: inside the ring and the tables, aligned.
    unsafe {
        assert_eq!(
            dev.mem.read_u64(base),
            tables.dma_addr().as_u64() + table as u64
        );
        assert_eq!(
            dev.mem.read_u32(base + 8),
            3 * 16,
            "three whole descriptors"
        );
        assert_eq!(
            dev.mem.read_u16(base + 12),
            DescFlags::INDIRECT.bits(),
            "no NEXT, no WRITE"
        );
        assert_eq!(dev.mem.read_u16(base + 14), 0);
        let want = [
            (DescFlags::NEXT, 1),
            (DescFlags::NEXT | DescFlags::WRITE, 2),
            (DescFlags::WRITE, 0),
        ];
        for (k, (flags, next)) in want.into_iter().enumerate() {
            let e = table + 16 * k;
            let s = if k == 0 { r[0] } else { w[k - 1] };
            assert_eq!(tables.read_u64(e), s.addr.as_u64());
            assert_eq!(tables.read_u32(e + 8), s.len);
            assert_eq!(tables.read_u16(e + 12), flags.bits(), "entry {k}");
            assert_eq!(tables.read_u16(e + 14), next, "entry {k}");
        }
    }
}

#[test]
fn packed_indirect_request_is_one_descriptor_over_a_table_without_flags_or_ids() {
    let (mut q, mut dev) = packed_indirect(4, 4);
    let (r, w) = request(1, 3);
    let id = q.add_indirect(&r, &w, 1).unwrap();
    assert_eq!(q.num_free(), 3);
    let tables = dev.tables.unwrap();
    // SAFETY: inside the ring and the tables, aligned.
    unsafe {
        assert_eq!(
            dev.mem.read_u64(0),
            tables.dma_addr().as_u64() + 64 * u64::from(id & 3)
        );
        assert_eq!(dev.mem.read_u32(8), 48);
        assert_eq!(dev.mem.read_u16(12), id);
        let flags = dev.mem.load_flag(14);
        assert_eq!(flags, (PackedFlags::INDIRECT | PackedFlags::AVAIL).bits());
        for k in 0..3 {
            let e = 64 * usize::from(id & 3) + 16 * k;
            let write = if k == 0 { 0 } else { PackedFlags::WRITE.bits() };
            assert_eq!(
                (tables.read_u16(e + 12), tables.read_u16(e + 14)),
                (0, write)
            );
        }
    }
    let chain = dev.pop().unwrap();
    check_chain(&chain, true, &r, &w);
    assert_eq!(chain.id, id);
}

// ---- round trips ----

/// Adds requests one at a time, every third one direct, the rest indirect
/// with 1 to `entries` segments, and has `device` use each: checks what
/// the device read, the length and buffers that come back, and that the
/// queue ends with every descriptor free.
fn round_trip<Q: Queue>(q: &mut Q, requests: u32, mut device: impl FnMut(u32) -> Chain, size: u16) {
    let entries = q.indirect_entries();
    for r in 0..requests {
        let n = 1 + (r as usize % usize::from(entries));
        let (readable, writable) = request(r, n);
        let indirect = r % 3 != 0;
        if indirect {
            q.add_indirect(&readable, &writable, r).unwrap();
        } else {
            q.add(&readable, &writable, r).unwrap();
        }
        q.notify();
        let chain = device(r);
        check_chain(&chain, indirect, &readable, &writable);
        let used = q.poll().unwrap().unwrap();
        let len: u32 = writable.iter().map(|s| s.len).sum();
        assert_eq!((used.buffers, used.len), (r, len / 2));
    }
    assert_eq!(q.num_free(), size);
}

#[test]
#[cfg_attr(miri, ignore = "70,000 requests; too slow under Miri")]
fn split_indirect_and_direct_chains_round_trip_past_the_16_bit_index_wrap() {
    let (mut q, mut dev) = split_indirect(4, 4);
    round_trip(
        &mut q,
        70_000,
        |_| {
            let chain = dev.pop().unwrap();
            dev.push_used(chain.id.into(), chain.writable() / 2);
            chain
        },
        4,
    );
}

#[test]
fn packed_indirect_and_direct_chains_round_trip_with_wrap_counters_on_an_odd_size() {
    let (mut q, mut dev) = packed_indirect(5, 5);
    round_trip(
        &mut q,
        iterations(3000, 100),
        |_| {
            let chain = dev.pop().unwrap();
            // An indirect chain takes one ring position, a direct one one
            // per segment.
            let count = if chain.indirect { 1 } else { chain.descs.len() };
            dev.push_used(chain.id, chain.writable() / 2, count as u16);
            chain
        },
        5,
    );
}

#[test]
fn indirect_requests_take_one_descriptor_each_until_the_queue_is_full() {
    let (mut s, _) = split_indirect(4, 4);
    let (mut p, _) = packed_indirect(3, 3);
    let queues: [(&mut dyn Queue, u16); 2] = [(&mut s, 4), (&mut p, 3)];
    for (q, size) in queues {
        for r in 0..u32::from(size) {
            let (readable, writable) = request(r, usize::from(size));
            q.add_indirect(&readable, &writable, r).unwrap();
        }
        assert_eq!(q.num_free(), 0);
        let rejected = q.add_indirect(&[seg(0x1000, 8)], &[], 99).unwrap_err();
        assert_eq!(
            (rejected.kind(), rejected.buffers),
            (RingErrorKind::Full, 99)
        );
        assert_eq!(q.reset_sorted(), (0..u32::from(size)).collect::<Vec<_>>());
    }
}

// ---- the driver's checks ----

#[test]
fn indirect_request_errors_hand_the_buffers_back() {
    for packed_queue in [false, true] {
        let (mut bare_s, _, _) = split(4, false);
        let (mut bare_p, _, _) = packed(4, false);
        let bare: &mut dyn Queue = if packed_queue {
            &mut bare_p
        } else {
            &mut bare_s
        };
        let r = bare.add_indirect(&[seg(0x1000, 8)], &[], 1).unwrap_err();
        assert_eq!(
            (r.kind(), r.buffers),
            (RingErrorKind::IndirectUnavailable, 1)
        );
        assert!(
            r.to_string().contains("set_indirect"),
            "says what to do: {r}"
        );
        assert_eq!(bare.indirect_entries(), 0);

        let (mut s, _) = split_indirect(4, 2);
        let (mut p, _) = packed_indirect(4, 2);
        let q: &mut dyn Queue = if packed_queue { &mut p } else { &mut s };
        let three = [seg(0x1000, 8); 3];
        let huge = [seg(0x1000, u32::MAX - 8), seg(0x2000, 16)];
        let cases: [(&[Segment], &[Segment], RingErrorKind); 3] = [
            (&[], &[], RingErrorKind::BadRequest),
            (&three[..1], &three[1..], RingErrorKind::BadRequest),
            (&huge[..1], &huge[1..], RingErrorKind::BadRequest),
        ];
        for (k, (readable, writable, kind)) in cases.into_iter().enumerate() {
            let r = q.add_indirect(readable, writable, k as u32).unwrap_err();
            assert_eq!((r.kind(), r.buffers), (kind, k as u32), "case {k}");
        }
        assert_eq!(q.num_free(), 4, "nothing taken");
        q.add_indirect(&three[..1], &three[1..2], 7).unwrap();
        assert_eq!(q.reset_sorted(), [7]);
    }
}

#[test]
fn indirect_requests_are_refused_after_a_leaked_drain_and_on_a_broken_queue() {
    let (mut s, sdev) = split_indirect(4, 2);
    s.add_indirect(&[seg(0x1000, 8)], &[], 1).unwrap();
    std::mem::forget(s.reset());
    let r = s.add_indirect(&[seg(0x1000, 8)], &[], 2).unwrap_err();
    assert_eq!((r.kind(), r.buffers), (RingErrorKind::Unreclaimed, 2));
    assert_eq!(s.reset().collect::<Vec<_>>(), [1]);
    s.add_indirect(&[seg(0x1000, 8)], &[], 3).unwrap();
    s.notify();
    sdev.raw_used_idx(5); // a used index beyond what was published
    assert_eq!(s.poll().unwrap_err().kind(), RingErrorKind::IndexJump);
    let r = s.add_indirect(&[seg(0x1000, 8)], &[], 4).unwrap_err();
    assert_eq!((r.kind(), r.buffers), (RingErrorKind::Broken, 4));

    let (mut p, pdev) = packed_indirect(4, 2);
    p.add_indirect(&[seg(0x1000, 8)], &[], 1).unwrap();
    std::mem::forget(p.reset());
    let r = p.add_indirect(&[seg(0x1000, 8)], &[], 2).unwrap_err();
    assert_eq!((r.kind(), r.buffers), (RingErrorKind::Unreclaimed, 2));
    assert_eq!(p.reset().collect::<Vec<_>>(), [1]);
    pdev.raw_used(0, 0, 0, true); // used with nothing in flight
    assert_eq!(
        p.poll().unwrap_err().kind(),
        RingErrorKind::UnexpectedCompletion
    );
    let r = p.add_indirect(&[seg(0x1000, 8)], &[], 4).unwrap_err();
    assert_eq!((r.kind(), r.buffers), (RingErrorKind::Broken, 4));
}

#[test]
fn set_indirect_errors_hand_the_memory_back() {
    let (mut s, _, _) = split(4, false);
    let (mut p, _, _) = packed(4, false);
    for q in [&mut s as &mut dyn Queue, &mut p] {
        let big = tables(4, 4);
        let addr = big.dma_addr();
        for entries in [0, 5] {
            let r = q.set_indirect(tables(4, 4), entries).unwrap_err();
            assert_eq!(
                (r.kind(), r.error.value()),
                (RingErrorKind::InvalidSize, Some(entries.into()))
            );
        }
        let short = tables(4, 2);
        let r = q.set_indirect(short, 3).unwrap_err();
        assert_eq!(r.kind(), RingErrorKind::BadMemory);
        assert_eq!(
            r.buffers.size(),
            IndirectLayout::new(4, 2).unwrap().bytes,
            "handed back"
        );
        assert!(q.set_indirect(big, 4).unwrap().is_none());
        assert_eq!(q.indirect_entries(), 4);

        q.add_indirect(&[seg(0x1000, 8)], &[], 1).unwrap();
        let r = q.set_indirect(tables(4, 1), 1).unwrap_err();
        assert_eq!(r.kind(), RingErrorKind::Busy);
        assert!(r.to_string().contains("reset"), "says what to do: {r}");
        assert_eq!(q.reset_sorted(), [1]);
        let old = q
            .set_indirect(tables(4, 1), 1)
            .unwrap()
            .expect("the old tables back");
        assert_eq!(old.dma_addr(), addr);
        assert_eq!(q.indirect_entries(), 1);
    }
}

// ---- a hostile device ----

/// Every byte of `mem` set to 0xff: flags with NEXT, WRITE and INDIRECT,
/// `next` links out of range, huge lengths.
fn scribble(mem: &MemoryView) {
    for offset in (0..mem.len()).step_by(8) {
        // SAFETY: inside the view, 8-aligned.
        unsafe { mem.write_u64(offset, u64::MAX) };
    }
}

#[test]
fn a_device_scribbling_over_split_indirect_tables_changes_nothing_the_driver_keeps() {
    let (mut q, mut dev) = split_indirect(4, 4);
    for round in 0..3u32 {
        for r in 0..4 {
            let (readable, writable) = request(r, 1 + r as usize);
            q.add_indirect(&readable, &writable, round * 4 + r).unwrap();
        }
        q.notify();
        let chains: Vec<Chain> = std::iter::from_fn(|| dev.pop()).collect();
        for (r, chain) in chains.iter().enumerate() {
            let (readable, writable) = request(r as u32, 1 + r);
            check_chain(chain, true, &readable, &writable);
        }
        // The device overwrites every table and the ring's descriptors
        // (INDIRECT | NEXT, next 0xffff), then uses the chains backwards.
        scribble(dev.tables.as_ref().unwrap());
        for i in 0..4 {
            let base = dev.layout.desc(i);
            // SAFETY: inside the descriptor table.
            unsafe { dev.mem.write_u64(base + 8, u64::MAX) };
        }
        for chain in chains.iter().rev() {
            dev.push_used(chain.id.into(), 0);
        }
        let got: Vec<u32> = std::iter::from_fn(|| q.poll().unwrap())
            .map(|u| u.buffers)
            .collect();
        assert_eq!(got, (0..4).rev().map(|r| round * 4 + r).collect::<Vec<_>>());
        assert_eq!(q.num_free(), 4, "the free list is the driver's own");
    }
}

#[test]
fn a_device_scribbling_over_packed_indirect_tables_changes_nothing_the_driver_keeps() {
    let (mut q, mut dev) = packed_indirect(4, 4);
    for round in 0..3u32 {
        for r in 0..4 {
            let (readable, writable) = request(r, 1 + r as usize);
            q.add_indirect(&readable, &writable, round * 4 + r).unwrap();
        }
        let chains: Vec<Chain> = std::iter::from_fn(|| dev.pop()).collect();
        for (r, chain) in chains.iter().enumerate() {
            let (readable, writable) = request(r as u32, 1 + r);
            check_chain(chain, true, &readable, &writable);
        }
        scribble(dev.tables.as_ref().unwrap());
        for chain in chains.iter().rev() {
            dev.push_used(chain.id, 0, 1);
        }
        let got: Vec<u32> = std::iter::from_fn(|| q.poll().unwrap())
            .map(|u| u.buffers)
            .collect();
        assert_eq!(got, (0..4).rev().map(|r| round * 4 + r).collect::<Vec<_>>());
        assert_eq!(q.num_free(), 4);
    }
}

#[test]
fn an_indirect_used_length_beyond_the_tables_writable_bytes_is_an_error() {
    let (mut s, mut sdev) = split_indirect(4, 3);
    s.add_indirect(&[seg(0x1000, 8)], &[seg(0x2000, 64), seg(0x3000, 4)], 1)
        .unwrap();
    s.notify();
    let c = sdev.pop().unwrap();
    sdev.push_used(c.id.into(), 69);
    let e = s.poll().unwrap_err();
    assert_eq!(
        (e.kind(), e.value()),
        (RingErrorKind::LengthTooLarge, Some(69))
    );
    assert_eq!(s.reset().collect::<Vec<_>>(), [1]);

    let (mut p, mut pdev) = packed_indirect(4, 3);
    p.add_indirect(&[seg(0x1000, 8)], &[seg(0x2000, 64), seg(0x3000, 4)], 1)
        .unwrap();
    let c = pdev.pop().unwrap();
    // 48 bytes of table: a device reporting the table length is refused
    // too, the limit is the writable buffers' 68.
    pdev.push_used(c.id, 69, 1);
    assert_eq!(p.poll().unwrap_err().kind(), RingErrorKind::LengthTooLarge);
    assert_eq!(p.reset().collect::<Vec<_>>(), [1]);
}

#[test]
fn a_repeated_or_stale_indirect_completion_is_refused() {
    // Split: the head of a used indirect chain, used again.
    let (mut s, mut sdev) = split_indirect(4, 2);
    s.add_indirect(&[seg(0x1000, 8)], &[], 1).unwrap();
    s.add_indirect(&[seg(0x2000, 8)], &[], 2).unwrap();
    s.notify();
    let first = sdev.pop().unwrap();
    sdev.push_used(first.id.into(), 0);
    assert_eq!(s.poll().unwrap().unwrap().buffers, 1);
    sdev.push_used(first.id.into(), 0);
    assert_eq!(s.poll().unwrap_err().kind(), RingErrorKind::NotInFlight);
    assert_eq!(s.reset().collect::<Vec<_>>(), [2]);

    // Packed: an id whose slot was reused since (its table rewritten).
    let (mut p, mut pdev) = packed_indirect(4, 2);
    let old = p.add_indirect(&[seg(0x1000, 8)], &[], 1).unwrap();
    let c = pdev.pop().unwrap();
    pdev.push_used(c.id, 0, 1);
    p.poll().unwrap().unwrap();
    let new = p.add_indirect(&[seg(0x2000, 8)], &[], 2).unwrap();
    assert_eq!((old & 3, old == new), (new & 3, false), "same slot, new id");
    assert!(pdev.pop().unwrap().indirect);
    pdev.push_used(old, 0, 1);
    assert_eq!(p.poll().unwrap_err().kind(), RingErrorKind::NotInFlight);
    assert_eq!(p.reset().collect::<Vec<_>>(), [2]);
}

// ---- a device on another thread ----

#[test]
fn indirect_chains_with_a_device_on_another_thread() {
    let total = iterations(5000, 200);
    let (mut q, mut dev) = split_indirect(16, 4);
    let device = std::thread::spawn(move || {
        let mut n = 0;
        while n < total {
            match dev.pop() {
                Some(c) => {
                    dev.push_used(c.id.into(), c.writable());
                    n += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
    });
    let (mut sent, mut got) = (0u32, 0u32);
    let reap = |q: &mut SplitQueue<_, _, _, _>, got: &mut u32| {
        while let Some(u) = q.poll().unwrap() {
            let (_, w) = request(*got, 4);
            assert_eq!((u.buffers, u.len), (*got, w.iter().map(|s| s.len).sum()));
            *got += 1;
        }
    };
    // A device thread that ended (done, or panicked on a broken rule) has
    // published all it will; `is_finished` does not order its writes before
    // ours, so stop filling and let `join` (which does) decide: it fails the
    // test with the device's panic instead of spinning, and a last reap after
    // it sees everything the device used.
    while got < total && !device.is_finished() {
        while sent < total && q.num_free() > 0 {
            let (r, w) = request(sent, 4);
            q.add_indirect(&r, &w, sent).unwrap();
            sent += 1;
        }
        q.notify();
        reap(&mut q, &mut got);
    }
    device.join().unwrap();
    reap(&mut q, &mut got);
    assert_eq!(got, total);
}
