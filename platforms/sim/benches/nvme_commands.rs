// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

//! Simulated 4 KiB NVMe commands per second, detector on: each command
//! maps a buffer (clean), goes through the SQ, the controller's PRP walk
//! and data transfer through the cache model, the CQ, and is synced back
//! and unmapped (invalidate), alternating writes and reads. Measured on
//! the non-coherent preset (the cache model at work) and on the coherent
//! one (the rest of the machine).
//!
//! `SIM_BENCH_PAIRS=N cargo bench -p dma-sim --bench nvme_commands` runs
//! exactly N write+read pairs per preset instead and prints the time, for
//! fixed-work runs under `perf stat` or `valgrind --tool=callgrind`
//! (`SIM_BENCH_PRESET=coherent` or `non-coherent` picks one preset).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use criterion::{criterion_group, Criterion, Throughput};
use dma_core::{DeviceConstraints, DmaBuf, DmaMap, FromDevice, StreamingMapping, ToDevice};
use dma_sim::nvme::{opcode, NvmeConfig, NvmeController};
use dma_sim::{Sim, SimConfig, SimPlatform};
use support::nvme_host::{prps, sqe, NvmeHost};

const BLOCKS: u32 = 1 << 16;

/// A controller with an I/O queue pair and two 4 KiB buffers.
struct Rig<P: DmaMap + dma_core::DmaAlloc + Clone> {
    sim: Sim,
    platform: SimPlatform<P>,
    ctrl: NvmeController,
    host: NvmeHost<SimPlatform<P>>,
    wbuf: Option<DmaBuf>,
    rbuf: Option<DmaBuf>,
    lba: u32,
}

impl<P: DmaMap + dma_core::DmaAlloc + Clone> Rig<P> {
    fn new(sim: Sim, platform: impl FnOnce(&Sim, dma_sim::DeviceId) -> SimPlatform<P>) -> Self {
        let dev = sim.add_device("nvme0");
        let p = platform(&sim, dev);
        let cfg = NvmeConfig {
            blocks: u64::from(BLOCKS),
            ..NvmeConfig::default()
        };
        let mut ctrl = NvmeController::new(sim.bus(dev), cfg).unwrap();
        let mut host = NvmeHost::init(p.clone(), &mut ctrl, 8);
        host.create_io_queues(&mut ctrl, 256);
        Self {
            wbuf: Some(DmaBuf::for_device(&p, 4096).unwrap()),
            rbuf: Some(DmaBuf::for_device(&p, 4096).unwrap()),
            sim,
            platform: p,
            ctrl,
            host,
            lba: 0,
        }
    }

    /// One 4 KiB write and one 4 KiB read of the same blocks.
    fn pair(&mut self) {
        let p = &self.platform;
        self.lba = (self.lba + 8) % BLOCKS;
        let lba = self.lba;
        let mut w = StreamingMapping::<_, ToDevice, _>::map(p, self.wbuf.take().unwrap()).unwrap();
        w.write(0, &lba.to_le_bytes()).unwrap();
        w.sync_for_device();
        let (p1, p2) = prps(w.dma_addr(), 4096);
        let c = self.host.run(
            &mut self.ctrl,
            true,
            sqe(opcode::WRITE, 1, p1, p2, lba, 0, 7),
        );
        assert_eq!(c.status, 0);
        self.wbuf = Some(w.unmap().unwrap());

        let mut r =
            StreamingMapping::<_, FromDevice, _>::map(p, self.rbuf.take().unwrap()).unwrap();
        let (p1, p2) = prps(r.dma_addr(), 4096);
        let c = self.host.run(
            &mut self.ctrl,
            true,
            sqe(opcode::READ, 1, p1, p2, lba, 0, 7),
        );
        assert_eq!(c.status, 0);
        r.sync_for_cpu();
        let back = r.unmap().unwrap();
        assert_eq!(back[..4], lba.to_le_bytes());
        self.rbuf = Some(back);
    }

    fn finish(self) {
        assert!(self.sim.reports().is_empty(), "{:?}", self.sim.reports());
    }
}

fn non_coherent() -> Rig<impl DmaMap + dma_core::DmaAlloc + Clone> {
    let sim = Sim::new(SimConfig::non_coherent().seed(1)).unwrap();
    Rig::new(sim, |sim, dev| {
        sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED)
    })
}

fn coherent() -> Rig<impl DmaMap + dma_core::DmaAlloc + Clone> {
    let sim = Sim::new(SimConfig::coherent()).unwrap();
    Rig::new(sim, |sim, dev| {
        sim.coherent_platform(dev, DeviceConstraints::UNCONSTRAINED)
    })
}

fn nvme_4k(c: &mut Criterion) {
    let mut group = c.benchmark_group("nvme");
    group.throughput(Throughput::Elements(2));
    let mut rig = non_coherent();
    group.bench_function("4k_write_read_pair_noncoherent_detector_on", |b| {
        b.iter(|| rig.pair())
    });
    rig.finish();
    let mut rig = coherent();
    group.bench_function("4k_write_read_pair_coherent_detector_on", |b| {
        b.iter(|| rig.pair())
    });
    rig.finish();
    group.finish();
}

/// Runs `pairs` pairs on a fresh rig and prints commands per second.
fn fixed<P: DmaMap + dma_core::DmaAlloc + Clone>(name: &str, mut rig: Rig<P>, pairs: u64) {
    let start = Instant::now();
    for _ in 0..pairs {
        rig.pair();
    }
    let t = start.elapsed();
    rig.finish();
    let per_command = t / (2 * pairs as u32).max(1);
    println!(
        "{name}: {pairs} pairs in {t:?}, {per_command:?} per command, {:.0} commands/s",
        2.0 * pairs as f64 / t.as_secs_f64()
    );
}

criterion_group!(benches, nvme_4k);

fn main() {
    if let Some(pairs) = std::env::var("SIM_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        // SIM_BENCH_PRESET=coherent or non-coherent runs just that one.
        let only = std::env::var("SIM_BENCH_PRESET").ok();
        if only.as_deref() != Some("coherent") {
            fixed("non-coherent", non_coherent(), pairs);
        }
        if only.as_deref() != Some("non-coherent") {
            fixed("coherent", coherent(), pairs);
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
