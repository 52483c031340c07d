//! Who owns each byte of a streaming mapping, for checking platforms: the
//! device (after map and `sync_for_device`) or the CPU (after
//! `sync_for_cpu`), per byte range, so that a `sync_range_for_cpu` hands
//! back exactly its range.

use alloc::vec::Vec;

/// The CPU-owned byte ranges of one mapping (offsets into it), sorted and
/// disjoint; every other byte is the device's. A new mapping is all the
/// device's, and costs no allocation until its first sync for the CPU.
///
/// Checking platforms (`dma-check`, the sim) keep one per mapping and
/// compare each [`cpu_access`](crate::DmaMap::cpu_access) and device
/// access against it.
///
/// ```
/// use dma_core::CpuOwned;
///
/// let mut owned = CpuOwned::default(); // just mapped: the device's
/// owned.take(0, 128); // sync_range_for_cpu(0, 128)
/// assert_eq!(owned.first_not_owned(0, 256), Some(128)); // a read of 256 bytes
/// owned.give(0, 128); // sync_range_for_device(0, 128)
/// assert!(owned.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuOwned(Ranges);

/// The ranges, normalised so that equal sets compare equal: no range is
/// `None`, exactly one is `One` (the usual state, a whole-buffer sync, kept
/// inline so a checked sync allocates nothing), two or more are `Many`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Ranges {
    #[default]
    None,
    One([(u64, u64); 1]),
    Many(Vec<(u64, u64)>),
}

impl Ranges {
    fn as_slice(&self) -> &[(u64, u64)] {
        match self {
            Self::None => &[],
            Self::One(r) => r,
            Self::Many(v) => v,
        }
    }

    fn from_vec(mut v: Vec<(u64, u64)>) -> Self {
        match v.len() {
            0 => Self::None,
            1 => Self::One([v[0]]),
            _ => {
                v.shrink_to_fit();
                Self::Many(v)
            }
        }
    }
}

impl CpuOwned {
    /// The CPU takes bytes `[lo, hi)` (`sync_for_cpu`).
    // Inline: a checked sync takes a range on every call, nearly always
    // the first or a touching one; merging into several is out of line.
    #[inline]
    pub fn take(&mut self, lo: u64, hi: u64) {
        if lo >= hi {
            return;
        }
        match &mut self.0 {
            Ranges::None => self.0 = Ranges::One([(lo, hi)]),
            // Touching the one range: it grows in place.
            Ranges::One([(a, b)]) if !(*b < lo || *a > hi) => {
                *a = (*a).min(lo);
                *b = (*b).max(hi);
            }
            _ => self.take_merging(lo, hi),
        }
    }

    /// `take` where `[lo, hi)` joins two or more ranges, or the one range
    /// without touching it.
    #[inline(never)]
    fn take_merging(&mut self, mut lo: u64, mut hi: u64) {
        let mut v = self.0.as_slice().to_vec();
        // Merge with every range touching [lo, hi).
        v.retain(|&(a, b)| {
            if b < lo || a > hi {
                return true;
            }
            lo = lo.min(a);
            hi = hi.max(b);
            false
        });
        let at = v.partition_point(|&(a, _)| a < lo);
        v.insert(at, (lo, hi));
        self.0 = Ranges::from_vec(v);
    }

    /// The device gets bytes `[lo, hi)` back (`sync_for_device`).
    pub fn give(&mut self, lo: u64, hi: u64) {
        let owned = self.0.as_slice();
        if lo >= hi || owned.iter().all(|&(a, b)| b <= lo || a >= hi) {
            return;
        }
        if let [(a, b)] = *owned {
            // The one range loses [lo, hi): what is left of it either side.
            self.0 = match (a < lo, b > hi) {
                (false, false) => Ranges::None,
                (true, false) => Ranges::One([(a, lo)]),
                (false, true) => Ranges::One([(hi, b)]),
                (true, true) => Ranges::Many(alloc::vec![(a, lo), (hi, b)]),
            };
            return;
        }
        let mut kept = Vec::with_capacity(owned.len() + 1);
        for &(a, b) in owned {
            if b <= lo || a >= hi {
                kept.push((a, b));
                continue;
            }
            if a < lo {
                kept.push((a, lo));
            }
            if b > hi {
                kept.push((hi, b));
            }
        }
        self.0 = Ranges::from_vec(kept);
    }

