// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
//! The IOMMU software path, in one run:
//! - map + unmap of a 4 KiB buffer (IOVA allocation, PTE write, deferred
//!   invalidation) with 1,000 to 1,000,000 other mappings live: the cost
//!   should not grow with the number of mappings;
//! - the IOVA allocator's magazine fast path against its buddy slow path.
//!
//! The hardware is the crate's software IOMMU with no IOTLB and no command
//! log, so what is measured is this crate's work.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion};
use dma_coherence::HardwareCoherent;
use dma_core::{
    DeviceConstraints, DmaAttrs, DmaDirection, DmaMap, HostMemory, PhysAddr, RawMapping,
};
use dma_iommu::iova::{CpuId, IovaAllocator};
use dma_iommu::soft::SoftIommu;
use dma_iommu::{Asid, Deferred, DeviceId, DomainConfig, IommuPlatform};

type Platform<'h> =
    IommuPlatform<HostMemory, HardwareCoherent, &'h SoftIommu<HostMemory>, Deferred<256>>;

/// A deferred-invalidation domain (device and ASID `id`) with `live` other
/// 4 KiB mappings of `phys` made.
fn domain(hw: &SoftIommu<HostMemory>, id: usize, live: usize, phys: PhysAddr) -> Platform<'_> {
    let p = IommuPlatform::new(
        HostMemory,
        HardwareCoherent,
        hw,
        Deferred::<256>::new(),
        DeviceConstraints::UNCONSTRAINED,
        DomainConfig::new(DeviceId(id as u32), Asid(id as u16)),
    )
    .unwrap();
    for _ in 0..live {
        // SAFETY: the leaked page is only ever "accessed" by this model,
        // which never reads or writes it here; these mappings are never
        // ended (the platform drops with them).
        unsafe { p.map(phys, 4096, DIR, DmaAttrs::empty()) }.unwrap();
    }
    p
}

const DIR: DmaDirection = DmaDirection::Bidirectional;

/// One map + unmap of the 4 KiB page at `phys`.
#[inline(never)]
fn round_trip(p: &Platform<'_>, phys: PhysAddr) {
    // SAFETY: as in `domain`; the mapping is ended just below.
    let dma = unsafe { p.map(phys, 4096, DIR, DmaAttrs::empty()) }.unwrap();
    let m = RawMapping {
        phys,
        dma: black_box(dma),
        len: 4096,
        dir: DIR,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: the mapping made just above, unmapped once.
    unsafe { p.unmap(&m) }.unwrap();
}

/// A software IOMMU with no IOTLB and no command log, and a leaked
/// page-aligned 4 KiB page.
fn fixture() -> (SoftIommu<HostMemory>, PhysAddr) {
    let hw = SoftIommu::new(HostMemory, 0);
    hw.set_logging(false);
    let page: &'static mut [u8] = Box::leak(vec![0u8; 2 * 4096].into_boxed_slice());
    (hw, PhysAddr::new((page.as_ptr() as u64 + 4095) & !4095))
}

fn map_unmap(c: &mut Criterion) {
    let (hw, phys) = fixture();
    let mut g = c.benchmark_group("iommu_map_unmap_4k");
    for (i, live) in [1_000usize, 10_000, 100_000, 1_000_000]
        .into_iter()
        .enumerate()
    {
        let p = domain(&hw, i, live, phys);
        g.bench_with_input(BenchmarkId::from_parameter(live), &live, |b, _| {
            b.iter(|| round_trip(&p, black_box(phys)))
        });
        // The platform and its live mappings go here (the page is leaked).
    }
    g.finish();
}

fn allocator_paths(c: &mut Criterion) {
    // 100,000 single pages live, so the buddy's sets are not trivially small.
    let a = IovaAllocator::new(1, 1 << 36, 1, 0).unwrap();
    for _ in 0..100_000 {
        a.alloc(CpuId(0), 1).unwrap();
    }
    let mut g = c.benchmark_group("iova_alloc_free_1_page");
    g.bench_function("fast_path_magazine", |b| {
        b.iter(|| {
            let r = a.alloc(CpuId(0), black_box(1)).unwrap();
            a.free(CpuId(0), r);
        })
    });
    a.flush_caches();
    g.bench_function("slow_path_buddy", |b| {
        b.iter(|| {
            let r = a.alloc_uncached(black_box(1)).unwrap();
            a.free_uncached(r);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = map_unmap, allocator_paths
}

/// `DMA_BENCH_ITERS=N` runs N map + unmap round trips with
/// `DMA_BENCH_LIVE` other mappings live (default 1000) and nothing else,
/// for an instruction count under `valgrind --tool=callgrind`
/// (docs/performance.md has the method).
fn main() {
    if let Some(iters) = std::env::var("DMA_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let live = match std::env::var("DMA_BENCH_LIVE") {
            Ok(n) => n
                .parse()
                .expect("DMA_BENCH_LIVE: a number of live mappings"),
            Err(_) => 1000,
        };
        let (hw, phys) = fixture();
        let p = domain(&hw, 0, live, phys);
        for _ in 0..iters {
            round_trip(&p, black_box(phys));
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
