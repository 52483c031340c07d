//! Reference drivers for the DMA crate family, `no_std`.
//!
//! One crate with a module per device, because the devices share what a
//! driver needs around them: the [`DriverError`] a bring-up or request
//! fails with, the [`Refused`] that hands a caller's buffer back, and the
//! [`Wait`] that says how time passes while a driver waits (polling, or
//! sleeping until an interrupt). A board crate
//! depends on this one crate and gets every driver; nothing here needs an
//! allocator or an operating system.
//!
//! Each device module has a `spec` submodule: the driver side of the
//! device's specification (register blocks as tock-registers structs,
//! opcodes, doorbell arithmetic, the structures the device writes and how
//! to decode them as untrusted input). It is the one place those facts are
//! written; the simulator's device models keep their own, independent
//! reading of each spec on purpose, so that a wrong reading here shows up
//! as a failing test there.
//!
//! - [`nvme`]: the controller bring-up ([`nvme::Controller`]) and a
//!   polled or interrupt-driven block driver ([`nvme::NvmeBlockDriver`], feature `alloc`) with PRP
//!   data transfers;
//!   [`nvme::spec`]: NVMe controller properties, doorbell stride, admin
//!   and NVM opcodes, command builders, Identify structures.
//! - [`nic`]: a polled driver for an e1000-style NIC
//!   ([`nic::NicDriver`], feature `alloc`) with recycled RX buffers and
//!   per-frame TX mappings; [`nic::spec`]: the Intel 8254x-family control
//!   and descriptor-queue registers.
//! - [`virtio`]: virtio-blk ([`virtio::VirtioBlk`]) and virtio-net
//!   ([`virtio::VirtioNet`]) drivers (feature `alloc`) over `dma-ring`'s
//!   split and packed virtqueues, on modern virtio-pci or virtio-mmio
//!   ([`virtio::transport`]), with feature negotiation including
//!   `VERSION_1`, `RING_PACKED`, `EVENT_IDX`, `INDIRECT_DESC` and
//!   `ACCESS_PLATFORM`; [`virtio::spec`]: feature bits, PCI capabilities,
//!   the common configuration and virtio-mmio register blocks, blk and net
//!   structures.
//!
//! To run these drivers on the simulator's machines, with its
//! coherency-bug detector and `dma-check` on, see the `dma-sim-presets`
//! crate: it hands the simulated devices' register blocks to these
//! drivers, steps the devices while a driver waits, and runs one generic
//! test body on every preset.
//!
//! NVMe and NIC registers are reached through `&` references to
//! tock-registers blocks, which is all a driver needs whether the block is
//! a BAR mapped as Device memory, a BAR `mmap`ped from VFIO, or a
//! simulator's block in RAM. Virtio registers act on every access (select
//! registers, status writes), so the virtio transports reach them through
//! [`virtio::transport::RegisterIo`]: real MMIO, or a simulated device
//! that traps each access.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;

mod error;
pub mod nic;
pub mod nvme;
pub mod virtio;
mod wait;

pub use error::{DriverError, Refused};
pub use wait::{poll_until, Wait, Wake};
