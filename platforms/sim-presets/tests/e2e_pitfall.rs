//! The deliberately buggy driver (a copy-break transmit path that forgets
//! `sync_for_device`) and its fixed twin, across seeds and presets, with
//! dma-check on.

#[path = "../examples/support/pitfall.rs"]
mod pitfall;

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaMap};
use dma_sim::nic::{Nic, NicConfig};
use dma_sim::{DeviceId, ReportKind, Sim};
use dma_sim_presets::{Outcome, Preset, PresetRun, Stepping};
use pitfall::CopyBreakTx;

/// Sends two 1000-byte frames (16 cache lines each, so the evictor cannot
/// write every stale line back by chance) through a copy-break TX path;
/// returns whether the wire carried exactly those bytes.
struct SendTwo<const SYNCS: bool>;

impl<const SYNCS: bool> PresetRun for SendTwo<SYNCS> {
    type Output = bool;

    fn device_name(&self) -> &str {
        "eth0"
    }

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> bool {
        let nic = Nic::new(sim.bus(dev), NicConfig::default());
        let regs = nic.registers();
        let regs = dma_sim_presets::nic_registers(&regs);
        let mut tx =
            CopyBreakTx::<'_, _, _, SYNCS>::start(regs, p, Stepping::new(nic), 2, 1024).unwrap();
        let frames = [[0x5au8; 1000], [0xa7u8; 1000]];
        for f in &frames {
            tx.send(f).unwrap();
        }
        tx.wait_idle().unwrap();
        let wire = tx.wait_mut().device_mut().take_transmitted();
        wire.len() == 2 && wire.iter().zip(&frames).all(|(w, f)| w[..] == f[..])
    }
}

fn run<const SYNCS: bool>(preset: Preset, seed: u64) -> Outcome<bool> {
    preset
        .run(seed, DeviceConstraints::UNCONSTRAINED, SendTwo::<SYNCS>)
        .unwrap()
}

const SEEDS: u64 = 1000;

#[test]
fn buggy_driver_is_caught_on_every_seed_on_the_non_coherent_preset() {
    for seed in 0..SEEDS {
        let out = run::<false>(Preset::NonCoherent, seed);
        assert!(
            out.reports
                .iter()
                .any(|r| r.kind == ReportKind::DeviceReadUncleaned),
            "seed {seed}: the missing clean went unreported: {:?}",
            out.reports
        );
        assert!(!out.output, "seed {seed}: stale bytes went on the wire");
        // The API calls themselves were all legal: the checker is silent,
        // the bug is one only the cache model can see.
        assert!(out.checker.is_empty(), "seed {seed}: {:?}", out.checker);
    }
}

#[test]
fn buggy_driver_passes_silently_on_the_coherent_preset() {
    for seed in 0..100 {
        let out = run::<false>(Preset::Coherent, seed);
        assert!(
            out.clean(),
            "seed {seed}: {:?} {:?}",
            out.checker,
            out.reports
        );
        assert!(out.output, "seed {seed}: a coherent machine hides the bug");
    }
}

#[test]
fn buggy_driver_is_caught_behind_the_iommu_too() {
    for seed in 0..100 {
        let out = run::<false>(Preset::Iommu, seed);
        assert!(
            out.reports
                .iter()
                .any(|r| r.kind == ReportKind::DeviceReadUncleaned),
            "seed {seed}"
        );
    }
}

#[test]
fn fixed_driver_passes_with_no_reports_on_every_preset() {
    for seed in 0..SEEDS {
        let out = run::<true>(Preset::NonCoherent, seed);
        assert!(
            out.clean(),
            "seed {seed}: {:?} {:?}",
            out.checker,
            out.reports
        );
        assert!(out.output, "seed {seed}: the wire carries the frames");
    }
    for preset in [Preset::Coherent, Preset::Iommu] {
        for seed in 0..100 {
            let out = run::<true>(preset, seed);
            assert!(
                out.clean(),
                "{preset} seed {seed}: {:?} {:?}",
                out.checker,
                out.reports
            );
            assert!(out.output, "{preset} seed {seed}");
        }
    }
}
