//! End to end: the virtio-net driver against the sim's independent
//! virtio-net model on all three presets, split and packed, with and
//! without `EVENT_IDX`: frames of many sizes each way, checked byte for
//! byte on the model's wire; then the error paths.

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaBuf, DmaMap};
use dma_drivers::virtio::spec::{net_features, Features};
use dma_drivers::virtio::transport::mmio::MmioTransport;
use dma_drivers::virtio::transport::{QueueLayout, VirtioOptions};
use dma_drivers::virtio::{VirtioNet, VirtioNetConfig, VirtioNetStats};
use dma_drivers::DriverError;
use dma_ring::RingErrorKind;
use dma_sim::virtio::net::Net;
use dma_sim::virtio::split::ChainError;
use dma_sim::virtio::{self as model, Backend, QueueIo, VirtioConfig, VirtioMmio};
use dma_sim::{DeviceId, Sim};
use dma_sim_presets::{virtio_mmio, Preset, PresetRun, Stepping};

#[path = "support/matrix.rs"]
mod matrix;
#[path = "support/tamper.rs"]
mod tamper;
use matrix::Config;
use tamper::Tamper;

const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];

fn frame(i: usize) -> Vec<u8> {
    // Ethernet sizes, 60 to 1514 bytes, and every 13th a 5000-byte one
    // (several pages: several TX segments).
    let len = if i % 13 == 12 {
        5000
    } else {
        60 + (i * 131) % 1455
    };
    (0..len).map(|b| (b * 7 + i * 29) as u8).collect()
}

/// A received frame: Ethernet sizes only (a receive buffer holds 1514
/// bytes and the header; without `MRG_RXBUF` nothing longer arrives).
fn rx_frame(i: usize) -> Vec<u8> {
    let mut f = frame(i);
    f.truncate(1514);
    f
}

fn dma_frame<P: DmaMap>(p: &P, bytes: &[u8]) -> DmaBuf {
    let mut b = DmaBuf::for_device(p, bytes.len()).unwrap();
    b.copy_from_slice(bytes);
    b
}

fn config(
    layout: QueueLayout,
    event_idx: bool,
    indirect: bool,
    translates: bool,
) -> VirtioNetConfig {
    VirtioNetConfig {
        options: VirtioOptions {
            layout,
            event_idx,
            indirect,
            platform_translates: translates,
            queue_size: 8,
        },
        rx_buffer_size: 2048,
    }
}

/// 120 frames each way through 8-entry queues (both wrap many times).
struct Traffic(VirtioOptions);

impl PresetRun for Traffic {
    type Output = (Features, VirtioNetStats);

    fn device_name(&self) -> &str {
        "eth0"
    }

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> Self::Output {
        let nic = VirtioMmio::new(sim.bus(dev), Net::new(MAC, 8), VirtioConfig::default());
        let cfg = VirtioNetConfig {
            options: self.0,
            rx_buffer_size: 2048,
        };
        let mut eth = VirtioNet::start(
            virtio_mmio(&nic).unwrap(),
            p,
            Stepping::new(nic.clone()),
            cfg,
        )
        .unwrap();
        assert_eq!(eth.mac(), Some(MAC));
        assert!(eth.link_up().unwrap());

        let (mut sent, mut reaped) = (0, 0);
        while reaped < 120 {
            while sent < 120 && eth.tx_in_flight() < 3 {
                eth.queue_send(dma_frame(p, &frame(sent))).unwrap();
                sent += 1;
            }
            eth.kick();
            let back = eth.wait_sent().unwrap();
            assert_eq!(back[..], frame(reaped)[..], "buffer {reaped} back");
            reaped += 1;
        }
        let wire = nic.with_backend(|n| n.take_transmitted());
        assert_eq!(wire.len(), 120);
        for (i, f) in wire.iter().enumerate() {
            assert!(f[..] == frame(i)[..], "frame {i} on the wire");
        }

        let mut got = 0;
        while got < 120 {
            // The model's FIFO holds 8 frames while no buffer is free.
            for i in got..(got + 6).min(120) {
                assert!(nic.with_backend(|n| n.receive(&rx_frame(1000 + i))));
            }
            let batch = (got + 6).min(120);
            while got < batch {
                let f = eth.wait_frame().unwrap();
                assert!(f[..] == rx_frame(1000 + got)[..], "frame {got} received");
                got += 1;
            }
        }
        let features = eth.features();
        let stats = eth.stats();
        assert!(eth.shutdown().unwrap().is_empty());
        assert!(nic.status().is_empty(), "reset by shutdown");
        (features, stats)
    }
}

