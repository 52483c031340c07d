//! The board's physical memory map, as QEMU 7.2's `virt` machine lays it
//! out (read from `-machine dumpdtb=` with `-M virt,iommu=smmuv3 -m 128M`),
//! and how this crate divides RAM.
//!
//! ```text
//! 0x0000_0000 .. 0x4000_0000   devices (flash, GIC, PL011, SMMUv3, PCI 32-bit MMIO)
//! 0x4000_0000 .. 0x4008_0000   RAM: device tree placed by QEMU
//! 0x4008_0000 .. HEAP_END      RAM: image (link.x), stack, heap
//! HEAP_END    .. UNCACHED_BASE RAM: write-back cached DMA page pool
//! UNCACHED_BASE .. RAM_END     RAM: non-cacheable DMA page pool
//! 0x40_1000_0000 (256 MiB)     PCIe ECAM (highmem)
//! ```
//!
//! The ECAM is the highmem one QEMU gives 64-bit CPUs by default; the
//! identity map covers a 39-bit space, which reaches it, so the command line
//! needs no `highmem=off`. BARs are assigned from the 32-bit MMIO window, so
//! every device address the NVMe and the SMMU use fits in 32 bits.

/// First byte of RAM.
pub const RAM_BASE: u64 = 0x4000_0000;
/// RAM size: the runner passes `-m 128M`.
pub const RAM_SIZE: u64 = 128 << 20;
/// One past the last byte of RAM.
pub const RAM_END: u64 = RAM_BASE + RAM_SIZE;
/// Where the image is linked (`link.x`) and where QEMU enters it.
pub const IMAGE_BASE: u64 = 0x4008_0000;
/// End of the heap; the image, stack and heap lie below.
pub const HEAP_END: u64 = 0x4400_0000;
/// Start of the write-back cached DMA page pool.
pub const CACHED_POOL_BASE: u64 = HEAP_END;
/// Start of the non-cacheable DMA page pool (mapped Normal Non-cacheable).
pub const UNCACHED_BASE: u64 = 0x4700_0000;
/// Size of the cached DMA page pool.
pub const CACHED_POOL_SIZE: u64 = UNCACHED_BASE - CACHED_POOL_BASE;
/// Size of the non-cacheable DMA page pool.
pub const UNCACHED_POOL_SIZE: u64 = RAM_END - UNCACHED_BASE;

/// PL011 UART.
pub const UART_BASE: u64 = 0x0900_0000;
/// SMMUv3 register pages 0 and 1.
pub const SMMU_BASE: u64 = 0x0905_0000;
/// Size of the SMMUv3 register frame.
pub const SMMU_SIZE: u64 = 0x2_0000;
/// PCIe ECAM (highmem), buses 0..=255.
pub const ECAM_BASE: u64 = 0x40_1000_0000;
/// PCIe ECAM size: 256 buses of 1 MiB.
pub const ECAM_SIZE: u64 = 0x1000_0000;
/// PCIe 32-bit memory window, where BARs are assigned.
pub const PCI_MMIO32_BASE: u64 = 0x1000_0000;
/// Size of the PCIe 32-bit memory window.
pub const PCI_MMIO32_SIZE: u64 = 0x2eff_0000;

/// QEMU's NVMe controller: PCI vendor Red Hat (QEMU).
pub const NVME_VENDOR_ID: u16 = 0x1b36;
/// QEMU's NVMe controller: PCI device id.
pub const NVME_DEVICE_ID: u16 = 0x0010;

/// Intel: e1000e's PCI vendor id.
pub const E1000E_VENDOR_ID: u16 = 0x8086;
/// QEMU's `e1000e` (an 82574L): PCI device id.
pub const E1000E_DEVICE_ID: u16 = 0x10d3;
/// Virtio devices' PCI vendor id (Red Hat, virtio 1.2 §4.1.2).
pub const VIRTIO_VENDOR_ID: u16 = 0x1af4;
/// A modern (`disable-legacy=on`) virtio network device: 0x1040 + type 1.
pub const VIRTIO_NET_DEVICE_ID: u16 = 0x1041;
/// A modern virtio block device: 0x1040 + type 2.
pub const VIRTIO_BLK_DEVICE_ID: u16 = 0x1042;

static_assertions::const_assert!(CACHED_POOL_BASE % (2 << 20) == 0);
static_assertions::const_assert!(UNCACHED_BASE % (2 << 20) == 0);
static_assertions::const_assert!(RAM_END % (2 << 20) == 0);
static_assertions::const_assert!(IMAGE_BASE < HEAP_END);
