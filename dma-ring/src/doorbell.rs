//! Doorbells: the register writes that tell a device to look at a ring.
//!
//! Ring code is generic over the small [`Doorbell`] trait rather than over
//! one register type, so the same driver code rings
//! - real MMIO: any tock-registers [`WriteOnly`] or [`ReadWrite`] `u32`
//!   register, for example a field of a device's register block placed
//!   over the BAR (the `dma-drivers` crate's spec modules hold them);
//! - a unit test: a tock-registers [`InMemoryRegister`];
//! - a device model on another thread, or a loom model: [`AtomicDoorbell`];
//! - a step-by-step simulator: [`DoorbellFn`], whose closure can run the
//!   simulated device when the driver rings.
//!
//! The ring issues [`before_doorbell`](dma_coherence::barrier::before_doorbell)
//! itself before ringing; implementations only write.

use tock_registers::interfaces::Writeable;
use tock_registers::registers::{InMemoryRegister, ReadWrite, WriteOnly};
use tock_registers::RegisterLongName;

use crate::sync::{AtomicU32, Ordering};

#[cfg(not(dma_loom))]
const STORE: Ordering = Ordering::Release;
#[cfg(not(dma_loom))]
const LOAD: Ordering = Ordering::Acquire;
#[cfg(dma_loom)]
const STORE: Ordering = Ordering::Relaxed;
#[cfg(dma_loom)]
const LOAD: Ordering = Ordering::Relaxed;
#[cfg(not(dma_loom))]
const TAKE: Ordering = Ordering::AcqRel;
#[cfg(dma_loom)]
const TAKE: Ordering = Ordering::Relaxed;

/// A register the driver writes a new tail, head or queue number to.
pub trait Doorbell {
    /// Writes `value` to the register.
    fn ring(&self, value: u32);
}

impl<R: RegisterLongName> Doorbell for WriteOnly<u32, R> {
    #[inline(always)]
    fn ring(&self, value: u32) {
        self.set(value);
    }
}

impl<R: RegisterLongName> Doorbell for ReadWrite<u32, R> {
    #[inline(always)]
    fn ring(&self, value: u32) {
        self.set(value);
    }
}

impl<R: RegisterLongName> Doorbell for InMemoryRegister<u32, R> {
    #[inline(always)]
    fn ring(&self, value: u32) {
        self.set(value);
    }
}

impl<D: Doorbell + ?Sized> Doorbell for &D {
    #[inline(always)]
    fn ring(&self, value: u32) {
        (**self).ring(value);
    }
}

#[cfg(feature = "alloc")]
impl<D: Doorbell + ?Sized> Doorbell for alloc::sync::Arc<D> {
    #[inline(always)]
    fn ring(&self, value: u32) {
        (**self).ring(value);
    }
}

/// A doorbell a device model on another thread (or in a loom model) reads.
///
/// On real threads it is a release store and an acquire load, so a device
/// model on another CPU thread is race-free in Rust's memory model even
/// where the DMA barriers are compiler-only (x86). Under `--cfg dma_loom`
/// both are relaxed, as an MMIO write orders nothing by itself: the ring's
/// `before_doorbell` barrier, and an acquire fence in the device model
/// after reading the value, are what the models check.
#[derive(Debug)]
pub struct AtomicDoorbell {
    value: AtomicU32,
    // Bookkeeping for tests, not protocol: a plain core atomic even under
    // loom, so it adds no states to the models.
    rings: core::sync::atomic::AtomicU32,
}

impl Default for AtomicDoorbell {
    fn default() -> Self {
        Self::new(0)
    }
}

impl AtomicDoorbell {
    /// A doorbell reading `value`, never rung.
    pub fn new(value: u32) -> Self {
        Self {
            value: AtomicU32::new(value),
            rings: core::sync::atomic::AtomicU32::new(0),
        }
    }

    /// The last value written (the device's side of the register).
    #[inline]
    pub fn value(&self) -> u32 {
        self.value.load(LOAD)
    }

    /// The device's side of an event register such as virtio's queue
    /// notify, where each write is one event rather than a value that
    /// stays: returns what was written since the last `take` and leaves
    /// `idle` in its place, in one atomic step, so a write racing the take
    /// is seen now or by the next take, never lost. `None` when the
    /// register still reads `idle` (create it with `new(idle)`, and pick an
    /// `idle` the driver never writes).
    ///
    /// Relaxed under `--cfg dma_loom`, like [`value`](Self::value): the
    /// device model's own acquire fence after it is what the models check.
    #[cfg(any(dma_loom, target_has_atomic = "32"))]
    #[inline]
    pub fn take(&self, idle: u32) -> Option<u32> {
        // A plain load first: polling an idle register writes nothing (and
        // lets loom see a spinning device make no progress, not a new
        // store per poll).
        if self.value.load(LOAD) == idle {
            return None;
        }
        let written = self.value.swap(idle, TAKE);
        (written != idle).then_some(written)
    }

    /// How many times it was rung (wrapping), for tests of batching.
    pub fn rings(&self) -> u32 {
        self.rings.load(Ordering::Relaxed)
    }
}

impl Doorbell for AtomicDoorbell {
    #[inline(always)]
    fn ring(&self, value: u32) {
        self.value.store(value, STORE);
        // Only the driver writes the count, so load-then-store is exact and
        // needs no read-modify-write (absent on some embedded targets).
        let n = self.rings.load(Ordering::Relaxed);
        self.rings.store(n.wrapping_add(1), Ordering::Relaxed);
    }
}

/// A doorbell that calls a closure: the hook a step-by-step simulator uses
/// to run its device model when the driver rings.
pub struct DoorbellFn<F: Fn(u32)>(pub F);

impl<F: Fn(u32)> Doorbell for DoorbellFn<F> {
    #[inline(always)]
    fn ring(&self, value: u32) {
        (self.0)(value);
    }
}

impl<F: Fn(u32)> core::fmt::Debug for DoorbellFn<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DoorbellFn")
    }
}

#[cfg(all(test, not(dma_loom)))]
mod tests {
    use super::{AtomicDoorbell, Doorbell};

    #[test]
    fn take_returns_each_write_once_and_leaves_the_idle_value() {
        const IDLE: u32 = u32::MAX;
        let db = AtomicDoorbell::new(IDLE);
        assert_eq!(db.take(IDLE), None, "never written");
        db.ring(0);
        assert_eq!(db.value(), 0);
        assert_eq!(db.take(IDLE), Some(0));
        assert_eq!(db.take(IDLE), None, "the write was consumed");
        assert_eq!(db.value(), IDLE);
        db.ring(5);
        db.ring(6);
        assert_eq!(db.take(IDLE), Some(6), "the last write wins");
        assert_eq!(db.rings(), 3);
    }
}