#[test]
fn net_runs_clean_on_every_preset_split_and_packed_with_and_without_event_idx_and_indirect() {
    for c in Config::all() {
        let (features, stats) = c.run_clean(23, Traffic(c.options(8)));
        assert!(!features.contains(net_features::MRG_RXBUF));
        assert_eq!(
            (stats.tx_frames, stats.rx_frames, stats.rx_errors),
            (120, 120, 0)
        );
        let bytes: u64 = (0..120).map(|i| frame(i).len() as u64).sum();
        assert_eq!(stats.tx_bytes, bytes, "{c}");
    }
}

// ---- error paths ----------------------------------------------------------

fn machine(seed: u64) -> (Sim, DeviceId) {
    let sim = Sim::new(dma_sim::SimConfig::non_coherent().seed(seed)).unwrap();
    let dev = sim.add_device("eth0");
    (sim, dev)
}

#[test]
fn bring_up_and_send_errors_are_typed() {
    let (sim, dev) = machine(4);
    let p = Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
    let nic = VirtioMmio::new(sim.bus(dev), Net::new(MAC, 8), VirtioConfig::default());
    let small = VirtioNetConfig {
        rx_buffer_size: 1500,
        ..VirtioNetConfig::default()
    };
    let e = VirtioNet::<_, _, _, DmaBuf>::start(
        virtio_mmio(&nic).unwrap(),
        &p,
        Stepping::new(nic.clone()),
        small,
    )
    .err();
    assert!(
        matches!(e, Some(DriverError::InvalidArgument(m)) if m.contains("1526")),
        "{e:?}"
    );

    // Without MAC offered there is no address, and bring-up still works.
    let t = MmioTransport::new(Tamper::new(&nic, net_features::MAC, false)).unwrap();
    let mut eth = VirtioNet::<_, _, _, DmaBuf>::start(
        t,
        &p,
        Stepping::new(nic.clone()),
        VirtioNetConfig::default(),
    )
    .unwrap();
    assert_eq!(eth.mac(), None);
    let r = eth
        .send(DmaBuf::for_device(&p, MAX + 1).unwrap())
        .unwrap_err();
    assert!(matches!(r.error, DriverError::InvalidArgument(_)));
    assert_eq!(r.buffer.map(|b| b.len()), Some(MAX + 1));
    assert!(matches!(
        eth.wait_sent(),
        Err(DriverError::InvalidArgument(_))
    ));
    assert!(matches!(eth.wait_frame(), Err(DriverError::Timeout(_))));
    // A frame queued and never kicked comes back from shutdown.
    eth.queue_send(dma_frame(&p, &frame(1))).unwrap();
    let back = eth.shutdown().unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0][..], frame(1)[..]);

    // A block device is not a network card.
    let disk = VirtioMmio::new(
        sim.bus(dev),
        model::blk::Blk::new(8, false),
        VirtioConfig::default(),
    );
    let e = VirtioNet::<_, _, _, DmaBuf>::start(
        virtio_mmio(&disk).unwrap(),
        &p,
        Stepping::new(disk.clone()),
        VirtioNetConfig::default(),
    )
    .err();
    assert!(
        matches!(e, Some(DriverError::Unsupported(m)) if m.contains("device type")),
        "{e:?}"
    );
    assert!(disk.status().contains(model::Status::FAILED));

    p.release();
    assert!(
        p.reports().is_empty() && sim.reports().is_empty(),
        "{:?}",
        p.reports()
    );
}

const MAX: usize = dma_drivers::virtio::MAX_FRAME;

/// What a hostile network device does.
#[derive(Clone, Copy, Debug)]
enum Misbehave {
    /// Returns a receive buffer with a used length shorter than the header.
    ShortRx,
    /// Writes a length into a transmit buffer (device-readable only).
    TxLength,
    /// Reports the receive chain malformed (DEVICE_NEEDS_RESET).
    Broken,
}

struct HostileNet(Misbehave, bool);

impl Backend for HostileNet {
    const DEVICE_ID: u32 = 1;
    const QUEUES: u16 = 2;

    fn features(&self) -> model::Features {
        model::net::features::MAC
    }

    fn config(&self) -> Vec<u8> {
        MAC.to_vec()
    }

