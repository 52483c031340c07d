//! The adapter's error paths: what `Hal` can report is reported
//! (`dma_alloc` returns address 0, `dma_dealloc` -1), what it cannot
//! panics with the platform's error.

mod support;

use core::ptr::NonNull;
use std::sync::OnceLock;

use dma_check::Report;
use dma_core::{
    CoherentRegion, DeviceConstraints, DmaAddr, DmaAlloc, DmaAttrs, DmaDirection, DmaMap, PhysAddr,
    RawMapping, Result,
};
use dma_sim::{NonCoherentPlatform, Sim, SimConfig};
use dma_virtio_hal::{StaticPlatform, VirtioHal};
use support::{Hal, Rig};
use virtio_drivers::{BufferDirection, Hal as _, PAGE_SIZE};

#[test]
fn an_allocation_too_large_to_size_is_address_zero() {
    let rig = Rig::new(1, "virtio");
    let (paddr, _) = Hal::dma_alloc(usize::MAX, BufferDirection::Both);
    assert_eq!(paddr, 0);
    assert!(rig.finish(()).clean());
}

#[test]
fn an_allocation_the_platform_refuses_is_address_zero() {
    let rig = Rig::new(2, "virtio");
    // Far more than the sim's host can give (virtio-drivers' `Dma::new`
    // turns the 0 into `Error::DmaError`).
    let (paddr, _) = Hal::dma_alloc(1 << 40, BufferDirection::Both);
    assert_eq!(paddr, 0);
    assert!(rig.finish(()).clean());
}

#[test]
fn a_refused_free_is_minus_one() {
    let rig = Rig::new(3, "virtio");
    // SAFETY: the region was never allocated, against `dma_dealloc`'s
    // contract on purpose: the checked platform refuses a free of memory
    // it never handed out without forwarding it, so nothing is touched.
    let status = unsafe { Hal::dma_dealloc(0x10_0000, NonNull::dangling(), 1) };
    assert_eq!(status, -1);
    let outcome = rig.finish(());
    assert!(
        matches!(outcome.checker.as_slice(), [Report::NotMapped { .. }]),
        "{:?}",
        outcome.checker
    );
}

#[test]
#[should_panic(expected = "refused to unmap 64 bytes")]
fn an_unshare_the_platform_refuses_panics() {
    let _rig = Rig::new(4, "virtio");
    let mut never_shared = [0u8; 64];
    // SAFETY: against `unshare`'s contract on purpose (the buffer was
    // never shared): the checked platform refuses the unmap of a mapping
    // it does not know without forwarding it.
    unsafe {
        Hal::unshare(
            0x20_0000,
            NonNull::from(&mut never_shared[..]),
            BufferDirection::DeviceToDriver,
        )
    };
}

/// A platform that hands out more than was asked (as one with pages
/// larger than virtio-drivers' 4 KiB would): the adapter cannot rebuild
/// such a region at `dma_dealloc`, so it frees it at once and fails.
struct Oversized(NonCoherentPlatform);

// SAFETY: every call is forwarded unchanged to the sim's platform, which
// upholds the contract; `alloc_coherent` only asks it for more than the
// caller wanted, which the contract allows ("at least `size` bytes").
unsafe impl DmaMap for Oversized {
    fn constraints(&self) -> &DeviceConstraints {
        self.0.constraints()
    }
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        self.0.virt_to_phys(cpu, len)
    }
    fn dma_alignment(&self) -> usize {
        self.0.dma_alignment()
    }
    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<DmaAddr> {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.0.map(phys, len, dir, attrs) }
    }
    unsafe fn unmap(&self, mapping: &RawMapping) -> Result<()> {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.0.unmap(mapping) }
    }
    unsafe fn sync_for_cpu(&self, mapping: &RawMapping, offset: usize, len: usize) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.0.sync_for_cpu(mapping, offset, len) }
    }
    unsafe fn sync_for_device(&self, mapping: &RawMapping, offset: usize, len: usize) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.0.sync_for_device(mapping, offset, len) }
    }
}

// SAFETY: forwards to the sim's platform; the region it returns is at
// least the size asked for.
unsafe impl DmaAlloc for Oversized {
    fn alloc_coherent(&self, size: usize, attrs: DmaAttrs) -> Result<CoherentRegion> {
        self.0.alloc_coherent(size + PAGE_SIZE, attrs)
    }
    unsafe fn free_coherent(&self, region: CoherentRegion, attrs: DmaAttrs) -> Result<()> {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.0.free_coherent(region, attrs) }
    }
}

struct Big;
static BIG: OnceLock<(Sim, Oversized)> = OnceLock::new();

impl StaticPlatform for Big {
    type Platform = Oversized;
    fn platform() -> &'static Oversized {
        &BIG.get_or_init(|| {
            let sim = Sim::new(SimConfig::non_coherent().seed(5)).expect("machine");
            let dev = sim.add_device("virtio");
            let p = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
            (sim, Oversized(p))
        })
        .1
    }
    unsafe fn mmio_phys_to_virt(paddr: u64, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).expect("not at 0")
    }
}

#[test]
fn a_region_larger_than_asked_is_freed_and_refused() {
    let (paddr, _) = VirtioHal::<Big>::dma_alloc(1, BufferDirection::Both);
    assert_eq!(paddr, 0);
    let sim = &BIG.get().expect("built by the call").0;
    assert_eq!(sim.live_regions(), 0, "the oversized region was freed");
    assert!(sim.reports().is_empty());
}
