// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]
//! Bounce copy bandwidth against a plain memcpy, 64 KiB buffers: map (copy
//! in) plus unmap (copy back) of a bidirectional bounced mapping, against
//! copying the same bytes there and back by hand.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dma_bounce::BouncePlatform;
use dma_core::{
    Cacheability, DeviceConstraints, DmaAttrs, DmaDirection, DmaMap, HostMemory, PhysAddr,
    PhysMemory, RawMapping,
};
use dma_direct::DirectPlatform;

const LEN: usize = 64 * 1024;

fn bounce_copy(c: &mut Criterion) {
    // An alignment no heap buffer offset by 1 meets: every map bounces.
    let cons = DeviceConstraints::builder()
        .alignment(4096)
        .build()
        .unwrap();
    let p = BouncePlatform::new(
        DirectPlatform::x86_coherent(HostMemory, cons),
        HostMemory,
        64,
    )
    .unwrap();
    let buf: &'static mut [u8] = Box::leak(vec![1u8; LEN + 1].into_boxed_slice());
    let phys = PhysAddr::new(buf.as_ptr() as u64 + 1);
    let mut g = c.benchmark_group("bounce_64k");
    g.throughput(Throughput::Bytes(2 * LEN as u64));
    g.bench_function("bounced_map_unmap_bidirectional", |b| {
        b.iter(|| {
            // SAFETY: the leaked buffer is used by nothing else.
            let dma = unsafe {
                p.map(
                    black_box(phys),
                    LEN,
                    DmaDirection::Bidirectional,
                    DmaAttrs::empty(),
                )
            }
            .unwrap();
            let m = RawMapping {
                phys,
                dma,
                len: LEN,
                dir: DmaDirection::Bidirectional,
                attrs: DmaAttrs::empty(),
            };
            // SAFETY: the mapping made just above.
            unsafe { p.unmap(black_box(&m)) }.unwrap();
        })
    });
    // The same copies by hand, into page-aligned scratch memory like the
    // pool's, so both sides see the same alignments.
    let scratch = HostMemory
        .alloc_pages(LEN / 4096, Cacheability::Cached, u64::MAX)
        .unwrap();
    // SAFETY: LEN bytes of fresh pages, owned here and never freed.
    let other = unsafe { std::slice::from_raw_parts_mut(scratch.cpu.as_ptr(), LEN) };
    g.bench_function("memcpy_there_and_back", |b| {
        b.iter(|| {
            other.copy_from_slice(black_box(&buf[1..]));
            buf[1..].copy_from_slice(black_box(&other[..]));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1)).sample_size(30);
    targets = bounce_copy
}
criterion_main!(benches);
