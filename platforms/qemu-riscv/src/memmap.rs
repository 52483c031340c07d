//! The board's physical memory map, as QEMU 7.2's riscv64 `virt` machine
//! lays it out (read from `-machine dumpdtb=` with `-m 128M`), and how
//! this crate divides RAM.
//!
//! ```text
//! 0x0010_0000                 sifive_test finisher
//! 0x0200_0000 (64 KiB)        CLINT (mtime at +0xbff8)
//! 0x1000_0000                 ns16550a UART
//! 0x3000_0000 (256 MiB)       PCIe ECAM, buses 0..=255
//! 0x4000_0000 (1 GiB)         PCI 32-bit MMIO window, where BARs go
//! 0x8000_0000 .. HEAP_END     RAM: image (link.x), stack, heap
//! HEAP_END .. POOL_END        RAM: the DMA page pool
//! RAM_END - 2 MiB .. RAM_END  RAM: the device tree QEMU places there
//! ```
//!
//! In M-mode with `-bios none` there is no address translation: CPU
//! addresses are physical, and PCI devices see RAM at the same addresses.

/// First byte of RAM.
pub const RAM_BASE: u64 = 0x8000_0000;
/// RAM size: the runner passes `-m 128M`.
pub const RAM_SIZE: u64 = 128 << 20;
/// One past the last byte of RAM.
pub const RAM_END: u64 = RAM_BASE + RAM_SIZE;
/// Where QEMU puts the device tree with 128 MiB (passed in `a1`); nothing
/// here reads it, and nothing may overwrite it before then.
pub const DTB_BASE: u64 = 0x87e0_0000;
/// End of the heap; the image, stack and heap lie below (`link.x`).
pub const HEAP_END: u64 = 0x8400_0000;
/// Start of the DMA page pool.
pub const POOL_BASE: u64 = HEAP_END;
/// Pages in the DMA page pool (48 MiB, the most `BoardMemory` manages).
pub const POOL_PAGES: usize = dma_qemu_virt::memory::CACHED_WORDS * 64;
/// One past the DMA page pool.
pub const POOL_END: u64 = POOL_BASE + (POOL_PAGES * dma_qemu_virt::memory::PAGE_SIZE) as u64;

/// The `sifive_test` finisher (`sifive,test0`).
pub const TEST_DEVICE_BASE: u64 = 0x10_0000;
/// The CLINT.
pub const CLINT_BASE: u64 = 0x200_0000;
/// `mtime` in the CLINT (SiFive CLINT layout, as QEMU's ACLINT MTIMER).
pub const MTIME_OFFSET: u64 = 0xbff8;
/// `mtime` ticks per second: the device tree's `timebase-frequency`
/// (`/cpus`, 0x989680 on QEMU's `virt`).
pub const TIMEBASE_HZ: u64 = 10_000_000;
/// The ns16550a UART.
pub const UART_BASE: u64 = 0x1000_0000;
/// PCIe ECAM (`pci-host-ecam-generic`), buses 0..=255.
pub const ECAM_BASE: u64 = 0x3000_0000;
/// Buses the ECAM covers (1 MiB each).
pub const ECAM_BUSES: u16 = 256;
/// PCIe 32-bit memory window (CPU address = bus address).
pub const PCI_MMIO32_BASE: u64 = 0x4000_0000;
/// Size of the PCIe 32-bit memory window.
pub const PCI_MMIO32_SIZE: u64 = 0x4000_0000;

static_assertions::const_assert!(POOL_BASE % 4096 == 0);
static_assertions::const_assert!(POOL_END <= DTB_BASE);
static_assertions::const_assert!(DTB_BASE < RAM_END);
static_assertions::const_assert!(PCI_MMIO32_BASE + PCI_MMIO32_SIZE <= RAM_BASE);
