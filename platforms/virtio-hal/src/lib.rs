//! A [virtio-drivers](https://docs.rs/virtio-drivers/0.13) `Hal` over any
//! platform of the dma crate family (`P: DmaMap + DmaAlloc`), so
//! virtio-drivers' own block, network and other drivers run on the direct,
//! IOMMU, bounce, checked and simulated backends.
//!
//! - `Hal::dma_alloc` / `dma_dealloc` (the virtqueues) are coherent
//!   allocations ([`DmaAlloc`]); on a non-coherent platform these are
//!   uncached, so the rings need no maintenance.
//! - `Hal::share` / `unshare` (each request's buffers) are streaming maps
//!   ([`DmaMap::map`] / [`DmaMap::unmap`]) in the direction virtio-drivers
//!   names (`DriverToDevice` → `ToDevice`, `DeviceToDriver` →
//!   `FromDevice`, `Both` → `Bidirectional`). The map syncs the buffer for
//!   the device; the unmap syncs a buffer the device wrote back for the CPU
//!   (invalidation, or the bounce copy back).
//!
//! `Hal` is a trait of associated functions (no `self`), so the platform
//! must be reachable statically: implement [`StaticPlatform`] for a marker
//! type and use [`VirtioHal<ThatType>`] as the driver's `H`.
//!
//! # Example
//!
//! ```
//! use core::ptr::NonNull;
//! use std::sync::OnceLock;
//!
//! use dma_core::{DeviceConstraints, HostMemory};
//! use dma_direct::DirectPlatform;
//! use dma_virtio_hal::{StaticPlatform, VirtioHal};
//! use virtio_drivers::{BufferDirection, Hal};
//!
//! type Platform = DirectPlatform<HostMemory, dma_coherence::HardwareCoherent>;
//!
//! /// The board's one virtio device's platform, built once.
//! struct Board;
//!
//! static PLATFORM: OnceLock<Platform> = OnceLock::new();
//!
//! impl StaticPlatform for Board {
//!     type Platform = Platform;
//!
//!     fn platform() -> &'static Platform {
//!         PLATFORM.get_or_init(|| {
//!             DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED)
//!         })
//!     }
//!
//!     unsafe fn mmio_phys_to_virt(paddr: u64, _size: usize) -> NonNull<u8> {
//!         // This board maps its PCI windows 1:1.
//!         NonNull::new(paddr as usize as *mut u8).expect("BARs are not at 0")
//!     }
//! }
//!
//! // `VirtIOBlk::<VirtioHal<Board>, _>::new(transport)` etc.; the adapter
//! // on its own:
//! let mut request = [7u8; 64];
//! let buf = NonNull::from(&mut request[..]);
//! // SAFETY: `request` stays put and untouched until the unshare below.
//! let dma = unsafe { VirtioHal::<Board>::share(buf, BufferDirection::DriverToDevice) };
//! // ... a device reads 64 bytes at `dma` ...
//! // SAFETY: the same buffer and address; the device is done with it.
//! unsafe { VirtioHal::<Board>::unshare(dma, buf, BufferDirection::DriverToDevice) };
//! ```
//!
//! # What the adapter cannot check
//!
//! - **`Hal::share`'s contract is weaker than a map's.** It only promises
//!   the buffer is valid during the call, while the device may use it
//!   until `unshare`. The adapter relies on virtio-drivers' `VirtQueue`
//!   (the `# Safety` of `VirtQueue::add`) keeping each buffer alive and
//!   untouched until `pop_used`, which unshares it exactly once with the
//!   same pointer. Calling `share` directly, a caller must keep that
//!   promise itself.
//! - **`share` and `unshare` cannot fail.** A refused map (an unreachable
//!   buffer, a partial cache line the device would write on a
//!   non-coherent platform, a full bounce pool) or a refused unmap has
//!   no error path in `Hal`, so it panics with the platform's error and
//!   the fix. Returning an address instead would let the device write
//!   where nothing is mapped. `dma_alloc` does have one: it returns
//!   address 0, which virtio-drivers turns into `Error::DmaError`.
//! - **virtio-drivers shares small unaligned buffers the device writes**
//!   (virtio-blk's one-byte status is on the stack of `VirtIOBlk`'s
//!   request functions; `VirtIONet`'s receive buffers are plain `Vec`s).
//!   A non-coherent direct or IOMMU platform refuses those as
//!   `Misaligned` (invalidating a shared line would lose a neighbour's
//!   writes), so on a non-coherent machine put the platform inside
//!   `dma_bounce::BouncePlatform`, which copies exactly those through its
//!   pool. Shown by `tests/blk.rs`
//!   (`non_coherent_without_bounce_refuses_the_status_byte`).
//! - The adapter sees only what the `Hal` calls say: CPU accesses through
//!   virtio-drivers' raw pointers never reach [`DmaMap::cpu_access`], so a
//!   checking platform sees their effects at the next sync or unmap, not
//!   the accesses themselves.
//!
//! # What the simulated runs found in virtio-drivers 0.13
//!
//! The tests run `VirtIOBlk`, `VirtIONet` and `VirtIONetRaw` on `dma-sim`'s
//! independent virtio-blk and virtio-net models, on the non-coherent
//! machine with the detector on (a report panics where it happens), with
//! `BouncePlatform` around the direct backend and `dma-check` outermost.
//! The detector reports nothing and no device access faults; every byte
//! arrives. These are what the checker and the models report; each has a
//! test that keeps it visible:
//!
//! 1. **`VirtIONet`'s receive buffers share cache lines** (they are
//!    adjacent 2 KiB `Vec`s, mapped `FromDevice` at once). `dma-check`
//!    reports each pair, as Linux's dma-debug does ("cacheline tracking
//!    EEXIST"):
//!    `DMA-API: single mapping #10 (phys 0x7fc9c81ea630, dma 0x7fc9ce350800,
//!    0x800 bytes, FromDevice) shares the 64-byte cache line at
//!    0x7fc9c81ea600 with single mapping #9 (phys 0x7fc9c81e9e20, dma
//!    0x7fc9ce350000, 0x800 bytes, FromDevice)`.
//!    The bounce backend serves them through its own lines, so no data is
//!    lost here; a non-coherent platform without bouncing refuses them.
//!    (`tests/net.rs`, `virtio_drivers_net_on_the_non_coherent_machine`.)
//! 2. **Dropping `VirtIONet` leaves its posted receive buffers shared**:
//!    its `Drop` only writes `QueueReady = 0` and never unshares them, then
//!    frees their memory. `dma-check` reports all 16 at release:
//!    `DMA-API: still live when the device was released: single mapping
//!    #152 (phys 0x7fc9c81e0090, dma 0x7fc9ce364800, 0x800 bytes,
//!    FromDevice)`. On an IOMMU platform the device keeps a translation to
//!    freed memory; on a bounce platform the slots are lost. `VirtIONetRaw`
//!    with buffers the caller takes back before the drop is clean
//!    (`virtio_drivers_net_raw_is_clean`).
//! 3. **`VirtIOBlk` maps stack memory** (its request header and status
//!    byte). Sound here, because each request waits for its completion,
//!    but Linux forbids it (`CONFIG_VMAP_STACK` stacks are not physically
//!    contiguous), and `dma-check` with a stack classifier refuses the map
//!    (`Report::BadMemory` with `MemoryClass::Stack`, `Err(Unsupported)`),
//!    so the adapter panics: `dma-virtio-hal: the platform refused to map
//!    16 bytes ToDevice ...`. (`tests/blk.rs`,
//!    `virtio_drivers_maps_stack_memory`.)
//! 4. **virtio-drivers never negotiates `ACCESS_PLATFORM`** (virtio 1.2
//!    §6.1) for block or network devices, although this adapter hands the
//!    device IOVAs or bounce addresses whenever the platform makes them.
//!    A device honouring the spec without it uses physical addresses and
//!    bypasses the IOMMU, so behind an IOMMU only devices that translate
//!    regardless work. A device that requires the bit leaves `FEATURES_OK`
//!    clear (the sim's model says `driver declined ACCESS_PLATFORM, which
//!    this device requires (§6.1)`), and virtio-drivers does not re-read
//!    the status (§3.1.1 step 6): `VirtIOBlk::new` returns a device that
//!    will never answer. (`tests/blk.rs`,
//!    `access_platform_refusal_goes_unnoticed`.)
//! 5. **virtio-drivers 0.13.0 needs Rust 1.87** (`is_multiple_of`) and
//!    declares no `rust-version`; its dependency `safe-mmio` 0.3.1 declares
//!    1.85 but needs 1.88 (`if let` chains). This crate's `rust-version`
//!    is therefore 1.88, above the rest of the family's 1.85.
//!
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "virtio-drivers")]
mod hal;

#[cfg(feature = "virtio-drivers")]
pub use hal::VirtioHal;

use core::ptr::NonNull;

use dma_core::{DmaAlloc, DmaMap};

/// A platform reachable without `self`: what [`VirtioHal`] needs, because
/// virtio-drivers' `Hal` has only associated functions.
///
/// Implement it for a marker type per device (or per set of devices
/// sharing one platform value), typically over a `static` built once.
pub trait StaticPlatform: 'static {
    /// The platform serving the device.
    type Platform: DmaMap + DmaAlloc + Sync + 'static;

    /// The platform value. Called on every allocation, share and unshare,
    /// so it should be cheap (a `static`, a `OnceLock` or `spin::Once`).
    fn platform() -> &'static Self::Platform;

    /// Where the CPU reaches `size` bytes of MMIO at physical address
    /// `paddr` (virtio-drivers' PCI transport asks this for the BARs it
    /// reads from the device; the MMIO transport never does).
    ///
    /// # Safety
    ///
    /// `paddr..paddr + size` is an MMIO region of the device. The returned
    /// pointer must be valid for volatile access to all of it and alias no
    /// Rust allocation or reference.
    unsafe fn mmio_phys_to_virt(paddr: u64, size: usize) -> NonNull<u8>;
}
