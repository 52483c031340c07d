// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

//! Simulated 4 KiB NVMe commands per second on the non-coherent preset,
//! detector on: each command maps a buffer (clean), goes through the SQ,
//! the controller's PRP walk and data transfer through the cache model,
//! the CQ, and is synced back and unmapped (invalidate), alternating
//! writes and reads.

#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dma_api::{DeviceConstraints, DmaBuf, FromDevice, StreamingMapping, ToDevice};
use dma_sim::nvme::{opcode, NvmeConfig, NvmeController};
use dma_sim::{Sim, SimConfig};
use support::nvme_host::{prps, sqe, NvmeHost};

fn nvme_4k(c: &mut Criterion) {
    let sim = Sim::new(SimConfig::non_coherent().seed(1)).unwrap();
    let dev = sim.add_device("nvme0");
    let p = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
    let cfg = NvmeConfig {
        blocks: 1 << 16,
        ..NvmeConfig::default()
    };
    let mut ctrl = NvmeController::new(sim.bus(dev), cfg).unwrap();
    let mut host = NvmeHost::init(p.clone(), &mut ctrl, 8);
    host.create_io_queues(&mut ctrl, 256);
    let mut wbuf = Some(DmaBuf::for_device(&p, 4096).unwrap());
    let mut rbuf = Some(DmaBuf::for_device(&p, 4096).unwrap());
    let mut lba = 0u32;

    let mut group = c.benchmark_group("nvme");
    group.throughput(Throughput::Elements(2));
    group.bench_function("4k_write_read_pair_noncoherent_detector_on", |b| {
        b.iter(|| {
            lba = (lba + 8) % (1 << 16);
            let mut w = StreamingMapping::<_, ToDevice, _>::map(&p, wbuf.take().unwrap()).unwrap();
            w.write(0, &lba.to_le_bytes()).unwrap();
            w.sync_for_device();
            let (p1, p2) = prps(w.dma_addr(), 4096);
            let c = host.run(&mut ctrl, true, sqe(opcode::WRITE, 1, p1, p2, lba, 0, 7));
            assert_eq!(c.status, 0);
            wbuf = Some(w.unmap().unwrap());

            let mut r =
                StreamingMapping::<_, FromDevice, _>::map(&p, rbuf.take().unwrap()).unwrap();
            let (p1, p2) = prps(r.dma_addr(), 4096);
            let c = host.run(&mut ctrl, true, sqe(opcode::READ, 1, p1, p2, lba, 0, 7));
            assert_eq!(c.status, 0);
            r.sync_for_cpu();
            let back = r.unmap().unwrap();
            assert_eq!(back[..4], lba.to_le_bytes());
            rbuf = Some(back);
        })
    });
    group.finish();
    assert!(sim.reports().is_empty());
}

criterion_group!(benches, nvme_4k);
criterion_main!(benches);
