//! The virtio device models against hand-built rings: what a driver
//! writes is untrusted, so every malformed chain is a device error
//! (`DEVICE_NEEDS_RESET` with the reason), never a panic; and the
//! requests a device can still answer are answered with the right status.

use dma_core::{Coherent, DeviceConstraints};
use dma_sim::virtio::blk::{self, Blk};
use dma_sim::virtio::net::{self, Net};
use dma_sim::virtio::split::desc_flags::{INDIRECT, NEXT, WRITE};
use dma_sim::virtio::{
    regs, Backend, Features, Status, VirtioConfig, VirtioMmio, INT_CONFIG_CHANGE, INT_USED_BUFFER,
};
use dma_sim::{run_until_idle, CoherentPlatform, Sim, SimConfig};

const SIZE: u16 = 8;
const DESC: usize = 0;
const AVAIL: usize = 0x400;
const USED: usize = 0x800;
/// Where test buffers and indirect tables go.
const DATA: usize = 0x1000;
const BYTES: usize = 0x4000;

/// One device and a queue laid out by hand in one coherent region.
struct Rig<B: Backend> {
    _sim: Sim,
    dev: VirtioMmio<B>,
    mem: Coherent<[u8], CoherentPlatform>,
    avail_idx: u16,
}

impl<B: Backend> Rig<B> {
    fn new(backend: B, extra: Features, queues: &[u16]) -> Self {
        let sim = Sim::new(SimConfig::coherent().seed(7)).expect("machine");
        let id = sim.add_device("virtio");
        let platform = sim.coherent_platform(id, DeviceConstraints::UNCONSTRAINED);
        let mem = Coherent::<[u8], _>::zeroed_slice(platform, BYTES).expect("ring memory");
        let dev = VirtioMmio::new(sim.bus(id), backend, VirtioConfig::default());
        let mut rig = Self {
            _sim: sim,
            dev,
            mem,
            avail_idx: 0,
        };
        rig.bring_up(Features::VERSION_1 | extra, queues);
        rig
    }

    fn addr(&self, offset: usize) -> u64 {
        self.mem.dma_addr().as_u64() + offset as u64
    }

    fn bring_up(&mut self, features: Features, queues: &[u16]) {
        let d = &self.dev;
        d.write(regs::STATUS, 0);
        d.write(regs::STATUS, (Status::ACKNOWLEDGE | Status::DRIVER).bits());
        for (sel, word) in [
            (0, features.bits() as u32),
            (1, (features.bits() >> 32) as u32),
        ] {
            d.write(regs::DRIVER_FEATURES_SEL, sel);
            d.write(regs::DRIVER_FEATURES, word);
        }
        d.write(
            regs::STATUS,
            (Status::ACKNOWLEDGE | Status::DRIVER | Status::FEATURES_OK).bits(),
        );
        assert!(d.status().contains(Status::FEATURES_OK), "{:?}", d.errors());
        // Every queue the test uses shares the one layout; only one is
        // published into at a time.
        for &q in queues {
            d.write(regs::QUEUE_SEL, u32::from(q));
            d.write(regs::QUEUE_NUM, u32::from(SIZE));
            d.write(regs::QUEUE_DESC_LOW, self.addr(DESC) as u32);
            d.write(regs::QUEUE_DESC_HIGH, (self.addr(DESC) >> 32) as u32);
            d.write(regs::QUEUE_DRIVER_LOW, self.addr(AVAIL) as u32);
            d.write(regs::QUEUE_DRIVER_HIGH, (self.addr(AVAIL) >> 32) as u32);
            d.write(regs::QUEUE_DEVICE_LOW, self.addr(USED) as u32);
            d.write(regs::QUEUE_DEVICE_HIGH, (self.addr(USED) >> 32) as u32);
            d.write(regs::QUEUE_READY, 1);
        }
        let live = Status::ACKNOWLEDGE | Status::DRIVER | Status::FEATURES_OK | Status::DRIVER_OK;
        d.write(regs::STATUS, live.bits());
    }

