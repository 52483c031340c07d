//! dma-ring's split virtqueue (the driver) against rust-vmm's virtio-queue
//! (the device), both on one vm-memory `GuestMemoryMmap` whose guest
//! addresses are the driver's `DmaAddr` values.
//!
//! Each seed runs a random interleaving of driver steps (add chains of
//! random readable/writable mixes, direct or indirect; notify; poll;
//! change interrupt suppression) and device steps (pop chains the way a
//! VMM's device does, with notifications disabled while it works and
//! re-enabled before it sleeps; complete any popped chains in any order,
//! writing data). Both sides check each other: the device checks every
//! chain it pops (descriptors, the INDIRECT rules, the bytes the driver
//! wrote), the driver every used buffer (its token, length and the bytes
//! the device wrote), and each side's notification decision is checked
//! against what the other side's state calls for: `notify()`'s return
//! against whether the device was waiting for a kick, and virtio-queue's
//! `needs_notification` against the `used_event` the driver's interrupt
//! mode puts there (with `VIRTIO_F_EVENT_IDX`; without it the driver's
//! `NO_INTERRUPT` flag as the device reads it, virtio-queue ignoring it).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use dma_core::DmaAddr;
use dma_ring::virtio::split::{SplitLayout, SplitQueue};
use dma_ring::virtio::{IndirectLayout, Segment};
use dma_ring::{slot_vec, AtomicDoorbell, MemoryView, Slot};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Guest (device) address of the region: above 4 GiB, so the queue
/// addresses' high halves matter.
const BASE: u64 = 0x1_2340_0000;
const RING: u64 = 0;
const TABLES: u64 = 0x1_0000;
const DATA: u64 = 0x2_0000;
const REGION: usize = 0x6_0000;
/// Segments of one request at most, and bytes per segment at most.
const MAX_SEGMENTS: usize = 8;
const SEGMENT_BYTES: u64 = 64;
/// One data block per request in flight: its segments side by side.
const BLOCK: u64 = MAX_SEGMENTS as u64 * SEGMENT_BYTES;

/// SplitMix64: a seeded generator, so every run of a seed is the same.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// `(u16)(new - event - 1) < (u16)(new - old)`: virtio 1.2 §2.7.10, as
/// the test's own expectation.
fn crosses(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// What the driver posted for one request.
struct Posted {
    head: u16,
    indirect: bool,
    block: u64,
    readable: Vec<Segment>,
    writable: Vec<Segment>,
    /// Bytes the driver wrote into the readable segments.
    data: Vec<u8>,
    /// Bytes the device wrote, once it used the request.
    written: Option<Vec<u8>>,
}

/// The driver's interrupt suppression as the test keeps it.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Interrupts {
    On,
    Off,
    After(u16),
}

struct Run {
    rng: Rng,
    size: u16,
    event_idx: bool,
    // The driver and what the test knows of it.
    q: SplitQueue<MemoryView, &'static AtomicDoorbell, u32, Vec<Slot<u32>>>,
    doorbell: &'static AtomicDoorbell,
    posted: HashMap<u32, Posted>,
    free_blocks: Vec<u64>,
    issued: u32,
    added_unpublished: bool,
    reaped: u16,
    returned: Vec<u32>,
    interrupts: Interrupts,
    /// `used_event` as the driver's interrupt mode should have left it.
    used_event: u16,
    // The device.
    vq: Queue,
    /// Popped, not yet used: (head, writable (address, length) list).
    in_progress: Vec<(u16, Vec<(GuestAddress, u32)>)>,
    completed_unreaped: u32,
    /// With EVENT_IDX: the device re-armed `avail_event` and found nothing,
    /// so it sleeps until the next kick.
    armed: bool,
    /// Without EVENT_IDX: the device's `NO_NOTIFY` flag is clear.
    notifications_on: bool,
    // Tallies, to show the run covered what it should.
    indirect_chains: u32,
    kicks: u32,
    suppressed_kicks: u32,
    interrupts_wanted: u32,
    interrupts_suppressed: u32,
    /// Last, so it is dropped after the queue whose views point into it.
    gm: GuestMemoryMmap,
}

