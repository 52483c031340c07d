//! Descriptor rings for DMA devices: NVMe queue pairs, NIC RX/TX rings, and
//! virtio split and packed virtqueues.
//!
//! Every fast device talks through rings in host memory: the driver writes
//! descriptors and rings a doorbell; the device reads them, does the work,
//! and writes completions back. This crate gives driver authors those
//! rings, built on [`dma_core`]'s coherent memory and [`dma_coherence`]'s
//! barriers:
//!
//! - a [ring core](RingCursor) for any size, with full/empty and one
//!   doorbell per batch;
//! - [doorbells](Doorbell) through tock-registers, so one driver drives
//!   real MMIO, a simulator and tests (the devices' register blocks are
//!   the `dma-drivers` crate's);
//! - the protocols: [`nvme`], [`nic`], [`virtio::split`], [`virtio::packed`]
//!   (both with event index and indirect descriptor tables);
//! - in-flight ownership: submitting moves the request's buffers (mapped
//!   buffers, SG tables, anything) into the ring's [slot table](Slot); the
//!   completion hands them back with the status, exactly once;
//! - an untrusted device: ids, lengths and indices it writes are checked,
//!   and a bad one is a [`RingError`], never undefined behaviour, a panic
//!   or a buffer returned twice;
//! - memory ordering as the specs ask: descriptors, write barrier, doorbell;
//!   completion flag, read barrier, rest of the entry. Loom models of every
//!   protocol check it (`--cfg dma_loom`; see [`sync`]).
//!
//! # Example
//!
//! An NVMe queue pair with a tiny in-test controller: submit a batch, ring
//! once, reap the completions with their buffers.
//!
//! ```
//! use dma_core::{DeviceConstraints, HostMemory};
//! use dma_direct::DirectPlatform;
//! use dma_ring::nvme::{opcode, NvmeCommand, NvmeCompletion, NvmeDoorbells, NvmeQueueConfig, NvmeQueuePair};
//! use dma_ring::{AtomicDoorbell, MemoryView, RingMemory};
//!
//! let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
//! let config = NvmeQueueConfig { qid: 1, sq_size: 5, cq_size: 5 };
//! let (sq_db, cq_db) = (AtomicDoorbell::default(), AtomicDoorbell::default());
//! let doorbells = NvmeDoorbells { sq_tail: &sq_db, cq_head: &cq_db };
//! let mut qp = NvmeQueuePair::<_, _, Vec<u8>, _>::allocate(&platform, config, doorbells)?;
//!
//! for lba in 0..3 {
//!     let mut read = NvmeCommand::new(opcode::READ);
//!     read.cdw10[0] = lba;
//!     qp.push(read, vec![0u8; 512]).map_err(|r| r.error)?;
//! }
//! qp.ring_doorbell(); // one doorbell for three commands
//! assert_eq!(sq_db.value(), 3);
//!
//! // The "controller": consume the SQ, post phase-tagged completions.
//! // SAFETY: the views are used while `qp` (and so its memory) is alive.
//! let (sq, cq) = unsafe { (MemoryView::of(qp.sq_memory()), MemoryView::of(qp.cq_memory())) };
//! for slot in 0..3usize {
//!     // SAFETY: in bounds, aligned.
//!     let cmd = NvmeCommand::from_words(core::array::from_fn(|i| unsafe { sq.read_u64(slot * 64 + 8 * i) }));
//!     let done = NvmeCompletion { sq_head: slot as u16 + 1, sq_id: 1, cid: cmd.cid(), dw0: cmd.cdw10[0], ..Default::default() };
//!     let [w0, w1] = done.to_words();
//!     // SAFETY: in bounds, aligned; the status word (with the phase) goes last.
//!     unsafe {
//!         cq.write_u64(slot * 16, w0);
//!         cq.write_u32(slot * 16 + 8, w1 as u32);
//!         cq.write_u16(slot * 16 + 12, cmd.cid());
//!         cq.store_flag(slot * 16 + 14, done.status.with_phase(true).0);
//!     }
//! }
//!
//! let mut lbas = Vec::new();
//! let reaped = qp.drain(|c| {
//!     assert!(c.status.is_success());
//!     assert_eq!(c.buffers.len(), 512); // the buffer is ours again
//!     lbas.push(c.dw0);
//! })?;
//! assert_eq!((reaped, lbas), (3, vec![0, 1, 2]));
//! assert_eq!(cq_db.value(), 3); // CQ head doorbell, once
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Choices
//!
//! - Ring memory is anything implementing [`RingMemory`]: a
//!   `Coherent<[u64], P>` allocation, a [`MemoryView`] of one (how a device
//!   model sees it), or under loom a `LoomMemory`.
//! - Doorbells are the small [`Doorbell`] trait, implemented for
//!   tock-registers registers (`WriteOnly`, `ReadWrite`, `InMemoryRegister`),
//!   for [`AtomicDoorbell`] (a device on another thread) and for
//!   [`DoorbellFn`] (a simulator stepping its device on each ring).
//! - After a device fault a ring is *broken* until `reset`, which returns
//!   every in-flight buffer once: the device may still hold them, so they
//!   are not handed back while it might be running.
//!
//! # Features
//!
//! - `alloc` (default): `allocate` constructors and heap slot storage
//!   ([`slot_vec`]). Without it, slot storage is an array ([`slots`]).
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;

mod doorbell;
mod error;
mod memory;
pub mod nic;
pub mod nvme;
mod ring;
mod slots;
pub mod sync;
pub mod virtio;

pub use doorbell::{AtomicDoorbell, Doorbell, DoorbellFn};
pub use error::{Rejected, Result, RingError, RingErrorKind};
#[cfg(dma_loom)]
pub use memory::LoomMemory;
pub use memory::{MemoryView, RingMemory};
pub use ring::RingCursor;
#[cfg(feature = "alloc")]
pub use slots::slot_vec;
pub use slots::{slots, Drain, Slot, SlotStorage, MAX_TAGGED_SLOTS, MIN_GENERATION_BITS};
/// The `tock-registers` version the doorbells are built on, so that
/// a driver's own register blocks use the same one without pinning it.
pub use tock_registers;
