//! The direct backend through the safe dma-core types, on the hosted
//! environment: every error path and the ownership round trips.

use dma_core::{
    Bidirectional, Coherent, DeviceConstraints, DmaAlloc, DmaAttrs, DmaBuf, DmaMap, DmaPool,
    ErrorKind, FromDevice, HostMemory, PhysAddr, StreamingMapping, ToDevice,
};
use dma_direct::{BusOffset, DirectPlatform};

fn coherent() -> DirectPlatform<HostMemory, dma_coherence::HardwareCoherent> {
    DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED)
}

#[test]
fn streaming_round_trip_returns_the_same_buffer() {
    let p = coherent();
    let buf: Vec<u8> = (0..=255).collect();
    let addr = buf.as_ptr();
    let mut m = StreamingMapping::<_, Bidirectional, _>::map(&p, buf).unwrap();
    assert_eq!(m.dma_addr().as_u64(), addr as u64, "identity bus on x86");
    assert_eq!(m.len(), 256);
    let mut head = [0u8; 4];
    m.read(0, &mut head).unwrap();
    assert_eq!(head, [0, 1, 2, 3]);
    m.write(0, &[9, 9]).unwrap();
    m.sync_for_device();
    m.sync_for_cpu();
    let back = m.unmap().unwrap();
    assert_eq!(back.as_ptr(), addr);
    assert_eq!(&back[..3], &[9, 9, 2]);
}

#[test]
fn every_buffer_kind_maps() {
    let p = coherent();
    let m = StreamingMapping::<_, ToDevice, _>::map(&p, vec![1u32; 16].into_boxed_slice()).unwrap();
    assert_eq!(m.len(), 64);
    assert_eq!(&*m.unmap().unwrap(), &[1u32; 16]);
    let m = StreamingMapping::<_, FromDevice, _>::map(&p, Box::new([7u64; 2])).unwrap();
    assert_eq!(*m.unmap().unwrap(), [7, 7]);
    let leaked: &'static mut [u8] = Box::leak(vec![3u8; 8].into_boxed_slice());
    let m = StreamingMapping::<_, ToDevice, _>::map(&p, leaked).unwrap();
    let back = m.unmap().unwrap();
    assert_eq!(back, &[3u8; 8]);
    // SAFETY: `back` is the slice Box::leak made above, used no more.
    drop(unsafe { Box::from_raw(back as *mut [u8]) });
    let m = StreamingMapping::<_, FromDevice, _>::map(&p, DmaBuf::for_device(&p, 100).unwrap())
        .unwrap();
    assert_eq!(m.unmap().unwrap().len(), 100);
}

#[test]
fn zero_length_map_is_refused_and_the_buffer_returned() {
    let p = coherent();
    let mut v = Vec::with_capacity(32);
    v.push(1u8);
    v.clear();
    let e = StreamingMapping::<_, ToDevice, _>::map(&p, v).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ZeroSize);
    assert_eq!(e.buffer.capacity(), 32, "the very same Vec comes back");
}

#[test]
fn buffer_beyond_the_mask_is_refused() {
    // A 32-bit device behind a bus window that starts at 0: host addresses
    // are far above 4 GiB, so every heap buffer is unreachable.
    let c = DeviceConstraints::builder().addr_bits(32).build().unwrap();
    let p = DirectPlatform::x86_coherent(HostMemory, c);
    let probe = Box::new(0u8);
    if (&*probe as *const u8 as u64) < (1 << 32) {
        return; // a host with low heap addresses cannot show this
    }
    let e = StreamingMapping::<_, ToDevice, _>::map(&p, vec![5u8; 64]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable);
    assert_eq!(e.buffer, vec![5u8; 64]);
    let e = Coherent::<u64, _>::zeroed(&p).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable);
}

#[test]
fn misaligned_buffer_is_refused() {
    let c = DeviceConstraints::builder()
        .alignment(4096)
        .build()
        .unwrap();
    let p = DirectPlatform::x86_coherent(HostMemory, c);
    let buf = DmaBuf::new(8192, 4096).unwrap();
    // The same memory, one byte in: map the raw range directly.
    let phys = p
        .virt_to_phys(std::ptr::NonNull::new(buf.as_ptr() as *mut u8).unwrap(), 1)
        .unwrap();
    // SAFETY: the range lies inside `buf`, which outlives the call; the map
    // fails, so nothing is left mapped.
    let e = unsafe {
        p.map(
            phys.checked_add(1).unwrap(),
            16,
            dma_core::DmaDirection::ToDevice,
            DmaAttrs::empty(),
        )
    }
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misaligned);
}

#[test]
fn address_overflow_is_refused() {
    let p = coherent();
    // SAFETY: the map fails before touching anything.
    let e = unsafe {
        p.map(
            PhysAddr::new(u64::MAX - 8),
            64,
            dma_core::DmaDirection::ToDevice,
            DmaAttrs::empty(),
        )
    }
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddressOverflow);
}