    /// Writes a descriptor at byte offset `table` (DESC for the ring's).
    fn desc(&mut self, table: usize, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = table + 16 * usize::from(i);
        self.mem.copy_in(at, &addr.to_le_bytes()).expect("in range");
        self.mem
            .copy_in(at + 8, &len.to_le_bytes())
            .expect("in range");
        self.mem
            .copy_in(at + 12, &flags.to_le_bytes())
            .expect("in range");
        self.mem
            .copy_in(at + 14, &next.to_le_bytes())
            .expect("in range");
    }

    /// Publishes `head` in the available ring and runs the device.
    fn publish(&mut self, head: u16) {
        let slot = AVAIL + 4 + 2 * usize::from(self.avail_idx % SIZE);
        self.mem
            .copy_in(slot, &head.to_le_bytes())
            .expect("in range");
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(self.avail_idx);
    }

    fn set_avail_idx(&mut self, idx: u16) {
        self.mem
            .copy_in(AVAIL + 2, &idx.to_le_bytes())
            .expect("in range");
        run_until_idle(&mut self.dev.clone(), 100);
    }

    fn used_idx(&self) -> u16 {
        self.u16_at(USED + 2)
    }

    /// The used element `i`: (id, len).
    fn used(&self, i: u16) -> (u32, u32) {
        let mut b = [0u8; 8];
        self.mem
            .copy_out(USED + 4 + 8 * usize::from(i % SIZE), &mut b)
            .expect("in range");
        (
            u32::from_le_bytes(b[..4].try_into().unwrap()),
            u32::from_le_bytes(b[4..].try_into().unwrap()),
        )
    }

    fn u16_at(&self, at: usize) -> u16 {
        let mut b = [0u8; 2];
        self.mem.copy_out(at, &mut b).expect("in range");
        u16::from_le_bytes(b)
    }

    fn bytes(&self, at: usize, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.copy_out(at, &mut v).expect("in range");
        v
    }

    /// The device stopped with a reason naming `what`.
    fn assert_broken(&self, what: &str) {
        let status = self.dev.status();
        assert!(
            status.contains(Status::DEVICE_NEEDS_RESET),
            "expected a device error for {what}: {status:?}"
        );
        assert_ne!(self.dev.read(regs::INTERRUPT_STATUS) & INT_CONFIG_CHANGE, 0);
        let errors = self.dev.errors();
        assert!(errors.iter().any(|e| e.contains(what)), "{errors:?}");
        assert_eq!(self.used_idx(), 0, "nothing completed");
    }
}

fn blk_rig(features: Features) -> Rig<Blk> {
    Rig::new(Blk::new(16, false), features, &[0])
}

/// A block request at DATA: header, `data` bytes, status.
fn blk_request(rig: &mut Rig<Blk>, kind: u32, sector: u64, data: u32, data_flags: u16) {
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&kind.to_le_bytes());
    hdr[8..].copy_from_slice(&sector.to_le_bytes());
    rig.mem.copy_in(DATA, &hdr).expect("in range");
    let (h, d, s) = (
        rig.addr(DATA),
        rig.addr(DATA + 0x100),
        rig.addr(DATA + 0x80),
    );
    rig.desc(DESC, 0, h, 16, NEXT, 1);
    rig.desc(DESC, 1, d, data, NEXT | data_flags, 2);
    rig.desc(DESC, 2, s, 1, WRITE, 0);
    rig.mem.copy_in(DATA + 0x80, &[0xff]).expect("in range");
}

fn status_byte(rig: &Rig<Blk>) -> u8 {
    rig.bytes(DATA + 0x80, 1)[0]
}

#[test]
fn blk_read_and_write_reach_the_disk() {
    let mut rig = blk_rig(Features::empty());
    rig.mem
        .copy_in(DATA + 0x100, &[0x5a; 512])
        .expect("in range");
    blk_request(&mut rig, blk::req::OUT, 3, 512, 0);
    rig.publish(0);
    assert_eq!(status_byte(&rig), blk::status::OK);
    assert_eq!(rig.used(0), (0, 1));
    assert!(rig
        .dev
        .with_backend(|b| b.disk()[3 * 512..4 * 512] == [0x5a; 512]));
    assert_ne!(rig.dev.read(regs::INTERRUPT_STATUS) & INT_USED_BUFFER, 0);

    rig.dev
        .with_backend(|b| b.disk_mut()[5 * 512..6 * 512].fill(0xc3));
    blk_request(&mut rig, blk::req::IN, 5, 512, WRITE);
    rig.publish(0);
    assert_eq!(status_byte(&rig), blk::status::OK);
    assert_eq!(rig.used(1), (0, 513));
    assert_eq!(rig.bytes(DATA + 0x100, 512), vec![0xc3; 512]);
}

