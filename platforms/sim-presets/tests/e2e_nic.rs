//! End to end: the reference NIC driver (dma-ring's RX and TX rings,
//! recycled RX buffers, per-frame TX mappings) against the simulated
//! e1000-style NIC on all three presets, with dma-check on, asserting that
//! neither the checker nor the coherency detector reports anything.

#[path = "../examples/support/pitfall.rs"]
mod pitfall;

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaBuf, DmaMap};
use dma_drivers::nic::{NicDriver, NicDriverConfig};
use dma_drivers::DriverError;
use dma_ring::nic::{RxErrors, TxStatus};
use dma_sim::nic::{Nic, NicConfig};
use dma_sim::{DeviceId, FaultKind, Injection, Sim};
use dma_sim_presets::{Preset, PresetRun, Stepping};

type Driver<'a, P> = NicDriver<'a, &'a Checked<P>, Stepping<Nic>, DmaBuf>;

const SMALL_RINGS: NicDriverConfig = NicDriverConfig {
    rx_entries: 8,
    tx_entries: 8,
    rx_buffer_size: 2048,
    loopback: false,
};

fn frame(i: usize) -> Vec<u8> {
    // Mostly Ethernet sizes, every 17th a 5000-byte frame that spans three
    // RX buffers.
    let len = if i % 17 == 16 {
        5000
    } else {
        60 + (i * 97) % 1455
    };
    (0..len).map(|b| (b * 31 + i * 7) as u8).collect()
}

fn dma_frame<P: DmaMap>(p: &P, bytes: &[u8]) -> DmaBuf {
    let mut b = DmaBuf::for_device(p, bytes.len()).unwrap();
    b.copy_from_slice(bytes);
    b
}

/// 200 frames each way through 8-descriptor rings (both wrap ~25 times),
/// TX in batches as deep as the ring allows, RX reassembling frames that
/// span several buffers.
struct Traffic;

impl PresetRun for Traffic {
    type Output = (u64, u64);

    fn device_name(&self) -> &str {
        "eth0"
    }

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> (u64, u64) {
        let nic = Nic::new(sim.bus(dev), NicConfig::default());
        let regs = nic.registers();
        let regs = dma_sim_presets::nic_registers(&regs);
        let mut eth: Driver<'_, P> =
            NicDriver::start(regs, p, Stepping::new(nic), SMALL_RINGS).unwrap();

        // Transmit: batches, one tail write each.
        let mut sent = 0;
        let mut reaped = 0;
        while reaped < 200 {
            while sent < 200 && eth.tx_in_flight() < 7 {
                eth.queue_send(dma_frame(p, &frame(sent))).unwrap();
                sent += 1;
            }
            eth.kick();
            let done = eth.wait_sent().unwrap();
            done.result.unwrap();
            assert_eq!(done.buffer.unwrap()[..], frame(reaped)[..]);
            reaped += 1;
        }
        let wire = eth.wait_mut().device_mut().take_transmitted();
        assert_eq!(wire.len(), 200);
        for (i, f) in wire.iter().enumerate() {
            assert!(f[..] == frame(i)[..], "frame {i} on the wire");
        }

        // Receive: frames arrive from the wire in bursts.
        let mut fed = 0;
        let mut got = 0;
        while got < 200 {
            while fed < 200 && fed - got < 4 {
                assert!(eth.wait_mut().device_mut().receive(&frame(fed)));
                fed += 1;
            }
            let f = eth.wait_frame().unwrap();
            assert!(f[..] == frame(got)[..], "frame {got} received");
            got += 1;
        }
        let s = eth.stats();
        assert_eq!(
            (s.tx_frames, s.rx_frames, s.tx_errors, s.rx_errors),
            (200, 200, 0, 0)
        );
        (s.tx_bytes, s.rx_bytes)
    }
}