fn view(gm: &GuestMemoryMmap, offset: u64, len: usize) -> MemoryView {
    let host = gm.get_host_address(GuestAddress(BASE + offset)).unwrap();
    let host = core::ptr::NonNull::new(host).unwrap();
    assert!(offset as usize + len <= REGION, "a view past the region");
    // The mapping lives as long as `gm`, which the `Run` holding the views
    // owns and drops after the queue (field order); vm-memory reaches it
    // only through raw pointers, never references.
    // SAFETY: `len` bytes of the mapping (asserted above), 8-aligned (page
    // plus a 64 KiB multiple), alive and unreferenced while the view is.
    unsafe { MemoryView::new(host, len, DmaAddr::new(BASE + offset)) }
}

impl Run {
    fn new(seed: u64, size: u16, event_idx: bool, entries: u16) -> Self {
        let gm = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(BASE), REGION)]).unwrap();
        let layout = SplitLayout::new(size).unwrap();
        let doorbell: &'static AtomicDoorbell = Box::leak(Box::default());
        let ring = view(&gm, RING, layout.bytes);
        let mut q =
            SplitQueue::new(ring, size, 0, doorbell, event_idx, slot_vec(size.into())).unwrap();
        if entries > 0 {
            let bytes = IndirectLayout::new(size, entries).unwrap().bytes;
            assert!(TABLES + bytes as u64 <= DATA);
            assert!(q
                .set_indirect(view(&gm, TABLES, bytes), entries)
                .unwrap()
                .is_none());
        }
        assert!(DATA + u64::from(size) * BLOCK <= REGION as u64);

        let mut vq = Queue::new(size).unwrap();
        vq.try_set_size(size).unwrap();
        vq.try_set_desc_table_address(GuestAddress(q.desc_dma_addr().as_u64()))
            .unwrap();
        vq.try_set_avail_ring_address(GuestAddress(q.avail_dma_addr().as_u64()))
            .unwrap();
        vq.try_set_used_ring_address(GuestAddress(q.used_dma_addr().as_u64()))
            .unwrap();
        vq.set_event_idx(event_idx);
        vq.set_ready(true);
        assert!(vq.is_valid(&gm), "virtio-queue accepts our layout");
        Self {
            rng: Rng(seed),
            size,
            event_idx,
            gm,
            q,
            doorbell,
            posted: HashMap::new(),
            free_blocks: (0..u64::from(size)).map(|b| DATA + b * BLOCK).collect(),
            issued: 0,
            added_unpublished: false,
            reaped: 0,
            returned: Vec::new(),
            interrupts: Interrupts::On,
            used_event: 0,
            vq,
            in_progress: Vec::new(),
            completed_unreaped: 0,
            // Zeroed memory: avail_event 0 and flags 0 ask for the first kick.
            armed: true,
            notifications_on: true,
            indirect_chains: 0,
            kicks: 0,
            suppressed_kicks: 0,
            interrupts_wanted: 0,
            interrupts_suppressed: 0,
        }
    }

    // ---- the driver ----

    /// Adds one request of random shape, if a descriptor and a data block
    /// are free.
    fn add(&mut self) {
        let indirect_max = self.q.indirect_entries();
        let free = self.q.num_free();
        if free == 0 {
            return;
        }
        let indirect = indirect_max > 0 && self.rng.chance(50);
        let max = if indirect {
            indirect_max
        } else {
            free.min(self.size)
        };
        let max = usize::from(max).min(MAX_SEGMENTS);
        let n = 1 + self.rng.below(max as u64) as usize;
        let readable_n = self.rng.below(n as u64 + 1) as usize;
        let block = self
            .free_blocks
            .pop()
            .expect("a block per request in flight");
        let segs: Vec<Segment> = (0..n as u64)
            .map(|k| {
                let len = 1 + self.rng.below(SEGMENT_BYTES) as u32;
                Segment::new(DmaAddr::new(BASE + block + k * SEGMENT_BYTES), len)
            })
            .collect();
        let (readable, writable) = segs.split_at(readable_n);
        let mut data = Vec::new();
        for s in readable {
            let bytes = self.rng.bytes(s.len as usize);
            self.gm
                .write_slice(&bytes, GuestAddress(s.addr.as_u64()))
                .unwrap();
            data.extend(bytes);
        }
        let token = self.issued;
        let head = if indirect {
            self.q.add_indirect(readable, writable, token)
        } else {
            self.q.add(readable, writable, token)
        }
        .unwrap_or_else(|r| panic!("add refused: {r}"));
        self.indirect_chains += u32::from(indirect);
        self.issued += 1;
        self.added_unpublished = true;
        self.posted.insert(
            token,
            Posted {
                head,
                indirect,
                block,
                readable: readable.to_vec(),
                writable: writable.to_vec(),
                data,
                written: None,
            },
        );
    }

    /// Publishes and checks the notification decision against the
    /// device's state.
    fn notify(&mut self) {
        let expected = self.added_unpublished
            && if self.event_idx {
                self.armed
            } else {
                self.notifications_on
            };
        let rings = self.doorbell.rings();
        let notified = self.q.notify();
        assert_eq!(
            notified, expected,
            "notify() against the device's wishes (event_idx {}, armed {}, flags on {})",
            self.event_idx, self.armed, self.notifications_on
        );
        assert_eq!(self.doorbell.rings(), rings + u32::from(notified));
        if self.added_unpublished {
            if notified {
                self.kicks += 1;
                // The device wakes: the kick is consumed, it is not armed
                // until it sleeps again.
                self.armed = false;
            } else {
                self.suppressed_kicks += 1;
            }
        }
        self.added_unpublished = false;
    }

    /// Reaps up to `max` used requests, checking each.
    fn poll(&mut self, max: u32) {
        for _ in 0..max {
            let Some(used) = self.q.poll().unwrap() else {
                assert_eq!(
                    self.completed_unreaped, 0,
                    "a used entry the driver did not see"
                );
                return;
            };
            self.completed_unreaped -= 1;
            let posted = self
                .posted
                .remove(&used.buffers)
                .expect("a token in flight");
            assert_eq!(used.id, posted.head);
            let written = posted.written.expect("used by the device");
            assert_eq!(used.len as usize, written.len());
            let mut back = Vec::new();
            for s in &posted.writable {
                let mut bytes = vec![0; s.len as usize];
                self.gm
                    .read_slice(&mut bytes, GuestAddress(s.addr.as_u64()))
                    .unwrap();
                back.extend(bytes);
            }
            assert_eq!(&back[..written.len()], &written[..], "the device's bytes");
            self.free_blocks.push(posted.block);
            self.returned.push(used.buffers);
            self.reaped = self.reaped.wrapping_add(1);
            if self.interrupts == Interrupts::On {
                self.used_event = self.reaped;
            }
        }
    }

    /// Changes interrupt suppression at random.
    fn suppress(&mut self) {
        let mode = match self.rng.below(3) {
            0 => Interrupts::On,
            1 => Interrupts::Off,
            _ if self.event_idx => Interrupts::After(1 + self.rng.below(self.size.into()) as u16),
            _ => Interrupts::Off,
        };
        match mode {
            Interrupts::On => {
                self.q.set_interrupts(true);
                self.used_event = self.reaped;
            }
            Interrupts::Off => self.q.set_interrupts(false),
            Interrupts::After(n) => {
                self.q.interrupt_after(n).unwrap();
                self.used_event = self.reaped.wrapping_add(n - 1);
            }
        }
        self.interrupts = mode;
        self.check_avail_flags();
    }

    /// The available ring's flags as the device reads them: 0 with
    /// EVENT_IDX (§2.7.7.1), otherwise NO_INTERRUPT exactly when off.
    fn check_avail_flags(&self) {
        let flags: u16 = self
            .gm
            .load(
                GuestAddress(self.q.avail_dma_addr().as_u64()),
                Ordering::Acquire,
            )
            .unwrap();
        let want = !self.event_idx && self.interrupts != Interrupts::On;
        assert_eq!(
            flags,
            u16::from(want),
            "avail flags, interrupts {:?}",
            self.interrupts
        );
    }

    // ---- the device (virtio-queue) ----

    /// Works through up to `max` available chains as a VMM device does:
    /// notifications off while working, back on (and a last look) before
    /// sleeping.
    fn device_pop(&mut self, max: u32) {
        self.vq.disable_notification(&self.gm).unwrap();
        self.notifications_on = self.event_idx; // EVENT_IDX: a no-op
        let mut drained = false;
        for _ in 0..max {
            let gm = &self.gm;
            let Some(chain) = self.vq.pop_descriptor_chain(gm) else {
                drained = true;
                break;
            };
            let head = chain.head_index();
            let token = self
                .posted
                .iter()
                .find(|(_, p)| p.head == head && p.written.is_none())
                .map(|(t, _)| *t)
                .expect("the head of a chain in flight");
            let posted = &self.posted[&token];
            // The ring descriptor: INDIRECT alone over whole descriptors.
            let raw: Descriptor = gm
                .read_obj(GuestAddress(self.vq.desc_table() + 16 * u64::from(head)))
                .unwrap();
            let n = posted.readable.len() + posted.writable.len();
            assert_eq!(raw.refers_to_indirect_table(), posted.indirect);
            if posted.indirect {
                assert!(
                    !raw.has_next() && !raw.is_write_only(),
                    "INDIRECT alone: {raw:?}"
                );
                assert_eq!(raw.len() as usize, 16 * n);
            }
            let descs: Vec<Descriptor> = chain.collect();
            assert!(
                descs.iter().all(|d| !d.refers_to_indirect_table()),
                "no nested table"
            );
            // virtio-queue stops at a table's end even if the last entry
            // says NEXT; the spec does not let a driver write that.
            assert!(
                descs.last().is_some_and(|d| !d.has_next()),
                "the chain's last descriptor has no NEXT"
            );
            let got: Vec<(u64, u32, bool)> = descs
                .iter()
                .map(|d| (d.addr().0, d.len(), d.is_write_only()))
                .collect();
            let want: Vec<(u64, u32, bool)> = posted
                .readable
                .iter()
                .map(|s| (s.addr.as_u64(), s.len, false))
                .chain(
                    posted
                        .writable
                        .iter()
                        .map(|s| (s.addr.as_u64(), s.len, true)),
                )
                .collect();
            assert_eq!(got, want, "chain {head}");
            let mut data = Vec::new();
            for d in descs.iter().filter(|d| !d.is_write_only()) {
                let mut bytes = vec![0; d.len() as usize];
                gm.read_slice(&mut bytes, d.addr()).unwrap();
                data.extend(bytes);
            }
            assert_eq!(data, posted.data, "the driver's bytes");
            let writable = descs
                .iter()
                .filter(|d| d.is_write_only())
                .map(|d| (d.addr(), d.len()))
                .collect();
            self.in_progress.push((head, writable));
        }
        if drained {
            self.notifications_on = true;
            let more = self.vq.enable_notification(&self.gm).unwrap();
            // Found nothing after re-arming: asleep until kicked.
            self.armed = !more;
        }
    }

    /// Uses up to `max` popped chains in random order, writing a random
    /// number of bytes into each, then checks virtio-queue's interrupt
    /// decision against the driver's suppression.
    fn device_complete(&mut self, max: u32) {
        let old = self.vq.next_used();
        let mut done = 0;
        while done < max && !self.in_progress.is_empty() {
            let pick = self.rng.below(self.in_progress.len() as u64) as usize;
            let (head, writable) = self.in_progress.swap_remove(pick);
            let total: u32 = writable.iter().map(|w| w.1).sum();
            let len = self.rng.below(u64::from(total) + 1) as usize;
            let bytes = self.rng.bytes(len);
            let mut at = 0;
            for (addr, wlen) in writable {
                let part = (wlen as usize).min(len - at);
                self.gm.write_slice(&bytes[at..at + part], addr).unwrap();
                at += part;
            }
            self.vq.add_used(&self.gm, head, len as u32).unwrap();
            let token = self
                .posted
                .iter_mut()
                .find(|(_, p)| p.head == head && p.written.is_none())
                .map(|(_, p)| p)
                .unwrap();
            token.written = Some(bytes);
            self.completed_unreaped += 1;
            done += 1;
        }
        if done == 0 {
            return;
        }
        let new = self.vq.next_used();
        let wanted = self.vq.needs_notification(&self.gm).unwrap();
        if self.event_idx {
            let expected = crosses(self.used_event, new, old);
            assert_eq!(
                wanted, expected,
                "needs_notification against used_event {} ({:?}), used {old}..{new}",
                self.used_event, self.interrupts
            );
            if self.interrupts == Interrupts::On && self.reaped == old {
                assert!(wanted, "caught up with interrupts on: never lost");
            }
        } else {
            // virtio-queue 0.18 does not read NO_INTERRUPT; the flag it
            // would read is checked instead.
            assert!(wanted);
            self.check_avail_flags();
        }
        if wanted {
            self.interrupts_wanted += 1;
        } else {
            self.interrupts_suppressed += 1;
        }
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..35 => self.add(),
            35..50 => self.notify(),
            50..65 => {
                let max = 1 + self.rng.below(4) as u32;
                self.device_pop(max);
            }
            65..80 => {
                let max = 1 + self.rng.below(4) as u32;
                self.device_complete(max);
            }
            80..96 => {
                let max = 1 + self.rng.below(4) as u32;
                self.poll(max);
            }
            _ => self.suppress(),
        }
    }

    /// Runs until `requests` were added, then drains both sides, and
    /// checks every token came back once.
    fn run(mut self, requests: u32) -> Self {
        while self.issued < requests {
            self.step();
        }
        // Drain: publish, let the device take and use everything, reap.
        for _ in 0..4 * u32::from(self.size) + 8 {
            if self.posted.is_empty() {
                break;
            }
            self.notify();
            self.device_pop(u32::MAX);
            self.device_complete(u32::MAX);
            self.poll(u32::MAX);
        }
        assert!(
            self.posted.is_empty(),
            "{} requests never came back",
            self.posted.len()
        );
        let mut returned = std::mem::take(&mut self.returned);
        returned.sort_unstable();
        assert!(
            returned.iter().copied().eq(0..self.issued),
            "each token once"
        );
        assert_eq!((self.q.num_free(), self.q.in_flight()), (self.size, 0));
        assert_eq!(self.vq.next_used(), self.reaped);
        assert_eq!(self.vq.next_avail(), self.issued as u16);
        self
    }
}

