//! dma-ring's split and packed virtqueues (the driver side) against the
//! sim's virtio-blk model (an independent device side), on the
//! non-coherent machine with the detector on: two readings of virtio 1.2
//! that agree only if both follow it. Queues of 8 entries and 3-descriptor
//! chains, so the rings wrap many times.

use dma_core::{
    Coherent, DeviceConstraints, DmaAddr, DmaBuf, FromDevice, StreamingMapping, ToDevice,
};
use dma_ring::virtio::packed::{PackedLayout, PackedQueue};
use dma_ring::virtio::split::{SplitLayout, SplitQueue};
use dma_ring::virtio::{Segment, Used};
use dma_ring::{slot_vec, AtomicDoorbell, Slot};
use dma_sim::virtio::blk::{req, status, Blk, SECTOR};
use dma_sim::virtio::{regs, Features, Status, VirtioConfig, VirtioMmio};
use dma_sim::{run_until_idle, NonCoherentPlatform, Sim, SimConfig};

const SIZE: u16 = 8;
const SECTORS: u64 = 32;

type Mem<'a> = Coherent<[u64], &'a NonCoherentPlatform>;

/// What the test needs of either queue.
trait Queue {
    fn put(&mut self, readable: &[Segment], writable: &[Segment], tag: u32);
    fn kick(&mut self) -> bool;
    fn take(&mut self) -> Option<Used<u32>>;
    /// (descriptors, driver area, device area)
    fn areas(&self) -> (DmaAddr, DmaAddr, DmaAddr);
}

type Split<'a> = SplitQueue<Mem<'a>, &'a AtomicDoorbell, u32, Vec<Slot<u32>>>;
type Packed<'a> = PackedQueue<Mem<'a>, &'a AtomicDoorbell, u32, Vec<Slot<u32>>>;

macro_rules! queue_impl {
    ($t:ident, $driver:ident, $device:ident) => {
        impl Queue for $t<'_> {
            fn put(&mut self, readable: &[Segment], writable: &[Segment], tag: u32) {
                self.add(readable, writable, tag)
                    .expect("room in the queue");
            }
            fn kick(&mut self) -> bool {
                self.notify()
            }
            fn take(&mut self) -> Option<Used<u32>> {
                self.poll().expect("the model completes correctly")
            }
            fn areas(&self) -> (DmaAddr, DmaAddr, DmaAddr) {
                (self.desc_dma_addr(), self.$driver(), self.$device())
            }
        }
    };
}
queue_impl!(Split, avail_dma_addr, used_dma_addr);
queue_impl!(Packed, driver_event_dma_addr, device_event_dma_addr);

fn bring_up(dev: &VirtioMmio<Blk>, features: Features, areas: (DmaAddr, DmaAddr, DmaAddr)) {
    let ok = Status::ACKNOWLEDGE | Status::DRIVER;
    dev.write(regs::STATUS, 0);
    dev.write(regs::STATUS, ok.bits());
    for (sel, word) in [
        (0, features.bits() as u32),
        (1, (features.bits() >> 32) as u32),
    ] {
        dev.write(regs::DRIVER_FEATURES_SEL, sel);
        dev.write(regs::DRIVER_FEATURES, word);
    }
    dev.write(regs::STATUS, (ok | Status::FEATURES_OK).bits());
    assert!(
        dev.status().contains(Status::FEATURES_OK),
        "{:?}",
        dev.errors()
    );
    dev.write(regs::QUEUE_SEL, 0);
    dev.write(regs::QUEUE_NUM, u32::from(SIZE));
    for (low, addr) in [
        (regs::QUEUE_DESC_LOW, areas.0),
        (regs::QUEUE_DRIVER_LOW, areas.1),
        (regs::QUEUE_DEVICE_LOW, areas.2),
    ] {
        dev.write(low, addr.as_u64() as u32);
        dev.write(low + 4, (addr.as_u64() >> 32) as u32);
    }
    dev.write(regs::QUEUE_READY, 1);
    dev.write(
        regs::STATUS,
        (ok | Status::FEATURES_OK | Status::DRIVER_OK).bits(),
    );
}

