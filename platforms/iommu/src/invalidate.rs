//! IOTLB invalidation policies: when the hardware forgets an unmapped
//! range, and when its IOVAs may be handed out again.
//!
//! The invariant both keep: **an IOVA is reused only after the IOTLB entries
//! for it are invalidated and the invalidation completed** (`sync`),
//! otherwise a device could reach the next buffer through a stale entry.
//!
//! - [`Strict`] invalidates the range and waits on every unmap (Linux's
//!   `iommu.strict=1`): no window at all, one invalidation and sync per
//!   unmap.
//! - [`Deferred`] queues unmapped ranges and invalidates the whole ASID once
//!   per batch (Linux's flush queue, `iommu.strict=0`): the cost is
//!   amortised, and until the flush the device may still reach a just
//!   unmapped buffer through a cached entry. The queue is bounded; a full
//!   queue flushes, and a timeout hook
//!   ([`IommuPlatform::on_flush_timeout`](crate::IommuPlatform::on_flush_timeout),
//!   Linux uses 10 ms) bounds the window.

use dma_core::{DmaAddr, Result};

use crate::hw::{Asid, IommuHardware};
use crate::iova::IovaRange;

/// How unmapped ranges reach the IOTLB and go back to the allocator.
///
/// `release` is given every range whose invalidation has completed, a
/// batch at a time (a deferred flush frees its whole queue under one lock
/// of the allocator's cache); the policy never gives a range to `release`
/// before `hw.sync()` returned `Ok` after that range's invalidation.
pub trait InvalidationPolicy {
    /// `range` (bytes: pages of `page_shift` bits) has just lost its
    /// translations in the page table.
    ///
    /// # Errors
    ///
    /// The hardware's `sync` error; the range is then kept out of use.
    fn unmapped(
        &mut self,
        hw: &dyn IommuHardware,
        asid: Asid,
        range: IovaRange,
        page_shift: u32,
        release: &mut dyn FnMut(&[IovaRange]),
    ) -> Result<()>;

    /// Completes every pending invalidation and releases its ranges.
    ///
    /// # Errors
    ///
    /// As for [`unmapped`](Self::unmapped).
    fn flush(
        &mut self,
        hw: &dyn IommuHardware,
        asid: Asid,
        release: &mut dyn FnMut(&[IovaRange]),
    ) -> Result<()>;

    /// Ranges waiting for a flush.
    fn pending(&self) -> usize;
}

/// Invalidate and wait on every unmap.
#[derive(Clone, Copy, Debug, Default)]
pub struct Strict;

impl InvalidationPolicy for Strict {
    fn unmapped(
        &mut self,
        hw: &dyn IommuHardware,
        asid: Asid,
        range: IovaRange,
        page_shift: u32,
        release: &mut dyn FnMut(&[IovaRange]),
    ) -> Result<()> {
        hw.invalidate_range(
            asid,
            DmaAddr::new(range.start(page_shift)),
            range.size(page_shift),
        );
        hw.sync()?;
        release(&[range]);
        Ok(())
    }

    fn flush(
        &mut self,
        _hw: &dyn IommuHardware,
        _asid: Asid,
        _release: &mut dyn FnMut(&[IovaRange]),
    ) -> Result<()> {
        Ok(())
    }

    fn pending(&self) -> usize {
        0
    }
}

/// Batch unmapped ranges in a bounded queue of `N` entries and invalidate
/// the whole ASID once per batch. Linux's flush queue holds 256 entries per
/// CPU, the default here.
#[derive(Clone, Debug)]
pub struct Deferred<const N: usize = 256> {
    queue: [IovaRange; N],
    len: usize,
    flushes: u64,
}

impl<const N: usize> Default for Deferred<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deferred<N> {
    /// An empty queue. `N` must be at least 1 (checked at compile time).
    pub const fn new() -> Self {
        const { assert!(N > 0, "a flush queue needs room for one entry") };
        Self {
            queue: [IovaRange { pfn: 0, pages: 0 }; N],
            len: 0,
            flushes: 0,
        }
    }

    /// Batches flushed so far.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }
}

impl<const N: usize> InvalidationPolicy for Deferred<N> {
    fn unmapped(
        &mut self,
        hw: &dyn IommuHardware,
        asid: Asid,
        range: IovaRange,
        _page_shift: u32,
        release: &mut dyn FnMut(&[IovaRange]),
    ) -> Result<()> {
        if self.len == N {
            self.flush(hw, asid, release)?;
        }
        self.queue[self.len] = range;
        self.len += 1;
        Ok(())
    }

    fn flush(
        &mut self,
        hw: &dyn IommuHardware,
        asid: Asid,
        release: &mut dyn FnMut(&[IovaRange]),
    ) -> Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        hw.invalidate_all(asid);
        hw.sync()?;
        release(&self.queue[..self.len]);
        self.len = 0;
        self.flushes += 1;
        Ok(())
    }

    fn pending(&self) -> usize {
        self.len
    }
}
