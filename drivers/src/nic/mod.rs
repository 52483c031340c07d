//! An e1000-style NIC: legacy RX/TX descriptor rings with write-back
//! descriptor-done bits.
//!
//! The descriptor rings themselves are `dma-ring`'s
//! [`nic`](dma_ring::nic) module; [`spec`] holds the driver side of the
//! register file; [`NicDriver`] (feature `alloc`) is a polled driver on
//! top of both, generic over the platform, the waiter and how the
//! register block is reached.
//!
//! # The driver
//!
//! [`NicDriver`] is a polled driver for an e1000-style device (Intel
//! 8254x legacy descriptors and register offsets).
//!
//! - **Receive**: `rx_entries - 1` buffers of `rx_buffer_size` bytes are
//!   allocated with [`DmaBuf::for_device`](dma_core::DmaBuf::for_device) (whole cache lines on a
//!   non-coherent machine), mapped once, and recycled: a filled buffer is
//!   synced for the CPU over exactly the bytes the NIC reported
//!   (`sync_range_for_cpu`), copied out, synced back for the device over
//!   the same range and posted again, the way page-pool drivers avoid a map
//!   per packet. The mappings are [`FromDevice`](dma_core::FromDevice): the CPU only reads them,
//!   and `sync_range_for_device` is their hand-back step, as Linux allows
//!   `dma_sync_single_for_device` on a `DMA_FROM_DEVICE` mapping. Frames
//!   longer than one buffer span several
//!   descriptors and are reassembled up to EOP (8254x SDM §3.2.6).
//! - **Transmit**: each frame (any [`DmaBuffer`](dma_core::DmaBuffer)) is mapped as a `dma-sg`
//!   table (cleaned for the device), one descriptor per device segment, the
//!   last with EOP and RS; `dma-ring`'s TX ring owns the mapping until the
//!   NIC writes DD back, and then the frame's buffer is unmapped and
//!   returned (§3.3.3).
//! - Completions are found by polling the DD bit at the driver's own
//!   position, never by reading the head registers; the rings validate
//!   what the NIC wrote (a length beyond the posted buffer, DD on a
//!   descriptor never given) before any buffer moves.
//!
//! Registers are reached through a borrowed [`NicRegisters`](spec::NicRegisters) block: BAR0
//! mapped as Device memory on a board, or a simulator's block in RAM
//! (`dma-sim-presets` hands the sim's NIC to this driver that way, and runs
//! it on the sim's three machines with an example).

#[cfg(feature = "alloc")]
mod driver;
pub mod spec;

#[cfg(feature = "alloc")]
pub use driver::{NicDriver, NicDriverConfig, NicDriverStats, TxCompletion, MAX_FRAME};
