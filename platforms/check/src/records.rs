//! The live records, found by device address in constant time.
//!
//! Every checked call looks its mapping up by device address, so this is
//! the checker's hot path. A hash map from address to the slab positions of
//! the records there (nearly always one, held inline) costs one hash and
//! one probe per call and no allocation once the table and slab have grown;
//! the B-tree it replaced cost two descents per lookup and a boxed record
//! per map (measured with callgrind, docs/performance.md). Several records
//! share an address only when one buffer is mapped twice on a direct
//! platform; they are kept oldest first, as the B-tree's `(address, id)`
//! order kept them.

use alloc::vec::Vec;

use dma_core::CpuOwned;

use crate::bucket::{BucketMap, Slot};
use crate::report::Mapping;

/// One live mapping or allocation and what the checker keeps beside it.
pub(crate) struct Live {
    pub(crate) mapping: Mapping,
    /// Its first and last cache line when it is tracked for cache-line
    /// overlap.
    pub(crate) lines: Lines,
    /// The bytes the CPU owns (taken by syncs for the CPU, handed back by
    /// syncs for the device); the rest are the device's.
    pub(crate) cpu_owned: CpuOwned,
}

/// A record's first and last cache line, if it is tracked: an
/// `Option<(u64, u64)>` without the tag word, which keeps a record's bucket
/// small enough to move with inline stores (docs/performance.md).
#[derive(Clone, Copy)]
pub(crate) struct Lines {
    first: u64,
    last: u64,
}

impl Lines {
    /// Untracked: no span has its first line after its last.
    pub(crate) const NONE: Self = Self { first: 1, last: 0 };

    pub(crate) fn new(lines: Option<(u64, u64)>) -> Self {
        match lines {
            Some((first, last)) if first <= last => Self { first, last },
            _ => Self::NONE,
        }
    }

    /// The first and last line, if tracked.
    pub(crate) fn get(self) -> Option<(u64, u64)> {
        (self.first <= self.last).then_some((self.first, self.last))
    }
}

/// A key names a record: its device address and its id.
pub(crate) type Key = (u64, u64);

/// Live records by device address.
///
/// The records sit in a slab and the hash table holds only their slab
/// positions, so a map or an unmap moves a word into or out of the table
/// instead of a whole record (a `memcpy` call of the ~150-byte bucket per
/// map, docs/performance.md); a freed position is reused by the next map.
pub(crate) struct Records {
    by_dma: BucketMap<usize>,
    slab: Vec<Option<Live>>,
    /// Positions in `slab` that hold `None`, the most recently freed last.
    free: Vec<usize>,
}

impl Records {
    pub(crate) const fn new() -> Self {
        Self {
            by_dma: BucketMap::new(),
            slab: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Adds a record; its id must be larger than any live one's.
    #[inline]
    pub(crate) fn insert(&mut self, live: Live) {
        let dma = live.mapping.dma.as_u64();
        let at = match self.free.pop() {
            Some(at) => {
                self.slab[at] = Some(live);
                at
            }
            None => {
                self.slab.push(Some(live));
                self.slab.len() - 1
            }
        };
        self.by_dma.push(dma, at);
    }

    /// The records at `dma`, oldest first, with their keys.
    pub(crate) fn at(&self, dma: u64) -> impl Iterator<Item = (Key, &Live)> {
        let slab = &self.slab;
        self.by_dma
            .get(dma)
            .into_iter()
            .flat_map(|b| b.iter())
            .filter_map(move |&at| slab[at].as_ref())
            .map(move |l| ((dma, l.mapping.id), l))
    }

    /// The record `key` names.
    pub(crate) fn get(&self, key: Key) -> Option<&Live> {
        self.at(key.0).find(|(k, _)| *k == key).map(|(_, l)| l)
    }

    /// The oldest record at `dma` for which `is` holds, else the oldest
    /// there, for checking and updating in one lookup.
    pub(crate) fn find_mut(&mut self, dma: u64, is: impl Fn(&Live) -> bool) -> Option<&mut Live> {
        let slab = &self.slab;
        let bucket = self.by_dma.get(dma)?;
        // With one record (the usual case) it is the answer either way.
        let at = if bucket.is_single() {
            bucket.first()
        } else {
            bucket
                .iter()
                .find(|&&at| slab[at].as_ref().is_some_and(&is))
                .unwrap_or(bucket.first())
        };
        self.slab[*at].as_mut()
    }

    /// The records at `dma`, held for choosing one and removing it with a
    /// single probe (an unmap's lookup and removal).
    pub(crate) fn slot(&mut self, dma: u64) -> Option<RecordSlot<'_>> {
        Some(RecordSlot {
            slot: self.by_dma.slot(dma)?,
            slab: &self.slab,
            free: &mut self.free,
        })
    }

    /// Removes and returns the record `key` names.
    pub(crate) fn remove(&mut self, key: Key) -> Option<Live> {
        let slab = &self.slab;
        let at = self.by_dma.remove(key.0, |&at| {
            slab[at].as_ref().is_some_and(|l| l.mapping.id == key.1)
        })?;
        self.free.push(at);
        self.slab[at].take()
    }

    /// Hands the record at slab position `pos` (from
    /// [`RecordSlot::remove_at`]) to `retire` in place, then drops it.
    #[inline(always)]
    pub(crate) fn vacate(&mut self, pos: usize, retire: impl FnOnce(&Live)) {
        if let Some(live) = self.slab.get_mut(pos) {
            if let Some(l) = live.as_ref() {
                retire(l);
            }
            *live = None;
        }
    }

    /// Every record, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Live> {
        self.slab.iter().flatten()
    }

    /// Forgets every record.
    pub(crate) fn clear(&mut self) {
        self.by_dma.clear();
        self.slab.clear();
        self.free.clear();
    }
}

/// The records at one device address, found once (see [`Records::slot`]).
pub(crate) struct RecordSlot<'a> {
    slot: Slot<'a, usize>,
    slab: &'a [Option<Live>],
    free: &'a mut Vec<usize>,
}

impl RecordSlot<'_> {
    /// Whether one record is here (the usual case).
    pub(crate) fn is_single(&self) -> bool {
        self.slot.bucket().is_single()
    }

    /// The records here, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Live> {
        let slab = self.slab;
        self.slot
            .bucket()
            .iter()
            .filter_map(move |&at| slab[at].as_ref())
    }

    /// Removes the record at position `at` (oldest first, as
    /// [`iter`](Self::iter) counts) from the table and returns its slab
    /// position, for [`Records::vacate`]; the record stays in the slab
    /// until then, so it can be retired without being moved.
    #[inline]
    pub(crate) fn remove_at(self, at: usize) -> usize {
        let pos = self.slot.remove_at(at);
        self.free.push(pos);
        pos
    }
}
