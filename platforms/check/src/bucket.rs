//! Hash maps from an address to a list that is nearly always one long.

use alloc::vec::Vec;
use core::iter;

use foldhash::fast::FixedState;
use hashbrown::hash_map::{Entry, OccupiedEntry};
use hashbrown::HashMap;

/// One or more values in insertion order: the first inline, the rest in a
/// `Vec` that allocates only when there are two. The usual single record
/// (or line span) per key then costs no allocation of its own.
pub(crate) struct Bucket<T> {
    first: T,
    more: Vec<T>,
}

impl<T> Bucket<T> {
    /// The oldest value.
    pub(crate) fn first(&self) -> &T {
        &self.first
    }

    /// Whether this holds one value (the usual case).
    pub(crate) fn is_single(&self) -> bool {
        self.more.is_empty()
    }

    /// The values, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        iter::once(&self.first).chain(self.more.iter())
    }
}

/// An occupied bucket of a [`BucketMap`], found once.
pub(crate) struct Slot<'a, T>(OccupiedEntry<'a, u64, Bucket<T>, FixedState>);

impl<T> Slot<'_, T> {
    /// The values here, oldest first.
    pub(crate) fn bucket(&self) -> &Bucket<T> {
        self.0.get()
    }

    /// Removes the value at position `at` (oldest first, as
    /// [`Bucket::iter`] counts), dropping the bucket when it was the last.
    ///
    /// `at` must be a position [`Bucket::iter`] yields; callers take it
    /// from there.
    pub(crate) fn remove_at(mut self, at: usize) -> T {
        let bucket = self.0.get_mut();
        if at > 0 {
            return bucket.more.remove(at - 1);
        }
        if bucket.more.is_empty() {
            return self.0.remove().first;
        }
        let next = bucket.more.remove(0);
        core::mem::replace(&mut bucket.first, next)
    }
}

/// Buckets by a `u64` key (an address or a line number).
pub(crate) struct BucketMap<T> {
    // A fixed hasher: the checker must be `const`-constructible, and the
    // keys are addresses the platform handed out, not attacker input.
    map: HashMap<u64, Bucket<T>, FixedState>,
}

impl<T> BucketMap<T> {
    pub(crate) const fn new() -> Self {
        Self {
            map: HashMap::with_hasher(FixedState::with_seed(0x5eed_d3a0_c4ec_0001)),
        }
    }

    /// Appends `value` to the bucket at `key` (as its youngest); returns
    /// the bucket.
    pub(crate) fn push(&mut self, key: u64, value: T) -> &Bucket<T> {
        let bucket = match self.map.entry(key) {
            Entry::Occupied(bucket) => {
                let bucket = bucket.into_mut();
                bucket.more.push(value);
                bucket
            }
            Entry::Vacant(slot) => slot.insert(Bucket {
                first: value,
                more: Vec::new(),
            }),
        };
        bucket
    }

    /// The bucket at `key`, if any.
    pub(crate) fn get(&self, key: u64) -> Option<&Bucket<T>> {
        self.map.get(&key)
    }

    /// The bucket at `key`, held so that a value chosen by looking at it
    /// can be removed without hashing and probing a second time.
    pub(crate) fn slot(&mut self, key: u64) -> Option<Slot<'_, T>> {
        match self.map.entry(key) {
            Entry::Occupied(entry) => Some(Slot(entry)),
            Entry::Vacant(_) => None,
        }
    }

    /// Removes the oldest value at `key` for which `is` holds, dropping the
    /// bucket when it was the last.
    pub(crate) fn remove(&mut self, key: u64, is: impl Fn(&T) -> bool) -> Option<T> {
        let slot = self.slot(key)?;
        let at = slot.bucket().iter().position(is)?;
        Some(slot.remove_at(at))
    }

    /// Every value, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.map.values().flat_map(Bucket::iter)
    }

    /// How many keys hold values.
    pub(crate) fn keys(&self) -> usize {
        self.map.len()
    }

    /// Forgets everything (keeping the table's memory).
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::BucketMap;

    fn at(map: &BucketMap<u32>, key: u64) -> Vec<u32> {
        map.get(key)
            .into_iter()
            .flat_map(|b| b.iter())
            .copied()
            .collect()
    }

    #[test]
    fn values_stay_oldest_first_through_removals() {
        let mut map = BucketMap::new();
        for v in [1, 2, 3, 4] {
            map.push(7, v);
        }
        map.push(8, 9);
        assert_eq!(at(&map, 7), [1, 2, 3, 4]);
        assert_eq!(map.remove(7, |&v| v == 3), Some(3));
        assert_eq!(map.remove(7, |&v| v == 1), Some(1));
        assert_eq!(map.remove(7, |&v| v == 5), None);
        assert_eq!(at(&map, 7), [2, 4]);
        assert_eq!(map.get(7).map(|b| *b.first()), Some(2));
        assert_eq!(map.remove(7, |&v| v == 2), Some(2));
        assert_eq!(map.remove(7, |&v| v == 4), Some(4));
        assert!(map.get(7).is_none(), "an emptied bucket is dropped");
        assert_eq!(map.keys(), 1);
        assert_eq!(map.values().copied().collect::<Vec<_>>(), [9]);
        map.clear();
        assert_eq!(map.keys(), 0);
    }
}
