//! `DmaPool` alignment and size limits on the direct platform (issue 11, findings 8 and 9).

use dma_coherence::HardwareCoherent;
use dma_core::{DeviceConstraints, DmaAddr, DmaPool, ErrorKind, HostMemory, PhysAddr};
use dma_direct::{BusOffset, DirectPlatform};

/// A platform whose device addresses are the physical ones plus a page, so
/// no chunk is aligned above a page by luck of the allocator.
fn offset_platform() -> DirectPlatform<HostMemory, HardwareCoherent> {
    let bus = BusOffset {
        phys_base: PhysAddr::ZERO,
        dma_base: DmaAddr::new(0x1000),
    };
    DirectPlatform::new(
        HostMemory,
        HardwareCoherent,
        bus,
        DeviceConstraints::UNCONSTRAINED,
    )
}

#[test]
fn blocks_are_aligned_above_a_page() {
    let p = offset_platform();
    for align in [8192usize, 16384, 65536] {
        let pool = DmaPool::new(&p, 512, align, None, 6).unwrap();
        assert!(pool.capacity() >= 6);
        let blocks: Vec<_> = (0..pool.capacity())
            .map(|_| pool.alloc().unwrap())
            .collect();
        for b in &blocks {
            assert!(
                b.dma_addr().is_aligned(align as u64),
                "block at {:?} is not {align}-aligned",
                b.dma_addr()
            );
        }
        assert_eq!(pool.alloc().unwrap_err().kind(), ErrorKind::PoolExhausted);
    }
}

#[test]
fn blocks_keep_alignment_and_boundary_together() {
    let p = offset_platform();
    let pool = DmaPool::new(&p, 4096, 8192, Some(8192), 4).unwrap();
    let blocks: Vec<_> = (0..pool.capacity())
        .map(|_| pool.alloc().unwrap())
        .collect();
    assert!(blocks.len() >= 4);
    for b in &blocks {
        let a = b.dma_addr().as_u64();
        assert_eq!(a % 8192, 0, "{a:#x}");
        assert_eq!(a / 8192, (a + 4095) / 8192, "{a:#x}");
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri halts at an allocation it cannot make instead of failing it"
)]
fn a_huge_pool_is_an_error_not_an_abort() {
    let p = offset_platform();
    let e = DmaPool::new(&p, 64, 64, None, usize::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
    assert!(e.to_string().contains("too large"), "{e}");
    // Sizes that fit the arithmetic but not memory: on a 64-bit host the
    // bookkeeping reservation fails, on a 32-bit one the chunk allocation
    // can fail first; either way it is a typed error, not an abort.
    for capacity in [usize::MAX / 2, usize::MAX / 64] {
        let e = DmaPool::new(&p, 64, 64, None, capacity).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfMemory, "capacity {capacity}: {e}");
    }
    // A block so large that its chunk size overflows.
    let e = DmaPool::new(&p, usize::MAX - 100, 1, None, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
    // An alignment whose slack overflows the chunk size.
    let e = DmaPool::new(&p, 64, 1 << (usize::BITS - 1), None, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfMemory, "{e}");
}
