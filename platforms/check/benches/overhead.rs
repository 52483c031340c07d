//! What the checker costs per call: a 4 KiB map + sync + unmap through
//! `Checked<DirectPlatform>` against the bare coherent direct platform, with
//! a few hundred other mappings live so lookups are not trivially small.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, Criterion};
use dma_check::{Checked, Config};
use dma_coherence::HardwareCoherent;
use dma_core::{
    DeviceConstraints, DmaAttrs, DmaBuf, DmaDirection, DmaMap, HostMemory, PhysAddr, RawMapping,
};
use dma_direct::DirectPlatform;

type Direct = DirectPlatform<HostMemory, HardwareCoherent>;

fn round_trip<P: DmaMap>(p: &P, phys: PhysAddr) {
    let dir = DmaDirection::FromDevice;
    // SAFETY: the leaked buffer behind `phys` lives for the whole program and
    // is mapped by one mapping at a time, ended before the next iteration.
    unsafe {
        let dma = p.map(phys, 4096, dir, DmaAttrs::empty()).unwrap();
        let raw = RawMapping {
            phys,
            dma,
            len: 4096,
            dir,
            attrs: DmaAttrs::empty(),
        };
        p.sync_for_cpu(&raw, 0, 4096);
        p.unmap(&raw).unwrap();
    }
}

/// The bare platform, the checker around it with 256 background mappings
/// live, and the page the round trips map.
fn fixture() -> (Direct, Checked<Direct>, PhysAddr) {
    let direct = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
    let checked = Checked::with_config(direct.clone(), Config::new().cache_line(64));
    // Whole cache lines, so no line is shared with anything else mapped.
    let page: &'static mut [u8] = &mut Box::leak(Box::new(DmaBuf::new(4096, 4096).unwrap()))[..];
    let phys = PhysAddr::new(page.as_ptr() as u64);

    // Background mappings a driver would have live (a 256-entry RX ring).
    let ring: &'static mut [u8] =
        &mut Box::leak(Box::new(DmaBuf::new(256 * 2048, 4096).unwrap()))[..];
    let base = ring.as_ptr() as u64;
    for i in 0..256u64 {
        // SAFETY: the leaked ring lives for the program; these mappings are
        // never ended (released as leaks when the checker drops).
        unsafe {
            checked
                .map(
                    PhysAddr::new(base + i * 2048),
                    2048,
                    DmaDirection::FromDevice,
                    DmaAttrs::empty(),
                )
                .unwrap();
        }
    }
    (direct, checked, phys)
}

/// Every report is a bug in the benchmark, not a cost to measure.
fn finish(checked: Checked<Direct>) {
    let reports = checked.reports();
    assert!(
        reports.is_empty(),
        "the benchmark misused the API: {:?}",
        reports.first()
    );
    checked.release();
}

fn overhead(c: &mut Criterion) {
    let (direct, checked, phys) = fixture();
    let mut g = c.benchmark_group("map_sync_unmap_4k");
    g.bench_function("direct", |b| {
        b.iter(|| round_trip(&direct, black_box(phys)))
    });
    g.bench_function("checked", |b| {
        b.iter(|| round_trip(&checked, black_box(phys)))
    });
    g.finish();
    finish(checked);
}

criterion_group!(benches, overhead);

/// `DMA_BENCH_ITERS=N` runs N checked round trips and nothing else, for an
/// instruction count under `valgrind --tool=callgrind` (repeatable on a
/// loaded machine, unlike time); docs/performance.md has the method.
fn main() {
    if let Some(iters) = std::env::var("DMA_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        let (_, checked, phys) = fixture();
        for _ in 0..iters {
            round_trip(&checked, black_box(phys));
        }
        finish(checked);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
