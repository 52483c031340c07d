//! An ordered map in two sorted vectors (keys, values), for the machine's
//! small hot indexes (live regions, the physical map's extents): a few
//! dozen entries at most in a run, looked up several times per simulated
//! command. A binary search over a contiguous key array costs a fraction
//! of a B-tree descent, and inserting or removing moves a few hundred
//! bytes, which is cheaper than a B-tree's node surgery at these sizes.
//! Large maps stay correct, with linear-time inserts.

use core::ops::{Bound, Index, RangeBounds};

/// Keys in ascending order, each with its value at the same index.
#[derive(Debug)]
pub(crate) struct SortedMap<K, V> {
    keys: Vec<K>,
    vals: Vec<V>,
}

impl<K: Ord + Copy, V> SortedMap<K, V> {
    /// An empty map.
    #[inline]
    pub(crate) const fn new() -> Self {
        Self {
            keys: Vec::new(),
            vals: Vec::new(),
        }
    }

    /// How many entries.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Index of the first key not below `k`.
    #[inline]
    fn lower(&self, k: &K) -> usize {
        self.keys.partition_point(|x| x < k)
    }

    /// Where `k` is, if present.
    #[inline]
    fn find(&self, k: &K) -> Option<usize> {
        let i = self.lower(k);
        (i < self.keys.len() && self.keys[i] == *k).then_some(i)
    }

    /// The value at `k`.
    #[inline]
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.find(k).map(|i| &self.vals[i])
    }

    /// The value at `k`, to change in place.
    #[inline]
    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.find(k).map(|i| &mut self.vals[i])
    }

    /// Sets `k` to `v`; returns the value it replaced.
    #[inline]
    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        let i = self.lower(&k);
        if i < self.keys.len() && self.keys[i] == k {
            return Some(core::mem::replace(&mut self.vals[i], v));
        }
        self.keys.insert(i, k);
        self.vals.insert(i, v);
        None
    }

    /// Takes the entry at `k` out.
    #[inline]
    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.find(k)?;
        self.keys.remove(i);
        Some(self.vals.remove(i))
    }

    /// The index span of the keys in `r`.
    #[inline]
    fn span(&self, r: &impl RangeBounds<K>) -> (usize, usize) {
        let lo = match r.start_bound() {
            Bound::Included(k) => self.lower(k),
            Bound::Excluded(k) => self.keys.partition_point(|x| x <= k),
            Bound::Unbounded => 0,
        };
        let hi = match r.end_bound() {
            Bound::Included(k) => self.keys.partition_point(|x| x <= k),
            Bound::Excluded(k) => self.lower(k),
            Bound::Unbounded => self.keys.len(),
        };
        (lo, hi.max(lo))
    }

    /// The entries with keys in `r`, in key order (both ends iterate).
    #[inline]
    pub(crate) fn range(
        &self,
        r: impl RangeBounds<K>,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        let (lo, hi) = self.span(&r);
        self.keys[lo..hi].iter().zip(&self.vals[lo..hi])
    }

    /// The last entry with a key in `r`, to change in place.
    #[inline]
    pub(crate) fn last_in_mut(&mut self, r: impl RangeBounds<K>) -> Option<(&K, &mut V)> {
        let (lo, hi) = self.span(&r);
        (hi > lo).then(|| (&self.keys[hi - 1], &mut self.vals[hi - 1]))
    }

    /// Every value, in key order.
    #[inline]
    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.vals.iter()
    }
}

impl<K: Ord + Copy, V> Index<&K> for SortedMap<K, V> {
    type Output = V;

    /// The value at `k`; panics when absent, as `BTreeMap`'s index does
    /// (callers index only keys they just read from the map).
    #[inline]
    fn index(&self, k: &K) -> &V {
        self.get(k).expect("key present in SortedMap")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::rng::SplitMix64;

    /// Every operation agrees with `BTreeMap` over a seeded random mix.
    #[test]
    fn agrees_with_btreemap() {
        let mut rng = SplitMix64::new(7);
        let (mut ours, mut theirs) = (SortedMap::new(), BTreeMap::new());
        for step in 0..20_000u64 {
            let k = rng.below(64);
            match rng.below(5) {
                0 | 1 => assert_eq!(ours.insert(k, step), theirs.insert(k, step)),
                2 => assert_eq!(ours.remove(&k), theirs.remove(&k)),
                3 => {
                    assert_eq!(ours.get(&k), theirs.get(&k));
                    if let (Some(a), Some(b)) = (ours.get_mut(&k), theirs.get_mut(&k)) {
                        *a += 1;
                        *b += 1;
                    }
                }
                _ => {
                    let j = rng.below(64);
                    let got: Vec<_> = ours.range(k..j.max(k)).collect();
                    let want: Vec<_> = theirs.range(k..j.max(k)).collect();
                    assert_eq!(got, want);
                    let got: Vec<_> = ours.range(..=k).rev().collect();
                    let want: Vec<_> = theirs.range(..=k).rev().collect();
                    assert_eq!(got, want);
                    let got: Vec<_> = ours.range((Bound::Excluded(k), Bound::Unbounded)).collect();
                    let want: Vec<_> = theirs
                        .range((Bound::Excluded(k), Bound::Unbounded))
                        .collect();
                    assert_eq!(got, want);
                    let got = ours.last_in_mut(..=k).map(|(k, v)| (*k, *v));
                    let want = theirs.range_mut(..=k).next_back().map(|(k, v)| (*k, *v));
                    assert_eq!(got, want);
                }
            }
            assert_eq!(ours.len(), theirs.len());
        }
        assert!(ours.values().eq(theirs.values()));
        let k = *theirs.keys().next().unwrap();
        assert_eq!(ours[&k], theirs[&k]);
    }
}
