//! The shared NVMe checks (`dma_qemu_virt::nvme_suite`) on the sim's NVMe
//! controller model: what the boards run on QEMU must pass on a second,
//! independent reading of the spec, and must fail where the device cannot
//! do what a check needs.

use dma_core::DeviceConstraints;
use dma_qemu_virt::nvme_suite::{run, SuiteConfig};
use dma_qemu_virt::report::{ExitCode, Reporter};
use dma_sim::nvme::{NvmeConfig, NvmeController};
use dma_sim::{Sim, SimConfig};
use dma_sim_presets::nvme_controller;
use dma_sim_presets::Stepping;

/// The checks' names, in the order they report.
const CHECKS: [&str; 10] = [
    "identify",
    "rw_1_block",
    "rw_2_pages_prp2",
    "rw_prp_list",
    "rw_chained_prp_list",
    "rw_sgl",
    "queue_wrap",
    "refuses_bad_io",
    "flush",
    "shutdown",
];

/// Runs the suite on a coherent sim with a controller configured by
/// `nvme`; returns the printed lines and the exit code.
fn run_on_sim(nvme: NvmeConfig) -> (String, ExitCode) {
    let sim = Sim::new(SimConfig::coherent().seed(17)).unwrap();
    let dev = sim.add_device("nvme0");
    let platform = sim.coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
    let ctrl = NvmeController::new(sim.bus(dev), nvme).unwrap();
    let regs = ctrl.registers();
    let regs = nvme_controller(&regs).unwrap();
    let config = SuiteConfig {
        // Just over 512 pages: the smallest transfer that chains list pages.
        long_transfer: (2 << 20) + 8192,
        wrap_commands: 60,
        ..SuiteConfig::qemu("sim", 64, 0x300)
    };
    let mut r = Reporter::new(String::new());
    run(&mut r, &regs, &platform, Stepping::new(ctrl), &config);
    let code = r.done();
    assert!(sim.reports().is_empty(), "{:?}", sim.reports());
    (r.out().clone(), code)
}

fn status<'a>(out: &'a str, check: &str) -> Option<&'a str> {
    let prefix = format!("TEST sim.{check} ");
    out.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(' ').next())
}

#[test]
fn every_check_passes_on_a_capable_controller() {
    let (out, code) = run_on_sim(NvmeConfig {
        mdts: 10,
        blocks: 16384,
        ..NvmeConfig::default()
    });
    for check in CHECKS {
        assert_eq!(status(&out, check), Some("PASS"), "{check}:\n{out}");
    }
    assert_eq!(code, ExitCode::Pass, "{out}");
    // Every area written is claimed for the host's disk check.
    assert_eq!(out.lines().filter(|l| l.starts_with("DISK ")).count(), 6);
    assert!(out.contains("DISK 64 1 0x301\n"), "{out}");
    assert!(out.contains("DONE 10 0 0\n"), "{out}");
}

#[test]
fn a_controller_without_sgls_fails_the_sgl_check_by_name_showing_sgls() {
    let (out, code) = run_on_sim(NvmeConfig {
        mdts: 10,
        blocks: 16384,
        sgl: false,
        ..NvmeConfig::default()
    });
    assert_eq!(status(&out, "rw_sgl"), Some("FAIL"), "{out}");
    assert!(out.contains("SGLS is 0x00000000"), "{out}");
    assert_eq!(status(&out, "rw_prp_list"), Some("PASS"), "{out}");
    assert_eq!(status(&out, "queue_wrap"), Some("PASS"), "{out}");
    assert_eq!(code, ExitCode::TestFailed);
}

#[test]
fn a_small_mdts_fails_the_chained_list_check_by_name() {
    // MDTS 5: 128 KiB per command, too short to chain PRP list pages.
    let (out, code) = run_on_sim(NvmeConfig {
        mdts: 5,
        blocks: 16384,
        ..NvmeConfig::default()
    });
    assert_eq!(status(&out, "rw_chained_prp_list"), Some("FAIL"), "{out}");
    assert!(out.contains("MDTS allows 131072 bytes"), "{out}");
    assert_eq!(status(&out, "rw_prp_list"), Some("PASS"), "{out}");
    assert_eq!(code, ExitCode::TestFailed);
}

#[test]
fn a_namespace_too_small_for_the_area_stops_at_identify() {
    let (out, code) = run_on_sim(NvmeConfig {
        mdts: 10,
        blocks: 2048,
        ..NvmeConfig::default()
    });
    assert_eq!(status(&out, "identify"), Some("FAIL"), "{out}");
    assert!(out.contains("ends before block"), "{out}");
    assert_eq!(status(&out, "rw_1_block"), None, "nothing runs after it");
    assert_eq!(code, ExitCode::TestFailed);
}
