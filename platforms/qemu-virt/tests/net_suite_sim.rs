//! The shared network checks (`dma_qemu_virt::net_suite`) on the sim's
//! e1000-style NIC and virtio-net models, through the same `NicPort` and
//! `VirtioPort` the aarch64 image wraps QEMU's e1000e and virtio-net in: a
//! looped-back NIC passes every size, and one that sends its frames
//! nowhere fails the check by name.

use dma_core::DeviceConstraints;
use dma_drivers::nic::{NicDriver, NicDriverConfig};
use dma_drivers::virtio::transport::{QueueLayout, VirtioOptions};
use dma_drivers::virtio::{VirtioNet, VirtioNetConfig};
use dma_qemu_virt::net_suite::{loopback, NicPort, Port, VirtioPort, SIZES};
use dma_qemu_virt::report::{ExitCode, Reporter};
use dma_sim::nic::{Nic, NicConfig};
use dma_sim::virtio::net::Net;
use dma_sim::virtio::{VirtioConfig, VirtioMmio};
use dma_sim::{Sim, SimConfig};
use dma_sim_presets::{nic_registers, virtio_mmio, Stepping};

const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

/// Runs the loopback check on a non-coherent sim whose NIC model loops
/// frames back when `model_loops`; returns the printed lines and the exit
/// code.
fn run_on_sim(model_loops: bool) -> (String, ExitCode) {
    let sim = Sim::new(SimConfig::non_coherent().seed(5)).unwrap();
    let dev = sim.add_device("eth0");
    let platform = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
    let nic = Nic::new(
        sim.bus(dev),
        NicConfig {
            loopback: model_loops,
            ..NicConfig::default()
        },
    );
    let regs = nic.registers();
    let config = NicDriverConfig {
        loopback: true,
        ..NicDriverConfig::default()
    };
    let driver =
        NicDriver::start(nic_registers(&regs), &platform, Stepping::new(nic), config).unwrap();
    let mut port = NicPort {
        name: "sim",
        driver,
        platform: &platform,
    };
    let mut r = Reporter::new(String::new());
    loopback(&mut r, "net", &mut port, MAC, &SIZES);
    drop(port);
    let code = r.done();
    assert!(sim.reports().is_empty(), "{:?}", sim.reports());
    (r.out().clone(), code)
}

#[test]
fn every_size_comes_back_identical() {
    let (out, code) = run_on_sim(true);
    assert!(
        out.contains("TEST net.sim_loopback PASS 4 frames of [60, 61, 514, 1514] bytes"),
        "{out}"
    );
    assert_eq!(code, ExitCode::Pass, "{out}");
}

#[test]
fn a_frame_that_never_arrives_fails_the_check() {
    let (out, code) = run_on_sim(false);
    assert!(
        out.contains("TEST net.sim_loopback FAIL receiving 60 bytes: timed out"),
        "{out}"
    );
    assert_eq!(code, ExitCode::TestFailed);
}

/// The sim's virtio-net model with its wire looped back by the test: what
/// the driver sends is handed to the model's receive side.
struct LoopedWire<P: dma_core::DmaMap + dma_core::DmaAlloc + Clone> {
    port: VirtioPort<
        dma_drivers::virtio::transport::mmio::MmioTransport<dma_sim_presets::SimVirtioWindow<Net>>,
        P,
        Stepping<VirtioMmio<Net>>,
    >,
    model: VirtioMmio<Net>,
}

impl<P: dma_core::DmaMap + dma_core::DmaAlloc + Clone> Port for LoopedWire<P> {
    fn name(&self) -> &'static str {
        self.port.name()
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        self.port.send(frame)?;
        self.model.with_backend(|n| {
            for f in n.take_transmitted() {
                assert!(n.receive(&f), "the model's RX FIFO is full");
            }
        });
        Ok(())
    }

    fn receive(&mut self) -> Result<Vec<u8>, String> {
        self.port.receive()
    }
}

/// `VirtioPort` (the 12-byte header added on send, stripped on receive)
/// on the sim's independent virtio-net model, split and packed.
#[test]
fn virtio_net_frames_come_back_identical_on_the_sim() {
    for layout in [QueueLayout::Split, QueueLayout::Packed] {
        let sim = Sim::new(SimConfig::non_coherent().seed(11)).unwrap();
        let dev = sim.add_device("eth1");
        let platform = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
        let model = VirtioMmio::new(sim.bus(dev), Net::new(MAC, 8), VirtioConfig::default());
        let config = VirtioNetConfig {
            options: VirtioOptions {
                layout,
                ..VirtioOptions::default()
            },
            ..VirtioNetConfig::default()
        };
        let driver = VirtioNet::start(
            virtio_mmio(&model).unwrap(),
            &platform,
            Stepping::new(model.clone()),
            config,
        )
        .unwrap();
        let mut wire = LoopedWire {
            port: VirtioPort {
                name: "sim_virtio",
                driver,
                platform: &platform,
            },
            model,
        };
        let mut r = Reporter::new(String::new());
        loopback(&mut r, "net", &mut wire, MAC, &SIZES);
        let out = r.out().clone();
        assert!(
            out.contains("TEST net.sim_virtio_loopback PASS 4 frames"),
            "{layout:?}: {out}"
        );
        assert_eq!(r.done(), ExitCode::Pass);
        drop(wire);
        assert!(sim.reports().is_empty(), "{:?}", sim.reports());
    }
}
