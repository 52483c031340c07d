//! A cache policy for tests: it reports itself non-coherent, so backends
//! take their maintenance paths, and records every operation instead of
//! performing it.
//!
//! It performs no maintenance, so it is truthful only where the hardware
//! keeps caches coherent with the memory the test uses (a hosted test
//! process): there the recorded operations are what a non-coherent CPU
//! would have needed, and the backend's data path still works. The
//! `dma-conformance` suite checks backends against the record: every
//! invalidate stays within lines the mapping owns, every hand-over to the
//! device cleans the range, nothing is maintained after a refusal.

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::{CacheMaintenance, CacheOp};

/// How many operations a [`RecordingCache`] keeps; later ones are counted
/// in [`RecordingCache::dropped`] only.
pub const RECORD_CAPACITY: usize = 256;

/// One recorded operation over `[va, va + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Recorded {
    /// The operation.
    pub op: CacheOp,
    /// First byte.
    pub va: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Recorded {
    /// The lines the operation touches, as `[first, end)` addresses widened
    /// to `line`-byte boundaries (what hardware maintains).
    pub fn lines(&self, line: usize) -> (usize, usize) {
        let first = self.va & !(line - 1);
        let end = (self.va + self.len).next_multiple_of(line);
        (first, end)
    }
}

/// A recording, non-coherent cache policy (see the [module docs](self)).
/// Share it between a platform and the test by reference (`&RecordingCache`
/// is a `CacheMaintenance` and `Clone`).
#[derive(Debug)]
pub struct RecordingCache {
    line: usize,
    next: AtomicUsize,
    /// Per entry: op code (1 + CacheOp index, 0 = being written), va, len.
    log: [[AtomicUsize; 3]; RECORD_CAPACITY],
}

impl RecordingCache {
    /// A policy with `line`-byte cache lines (a power of two).
    ///
    /// # Panics
    ///
    /// At compile time in a const context, or at once otherwise, when
    /// `line` is not a power of two: a test fixture's constant is wrong.
    pub const fn new(line: usize) -> Self {
        assert!(line.is_power_of_two(), "cache lines are a power of two");
        Self {
            line,
            next: AtomicUsize::new(0),
            log: [const { [const { AtomicUsize::new(0) }; 3] }; RECORD_CAPACITY],
        }
    }

    /// Every operation recorded since the last [`clear`](Self::clear), in
    /// order (up to [`RECORD_CAPACITY`]).
    pub fn recorded(&self) -> impl Iterator<Item = Recorded> + '_ {
        let n = self.next.load(Ordering::Acquire).min(RECORD_CAPACITY);
        self.log[..n].iter().filter_map(|[op, va, len]| {
            let op = match op.load(Ordering::Acquire) {
                1 => CacheOp::Clean,
                2 => CacheOp::Invalidate,
                3 => CacheOp::CleanInvalidate,
                _ => return None,
            };
            Some(Recorded {
                op,
                va: va.load(Ordering::Relaxed),
                len: len.load(Ordering::Relaxed),
            })
        })
    }

    /// How many operations were not kept because the log was full.
    pub fn dropped(&self) -> usize {
        self.next
            .load(Ordering::Acquire)
            .saturating_sub(RECORD_CAPACITY)
    }

    /// Forgets the record. Not meant to race with maintenance.
    pub fn clear(&self) {
        for [op, ..] in &self.log {
            op.store(0, Ordering::Relaxed);
        }
        self.next.store(0, Ordering::Release);
    }

    fn record(&self, op: CacheOp, va: usize, len: usize) {
        let i = self.next.fetch_add(1, Ordering::AcqRel);
        if let Some([code, v, l]) = self.log.get(i) {
            v.store(va, Ordering::Relaxed);
            l.store(len, Ordering::Relaxed);
            let code_of = match op {
                CacheOp::Clean => 1,
                CacheOp::Invalidate => 2,
                CacheOp::CleanInvalidate => 3,
            };
            code.store(code_of, Ordering::Release);
        }
    }
}

// SAFETY: the policy maintains nothing. It is for tests on hardware that
// keeps the memory they use coherent (see the module docs), where every
// postcondition already holds; `line_size` is a power of two (checked in
// `new`) and, as a test parameter, stands for the system's line.
unsafe impl CacheMaintenance for RecordingCache {
    fn is_coherent(&self) -> bool {
        false
    }

    fn line_size(&self) -> usize {
        self.line
    }

    unsafe fn clean(&self, va: usize, len: usize) {
        self.record(CacheOp::Clean, va, len);
    }

    unsafe fn invalidate(&self, va: usize, len: usize) {
        self.record(CacheOp::Invalidate, va, len);
    }

    unsafe fn clean_invalidate(&self, va: usize, len: usize) {
        self.record(CacheOp::CleanInvalidate, va, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_and_clears() {
        let c = RecordingCache::new(64);
        // SAFETY: nothing is maintained; the addresses are only recorded.
        unsafe {
            c.clean(0x1010, 8);
            c.invalidate(0x2000, 128);
        }
        let ops: [Recorded; 2] = [
            Recorded {
                op: CacheOp::Clean,
                va: 0x1010,
                len: 8,
            },
            Recorded {
                op: CacheOp::Invalidate,
                va: 0x2000,
                len: 128,
            },
        ];
        assert!(c.recorded().eq(ops));
        assert_eq!(ops[0].lines(64), (0x1000, 0x1040));
        c.clear();
        assert_eq!(c.recorded().count(), 0);
    }

    #[test]
    fn counts_what_overflows_the_log() {
        let c = RecordingCache::new(32);
        for i in 0..RECORD_CAPACITY + 3 {
            // SAFETY: the policy only records; nothing is touched at these addresses.
            unsafe { c.clean(i * 32, 32) };
        }
        assert_eq!(c.recorded().count(), RECORD_CAPACITY);
        assert_eq!(c.dropped(), 3);
    }
}