#[test]
fn rx_refill_tx_and_descriptor_done_on_every_preset() {
    let bytes: u64 = (0..200).map(|i| frame(i).len() as u64).sum();
    for preset in Preset::ALL {
        let out = preset
            .run(21, DeviceConstraints::UNCONSTRAINED, Traffic)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert!(out.faults.is_empty(), "{preset}: {:?}", out.faults);
        assert_eq!(out.output, (bytes, bytes), "{preset}");
        if preset != Preset::Coherent {
            // The cache model was in the loop: lines were maintained.
            assert!(out.stats.lines_cleaned > 0 && out.stats.lines_invalidated > 0);
        }
    }
}

/// Loopback: every frame sent comes back through the RX ring; 500 round
/// trips through 4-descriptor rings.
struct Loopback;

impl PresetRun for Loopback {
    type Output = u64;

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> u64 {
        let nic = Nic::new(
            sim.bus(dev),
            NicConfig {
                loopback: true,
                ..NicConfig::default()
            },
        );
        let regs = nic.registers();
        let regs = dma_sim_presets::nic_registers(&regs);
        let config = NicDriverConfig {
            rx_entries: 4,
            tx_entries: 4,
            rx_buffer_size: 2048,
            // The model loops back by its own configuration; the driver
            // asks for it as it would on an 8254x.
            loopback: true,
        };
        let mut eth: Driver<'_, P> = NicDriver::start(regs, p, Stepping::new(nic), config).unwrap();
        for i in 0..500 {
            let bytes: Vec<u8> = (0..64 + i % 1400).map(|b| (b ^ i) as u8).collect();
            eth.send(dma_frame(p, &bytes)).unwrap();
            eth.wait_sent().unwrap().result.unwrap();
            assert_eq!(eth.wait_frame().unwrap(), bytes);
        }
        eth.stats().rx_frames
    }
}

#[test]
fn loopback_rings_wrap_many_times_on_every_preset() {
    for preset in Preset::ALL {
        let out = preset
            .run(8, DeviceConstraints::UNCONSTRAINED, Loopback)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert_eq!(out.output, 500);
    }
}

/// NIC faults reach the driver as typed errors with the buffers back, and
/// the driver carries on (recovering where a completion was lost).
struct Faults;

impl PresetRun for Faults {
    type Output = ();

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) {
        let nic = Nic::new(sim.bus(dev), NicConfig::default());
        let regs = nic.registers();
        let regs = dma_sim_presets::nic_registers(&regs);
        let mut eth: Driver<'_, P> =
            NicDriver::start(regs, p, Stepping::new(nic), SMALL_RINGS).unwrap();
        let bytes = frame(3);

        // A transmit error: status EC, the frame back, nothing on the wire.
        eth.wait_mut().device_mut().inject(Injection::Error);
        eth.send(dma_frame(p, &bytes)).unwrap();
        let done = eth.wait_sent().unwrap();
        assert!(matches!(done.result, Err(DriverError::Transmit(s)) if s.contains(TxStatus::EC)));
        assert_eq!(done.buffer.unwrap()[..], bytes[..]);
        assert!(eth.wait_mut().device_mut().take_transmitted().is_empty());

        // A refused DMA read of the frame (the descriptor fetch goes through).
        sim.inject_faults_after(dev, 1, 1);
        eth.send(dma_frame(p, &bytes)).unwrap();
        let done = eth.wait_sent().unwrap();
        assert!(matches!(done.result, Err(DriverError::Transmit(_))));
        let faults = sim.take_faults();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].kind, FaultKind::Injected);

        // A receive error: the frame is dropped with a typed error; the
        // next one arrives intact in recycled buffers.
        eth.wait_mut().device_mut().inject(Injection::Error);
        assert!(eth.wait_mut().device_mut().receive(&bytes));
        assert!(eth.wait_mut().device_mut().receive(&frame(4)));
        let err = eth.wait_frame().unwrap_err();
        assert!(matches!(err, DriverError::Receive(e) if e.contains(RxErrors::CE)));
        assert_eq!(eth.wait_frame().unwrap(), frame(4));

        // A refused DMA write of a received frame: nothing lands in the
        // buffer, the driver sees the error.
        sim.inject_faults_after(dev, 1, 1);
        assert!(eth.wait_mut().device_mut().receive(&bytes));
        assert!(matches!(eth.wait_frame(), Err(DriverError::Receive(_))));
        assert_eq!(sim.take_faults().len(), 1);

        // A lost transmit completion: the wait times out; recovery stops the
        // NIC and hands the frame back.
        eth.wait_mut()
            .device_mut()
            .inject(Injection::DropCompletion);
        eth.send(dma_frame(p, &bytes)).unwrap();
        assert_eq!(
            eth.wait_sent().unwrap_err(),
            DriverError::Timeout("a transmit completion")
        );
        let back = eth.recover();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0][..], bytes[..]);
        assert_eq!(eth.wait_mut().device_mut().take_transmitted().len(), 1);

        // Bad requests: typed errors, the frame back.
        let too_long = DmaBuf::for_device(p, 20_000).unwrap();
        let r = eth.send(too_long).unwrap_err();
        assert!(matches!(r.error, DriverError::InvalidArgument(_)));
        assert_eq!(r.buffer.unwrap().len(), 20_000);

        // And traffic flows again, both ways.
        eth.send(dma_frame(p, &frame(9))).unwrap();
        eth.wait_sent().unwrap().result.unwrap();
        assert!(eth.wait_mut().device_mut().receive(&frame(10)));
        assert_eq!(eth.wait_frame().unwrap(), frame(10));
        assert_eq!(eth.stats().recoveries, 1);
    }
}

