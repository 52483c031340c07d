//! The one place the crate's concurrency primitives come from.
//!
//! Under `--cfg dma_loom` the atomics and cells are loom's, and the DMA
//! barriers are loom fences (from `dma-coherence`), so the loom models
//! explore every interleaving and reordering the protocols allow. A model
//! can also switch one of the crate's barriers off on its own thread
//! (`sabotage`, present only under `--cfg dma_loom`) to show that the model notices the missing barrier.

#[cfg(not(dma_loom))]
pub(crate) use core::sync::atomic::{AtomicU32, Ordering};
#[cfg(dma_loom)]
pub(crate) use loom::sync::atomic::{AtomicU16, AtomicU32, Ordering};

#[cfg(dma_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// A barrier the ring protocols use, by name (see
/// [`dma_coherence::barrier`] for what each orders).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// Descriptor writes before a flag or index write in DMA memory.
    PublishDescriptors,
    /// DMA-memory accesses before a doorbell (MMIO) write.
    BeforeDoorbell,
    /// A completion flag read before the reads of the rest of the entry.
    AfterCompletionFlag,
    /// Everything before everything (store-load ordering for event indices).
    Full,
}

#[cfg(dma_loom)]
extern crate std;

#[cfg(dma_loom)]
std::thread_local! {
    /// The barriers left out, one bit per [`Barrier`].
    static SABOTAGED: core::cell::Cell<u8> = const { core::cell::Cell::new(0) };
}

#[cfg(dma_loom)]
impl Barrier {
    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Leaves out `barrier` in this crate's protocol code, on the calling OS
/// thread, until the guard is dropped. Loom runs a model's threads on the
/// thread that called `loom::model`, so this affects exactly one model.
/// Guards stack: a model may leave out several barriers that each order
/// the same access (a full barrier orders what `before_doorbell` does).
///
/// Only for the kept tests that show a loom model fails without a barrier.
#[cfg(dma_loom)]
pub fn sabotage(barrier: Barrier) -> SabotageGuard {
    SABOTAGED.with(|s| s.set(s.get() | barrier.bit()));
    SabotageGuard(barrier)
}

/// Restores the barrier left out by [`sabotage`] when dropped.
#[cfg(dma_loom)]
#[derive(Debug)]
pub struct SabotageGuard(Barrier);

#[cfg(dma_loom)]
impl Drop for SabotageGuard {
    fn drop(&mut self) {
        SABOTAGED.with(|s| s.set(s.get() & !self.0.bit()));
    }
}

#[inline(always)]
fn enabled(_barrier: Barrier) -> bool {
    #[cfg(dma_loom)]
    return SABOTAGED.with(|s| s.get()) & _barrier.bit() == 0;
    #[cfg(not(dma_loom))]
    true
}

/// Descriptor fields before the flag or index that publishes them.
#[inline(always)]
pub(crate) fn publish_descriptors() {
    if enabled(Barrier::PublishDescriptors) {
        dma_coherence::barrier::publish_descriptors();
    }
}

/// Ring memory accesses before the doorbell write.
#[inline(always)]
pub(crate) fn before_doorbell() {
    if enabled(Barrier::BeforeDoorbell) {
        dma_coherence::barrier::before_doorbell();
    }
}

/// The completion flag before the rest of the entry.
#[inline(always)]
pub(crate) fn after_completion_flag() {
    if enabled(Barrier::AfterCompletionFlag) {
        dma_coherence::barrier::after_completion_flag();
    }
}

/// Stores before loads (publishing an index, then reading the device's
/// event index or notification flags).
#[inline(always)]
pub(crate) fn dma_full() {
    if enabled(Barrier::Full) {
        dma_coherence::barrier::dma_full();
    }
}
