//! The live records, found by device address in constant time.
//!
//! Every checked call looks its mapping up by device address, so this is
//! the checker's hot path. A hash map from address to the records there
//! (nearly always one, held inline) costs one hash and one probe per call
//! and no allocation once the table has grown; the B-tree it replaced cost
//! two descents per lookup and a boxed record per map (measured with
//! callgrind, docs/performance.md). Several records share an address only
//! when one buffer is mapped twice on a direct platform; they are kept
//! oldest first, as the B-tree's `(address, id)` order kept them.

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
pub(crate) struct Records(BucketMap<Live>);

impl Records {
    pub(crate) const fn new() -> Self {
        Self(BucketMap::new())
    }

    /// Adds a record; its id must be larger than any live one's.
    pub(crate) fn insert(&mut self, live: Live) {
        self.0.push(live.mapping.dma.as_u64(), live);
    }

    /// The records at `dma`, oldest first, with their keys.
    pub(crate) fn at(&self, dma: u64) -> impl Iterator<Item = (Key, &Live)> {
        self.0
            .get(dma)
            .into_iter()
            .flat_map(|b| b.iter())
            .map(move |l| ((dma, l.mapping.id), l))
    }

    /// The record `key` names.
    pub(crate) fn get(&self, key: Key) -> Option<&Live> {
        self.at(key.0).find(|(k, _)| *k == key).map(|(_, l)| l)
    }

    /// The oldest record at `dma` for which `is` holds, else the oldest
    /// there, for checking and updating in one lookup.
    pub(crate) fn find_mut(&mut self, dma: u64, is: impl Fn(&Live) -> bool) -> Option<&mut Live> {
        let bucket = self.0.get_mut(dma)?;
        let at = bucket.iter().position(is).unwrap_or(0);
        bucket.iter_mut().nth(at)
    }

    /// The records at `dma`, held for choosing one and removing it with a
    /// single probe (an unmap's lookup and removal).
    pub(crate) fn slot(&mut self, dma: u64) -> Option<Slot<'_, Live>> {
        self.0.slot(dma)
    }

    /// Removes and returns the record `key` names.
    pub(crate) fn remove(&mut self, key: Key) -> Option<Live> {
        self.0.remove(key.0, |l| l.mapping.id == key.1)
    }

    /// Every record, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Live> {
        self.0.values()
    }

    /// Forgets every record.
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}