#[test]
fn blk_requests_the_device_can_answer_get_a_status() {
    let cases: [(u32, u64, u32, u16, u8); 5] = [
        (blk::req::IN, 16, 512, WRITE, blk::status::IOERR), // past the end
        (blk::req::IN, 0, 100, WRITE, blk::status::IOERR),  // not whole sectors
        (blk::req::GET_ID, 0, 8, WRITE, blk::status::IOERR), // id does not fit
        (99, 0, 512, WRITE, blk::status::UNSUPP),
        (blk::req::FLUSH, 0, 512, WRITE, blk::status::OK),
    ];
    for (kind, sector, len, flags, want) in cases {
        let mut rig = blk_rig(Features::empty());
        blk_request(&mut rig, kind, sector, len, flags);
        rig.publish(0);
        assert_eq!(status_byte(&rig), want, "request type {kind}");
        assert_eq!(rig.used_idx(), 1);
    }
    // A write to a read-only disk.
    let mut rig = Rig::new(Blk::new(16, true), blk::features::RO, &[0]);
    blk_request(&mut rig, blk::req::OUT, 0, 512, 0);
    rig.publish(0);
    assert_eq!(status_byte(&rig), blk::status::IOERR);
    assert_eq!(rig.dev.with_backend(|b| b.stats().errors), 1);
}

#[test]
fn blk_request_whose_data_the_bus_refuses_is_an_ioerr() {
    let mut rig = blk_rig(Features::empty());
    blk_request(&mut rig, blk::req::IN, 0, 512, WRITE);
    // The data buffer lies outside anything mapped for the device.
    rig.desc(DESC, 1, 0x10, 512, NEXT | WRITE, 2);
    rig.publish(0);
    assert_eq!(status_byte(&rig), blk::status::IOERR);
    assert!(!rig.dev.status().contains(Status::DEVICE_NEEDS_RESET));
}

#[test]
fn blk_request_without_a_status_byte_breaks_the_device() {
    let mut rig = blk_rig(Features::empty());
    rig.desc(DESC, 0, rig.addr(DATA), 16, 0, 0);
    rig.publish(0);
    rig.assert_broken("status byte");
}

#[test]
fn malformed_chains_are_device_errors() {
    type Build = fn(&mut Rig<Blk>);
    let cases: [(&str, Features, Build); 9] = [
        ("a loop", Features::empty(), |r| {
            r.desc(DESC, 0, r.addr(DATA), 16, NEXT, 1);
            r.desc(DESC, 1, r.addr(DATA), 16, NEXT, 0);
        }),
        ("`next` outside", Features::empty(), |r| {
            r.desc(DESC, 0, r.addr(DATA), 16, NEXT, SIZE);
        }),
        ("readable descriptor after", Features::empty(), |r| {
            r.desc(DESC, 0, r.addr(DATA), 16, NEXT | WRITE, 1);
            r.desc(DESC, 1, r.addr(DATA), 16, 0, 0);
        }),
        ("more than 2^32", Features::empty(), |r| {
            r.desc(DESC, 0, r.addr(DATA), u32::MAX, NEXT, 1);
            r.desc(DESC, 1, r.addr(DATA), 2, WRITE, 0);
        }),
        ("without VIRTIO_F_INDIRECT_DESC", Features::empty(), |r| {
            r.desc(DESC, 0, r.addr(DATA + 0x200), 32, INDIRECT, 0);
        }),
        ("INDIRECT and NEXT", Features::INDIRECT_DESC, |r| {
            r.desc(DESC, 0, r.addr(DATA + 0x200), 32, INDIRECT | NEXT, 1);
        }),
        ("multiple of 16", Features::INDIRECT_DESC, |r| {
            r.desc(DESC, 0, r.addr(DATA + 0x200), 24, INDIRECT, 0);
        }),
        ("inside an indirect table", Features::INDIRECT_DESC, |r| {
            r.desc(DESC, 0, r.addr(DATA + 0x200), 32, INDIRECT, 0);
            r.desc(DATA + 0x200, 0, r.addr(DATA + 0x300), 16, INDIRECT, 0);
        }),
        ("after direct ones", Features::INDIRECT_DESC, |r| {
            r.desc(DESC, 0, r.addr(DATA), 16, NEXT, 1);
            r.desc(DESC, 1, r.addr(DATA + 0x200), 32, INDIRECT, 0);
        }),
    ];
    for (what, features, build) in cases {
        let mut rig = blk_rig(features);
        build(&mut rig);
        rig.publish(0);
        rig.assert_broken(what);
    }
}