/// Writes then reads back every sector twice over through `q`.
fn run<Q: Queue>(sim: &Sim, p: &NonCoherentPlatform, dev: &VirtioMmio<Blk>, q: &mut Q) {
    let mut hdr = Coherent::<[u8], _>::zeroed_slice(p, 16).expect("header");
    let mut st = Coherent::<[u8], _>::zeroed_slice(p, 1).expect("status");
    let seg = |addr: DmaAddr, len: u32| Segment::new(addr, len);
    for round in 0..2 * SECTORS as u32 {
        let sector = u64::from(round) % SECTORS;
        let data: Vec<u8> = (0..SECTOR as usize)
            .map(|i| (i as u32 * 7 + round) as u8)
            .collect();
        // Write: header and data readable, status writable.
        hdr.copy_in(0, &req::OUT.to_le_bytes()).unwrap();
        hdr.copy_in(8, &sector.to_le_bytes()).unwrap();
        st.copy_in(0, &[0xff]).unwrap();
        let mut buf = DmaBuf::for_device(p, SECTOR as usize).expect("buffer");
        buf[..].copy_from_slice(&data);
        let out = StreamingMapping::<_, ToDevice, _>::map(p, buf).expect("map");
        // A 3-descriptor chain: header and data readable, status writable.
        q.put(
            &[seg(hdr.dma_addr(), 16), seg(out.dma_addr(), SECTOR as u32)],
            &[seg(st.dma_addr(), 1)],
            round,
        );
        complete(dev, q, round, 1);
        assert_eq!(st.read(0).unwrap(), status::OK);
        drop(out.unmap().expect("unmap"));
        let on_disk = dev.with_backend(|b| b.disk()[(sector * SECTOR) as usize..][..512].to_vec());
        assert_eq!(on_disk, data, "round {round} written");

        // Read it back into a streaming FromDevice buffer.
        hdr.copy_in(0, &req::IN.to_le_bytes()).unwrap();
        let buf = DmaBuf::for_device(p, SECTOR as usize).expect("buffer");
        let mut rx = StreamingMapping::<_, FromDevice, _>::map(p, buf).expect("map");
        q.put(
            &[seg(hdr.dma_addr(), 16)],
            &[seg(rx.dma_addr(), SECTOR as u32), seg(st.dma_addr(), 1)],
            round | 1 << 31,
        );
        complete(dev, q, round | 1 << 31, SECTOR as u32 + 1);
        rx.sync_for_cpu();
        assert_eq!(st.read(0).unwrap(), status::OK);
        assert_eq!(
            &rx.unmap().expect("unmap")[..],
            &data[..],
            "round {round} read"
        );
    }
    assert!(dev.errors().is_empty(), "{:?}", dev.errors());
    assert!(sim.reports().is_empty());
    assert!(sim.faults().is_empty(), "{:?}", sim.faults());
}

/// Kicks, lets the model run, and takes the one completion.
fn complete<Q: Queue>(dev: &VirtioMmio<Blk>, q: &mut Q, tag: u32, written: u32) {
    assert!(q.kick(), "the device asked to be notified of every request");
    run_until_idle(&mut dev.clone(), 100);
    let used = q.take().expect("a completion");
    assert_eq!((used.buffers, used.len), (tag, written));
    assert!(q.take().is_none());
}

fn machine() -> (Sim, NonCoherentPlatform, VirtioMmio<Blk>) {
    let sim = Sim::new(SimConfig::non_coherent().seed(11).panic_on_report(true)).expect("sim");
    let id = sim.add_device("virtio-blk");
    let p = sim.non_coherent_platform(id, DeviceConstraints::UNCONSTRAINED);
    let dev = VirtioMmio::new(
        sim.bus(id),
        Blk::new(SECTORS, false),
        VirtioConfig::default(),
    );
    (sim, p, dev)
}

#[test]
fn dma_ring_split_queue_drives_the_model() {
    for event_idx in [false, true] {
        let (sim, p, dev) = machine();
        let db = AtomicDoorbell::default();
        let layout = SplitLayout::new(SIZE).unwrap();
        let mem = Coherent::zeroed_slice(&p, layout.bytes.div_ceil(8)).expect("ring");
        let mut q: Split<'_> =
            SplitQueue::new(mem, SIZE, 0, &db, event_idx, slot_vec(SIZE.into())).unwrap();
        let extra = if event_idx {
            Features::EVENT_IDX
        } else {
            Features::empty()
        };
        bring_up(&dev, Features::VERSION_1 | extra, q.areas());
        run(&sim, &p, &dev, &mut q);
        assert_eq!(dev.interrupts(), 4 * SECTORS);
    }
}

#[test]
fn dma_ring_packed_queue_drives_the_model() {
    for event_idx in [false, true] {
        let (sim, p, dev) = machine();
        let db = AtomicDoorbell::default();
        let layout = PackedLayout::new(SIZE).unwrap();
        let mem = Coherent::zeroed_slice(&p, layout.bytes.div_ceil(8)).expect("ring");
        let mut q: Packed<'_> =
            PackedQueue::new(mem, SIZE, 0, &db, event_idx, slot_vec(SIZE.into())).unwrap();
        let extra = if event_idx {
            Features::EVENT_IDX
        } else {
            Features::empty()
        };
        bring_up(
            &dev,
            Features::VERSION_1 | Features::RING_PACKED | extra,
            q.areas(),
        );
        run(&sim, &p, &dev, &mut q);
        assert_eq!(dev.interrupts(), 4 * SECTORS);
    }
}

#[test]
fn interrupts_off_means_none() {
    let (sim, p, dev) = machine();
    let db = AtomicDoorbell::default();
    let layout = PackedLayout::new(SIZE).unwrap();
    let mem = Coherent::zeroed_slice(&p, layout.bytes.div_ceil(8)).expect("ring");
    let mut q: Packed<'_> =
        PackedQueue::new(mem, SIZE, 0, &db, false, slot_vec(SIZE.into())).unwrap();
    q.set_interrupts(false);
    bring_up(&dev, Features::VERSION_1 | Features::RING_PACKED, q.areas());
    run(&sim, &p, &dev, &mut q);
    assert_eq!(dev.interrupts(), 0);
}
