//! Indirect descriptor tables (virtio 1.2 §2.7.5.3 split, §2.8.19 packed),
//! with `VIRTIO_F_INDIRECT_DESC` negotiated.
//!
//! A request added with `add_indirect` takes one descriptor in the ring,
//! flagged `INDIRECT`, whose buffer is a table of the request's
//! descriptors in driver-owned DMA memory. The tables are preallocated
//! with the queue, one per slot (split: per head descriptor; packed: per
//! slot of the id table), so adding allocates nothing; a slot's table is
//! rewritten only after the device used that slot's request.
//!
//! The spec's rules hold by construction: the ring descriptor has
//! `INDIRECT` and nothing else of `NEXT`/`WRITE` (no `NEXT` with
//! `INDIRECT`), table entries never have `INDIRECT` (no nested tables), the
//! table's length is a whole number of 16-byte descriptors, and packed
//! table entries carry no flag but `WRITE` and no id. A request has at most
//! as many segments as the queue has entries (§2.7.5.3.1: no chain longer
//! than the queue size).
//!
//! The device may write anything into the tables: the driver never reads
//! them back (chains are returned by the driver's own records).

use dma_core::DmaAddr;

use super::Segment;
use crate::memory::check_memory;
use crate::{Rejected, RingError, RingErrorKind, RingMemory};

/// Bytes of one descriptor in an indirect table (both layouts).
pub const INDIRECT_DESC_SIZE: usize = 16;

/// Where a queue's indirect tables sit in their memory: `tables` tables
/// (one per queue entry) of `entries` descriptors each, back to back, each
/// 16-aligned when the memory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndirectLayout {
    /// Tables (the queue size).
    pub tables: u16,
    /// Descriptors per table: the most segments of one indirect request.
    pub entries: u16,
    /// Total bytes.
    pub bytes: usize,
}

impl IndirectLayout {
    /// The layout for a queue of `queue_size` entries whose indirect
    /// requests have up to `entries` segments.
    ///
    /// # Errors
    ///
    /// [`InvalidSize`](RingErrorKind::InvalidSize) (with `entries`) for
    /// `entries` of 0 or above `queue_size` (a chain may not be longer
    /// than the queue, §2.7.5.3.1), or a total that does not fit `usize`.
    pub const fn new(queue_size: u16, entries: u16) -> crate::Result<Self> {
        if entries == 0 || entries > queue_size {
            return Err(RingError::with(RingErrorKind::InvalidSize, entries as u64));
        }
        let per_table = entries as usize * INDIRECT_DESC_SIZE;
        let Some(bytes) = per_table.checked_mul(queue_size as usize) else {
            return Err(RingError::with(RingErrorKind::InvalidSize, entries as u64));
        };
        Ok(Self {
            tables: queue_size,
            entries,
            bytes,
        })
    }

    /// Offset of table `slot`.
    pub const fn table(&self, slot: u16) -> usize {
        slot as usize * self.entries as usize * INDIRECT_DESC_SIZE
    }
}

/// A queue's indirect tables: their memory and layout.
pub(crate) struct Indirect<M> {
    mem: M,
    layout: IndirectLayout,
}

impl<M: RingMemory> Indirect<M> {
    /// Tables for a queue of `queue_size` in `mem` (16-aligned, at least
    /// [`IndirectLayout::bytes`] long), or `mem` back with the reason.
    fn new(mem: M, queue_size: u16, entries: u16) -> Result<Self, Rejected<M>> {
        let checked = IndirectLayout::new(queue_size, entries)
            .and_then(|layout| check_memory(&mem, layout.bytes, 16).map(|()| layout));
        match checked {
            Ok(layout) => Ok(Self { mem, layout }),
            Err(error) => Err(Rejected {
                error,
                buffers: mem,
            }),
        }
    }

    /// `set_indirect` of both layouts: puts tables for a queue of
    /// `queue_size` in `current` if the queue is `idle` (nothing in flight,
    /// nothing unreclaimed) and returns the ones replaced.
    pub(crate) fn install(
        current: &mut Option<Self>,
        idle: bool,
        queue_size: u16,
        mem: M,
        entries: u16,
    ) -> Result<Option<M>, Rejected<M>> {
        if !idle {
            return Err(Rejected::new(RingErrorKind::Busy, mem));
        }
        let tables = Self::new(mem, queue_size, entries)?;
        Ok(current.replace(tables).map(Self::into_memory))
    }

    pub(crate) fn memory(&self) -> &M {
        &self.mem
    }

    fn into_memory(self) -> M {
        self.mem
    }

    pub(crate) fn entries(&self) -> u16 {
        self.layout.entries
    }

    /// Writes the request's segments into table `slot` (`slot` below the
    /// queue size, `readable.len() + writable.len()` from 1 to
    /// [`entries`](Self::entries)), with `tail(k, last, writable)` giving
    /// entry `k`'s last two 16-bit words (split: flags, next; packed: id,
    /// flags). Returns the table as the ring descriptor's buffer.
    pub(crate) fn fill(
        &self,
        slot: u16,
        readable: &[Segment],
        writable: &[Segment],
        tail: impl Fn(u16, bool, bool) -> [u16; 2],
    ) -> Segment {
        let total = readable.len() + writable.len();
        debug_assert!(
            slot < self.layout.tables && (1..=usize::from(self.entries())).contains(&total)
        );
        let table = self.layout.table(slot);
        for (k, (seg, write)) in super::segments(readable, writable).enumerate() {
            let base = table + k * INDIRECT_DESC_SIZE;
            let [w12, w14] = tail(k as u16, k + 1 == total, write);
            // SAFETY: slot < tables, k < total <= entries (callers' checks):
            // 16 bytes inside table `slot`, in memory `new` sized for the
            // layout; `base` is 16-aligned because the memory is.
            unsafe {
                self.mem.write_u64(base, seg.addr.as_u64());
                self.mem.write_u32(base + 8, seg.len);
                self.mem.write_u16(base + 12, w12);
                self.mem.write_u16(base + 14, w14);
            }
        }
        let addr = self.mem.dma_addr().as_u64().wrapping_add(table as u64);
        // total <= entries <= 32768, so 16 * total fits u32.
        Segment::new(DmaAddr::new(addr), (total * INDIRECT_DESC_SIZE) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::IndirectLayout;
    use crate::RingErrorKind;

    #[test]
    fn layout_is_one_table_per_entry_of_whole_descriptors() {
        let l = IndirectLayout::new(8, 3).unwrap();
        assert_eq!((l.tables, l.entries, l.bytes), (8, 3, 8 * 3 * 16));
        assert_eq!(l.table(2), 96);
        for bad in [0, 9] {
            let e = IndirectLayout::new(8, bad).unwrap_err();
            assert_eq!(
                (e.kind(), e.value()),
                (RingErrorKind::InvalidSize, Some(bad.into()))
            );
        }
    }
}