#[test]
fn ring_errors_are_device_errors() {
    let mut rig = blk_rig(Features::empty());
    rig.set_avail_idx(SIZE + 1);
    rig.assert_broken("more than the queue size");

    let mut rig = blk_rig(Features::empty());
    rig.publish(SIZE);
    rig.assert_broken("head outside");

    // A descriptor table the device cannot reach.
    let mut rig = blk_rig(Features::empty());
    rig.dev.write(regs::QUEUE_SEL, 0);
    rig.dev.write(regs::QUEUE_READY, 0);
    rig.dev.write(regs::QUEUE_DESC_LOW, 0x1000);
    rig.dev.write(regs::QUEUE_DESC_HIGH, 0);
    rig.dev.write(regs::QUEUE_READY, 1);
    rig.publish(0);
    rig.assert_broken("ring access faulted");

    // Misaligned queue areas.
    let rig = blk_rig(Features::empty());
    rig.dev.write(regs::QUEUE_SEL, 0);
    rig.dev.write(regs::QUEUE_READY, 0);
    rig.dev
        .write(regs::QUEUE_DESC_LOW, rig.addr(DESC + 8) as u32);
    rig.dev.write(regs::QUEUE_READY, 1);
    rig.assert_broken("misaligned");
    assert_eq!(rig.dev.read(regs::QUEUE_READY), 0);
}

#[test]
fn a_reset_clears_a_broken_device() {
    let mut rig = blk_rig(Features::empty());
    rig.publish(SIZE);
    rig.assert_broken("head outside");
    rig.dev.write(regs::STATUS, 0);
    assert_eq!(rig.dev.status(), Status::empty());
    assert_eq!(rig.dev.read(regs::INTERRUPT_STATUS), 0);
    rig.avail_idx = 0;
    rig.bring_up(Features::VERSION_1, &[0]);
    blk_request(&mut rig, blk::req::FLUSH, 0, 512, WRITE);
    rig.set_avail_idx(0); // the ring memory still says 1 from before the reset
    rig.publish(0);
    assert_eq!(status_byte(&rig), blk::status::OK);
}

#[test]
fn indirect_chains_are_followed() {
    let mut rig = blk_rig(Features::INDIRECT_DESC);
    rig.dev.with_backend(|b| b.disk_mut()[..512].fill(0x77));
    let table = DATA + 0x200;
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&blk::req::IN.to_le_bytes());
    rig.mem.copy_in(DATA, &hdr).expect("in range");
    let (h, d, s) = (
        rig.addr(DATA),
        rig.addr(DATA + 0x400),
        rig.addr(DATA + 0x80),
    );
    rig.desc(table, 0, h, 16, NEXT, 1);
    rig.desc(table, 1, d, 256, NEXT | WRITE, 2);
    rig.desc(table, 2, d + 256, 256, NEXT | WRITE, 3);
    rig.desc(table, 3, s, 1, WRITE, 0);
    rig.desc(DESC, 5, rig.addr(table), 64, INDIRECT, 0);
    rig.publish(5);
    assert_eq!(status_byte(&rig), blk::status::OK);
    assert_eq!(rig.used(0), (5, 513));
    assert_eq!(rig.bytes(DATA + 0x400, 512), vec![0x77; 512]);
}