#[test]
fn bus_offset_translates_and_bounds() {
    let bus = BusOffset {
        phys_base: PhysAddr::new(0x8000_0000),
        dma_base: dma_core::DmaAddr::new(0xc000_0000),
    };
    assert_eq!(
        bus.to_dma(PhysAddr::new(0x8000_1000)).unwrap().as_u64(),
        0xc000_1000
    );
    assert_eq!(
        bus.to_dma(PhysAddr::new(0x7fff_f000)).unwrap_err().kind(),
        ErrorKind::Unreachable
    );
    let top = BusOffset {
        phys_base: PhysAddr::ZERO,
        dma_base: dma_core::DmaAddr::new(u64::MAX),
    };
    assert_eq!(
        top.to_dma(PhysAddr::new(2)).unwrap_err().kind(),
        ErrorKind::AddressOverflow
    );
}

#[test]
fn coherent_value_and_slice() {
    let p = coherent();
    let mut v = Coherent::new(&p, 0x1122_3344u32).unwrap();
    assert_eq!(v.read(), 0x1122_3344);
    v.write(7);
    assert_eq!(v.read(), 7);
    assert!(v.dma_addr().is_aligned(4096));

    let mut s = Coherent::<[u16], _>::zeroed_slice(&p, 10).unwrap();
    assert_eq!(s.len(), 10);
    s.write(9, 0xbeef).unwrap();
    assert_eq!(s.read(9).unwrap(), 0xbeef);
    assert_eq!(
        s.dma_addr_of(9).unwrap().as_u64(),
        s.dma_addr().as_u64() + 18
    );
    assert_eq!(s.read(10).unwrap_err().kind(), ErrorKind::OutOfRange);
    assert_eq!(s.write(10, 0).unwrap_err().kind(), ErrorKind::OutOfRange);
    assert_eq!(
        s.read_at::<u32>(1).unwrap_err().kind(),
        ErrorKind::Misaligned
    );
    assert_eq!(
        s.read_at::<u64>(16).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    let mut out = [0u8; 2];
    s.copy_out(18, &mut out).unwrap();
    assert_eq!(u16::from_ne_bytes(out), 0xbeef);
}

#[test]
fn zero_sized_coherent_allocations_are_refused() {
    let p = coherent();
    assert_eq!(
        Coherent::<[u32], _>::zeroed_slice(&p, 0)
            .unwrap_err()
            .kind(),
        ErrorKind::ZeroSize
    );
    assert_eq!(
        Coherent::<[u32], _>::zeroed_slice(&p, usize::MAX)
            .unwrap_err()
            .kind(),
        ErrorKind::OutOfMemory
    );
    assert_eq!(
        p.alloc_coherent(0, DmaAttrs::empty()).unwrap_err().kind(),
        ErrorKind::ZeroSize
    );
}

#[test]
fn pool_blocks_are_aligned_bounded_and_exhaust() {
    let p = coherent();
    let pool = DmaPool::new(&p, 200, 64, Some(1024), 10).unwrap();
    let cap = pool.capacity();
    assert!(cap >= 10);
    let mut blocks = Vec::new();
    for _ in 0..cap {
        let b = pool.alloc().unwrap();
        let a = b.dma_addr().as_u64();
        assert_eq!(a % 64, 0);
        assert_eq!(a / 1024, (a + 199) / 1024, "block crosses the boundary");
        blocks.push(b);
    }
    let mut addrs: Vec<u64> = blocks.iter().map(|b| b.dma_addr().as_u64()).collect();
    addrs.sort_unstable();
    assert!(
        addrs.windows(2).all(|w| w[1] >= w[0] + 200),
        "blocks overlap"
    );
    assert_eq!(pool.alloc().unwrap_err().kind(), ErrorKind::PoolExhausted);
    blocks.pop();
    let mut again = pool.alloc_zeroed().unwrap();
    assert_eq!(again.read_at::<u64>(192).unwrap(), 0);
    again.write_at(0, 5u64).unwrap();
    assert_eq!(again.read_at::<u64>(0).unwrap(), 5);
    assert_eq!(
        again.write_at(200, 1u8).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
}

#[test]
fn pool_rejects_bad_parameters() {
    let p = coherent();
    let k = |r: dma_core::Result<DmaPool<_>>| r.unwrap_err().kind();
    assert_eq!(k(DmaPool::new(&p, 0, 8, None, 4)), ErrorKind::ZeroSize);
    assert_eq!(k(DmaPool::new(&p, 64, 8, None, 0)), ErrorKind::ZeroSize);
    assert_eq!(
        k(DmaPool::new(&p, 64, 24, None, 4)),
        ErrorKind::InvalidConstraints
    );
    assert_eq!(
        k(DmaPool::new(&p, 64, 8, Some(32), 4)),
        ErrorKind::InvalidConstraints
    );
    assert_eq!(
        k(DmaPool::new(&p, 64, 8, Some(100), 4)),
        ErrorKind::InvalidConstraints
    );
}

#[test]
#[cfg_attr(
    miri,
    ignore = "leaks on purpose, and Miri reports unreachable leaked memory as an error"
)]
fn forgotten_mapping_leaks_and_is_sound() {
    let p = coherent();
    let m = StreamingMapping::<_, FromDevice, _>::map(&p, vec![0u8; 64]).unwrap();
    std::mem::forget(m);
    let pool = DmaPool::new(&p, 64, 64, None, 4).unwrap();
    std::mem::forget(pool.alloc().unwrap());
    assert_eq!(pool.available(), pool.capacity() - 1);
    drop(pool); // leaks its chunks because a block is still out
}

#[test]
fn coherent_preset_has_no_alignment_needs() {
    assert_eq!(coherent().dma_alignment(), 1);
}
