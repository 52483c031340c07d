//! The shared network checks (`dma_qemu_virt::net_suite`) on the sim's
//! e1000-style NIC model, through the same `NicPort` the aarch64 image
//! wraps QEMU's e1000e in: a looped-back NIC passes every size, and one
//! that sends its frames nowhere fails the check by name.

use dma_core::DeviceConstraints;
use dma_drivers::nic::{NicDriver, NicDriverConfig};
use dma_qemu_virt::net_suite::{loopback, NicPort, SIZES};
use dma_qemu_virt::report::{ExitCode, Reporter};
use dma_sim::nic::{Nic, NicConfig};
use dma_sim::{Sim, SimConfig};
use dma_sim_presets::{nic_registers, Stepping};

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
