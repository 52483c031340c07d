//! The QEMU aarch64 `virt` board, for testing the DMA crate family against
//! device models nobody here wrote: QEMU's NVMe controller and SMMUv3.
//!
//! The library holds the board support, host-testable where it is logic:
//! - [`memmap`]: where things are, and how RAM is divided;
//! - [`mmu`]: the identity map (RAM write-back, a non-cacheable DMA pool,
//!   devices nGnRE) and the EL1 MMU/cache switch-on, so `dc` maintenance
//!   does real work;
//! - [`memory::BoardMemory`]: the `dma-core` [`PhysMemory`](dma_core::PhysMemory)
//!   of the board, with cached and non-cacheable page pools;
//! - [`pci`]: ECAM configuration access, enumeration, BAR sizing and
//!   assignment;
//! - [`smmu`]: an SMMUv3 stage-1 driver: linear stream table, STEs and CDs,
//!   command queue with CFGI/TLBI/SYNC, event queue with fault decoding;
//!   and [`smmu::SmmuIommu`], `dma-iommu`'s `IommuHardware` over it, so
//!   the IOMMU backend's VMSAv8-64 tables are what the SMMU walks;
//! - [`uart`], [`timer`], [`report`]: console, timeouts, and the test
//!   protocol the image prints and `cargo xtask qemu` parses (with the
//!   semihosting exit);
//! - [`nvme_suite`]: the architecture-independent NVMe checks through
//!   `dma-drivers`' block driver, which both boards' images run (the
//!   riscv64 board, `platforms/qemu-riscv`, on its own console and clock); with
//!   [`pci`], [`memory`], [`timer`]'s `TimerWait` and [`report`] it is
//!   what the boards share;
//! - [`net_suite`]: Ethernet frames of several sizes sent between two
//!   NICs and compared byte for byte on arrival;
//! - [`virtio_blk_suite`]: the virtio-blk checks through `dma-drivers`'
//!   `VirtioBlk`, over any virtio transport.
//!
//! The binary target is the test image itself; it only means something for
//! `aarch64-unknown-none`, where `cargo xtask qemu` builds and runs it. It
//! runs [`nvme_suite`] (one block, PRP2, one and chained PRP lists, queue
//! wrap-around, refusals, flush, shutdown) over the direct backend
//! (`dma-direct`'s ARM non-coherent preset, SMMU bypass) and the IOMMU
//! backend (`dma-iommu` through [`smmu::SmmuIommu`], on every granule),
//! plus a translation fault after unmap; then [`virtio_blk_suite`] on two
//! virtio-blk-pci devices, each with a split and a packed queue (one
//! device direct, one with `ACCESS_PLATFORM` through the SMMU), and
//! [`net_suite`] on an e1000e (MAC loopback) and on the e1000e and a
//! virtio-net joined by a QEMU hub.
//!
//! # Example
//!
//! Where the NVMe controller's registers and doorbells are, and what the
//! SMMU is told about it:
//!
//! ```
//! use dma_qemu_virt::pci::Bdf;
//! use dma_drivers::nvme::spec::doorbell_offset;
//! use dma_qemu_virt::smmu::{Command, Ste, WalkAttrs};
//!
//! // QEMU's NVMe sits at 00:01.0 with `-net none`; its StreamID is its BDF.
//! let nvme = Bdf { bus: 0, device: 1, function: 0 };
//! assert_eq!(nvme.ecam_offset(0x10), 0x8010); // BAR0 in ECAM
//! let sid = u32::from(nvme.routing_id());
//! assert_eq!(sid, 8);
//!
//! // Admin completion-queue head doorbell with QEMU's CAP.DSTRD = 0.
//! assert_eq!(doorbell_offset(0, true, 0), 0x1004);
//!
//! // A stage-1 STE pointing at a context descriptor, and the command that
//! // makes the SMMU drop its cached copy.
//! let ste = Ste::stage1(0x4700_0000, WalkAttrs::NonCacheable);
//! assert!(ste.is_valid());
//! assert_eq!(Command::cfgi_ste(sid).opcode(), 0x03);
//! ```
#![no_std]

extern crate alloc;

pub mod error;
pub mod memmap;
pub mod memory;
pub mod mmu;
pub mod net_suite;
pub mod nvme_suite;
pub mod pci;
pub mod report;
pub mod smmu;
pub mod timer;
pub mod uart;
pub mod virtio_blk_suite;

pub use error::{BoardError, Result};
