//! Is the coherent preset free? Map, sync and unmap on `x86_coherent`
//! against a hand-written raw-pointer baseline that does what a driver
//! without this crate would: take the buffer's address as the bus address
//! and check it against the DMA mask.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::ptr::NonNull;

use criterion::{criterion_group, criterion_main, Criterion};
use dma_core::{
    Bidirectional, DeviceConstraints, DmaAttrs, DmaDirection, DmaMap, HostMemory, StreamingMapping,
};
use dma_direct::DirectPlatform;

fn zero_cost(c: &mut Criterion) {
    let constraints = DeviceConstraints::builder().addr_bits(64).build().unwrap();
    let platform = DirectPlatform::x86_coherent(HostMemory, constraints);
    let buf: &'static mut [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
    let ptr = NonNull::new(buf.as_mut_ptr()).unwrap();
    let mask = constraints.dma_mask();

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
        b.iter(|| {
            let p = black_box(ptr);
            let phys = platform.virt_to_phys(p, 4096).unwrap();
            // SAFETY: the leaked buffer is ours for the whole program, and the
            // mapping is ended before the next iteration.
            let dma =
                unsafe { platform.map(phys, 4096, DmaDirection::Bidirectional, DmaAttrs::empty()) }
                    .unwrap();
            let raw = dma_core::RawMapping {
                phys,
                dma,
                len: 4096,
                dir: DmaDirection::Bidirectional,
                attrs: DmaAttrs::empty(),
            };
            // SAFETY: `raw` is exactly the live mapping made above.
            unsafe { platform.unmap(&raw) }.unwrap();
            black_box(dma)
        })
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
        b.iter(|| {
            let m = StreamingMapping::<_, Bidirectional, _>::map(&platform, spare.take().unwrap())
                .unwrap();
            black_box(m.dma_addr());
            spare = Some(m.unmap().unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, zero_cost);
criterion_main!(benches);
