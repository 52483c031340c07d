//! The QEMU riscv64 `virt` board in M-mode, for running the DMA crate
//! family's reference NVMe driver against QEMU's NVMe controller on a
//! second architecture.
//!
//! The library holds what is specific to this board, host-testable where
//! it is logic:
//! - [`memmap`]: where things are, and how RAM is divided;
//! - [`uart::Ns16550`]: the console;
//! - [`clint::ClintTimer`]: `mtime`, the clock every wait is measured on;
//! - [`test_device`]: the `sifive_test` finisher that ends QEMU with the
//!   image's exit code.
//!
//! What does not depend on the architecture comes from `dma-qemu-virt`:
//! the report protocol (`report`), PCI enumeration and BAR assignment
//! (`pci`), the DMA page pool (`memory::BoardMemory`), timeouts
//! (`timer::TimerWait`) and the NVMe checks themselves (`nvme_suite`).
//!
//! The binary target is the test image; it only means something for
//! `riscv64gc-unknown-none-elf`, where `cargo xtask qemu` builds and runs
//! it. The hart runs in M-mode with no address translation, and QEMU 7.2
//! has no Zicbom, so the DMA platform is `dma-direct` on the
//! hardware-coherent policy (PCIe DMA on `virt` reaches RAM directly,
//! and QEMU models no caches to keep coherent).
//!
//! # Example
//!
//! How the image ends QEMU with its exit code:
//!
//! ```
//! use dma_qemu_riscv::test_device::finisher_value;
//! use dma_qemu_virt::report::ExitCode;
//!
//! assert_eq!(finisher_value(ExitCode::Pass), 0x5555);
//! assert_eq!(finisher_value(ExitCode::TestFailed), 10 << 16 | 0x3333);
//! ```
#![no_std]

pub mod clint;
pub mod memmap;
pub mod test_device;
pub mod uart;
