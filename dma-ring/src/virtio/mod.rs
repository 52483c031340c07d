//! Virtio virtqueues (Virtual I/O Device spec 1.2): [`split`] (§2.7) and
//! [`packed`] (§2.8).
//!
//! Both take a request as device-readable segments followed by
//! device-writable ones, own its buffers until the device returns it, and
//! check what the device writes back: the buffer id or head, the length
//! written against the writable bytes posted, and how far the device's
//! index moved. The notification is any [`Doorbell`](crate::Doorbell):
//! written with the queue index (virtio-pci's notify address, virtio-mmio's
//! `QueueNotify`), and only when the device's event suppression asks for it.
//!
//! With `VIRTIO_F_INDIRECT_DESC` negotiated, a queue given indirect tables
//! (`set_indirect`, sized by [`IndirectLayout`]) also takes a request as
//! one ring descriptor pointing to a table of its descriptors
//! (`add_indirect`): a long request then takes one ring entry, not one per
//! segment.
//!
//! ```
//! use dma_core::{Coherent, DeviceConstraints, DmaAddr, HostMemory};
//! use dma_direct::DirectPlatform;
//! use dma_ring::virtio::split::{SplitLayout, SplitQueue};
//! use dma_ring::virtio::{IndirectLayout, Segment};
//! use dma_ring::{slot_vec, AtomicDoorbell};
//!
//! let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
//! let (size, entries) = (64, 16);
//! let ring = Coherent::zeroed_slice(&platform, SplitLayout::new(size)?.bytes.div_ceil(8))?;
//! let tables = Coherent::zeroed_slice(&platform, IndirectLayout::new(size, entries)?.bytes.div_ceil(8))?;
//! let notify = AtomicDoorbell::default();
//! let mut q = SplitQueue::new(ring, size, 0, &notify, true, slot_vec::<&str>(size.into()))?;
//! // After VIRTIO_F_INDIRECT_DESC was negotiated:
//! q.set_indirect(tables, entries).map_err(|r| r.error)?;
//!
//! let header = Segment::new(DmaAddr::new(0x10_0000), 16);
//! let pages: Vec<Segment> = (0..8).map(|i| Segment::new(DmaAddr::new(0x20_0000 + 4096 * i), 4096)).collect();
//! let status = Segment::new(DmaAddr::new(0x30_0000), 1);
//! let mut readable = vec![header];
//! readable.extend(&pages);
//! q.add_indirect(&readable, &[status], "a 32 KiB write").map_err(|r| r.error)?;
//! assert_eq!(q.num_free(), size - 1); // ten segments, one ring descriptor
//! assert!(q.notify());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod indirect;
pub mod packed;
pub mod split;

pub use indirect::{IndirectLayout, INDIRECT_DESC_SIZE};

use dma_core::DmaAddr;

/// One buffer of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where the device reaches it.
    pub addr: DmaAddr,
    /// Its length in bytes.
    pub len: u32,
}

impl Segment {
    /// A segment of `len` bytes at `addr`.
    pub const fn new(addr: DmaAddr, len: u32) -> Self {
        Self { addr, len }
    }
}

/// A request the device has used: its buffers back, with the bytes written.
#[derive(Debug)]
pub struct Used<T> {
    /// The buffers given when the request was added.
    pub buffers: T,
    /// Bytes the device wrote into the writable segments (checked against
    /// their total).
    pub len: u32,
    /// The descriptor head (split) or buffer id (packed) it ran under.
    pub id: u16,
}

/// Whether an event index `event` lies in the indices just published,
/// `old` (exclusive) to `new` (inclusive) in free-running 16-bit
/// arithmetic: virtio 1.2 §2.7.10's rule for `VIRTIO_F_EVENT_IDX`
/// (`(u16)(new - event - 1) < (u16)(new - old)`).
pub const fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Total of the segment lengths, or `None` on overflow.
fn total_len(segments: &[Segment]) -> Option<u32> {
    segments
        .iter()
        .try_fold(0u32, |sum, s| sum.checked_add(s.len))
}

/// The request's segments in order, each with whether it is
/// device-writable.
pub(crate) fn segments<'a>(
    readable: &'a [Segment],
    writable: &'a [Segment],
) -> impl Iterator<Item = (&'a Segment, bool)> {
    let readable = readable.iter().map(|s| (s, false));
    readable.chain(writable.iter().map(|s| (s, true)))
}

/// The device address of an area `offset` bytes into the ring memory.
pub(crate) fn area_addr<M: crate::RingMemory>(mem: &M, offset: usize) -> DmaAddr {
    DmaAddr::new(mem.dma_addr().as_u64().wrapping_add(offset as u64))
}

/// The checks both queue layouts make before adding a request: the queue
/// is not broken, a reset's buffers were all handed back, the request has
/// 1 to `limit` segments (the queue size, or the indirect table's entries),
/// its total bytes fit `u32` (virtio 1.2 §2.7.5.2: a chain's total length
/// must not exceed 2^32 - 1), and enough descriptors are free (one for an
/// `indirect` request). Returns the segment count and the writable length,
/// or the buffers back with the reason.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_request<T, S: crate::SlotStorage<T>>(
    broken: bool,
    slots: &crate::slots::SlotTable<T, S>,
    readable: &[Segment],
    writable: &[Segment],
    limit: u16,
    num_free: u16,
    indirect: bool,
    buffers: T,
) -> Result<(usize, u32, T), crate::Rejected<T>> {
    use crate::{Rejected, RingErrorKind};
    if broken {
        return Err(Rejected::new(RingErrorKind::Broken, buffers));
    }
    if let Err(kind) = slots.check_reclaimed() {
        return Err(Rejected::new(kind, buffers));
    }
    let total = readable.len() + writable.len();
    let lengths = total_len(readable).zip(total_len(writable));
    let Some((writable_len, _)) =
        lengths.and_then(|(r, w)| r.checked_add(w).map(|total| (w, total)))
    else {
        return Err(Rejected::new(RingErrorKind::BadRequest, buffers));
    };
    if total == 0 || total > usize::from(limit) {
        return Err(Rejected::new(RingErrorKind::BadRequest, buffers));
    }
    let needed = if indirect { 1 } else { total };
    if needed > usize::from(num_free) {
        return Err(Rejected::new(RingErrorKind::Full, buffers));
    }
    Ok((total, writable_len, buffers))
}

#[cfg(test)]
mod tests {
    use super::need_event;

    #[test]
    fn need_event_matches_the_spec_formula_across_wrap() {
        assert!(need_event(0, 1, 0));
        assert!(!need_event(1, 1, 0));
        assert!(need_event(65535, 2, 65534));
        assert!(need_event(0, 2, 65534));
        assert!(!need_event(5, 2, 65534));
    }
}