/// A run of `requests` per seed; returns the tallies to check coverage.
fn cross_check(seed: u64, size: u16, event_idx: bool, entries: u16, requests: u32) -> Run {
    let run = Run::new(seed, size, event_idx, entries).run(requests);
    println!(
        "seed {seed:#x} size {size} event_idx {event_idx} indirect {entries}: {} requests ({} indirect), \
         kicks {} / suppressed {}, interrupts {} / suppressed {}",
        run.issued,
        run.indirect_chains,
        run.kicks,
        run.suppressed_kicks,
        run.interrupts_wanted,
        run.interrupts_suppressed
    );
    run
}

#[test]
fn random_chains_with_event_idx_and_indirect_across_seeds() {
    for seed in 1..=6u64 {
        let size = [2, 4, 8, 16, 64, 256][seed as usize - 1];
        let entries = size.min(MAX_SEGMENTS as u16);
        let run = cross_check(seed * 0x1234_5678, size, true, entries, 4000);
        assert!(
            run.indirect_chains > 0 && run.suppressed_kicks > 0 && run.interrupts_suppressed > 0
        );
    }
}

#[test]
fn random_chains_without_event_idx_across_seeds() {
    for seed in 1..=4u64 {
        let size = [4, 8, 32, 128][seed as usize - 1];
        let entries = if seed % 2 == 0 { 4 } else { 0 };
        let run = cross_check(seed * 0x9abc_def1, size, false, entries, 3000);
        assert!(run.suppressed_kicks > 0, "NO_NOTIFY suppressed some");
        assert_eq!(run.indirect_chains > 0, entries > 0);
    }
}

#[test]
fn the_16_bit_indices_wrap_on_both_sides() {
    for (seed, event_idx) in [(0x5eed_0001, true), (0x5eed_0002, false)] {
        let run = cross_check(seed, 8, event_idx, 4, 70_000);
        assert!(run.issued > u32::from(u16::MAX));
    }
}