    /// The first byte of `[lo, hi)` the CPU owns, if any.
    pub fn first_owned(&self, lo: u64, hi: u64) -> Option<u64> {
        self.0
            .as_slice()
            .iter()
            .find(|&&(a, b)| a < hi && b > lo)
            .map(|&(a, _)| a.max(lo))
    }

    /// The first byte of `[lo, hi)` the CPU does not own, if any.
    pub fn first_not_owned(&self, lo: u64, hi: u64) -> Option<u64> {
        let mut at = lo;
        for &(a, b) in self.0.as_slice() {
            if at >= hi {
                return None;
            }
            if b <= at {
                continue;
            }
            if a > at {
                return Some(at);
            }
            at = b;
        }
        (at < hi).then_some(at)
    }

    /// Whether the device owns every byte.
    pub fn is_empty(&self) -> bool {
        matches!(self.0, Ranges::None)
    }
}

#[cfg(test)]
mod tests {
    use super::CpuOwned;

    #[test]
    fn take_and_give_split_and_merge_ranges() {
        let mut o = CpuOwned::default();
        assert!(o.is_empty());
        o.take(64, 128);
        o.take(0, 64);
        assert_eq!(o.0.as_slice(), [(0, 128)]);
        assert_eq!(o.first_not_owned(0, 128), None);
        assert_eq!(o.first_not_owned(0, 129), Some(128));
        o.give(32, 96);
        assert_eq!(o.0.as_slice(), [(0, 32), (96, 128)]);
        assert_eq!(o.first_owned(32, 96), None);
        assert_eq!(o.first_owned(40, 100), Some(96));
        assert_eq!(o.first_not_owned(0, 40), Some(32));
        o.take(200, 300);
        o.take(120, 210);
        assert_eq!(o.0.as_slice(), [(0, 32), (96, 300)]);
        o.give(0, 300);
        assert!(o.is_empty());
    }

    /// A byte-per-flag model of the same sequence of syncs.
    fn model_first_not_owned(bytes: &[bool], lo: u64, hi: u64) -> Option<u64> {
        (lo..hi).find(|&i| !bytes[i as usize])
    }

    proptest::proptest! {
        /// Whatever the order of takes and gives, the ranges (inline or
        /// not) own exactly the bytes a per-byte model owns, and a set that
        /// is equal compares equal.
        #[test]
        fn ranges_match_a_per_byte_model(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u64..64, 0u64..64), 0..24)
        ) {
            let mut owned = CpuOwned::default();
            let mut bytes = [false; 64];
            for (take, a, b) in ops {
                let (lo, hi) = (a.min(b), a.max(b));
                if take { owned.take(lo, hi) } else { owned.give(lo, hi) }
                bytes[lo as usize..hi as usize].fill(take);
                for lo in 0..64 {
                    proptest::prop_assert_eq!(
                        owned.first_not_owned(lo, 64),
                        model_first_not_owned(&bytes, lo, 64)
                    );
                    let first_owned = (lo..64).find(|&i| bytes[i as usize]);
                    proptest::prop_assert_eq!(owned.first_owned(lo, 64), first_owned);
                }
                proptest::prop_assert_eq!(owned.is_empty(), !bytes.contains(&true));
                let mut rebuilt = CpuOwned::default();
                for &(a, b) in owned.0.as_slice() {
                    rebuilt.take(a, b);
                }
                proptest::prop_assert_eq!(&rebuilt, &owned);
            }
        }
    }
}
