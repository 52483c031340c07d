//! NVMe over PCIe.
//!
//! [`Controller`] brings a controller up behind its BAR0;
//! [`NvmeBlockDriver`] is a whole block driver on top of it, polled or
//! interrupt-driven.
//! The queue pairs themselves (64-byte commands, phase-tagged
//! completions, command identifiers) are `dma-ring`'s
//! [`nvme`](dma_ring::nvme) module; [`spec`] holds the rest of the
//! driver's side of the NVMe Base Specification 2.0c and the NVM Command
//! Set Specification 1.0.
//!
//! # The block driver
//!
//! An NVMe block driver with one I/O queue pair, over any platform.
//!
//! It waits as its [`Wait`](crate::Wait) says. A polled waiter (the sim's
//! stepping, a board timer) gets a polled driver: the I/O completion queue
//! is created with interrupts off and a wait polls it. A waiter with an
//! [`interrupt_vector`](crate::Wait::interrupt_vector) (an MSI-X eventfd
//! under VFIO) gets an interrupt-driven one: the queue is created with
//! CDW11.IEN and that vector, and a wait sleeps in
//! [`Wait::sleep`](crate::Wait::sleep) until the interrupt, then looks.
//!
//! Bring-up follows NVMe Base Specification 2.0 §3.5.1 ("Memory-based
//! Controller Initialization"): disable and wait for CSTS.RDY = 0, check
//! CAP, place the admin queues (AQA, ASQ, ACQ), configure CC (4 KiB memory
//! pages, 64/16-byte entries) and set CC.EN, wait for CSTS.RDY = 1, then
//! Identify Controller and Namespace (§5.17), Set Features Number of
//! Queues (§5.27.1.5) and create one I/O completion and submission queue
//! (§5.4, §5.5).
//!
//! I/O: a caller's buffer (any [`DmaBuffer`](dma_core::DmaBuffer): `DmaBuf`, `Vec<u8>`,
//! `Box<[u8]>`) becomes a `dma-sg` [`MappedSgTable`](dma_sg::MappedSgTable) (built from its pages
//! under the device's constraints and mapped through the platform: an IOMMU
//! gives one IOVA range), whose device segments are encoded as PRP1/PRP2 or
//! a chained PRP list in [`NvmePools`](dma_sg::nvme::NvmePools) memory (§4.3.1), or, when the
//! controller's SGLS allows and [`SglUse`] asks, as an SGL (§4.3.2: one
//! Data Block in SGL1, or Segment and Last Segment descriptors over SGL
//! segments in the same pools). The mapped table and
//! the PRP lists or SGL segments go into `dma-ring`'s [`NvmeQueuePair`](dma_ring::nvme::NvmeQueuePair) with the command:
//! the ring owns them until the completion with that command identifier
//! comes back, so no buffer is unmapped or reused while the controller may
//! still touch it, and a bogus completion cannot hand one back twice.
//!
//! Cache maintenance is all in `dma-core`'s and `dma-sg`'s types: mapping a
//! buffer for a Write cleans it, unmapping a Read's buffer invalidates it.
//! On a non-coherent machine a buffer the controller writes must own its
//! cache lines: read into [`DmaBuf::for_device`](dma_core::DmaBuf::for_device) buffers (the platform
//! refuses others with a typed error).
//!
//! The driver is generic over the platform `P` (`dma-core`'s
//! [`DmaMap`](dma_core::DmaMap) + [`DmaAlloc`](dma_core::DmaAlloc)), over how it waits (`W`: [`Wait`](crate::Wait)) and over
//! how registers are reached (a [`Controller`] over any BAR: MMIO, a VFIO
//! `mmap`, a simulator's block in RAM). `dma_sim_presets` runs it on
//! the simulator's three machines, with an example.

#[cfg(feature = "alloc")]
mod block;
mod controller;
pub mod spec;

#[cfg(feature = "alloc")]
pub use block::{
    prp_pools, IoCompletion, IoOp, NvmeBlockDriver, NvmeDriverConfig, NvmeDriverStats,
    NvmeIdentity, SglUse, IO_QID, NSID, PAGE_SIZE,
};
pub use controller::{check_status, AdminQueues, Controller};