#[test]
fn injected_faults_surface_to_the_driver_on_every_preset() {
    for preset in Preset::ALL {
        let out = preset
            .run(2, DeviceConstraints::UNCONSTRAINED, Faults)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert!(out.faults.is_empty(), "{preset}: {:?}", out.faults);
    }
}

/// Bad ring shapes and staging sizes are typed errors.
struct BadStarts;

impl PresetRun for BadStarts {
    type Output = ();

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) {
        let nic = Nic::new(sim.bus(dev), NicConfig::default());
        let regs = nic.registers();
        let regs = dma_sim_presets::nic_registers(&regs);
        for bad in [
            NicDriverConfig {
                rx_entries: 1,
                ..SMALL_RINGS
            },
            NicDriverConfig {
                tx_entries: 5000,
                ..SMALL_RINGS
            },
            NicDriverConfig {
                rx_buffer_size: 0,
                ..SMALL_RINGS
            },
            // RCTL.BSIZE cannot say 1536: the NIC would write 2048.
            NicDriverConfig {
                rx_buffer_size: 1536,
                ..SMALL_RINGS
            },
        ] {
            let err = NicDriver::<_, _, DmaBuf>::start(regs, p, dma_sim_presets::Spin::new(1), bad)
                .err()
                .unwrap();
            assert!(matches!(err, DriverError::InvalidArgument(_)), "{err}");
        }
        for (buffers, size) in [(0, 64), (2, 0), (2, 70_000)] {
            let err =
                pitfall::FixedTx::start(regs, p, dma_sim_presets::Spin::new(1), buffers, size)
                    .err()
                    .unwrap();
            assert!(matches!(err, DriverError::InvalidArgument(_)), "{err}");
        }
        let mut tx = pitfall::FixedTx::start(regs, p, Stepping::new(nic), 1, 64).unwrap();
        assert!(matches!(tx.send(&[]), Err(DriverError::InvalidArgument(_))));
        assert!(matches!(
            tx.send(&[0; 65]),
            Err(DriverError::InvalidArgument(_))
        ));
        tx.send(&[1; 64]).unwrap();
        tx.wait_idle().unwrap();
    }
}

#[test]
fn bad_configurations_are_typed_errors() {
    let out = Preset::NonCoherent
        .run(1, DeviceConstraints::UNCONSTRAINED, BadStarts)
        .unwrap();
    assert!(out.clean(), "{:?} {:?}", out.checker, out.reports);
}