#[test]
fn event_idx_asks_for_the_next_kick_and_honours_used_event() {
    let mut rig = blk_rig(Features::EVENT_IDX);
    // used_event = 5: no interrupt for the first completions.
    rig.mem
        .copy_in(AVAIL + 4 + 2 * usize::from(SIZE), &5u16.to_le_bytes())
        .expect("in range");
    for _ in 0..5 {
        blk_request(&mut rig, blk::req::FLUSH, 0, 512, WRITE);
        rig.publish(0);
    }
    assert_eq!(rig.dev.interrupts(), 0);
    // avail_event: the device wants a kick at the next entry.
    assert_eq!(rig.u16_at(USED + 4 + 8 * usize::from(SIZE)), 5);
    blk_request(&mut rig, blk::req::FLUSH, 0, 512, WRITE);
    rig.publish(0);
    assert_eq!(
        rig.dev.interrupts(),
        1,
        "the 6th completion passes used_event"
    );
}

#[test]
fn no_interrupt_flag_suppresses_interrupts_without_event_idx() {
    let mut rig = blk_rig(Features::empty());
    rig.mem
        .copy_in(AVAIL, &1u16.to_le_bytes())
        .expect("in range");
    blk_request(&mut rig, blk::req::FLUSH, 0, 512, WRITE);
    rig.publish(0);
    assert_eq!(rig.used_idx(), 1);
    assert_eq!(rig.dev.interrupts(), 0);
}

fn net_rig() -> Rig<Net> {
    Rig::new(Net::new([2, 0, 0, 0, 0, 1], 4), net::features::MAC, &[0, 1])
}

#[test]
fn net_rejects_malformed_chains_and_drops_what_it_cannot_send_or_fit() {
    // A transmit chain the device may write.
    let mut rig = net_rig();
    rig.desc(DESC, 0, rig.addr(DATA), 64, WRITE, 0);
    rig.dev.write(regs::QUEUE_SEL, 0);
    rig.dev.write(regs::QUEUE_READY, 0); // only the transmit queue
    rig.publish(0);
    rig.assert_broken("transmit chain with device-writable");

    // A receive chain the device may only read.
    let mut rig = net_rig();
    rig.dev.write(regs::QUEUE_SEL, 1);
    rig.dev.write(regs::QUEUE_READY, 0); // only the receive queue
    assert!(rig.dev.with_backend(|n| n.receive(&[1; 60])));
    rig.desc(DESC, 0, rig.addr(DATA), 2048, 0, 0);
    rig.publish(0);
    rig.assert_broken("receive chain with device-readable");

    // A header asking for checksum offload, which was not offered.
    let mut rig = net_rig();
    rig.dev.write(regs::QUEUE_SEL, 0);
    rig.dev.write(regs::QUEUE_READY, 0);
    rig.mem.copy_in(DATA, &[1u8]).expect("in range"); // flags: NEEDS_CSUM
    rig.desc(DESC, 0, rig.addr(DATA), 80, 0, 0);
    rig.publish(0);
    assert_eq!(rig.used_idx(), 1);
    let stats = rig.dev.with_backend(|n| n.stats());
    assert_eq!((stats.tx_frames, stats.tx_dropped), (0, 1));

    // A receive buffer too small for the frame.
    let mut rig = net_rig();
    rig.dev.write(regs::QUEUE_SEL, 1);
    rig.dev.write(regs::QUEUE_READY, 0);
    assert!(rig.dev.with_backend(|n| n.receive(&[1; 100])));
    rig.desc(DESC, 0, rig.addr(DATA), 64, WRITE, 0);
    rig.publish(0);
    assert_eq!(rig.used(0), (0, 0));
    assert_eq!(rig.dev.with_backend(|n| n.stats().rx_dropped), 1);

    // The FIFO holds four frames.
    let rig = net_rig();
    for _ in 0..4 {
        assert!(rig.dev.with_backend(|n| n.receive(&[1; 60])));
    }
    assert!(!rig.dev.with_backend(|n| n.receive(&[1; 60])));
    assert!(!rig.dev.with_backend(|n| n.receive(&[])));
}

