// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
//! Build an SG table from scattered 4 KiB pages and encode it, for buffers
//! from 1 MiB to 1 GiB. The page lists are synthesized (a 1 GiB buffer is
//! 262 144 page addresses; nothing of that size is allocated), and the
//! table's entries are taken as device addresses, as on a direct-mapped
//! platform. Throughput is in pages, so criterion's elements/s gives the
//! cost per page: flat across sizes means linear in the buffer.

use std::time::Duration;

use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use dma_coherence::HardwareCoherent;
use dma_core::{Coherent, DeviceConstraints, DmaAddr, HostMemory, PhysAddr, SgEntry};
use dma_direct::DirectPlatform;
use dma_sg::hw::{encode_hw_sg, HwSgEntry};
use dma_sg::{nvme, DmaSegment, SgLimits, SgTable};

const PAGE: u64 = 4096;
const SIZES_MIB: [u64; 4] = [1, 16, 256, 1024];

/// `n` distinct pages in a scattered order: an odd multiplier permutes
/// 0..2n (a power of two), so neighbours are rarely adjacent.
fn scattered_pages(n: u64) -> Vec<PhysAddr> {
    let span = (2 * n).next_power_of_two();
    (0..n)
        .map(|i| PhysAddr::new(0x1_0000_0000 + (i.wrapping_mul(0x9e37_79b1) % span) * PAGE))
        .collect()
}

fn as_segments(entries: &[SgEntry]) -> impl Iterator<Item = DmaSegment> + Clone + '_ {
    entries
        .iter()
        .map(|e| DmaSegment::new(DmaAddr::new(e.phys.as_u64()), e.len as u64))
}

/// One build of `pages` into `table` and its PRP encoding.
fn build_prp(
    table: &mut SgTable<Vec<SgEntry>>,
    pools: &nvme::NvmePools<&Direct>,
    pages: &[PhysAddr],
) -> DmaAddr {
    table.clear();
    table
        .append_pages(pages, 0, pages.len() * PAGE as usize)
        .unwrap();
    let req = nvme::encode_prp(pools, as_segments(table.entries())).unwrap();
    black_box(req.prp2())
}

type Direct = DirectPlatform<HostMemory, HardwareCoherent>;

fn bench(c: &mut Criterion) {
    let constraints = DeviceConstraints::UNCONSTRAINED;
    let platform = DirectPlatform::x86_coherent(HostMemory, constraints);
    let limits = SgLimits::new(PAGE as usize, &constraints).unwrap();
    let max_pages = SIZES_MIB[3] * 256;
    // PRP list pages: 511 entries per chained page.
    let pools =
        nvme::NvmePools::new(&platform, PAGE as usize, (max_pages / 511 + 2) as usize, 64).unwrap();
    let mut hw_table =
        Coherent::<[HwSgEntry], _>::zeroed_slice(&platform, max_pages as usize).unwrap();

    let mut group = c.benchmark_group("sg_build_encode");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for mib in SIZES_MIB {
        let n = mib * 256;
        let pages = scattered_pages(n);
        let len = (n * PAGE) as usize;
        group.measurement_time(Duration::from_secs(if mib >= 256 { 4 } else { 2 }));
        group.throughput(Throughput::Elements(n));
        let mut table = SgTable::new(limits);
        table.append_pages(&pages, 0, len).unwrap();

        group.bench_with_input(
            BenchmarkId::new("build", format!("{mib}MiB")),
            &pages,
            |b, pages| {
                b.iter(|| {
                    table.clear();
                    table.append_pages(black_box(pages), 0, len).unwrap();
                    black_box(table.entries().len())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("build+prp", format!("{mib}MiB")),
            &pages,
            |b, pages| b.iter(|| build_prp(&mut table, &pools, black_box(pages))),
        );
        group.bench_with_input(
            BenchmarkId::new("build+hw_sg", format!("{mib}MiB")),
            &pages,
            |b, pages| {
                b.iter(|| {
                    table.clear();
                    table.append_pages(black_box(pages), 0, len).unwrap();
                    black_box(encode_hw_sg(as_segments(table.entries()), &mut hw_table).unwrap())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);

/// `DMA_BENCH_ITERS=N` runs N builds + PRP encodes of a 16 MiB buffer
/// (4096 pages) and nothing else, for an instruction count under
/// `valgrind --tool=callgrind`; docs/performance.md has the method.
fn main() {
    if let Some(iters) = std::env::var("DMA_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        let constraints = DeviceConstraints::UNCONSTRAINED;
        let platform = DirectPlatform::x86_coherent(HostMemory, constraints);
        let limits = SgLimits::new(PAGE as usize, &constraints).unwrap();
        let pools = nvme::NvmePools::new(&platform, PAGE as usize, 16, 4).unwrap();
        let pages = scattered_pages(4096);
        let mut table = SgTable::new(limits);
        for _ in 0..iters {
            build_prp(&mut table, &pools, black_box(&pages));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
