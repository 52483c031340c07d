//! The `Hal` implementation for virtio-drivers 0.13.

use core::marker::PhantomData;
use core::ptr::NonNull;

use dma_core::{CoherentRegion, DmaAddr, DmaAlloc, DmaAttrs, DmaDirection, DmaMap, RawMapping};
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use crate::StaticPlatform;

/// virtio-drivers' `Hal` over `S::platform()`; see the crate docs.
#[cfg_attr(docsrs, doc(cfg(feature = "virtio-drivers")))]
pub struct VirtioHal<S>(PhantomData<S>);

impl<S> core::fmt::Debug for VirtioHal<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("VirtioHal")
    }
}

/// The streaming direction of a virtio-drivers buffer direction.
pub(crate) fn direction(d: BufferDirection) -> DmaDirection {
    match d {
        BufferDirection::DriverToDevice => DmaDirection::ToDevice,
        BufferDirection::DeviceToDriver => DmaDirection::FromDevice,
        BufferDirection::Both => DmaDirection::Bidirectional,
    }
}

/// What `dma_alloc` returns when it cannot allocate: virtio-drivers takes
/// a zero address as failure (`Error::DmaError`).
fn no_allocation() -> (PhysAddr, NonNull<u8>) {
    (0, NonNull::dangling())
}

/// The mapping `share` made of `buffer` at `paddr`.
fn mapping<P: DmaMap>(
    platform: &P,
    paddr: PhysAddr,
    buffer: NonNull<[u8]>,
    dir: BufferDirection,
) -> Result<RawMapping, dma_core::Error> {
    let len = buffer.len();
    Ok(RawMapping {
        phys: platform.virt_to_phys(buffer.cast(), len)?,
        dma: DmaAddr::new(paddr),
        len,
        dir: direction(dir),
        attrs: DmaAttrs::empty(),
    })
}

// SAFETY: `dma_alloc` returns a coherent region from `DmaAlloc`, which is
// zero-filled, exclusively ours until freed and reachable by the device at
// its address; it is returned only when its CPU side is aligned to
// virtio-drivers' PAGE_SIZE and its size is exactly the pages asked for,
// so `dma_dealloc` rebuilds exactly that region. `share` returns only what
// a successful `map` returned and panics otherwise (no address is handed
// out for memory the device may not reach); `unshare` ends that mapping,
// syncing a device-written buffer for the CPU, and panics if the platform
// refuses (the device might still reach the buffer, which virtio-drivers
// would then reuse). `mmio_phys_to_virt` forwards to the implementor,
// whose contract is the same as `Hal`'s.
unsafe impl<S: StaticPlatform> Hal for VirtioHal<S> {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // Coherent whatever the direction: the rings are polled by both
        // sides, and per-access maintenance would cost every poll.
        let Some(size) = pages.checked_mul(PAGE_SIZE) else {
            return no_allocation();
        };
        let platform = S::platform();
        let Ok(region) = platform.alloc_coherent(size, DmaAttrs::empty()) else {
            return no_allocation();
        };
        let usable = region.size == size
            && (region.cpu.as_ptr() as usize).is_multiple_of(PAGE_SIZE)
            && region.dma != DmaAddr::ZERO;
        if !usable {
            // SAFETY: `region` is what alloc_coherent just returned, with
            // the same attrs, freed once; nothing has accessed it. A free
            // refused here leaves it leaked, which is safe.
            let _ = unsafe { platform.free_coherent(region, DmaAttrs::empty()) };
            return no_allocation();
        }
        (region.dma.as_u64(), region.cpu)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let region = CoherentRegion {
            cpu: vaddr,
            dma: DmaAddr::new(paddr),
            // Cannot overflow: dma_alloc made the same product.
            size: pages * PAGE_SIZE,
        };
        // SAFETY: the caller passes what dma_alloc returned and frees it once (Hal::dma_dealloc's
        // contract); dma_alloc only returned regions of exactly `pages * PAGE_SIZE` bytes, so this
        // is exactly that region, allocated with empty attrs.
        match unsafe { S::platform().free_coherent(region, DmaAttrs::empty()) } {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // SAFETY: the caller names a device's MMIO region (Hal's contract),
        // which is what the implementor's contract asks.
        unsafe { S::mmio_phys_to_virt(paddr, size) }
    }

    unsafe fn share(buffer: NonNull<[u8]>, dir: BufferDirection) -> PhysAddr {
        let platform = S::platform();
        let (len, to) = (buffer.len(), direction(dir));
        let phys = match platform.virt_to_phys(buffer.cast(), len) {
            Ok(phys) => phys,
            Err(e) => panic!(
                "dma-virtio-hal: cannot share {len} bytes {to:?}: {e} \
                 (virtio-drivers' Hal has no error path for share)"
            ),
        };
        // SAFETY: virtio-drivers' VirtQueue keeps `buffer` allocated and
        // untouched by the CPU until pop_used unshares it once (see the
        // crate docs: this is the promise `Hal::share` itself lacks).
        match unsafe { platform.map(phys, len, to, DmaAttrs::empty()) } {
            Ok(dma) => dma.as_u64(),
            Err(e) => panic!(
                "dma-virtio-hal: the platform refused to map {len} bytes {to:?} at {phys:?}: {e}. \
                 virtio-drivers' Hal has no error path for share; on a non-coherent platform \
                 wrap it in dma_bounce::BouncePlatform, which serves buffers that share cache \
                 lines or lie out of the device's reach"
            ),
        }
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, dir: BufferDirection) {
        let platform = S::platform();
        let unmapped = mapping(platform, paddr, buffer, dir).and_then(|m| {
            // The unmap syncs the buffer for the CPU where the device wrote it.
            // SAFETY: `m` is what `share` mapped (same buffer, address, direction and attrs), and
            // virtio-drivers unshares it once, after the device returned it in the used ring.
            unsafe { platform.unmap(&m) }
        });
        if let Err(e) = unmapped {
            panic!(
                "dma-virtio-hal: the platform refused to unmap {} bytes at device address \
                 {paddr:#x}: {e}. The device may still reach the buffer, and virtio-drivers' \
                 Hal has no error path for unshare",
                buffer.len()
            );
        }
    }
}