#[test]
fn net_delivers_a_frame_with_its_header() {
    let mut rig = net_rig();
    rig.dev.write(regs::QUEUE_SEL, 1);
    rig.dev.write(regs::QUEUE_READY, 0);
    let frame: Vec<u8> = (0..200u8).collect();
    assert!(rig.dev.with_backend(|n| n.receive(&frame)));
    // Split across two buffers.
    rig.desc(DESC, 0, rig.addr(DATA), 100, WRITE | NEXT, 1);
    rig.desc(DESC, 1, rig.addr(DATA + 0x100), 200, WRITE, 0);
    rig.publish(0);
    let total = (net::HEADER + frame.len()) as u32;
    assert_eq!(rig.used(0), (0, total));
    let mut got = rig.bytes(DATA, 100);
    got.extend(rig.bytes(DATA + 0x100, 112));
    assert_eq!(&got[10..12], &1u16.to_le_bytes(), "num_buffers");
    assert_eq!(&got[net::HEADER..], &frame[..]);
    let mut mac = [0u8; 6];
    rig.dev.read_config(0, &mut mac);
    assert_eq!(mac, [2, 0, 0, 0, 0, 1]);
    assert_eq!(
        rig.dev.read(regs::CONFIG + 4) >> 16,
        u32::from(net::LINK_UP)
    );
}

mod packed {
    //! The packed ring (§2.8) with hand-written descriptors: the ring at
    //! DESC, the driver event structure at AVAIL, the device's at USED.

    use super::*;
    use dma_sim::virtio::packed::flags::{AVAIL as F_AVAIL, INDIRECT, NEXT, USED as F_USED, WRITE};

    fn rig(extra: Features) -> Rig<Blk> {
        blk_rig(Features::RING_PACKED | extra)
    }

    /// A descriptor made available in the first lap (wrap counter 1).
    fn put(rig: &mut Rig<Blk>, i: u16, addr: u64, len: u32, id: u16, flags: u16) {
        let at = DESC + 16 * usize::from(i);
        rig.mem.copy_in(at, &addr.to_le_bytes()).unwrap();
        rig.mem.copy_in(at + 8, &len.to_le_bytes()).unwrap();
        rig.mem.copy_in(at + 12, &id.to_le_bytes()).unwrap();
        rig.mem
            .copy_in(at + 14, &(flags | F_AVAIL).to_le_bytes())
            .unwrap();
    }

    fn run(rig: &Rig<Blk>) {
        run_until_idle(&mut rig.dev.clone(), 100);
    }

    fn flush_request(rig: &mut Rig<Blk>, id: u16) {
        let mut hdr = [0u8; 16];
        hdr[..4].copy_from_slice(&blk::req::FLUSH.to_le_bytes());
        rig.mem.copy_in(DATA, &hdr).unwrap();
        rig.mem.copy_in(DATA + 0x80, &[0xff]).unwrap();
        put(rig, 0, rig.addr(DATA), 16, 0, NEXT);
        put(rig, 1, rig.addr(DATA + 0x80), 1, id, WRITE);
    }

    #[test]
    fn a_chain_is_used_under_its_buffer_id_and_skipped_by_its_length() {
        let mut rig = rig(Features::empty());
        flush_request(&mut rig, 42);
        run(&rig);
        assert_eq!(status_byte(&rig), blk::status::OK);
        // The used descriptor at 0: id 42, 1 byte, AVAIL and USED = 1.
        assert_eq!(rig.bytes(DESC + 8, 4), 1u32.to_le_bytes());
        assert_eq!(rig.u16_at(DESC + 12), 42);
        assert_eq!(rig.u16_at(DESC + 14), F_AVAIL | F_USED);
        // The next chain starts at 2: slot 1 is not looked at again.
        let d = rig.addr(DATA);
        put(&mut rig, 2, d, 16, 0, NEXT);
        let st = rig.addr(DATA + 0x80);
        put(&mut rig, 3, st, 1, 7, WRITE);
        rig.mem.copy_in(DATA + 0x80, &[0xff]).unwrap();
        run(&rig);
        assert_eq!(rig.u16_at(DESC + 2 * 16 + 12), 7);
        assert_eq!(rig.dev.interrupts(), 2);
    }

