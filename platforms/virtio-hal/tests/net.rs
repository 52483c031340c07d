//! virtio-drivers' own `VirtIONet` on the sim's virtio-net model, on the
//! non-coherent machine with the detector and `dma-check` on.

mod support;

use dma_check::Report;
use dma_core::DmaDirection;
use dma_sim::virtio::net::{self, Net};
use dma_sim::virtio::{Features, VirtioConfig, VirtioMmio};
use support::{describe, Hal, Rig, SimTransport};
use virtio_drivers::device::net::{VirtIONet, VirtIONetRaw};

const QUEUE: usize = 16;
const BUF_LEN: usize = 2048;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

fn frame(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

type Driver = VirtIONet<Hal, SimTransport<Net>, QUEUE>;

fn bring_up(rig: &Rig) -> (VirtioMmio<Net>, Driver) {
    let model = VirtioMmio::new(
        rig.sim.bus(rig.dev),
        Net::new(MAC, 64),
        VirtioConfig::default(),
    );
    let transport = SimTransport::new(model.clone()).expect("a virtio-net device");
    let drv = Driver::new(transport, BUF_LEN).expect("virtio-net bring-up");
    (model, drv)
}

/// Frames of several sizes each way, more than the queue holds, every
/// byte compared on the other side.
fn exercise(seed: u64) -> dma_sim_presets::Outcome<()> {
    let rig = Rig::new(seed, "virtio-net");
    let (model, mut drv) = bring_up(&rig);
    assert_eq!(drv.mac_address(), MAC);
    assert!(model
        .negotiated()
        .contains(Features::VERSION_1 | Features::EVENT_IDX | net::features::MAC));

    let sizes = [60usize, 64, 128, 511, 1000, 1514];
    for (i, &len) in sizes.iter().cycle().take(3 * QUEUE).enumerate() {
        let tx = frame(i as u8, len);
        let mut buf = drv.new_tx_buffer(len);
        buf.packet_mut().copy_from_slice(&tx);
        drv.send(buf).expect("send");
        let sent = model.with_backend(|n| n.take_transmitted());
        assert_eq!(sent, vec![tx], "frame {i} on the wire byte for byte");

        let rx = frame(0x80 ^ i as u8, len);
        assert!(model.with_backend(|n| n.receive(&rx)));
        support_pump(&model);
        let got = drv.receive().expect("a frame");
        assert_eq!(got.packet(), &rx[..], "frame {i} received byte for byte");
        drv.recycle_rx_buffer(got).expect("recycle");
    }
    let stats = model.with_backend(|n| n.stats());
    assert_eq!(
        (stats.tx_frames, stats.rx_frames),
        (3 * QUEUE as u64, 3 * QUEUE as u64)
    );
    assert_eq!((stats.tx_dropped, stats.rx_dropped), (0, 0));
    assert!(model.errors().is_empty(), "{:?}", model.errors());
    drop(drv);
    rig.finish(())
}

/// A frame arrived: let the device deliver it (the driver only notifies
/// when it posts buffers).
fn support_pump(model: &VirtioMmio<Net>) {
    dma_sim::run_until_idle(&mut model.clone(), 1000);
}

/// A receive buffer of virtio-drivers' `VirtIONet` as the checker saw it.
fn is_rx_buffer(m: &dma_check::Mapping) -> bool {
    m.len == BUF_LEN && m.dir == DmaDirection::FromDevice
}

/// The sim finds nothing (no stale data, no fault) and every frame
/// arrives intact. What `dma-check` reports is virtio-drivers' (0.13):
/// - `VirtIONet`'s receive buffers are plain `Vec`s, so neighbours share
///   cache lines while both are mapped for the device to write
///   (`CacheLineOverlap`, Linux's "cacheline tracking EEXIST"). Here the
///   bounce backend copies them through its own lines, so no data is lost,
///   but a non-coherent direct or IOMMU platform refuses them;
/// - dropping `VirtIONet` leaves its posted receive buffers mapped: it
///   only writes `QueueReady = 0` and never unshares them (`Leak` of all
///   `QUEUE` buffers at release), and frees the memory the mappings name.
#[test]
fn virtio_drivers_net_on_the_non_coherent_machine() {
    for seed in [1, 2, 3] {
        let outcome = exercise(seed);
        assert!(outcome.faults.is_empty(), "{}", describe(&outcome));
        assert!(outcome.reports.is_empty(), "{}", describe(&outcome));
        let mut leaks = 0;
        for r in &outcome.checker {
            match r {
                Report::CacheLineOverlap {
                    mapping, existing, ..
                } if is_rx_buffer(mapping) && is_rx_buffer(existing) => {}
                Report::Leak { mapping } if is_rx_buffer(mapping) => leaks += 1,
                other => panic!("unexpected: {other}"),
            }
        }
        assert_eq!(leaks, QUEUE, "{}", describe(&outcome));
    }
}

/// `VirtIONetRaw` with the caller's buffers, line-aligned and posted one
/// per frame, so every buffer comes back before the driver is dropped:
/// clean under the detector and `dma-check`.
#[test]
fn virtio_drivers_net_raw_is_clean() {
    #[repr(C, align(128))]
    struct RxBuf([u8; BUF_LEN]);

    for seed in [4, 5] {
        let rig = Rig::new(seed, "virtio-net");
        let model = VirtioMmio::new(
            rig.sim.bus(rig.dev),
            Net::new(MAC, 64),
            VirtioConfig::default(),
        );
        let transport = SimTransport::new(model.clone()).expect("a virtio-net device");
        let mut drv = VirtIONetRaw::<Hal, _, QUEUE>::new(transport).expect("virtio-net bring-up");
        for (i, len) in [60usize, 333, 1514]
            .into_iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            let tx = frame(i as u8, len);
            drv.send(&tx).expect("send"); // prepends the virtio-net header
            assert_eq!(model.with_backend(|n| n.take_transmitted()), vec![tx]);

            let rx = frame(0x33 ^ i as u8, len);
            assert!(model.with_backend(|n| n.receive(&rx)));
            let mut buf = RxBuf([0u8; BUF_LEN]);
            let (hdr, n) = drv.receive_wait(&mut buf.0).expect("receive");
            assert_eq!(&buf.0[hdr..hdr + n], &rx[..], "frame {i}");
        }
        drop(drv);
        let outcome = rig.finish(());
        assert!(outcome.faults.is_empty(), "{}", describe(&outcome));
        assert!(outcome.clean(), "{}", describe(&outcome));
    }
}
