//! Virtio devices (Virtual I/O Device specification 1.2): a block driver
//! ([`VirtioBlk`]) and a network driver ([`VirtioNet`]) over `dma-ring`'s
//! split and packed virtqueues, on virtio-pci (modern) or virtio-mmio
//! (version 2).
//!
//! # Layers
//!
//! - [`spec`]: the driver side of the spec: feature bits, device status,
//!   the PCI capabilities and common configuration, the virtio-mmio
//!   register block (tock-registers, offsets asserted), and the virtio-blk
//!   and virtio-net structures.
//! - [`transport`]: the [`Transport`](transport::Transport) trait and its
//!   two implementations, [`PciTransport`](transport::pci::PciTransport)
//!   (capability walk over a [`PciConfigSpace`](transport::pci::PciConfigSpace)
//!   the board implements, BAR windows it maps) and
//!   [`MmioTransport`](transport::mmio::MmioTransport). Registers are
//!   reached through [`RegisterIo`](transport::RegisterIo): real MMIO with
//!   [`MmioWindow`](transport::MmioWindow), or a simulator's device that
//!   acts on every access (virtio registers have side effects, so unlike
//!   the NVMe and NIC blocks they cannot be plain RAM in a simulator).
//! - Feature negotiation ([`negotiate`](transport::negotiate), §3.1.1):
//!   `VERSION_1` is required; `RING_PACKED` and `EVENT_IDX` are taken
//!   when offered and asked for in [`VirtioOptions`](transport::VirtioOptions)
//!   (packed falls back to split when the device has no packed queues);
//!   `ACCESS_PLATFORM` is accepted whenever offered, and required when the
//!   caller says the platform translates DMA addresses (an IOMMU): a
//!   device without it would use the IOVAs as physical addresses.
//!   `INDIRECT_DESC` is not taken: `dma-ring`'s virtqueues do not build
//!   indirect tables. `FEATURES_OK` is re-read; a device that clears it
//!   is refused with [`DriverError::FeaturesRefused`](crate::DriverError::FeaturesRefused),
//!   and every bring-up error after the reset leaves the device `FAILED`.
//!
//! # The drivers
//!
//! Both are polled (queue interrupts off), generic over the transport, the
//! platform, the waiter and the caller's buffer type, and use one
//! virtqueue source for both layouts, picked at bring-up.
//!
//! - [`VirtioBlk`]: read, write and flush of 512-byte sectors. A data
//!   buffer is mapped as a `dma-sg` table (cleaned for a write,
//!   invalidated when a read's is unmapped); the request header and the
//!   status byte live in coherent DMA memory, one area per request. The
//!   status byte is poisoned before submission and, with the used length,
//!   checked after (device-written: untrusted). [`VirtioBlk::shutdown`]
//!   resets the device and gives every buffer back.
//! - [`VirtioNet`]: the receive queue is kept full of mapped buffers that
//!   are recycled (synced over the bytes the device wrote, copied out,
//!   handed back); a frame to send is mapped as a `dma-sg` table behind a
//!   shared 12-byte header in coherent memory; the MAC address comes from
//!   the configuration space.
//!
//! `dma-sim-presets` runs both on the simulator's three machines against
//! its independent virtio-mmio models; the QEMU suite runs them on
//! QEMU's virtio-pci devices.

#[cfg(feature = "alloc")]
mod blk;
#[cfg(feature = "alloc")]
mod net;
#[cfg(feature = "alloc")]
mod queue;
pub mod spec;
pub mod transport;

#[cfg(feature = "alloc")]
pub use blk::{VirtioBlk, VirtioBlkStats};
#[cfg(feature = "alloc")]
pub use net::{VirtioNet, VirtioNetConfig, VirtioNetStats, MAX_FRAME};
