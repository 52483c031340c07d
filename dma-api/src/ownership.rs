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
pub struct CpuOwned(Vec<(u64, u64)>);

impl CpuOwned {
    /// The CPU takes bytes `[lo, hi)` (`sync_for_cpu`).
    pub fn take(&mut self, lo: u64, hi: u64) {
        if lo >= hi {
            return;
        }
        let (mut lo, mut hi) = (lo, hi);
        // Merge with every range touching [lo, hi).
        self.0.retain(|&(a, b)| {
            if b < lo || a > hi {
                return true;
            }
            lo = lo.min(a);
            hi = hi.max(b);
            false
        });
        let at = self.0.partition_point(|&(a, _)| a < lo);
        self.0.insert(at, (lo, hi));
    }

    /// The device gets bytes `[lo, hi)` back (`sync_for_device`).
    pub fn give(&mut self, lo: u64, hi: u64) {
        if lo >= hi || self.0.is_empty() {
            return;
        }
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
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
        self.0 = kept;
    }

    /// The first byte of `[lo, hi)` the CPU owns, if any.
    pub fn first_owned(&self, lo: u64, hi: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|&&(a, b)| a < hi && b > lo)
            .map(|&(a, _)| a.max(lo))
    }

    /// The first byte of `[lo, hi)` the CPU does not own, if any.
    pub fn first_not_owned(&self, lo: u64, hi: u64) -> Option<u64> {
        let mut at = lo;
        for &(a, b) in &self.0 {
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
        self.0.is_empty()
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
        assert_eq!(o.0, alloc::vec![(0, 128)]);
        assert_eq!(o.first_not_owned(0, 128), None);
        assert_eq!(o.first_not_owned(0, 129), Some(128));
        o.give(32, 96);
        assert_eq!(o.0, alloc::vec![(0, 32), (96, 128)]);
        assert_eq!(o.first_owned(32, 96), None);
        assert_eq!(o.first_owned(40, 100), Some(96));
        assert_eq!(o.first_not_owned(0, 40), Some(32));
        o.take(200, 300);
        o.take(120, 210);
        assert_eq!(o.0, alloc::vec![(0, 32), (96, 300)]);
        o.give(0, 300);
        assert!(o.is_empty());
    }
}