    fn work(&mut self, io: &mut QueueIo<'_>) -> Result<bool, ChainError> {
        match self.0 {
            Misbehave::TxLength => {
                let Some(chain) = io.pop(1)? else {
                    return Ok(false);
                };
                io.push_used(1, &chain, 4)?;
            }
            Misbehave::ShortRx | Misbehave::Broken if self.1 => {
                let Some(chain) = io.pop(0)? else {
                    return Ok(false);
                };
                if matches!(self.0, Misbehave::Broken) {
                    return Err(ChainError::Malformed("hostile: refuses receive chains"));
                }
                self.1 = false; // one bad buffer, then quiet
                io.push_used(0, &chain, 5)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

struct Hostile(Misbehave, QueueLayout);

impl PresetRun for Hostile {
    type Output = (DriverError, usize);

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> Self::Output {
        let nic = VirtioMmio::new(
            sim.bus(dev),
            HostileNet(self.0, true),
            VirtioConfig::default(),
        );
        let cfg = config(self.1, true, true, false);
        let mut eth = VirtioNet::start(
            virtio_mmio(&nic).unwrap(),
            p,
            Stepping::new(nic.clone()),
            cfg,
        )
        .unwrap();
        let error = match self.0 {
            Misbehave::TxLength => {
                eth.send(dma_frame(p, &frame(0))).unwrap();
                eth.wait_sent().unwrap_err()
            }
            Misbehave::ShortRx | Misbehave::Broken => {
                let e = eth.wait_frame().unwrap_err();
                if matches!(self.0, Misbehave::ShortRx) {
                    // The buffer was reposted and the queue still works.
                    assert!(matches!(eth.wait_frame(), Err(DriverError::Timeout(_))));
                    assert_eq!(eth.stats().rx_errors, 1);
                }
                e
            }
        };
        (error, eth.shutdown().unwrap().len())
    }
}

#[test]
fn device_errors_are_typed_and_no_buffer_is_lost() {
    for layout in [QueueLayout::Split, QueueLayout::Packed] {
        for bad in [Misbehave::ShortRx, Misbehave::TxLength, Misbehave::Broken] {
            let out = Preset::NonCoherent
                .run(6, DeviceConstraints::UNCONSTRAINED, Hostile(bad, layout))
                .unwrap();
            let (error, frames_back) = out.output;
            let what = format!("{bad:?} {layout:?}");
            match bad {
                Misbehave::ShortRx => assert!(
                    matches!(error, DriverError::DeviceProtocol(m) if m.contains("header")),
                    "{what}: {error:?}"
                ),
                Misbehave::TxLength => assert!(
                    matches!(error, DriverError::Ring(r) if r.kind() == RingErrorKind::LengthTooLarge),
                    "{what}: {error:?}"
                ),
                Misbehave::Broken => assert_eq!(error, DriverError::DeviceNeedsReset, "{what}"),
            }
            // The frame of the broken transmit queue comes back at shutdown.
            assert_eq!(
                frames_back,
                usize::from(matches!(bad, Misbehave::TxLength)),
                "{what}"
            );
            assert!(out.clean(), "{what}: {:?} {:?}", out.checker, out.reports);
        }
    }
}

/// A network device offering `MAC` with the given configuration space,
/// that never uses a buffer.
struct MuteNet(Vec<u8>);

impl Backend for MuteNet {
    const DEVICE_ID: u32 = 1;
    const QUEUES: u16 = 2;

    fn features(&self) -> model::Features {
        model::net::features::MAC
    }

    fn config(&self) -> Vec<u8> {
        self.0.clone()
    }

    fn work(&mut self, _io: &mut QueueIo<'_>) -> Result<bool, ChainError> {
        Ok(false)
    }
}

/// No room for the MAC address; a full transmit queue; a device that
/// never sends: typed errors, frames back.
#[test]
fn config_room_and_silence_errors() {
    let (sim, dev) = machine(12);
    let p = Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
    let start = |config: Vec<u8>, queue_size: u16| {
        let d = VirtioMmio::new(sim.bus(dev), MuteNet(config), VirtioConfig::default());
        let cfg = VirtioNetConfig {
            options: VirtioOptions {
                queue_size,
                indirect: false,
                ..VirtioOptions::default()
            },
            ..VirtioNetConfig::default()
        };
        let r = VirtioNet::<_, _, _, DmaBuf>::start(
            virtio_mmio(&d).unwrap(),
            &p,
            Stepping::new(d.clone()),
            cfg,
        );
        (r, d)
    };
    let (r, d) = start(Vec::new(), 8);
    assert!(matches!(r.err(), Some(DriverError::Unsupported(m)) if m.contains("MAC")));
    assert!(d.status().contains(model::Status::FAILED));

    // Two transmit entries: one frame (header + data) fills them.
    let (r, _) = start(MAC.to_vec(), 2);
    let mut eth = r.unwrap();
    eth.send(dma_frame(&p, &frame(0))).unwrap();
    let e = eth.send(dma_frame(&p, &frame(1))).unwrap_err();
    assert!(
        matches!(e.error, DriverError::Ring(r) if r.kind() == RingErrorKind::Full),
        "{e:?}"
    );
    assert_eq!(e.buffer.map(|b| b[..] == frame(1)[..]), Some(true));
    assert!(matches!(eth.wait_sent(), Err(DriverError::Timeout(_))));
    assert_eq!(eth.shutdown().unwrap().len(), 1);

    p.release();
    assert!(
        p.reports().is_empty() && sim.reports().is_empty(),
        "{:?}",
        p.reports()
    );
}