    #[test]
    fn a_descriptor_not_yet_available_is_left_alone() {
        let mut rig = rig(Features::empty());
        flush_request(&mut rig, 1);
        // Second lap's AVAIL value (0) while the device is in the first.
        let first = DESC + 14;
        rig.mem.copy_in(first, &NEXT.to_le_bytes()).unwrap();
        run(&rig);
        assert_eq!(status_byte(&rig), 0xff);
        assert!(rig.dev.errors().is_empty());
    }

    #[test]
    fn event_idx_publishes_the_next_position() {
        let mut rig = rig(Features::EVENT_IDX);
        // Driver: notify at descriptor 4 of the first lap only.
        rig.mem
            .copy_in(AVAIL, &(4u16 | 1 << 15).to_le_bytes())
            .unwrap();
        rig.mem.copy_in(AVAIL + 2, &2u16.to_le_bytes()).unwrap();
        flush_request(&mut rig, 1);
        run(&rig);
        assert_eq!(rig.u16_at(USED), 2 | 1 << 15, "device: kick me at 2, lap 1");
        assert_eq!(rig.u16_at(USED + 2), 2);
        assert_eq!(rig.dev.interrupts(), 0, "used position 2 has not passed 4");
        let d = rig.addr(DATA);
        put(&mut rig, 2, d, 16, 0, NEXT);
        let st = rig.addr(DATA + 0x80);
        put(&mut rig, 3, st, 1, 2, WRITE);
        run(&rig);
        assert_eq!(rig.dev.interrupts(), 0, "position 4 reached, not passed");
        let d = rig.addr(DATA);
        put(&mut rig, 4, d, 16, 0, NEXT);
        let st = rig.addr(DATA + 0x80);
        put(&mut rig, 5, st, 1, 3, WRITE);
        run(&rig);
        assert_eq!(rig.dev.interrupts(), 1, "the chain at 4 was used");
    }

    #[test]
    fn malformed_packed_chains_are_device_errors() {
        type Build = fn(&mut Rig<Blk>);
        let cases: [(&str, Features, Build); 6] = [
            ("longer than the queue", Features::empty(), |r| {
                for i in 0..SIZE {
                    put(r, i, r.addr(DATA), 16, 0, NEXT);
                }
            }),
            ("readable descriptor after", Features::empty(), |r| {
                put(r, 0, r.addr(DATA), 16, 0, NEXT | WRITE);
                put(r, 1, r.addr(DATA), 16, 0, 0);
            }),
            ("without VIRTIO_F_INDIRECT_DESC", Features::empty(), |r| {
                put(r, 0, r.addr(DATA + 0x200), 32, 0, INDIRECT);
            }),
            ("chained with others", Features::INDIRECT_DESC, |r| {
                put(r, 0, r.addr(DATA + 0x200), 32, 0, INDIRECT | NEXT);
            }),
            ("multiple of 16", Features::INDIRECT_DESC, |r| {
                put(r, 0, r.addr(DATA + 0x200), 20, 0, INDIRECT);
            }),
            ("inside an indirect table", Features::INDIRECT_DESC, |r| {
                put(r, 0, r.addr(DATA + 0x200), 16, 0, INDIRECT);
                r.desc(DATA + 0x200, 0, r.addr(DATA), 16, 0, 0);
                r.mem
                    .copy_in(DATA + 0x200 + 14, &INDIRECT.to_le_bytes())
                    .unwrap();
            }),
        ];
        for (what, features, build) in cases {
            let mut r = rig(features);
            build(&mut r);
            run(&r);
            r.assert_broken(what);
        }
    }

    #[test]
    fn packed_queue_areas_must_be_aligned() {
        let rig = rig(Features::empty());
        rig.dev.write(regs::QUEUE_SEL, 0);
        rig.dev.write(regs::QUEUE_READY, 0);
        rig.dev
            .write(regs::QUEUE_DRIVER_LOW, rig.addr(AVAIL + 2) as u32);
        rig.dev.write(regs::QUEUE_READY, 1);
        rig.assert_broken("packed queue areas misaligned");
    }
}
