//! Is the coherent preset free? Map, sync and unmap on `x86_coherent`
//! against a hand-written raw-pointer baseline that does what a driver
//! without this crate would: take the buffer's address as the bus address
//! and check it against the DMA mask.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::ptr::NonNull;

use criterion::{criterion_group, Criterion};
use dma_core::{
    Bidirectional, DeviceConstraints, DmaAttrs, DmaDirection, DmaMap, HostMemory, StreamingMapping,
};
use dma_direct::{DirectPlatform, HardwareCoherent};

type Coherent = DirectPlatform<HostMemory, HardwareCoherent>;

/// The x86-coherent preset and a leaked 4 KiB buffer for the bare
/// platform's round trips.
fn fixture() -> (Coherent, NonNull<u8>) {
    let constraints = DeviceConstraints::builder().addr_bits(64).build().unwrap();
    let platform = DirectPlatform::x86_coherent(HostMemory, constraints);
    let buf: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    (platform, NonNull::new(buf.as_mut_ptr()).unwrap())
}

/// The platform's own map + unmap of the 4 KiB at `ptr`, as a driver using
/// the unsafe API would write it. The length is a run-time value, as a
/// `Vec`'s is to the safe owner, so neither side checks a constant.
///
/// Both round trips are functions of their own (`inline(never)`), so each
/// pays one call, and callgrind's inclusive count for each is its cost.
#[inline(never)]
fn platform_map_unmap(platform: &Coherent, ptr: NonNull<u8>) {
    let (p, len) = black_box((ptr, 4096));
    let phys = platform.virt_to_phys(p, len).unwrap();
    // SAFETY: the leaked buffer is ours for the whole program, and the
    // mapping is ended before the next iteration.
    let dma =
        unsafe { platform.map(phys, len, DmaDirection::Bidirectional, DmaAttrs::empty()) }.unwrap();
    let raw = dma_core::RawMapping {
        phys,
        dma,
        len,
        dir: DmaDirection::Bidirectional,
        attrs: DmaAttrs::empty(),
    };
    // SAFETY: `raw` is exactly the live mapping made above.
    unsafe { platform.unmap(&raw) }.unwrap();
    black_box(dma);
}

/// The safe owner's map + unmap of a 4 KiB `Vec`, handed back in `spare`.
#[inline(never)]
fn streaming_map_unmap(platform: &Coherent, spare: &mut Option<Vec<u8>>) {
    let m = StreamingMapping::<_, Bidirectional, _>::map(platform, spare.take().unwrap()).unwrap();
    black_box(m.dma_addr());
    *spare = Some(m.unmap().unwrap());
}

fn zero_cost(c: &mut Criterion) {
    let (platform, ptr) = fixture();
    let mask = platform.constraints().dma_mask();

    let mut g = c.benchmark_group("coherent_preset");
    g.bench_function("baseline_raw_pointer", |b| {
        b.iter(|| {
            let p = black_box(ptr);
            let len = black_box(4096u64);
            let addr = p.as_ptr() as u64;
            let ok = addr.checked_add(len - 1).is_some_and(|end| end <= mask);
            black_box((addr, ok))
        })
    });
    g.bench_function("platform_map_unmap", |b| {
        b.iter(|| platform_map_unmap(&platform, ptr))
    });
    let mut mapping =
        StreamingMapping::<_, Bidirectional, _>::map(&platform, vec![0u8; 4096]).unwrap();
    g.bench_function("sync_for_device_plus_sync_for_cpu", |b| {
        b.iter(|| {
            black_box(&mut mapping).sync_for_device();
            black_box(&mut mapping).sync_for_cpu();
        })
    });
    g.bench_function("streaming_mapping_map_unmap_vec", |b| {
        let mut spare = Some(vec![0u8; 4096]);
        b.iter(|| streaming_map_unmap(&platform, &mut spare))
    });
    g.finish();
}

criterion_group!(benches, zero_cost);

/// `DMA_BENCH_ITERS=N` runs N round trips of one case and nothing else, for
/// an instruction count under `valgrind --tool=callgrind` (docs/performance.md
/// has the method): `DMA_BENCH_CASE=streaming` (the default) is the safe
/// owner's map + unmap, `DMA_BENCH_CASE=platform` the bare platform's.
fn main() {
    if let Some(iters) = std::env::var("DMA_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let (platform, ptr) = fixture();
        match std::env::var("DMA_BENCH_CASE").as_deref() {
            Ok("platform") => (0..iters).for_each(|_| platform_map_unmap(&platform, ptr)),
            Ok("streaming") | Err(_) => {
                let mut spare = Some(vec![0u8; 4096]);
                (0..iters).for_each(|_| streaming_map_unmap(&platform, &mut spare));
            }
            Ok(other) => panic!("DMA_BENCH_CASE={other}: expected `streaming` or `platform`"),
        }
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
