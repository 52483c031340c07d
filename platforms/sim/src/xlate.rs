//! The physical map's most recently used extent, published for lock-free
//! reads: `SimMemory::phys_to_virt` (the backend asks it before every cache
//! operation, about four times per simulated command) answers from it
//! without taking the machine lock when the range lies inside it.
//!
//! A sequence lock made of atomics only: the writer (the physical map,
//! always under the machine lock, so there is one writer at a time) makes
//! the sequence odd, stores the fields, and makes it even again; a reader
//! takes the fields only if the sequence was even and unchanged around its
//! loads (H.-J. Boehm, "Can seqlocks get along with programming language
//! memory models?", MSPC 2012, the fence-based reader). Every change to
//! the map's extents empties it first, so what it holds is always an
//! extent the map holds now, as a locked lookup would find it.

use core::sync::atomic::{fence, AtomicU64, Ordering};

/// One extent (sim range `[sim, end)` at host address `host`), or none
/// (`end == 0`).
#[derive(Debug, Default)]
pub(crate) struct Published {
    seq: AtomicU64,
    sim: AtomicU64,
    end: AtomicU64,
    host: AtomicU64,
}

impl Published {
    /// Publishes the extent `[sim, sim + len)` at `host`.
    ///
    /// Called only by the physical map, under the machine lock (the one
    /// writer a sequence lock allows).
    #[inline]
    pub(crate) fn set(&self, sim: u64, len: u64, host: u64) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.sim.store(sim, Ordering::Relaxed);
        self.end.store(sim.saturating_add(len), Ordering::Relaxed);
        self.host.store(host, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// Publishes nothing (the map's extents are about to change).
    #[inline]
    pub(crate) fn clear(&self) {
        self.set(0, 0, 0);
    }

    /// The host address of sim bytes `[sim, sim + len)`, if they lie inside
    /// the published extent; `None` when they do not, or when the extent
    /// is being replaced (the caller then asks the map under the lock).
    #[inline]
    pub(crate) fn to_host(&self, sim: u64, len: u64) -> Option<u64> {
        let before = self.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let (lo, end, host) = (
            self.sim.load(Ordering::Relaxed),
            self.end.load(Ordering::Relaxed),
            self.host.load(Ordering::Relaxed),
        );
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != before {
            return None;
        }
        let hi = sim.checked_add(len)?;
        (lo <= sim && hi <= end)
            .then(|| sim - lo)
            .and_then(|off| host.checked_add(off))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn answers_inside_the_extent_only() {
        let p = Published::default();
        assert_eq!(p.to_host(0, 1), None, "nothing published");
        p.set(0x1000, 0x2000, 0x7f00_0000);
        assert_eq!(p.to_host(0x1000, 0x2000), Some(0x7f00_0000));
        assert_eq!(p.to_host(0x1ff0, 0x10), Some(0x7f00_0ff0));
        assert_eq!(p.to_host(0xfff, 2), None, "starts before");
        assert_eq!(p.to_host(0x2fff, 2), None, "runs past");
        assert_eq!(p.to_host(u64::MAX, 2), None, "wraps");
        p.clear();
        assert_eq!(p.to_host(0x1000, 1), None, "cleared");
    }

    /// Readers racing a writer never see a torn extent: every extent the
    /// writer publishes keeps `host - sim` equal to `len`, which a mix of
    /// two publications would break. The writer publishes until the
    /// readers have done all their lookups.
    #[test]
    fn readers_never_see_a_torn_extent() {
        const LOOKUPS: u32 = 4_000_000;
        let p = Arc::new(Published::default());
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (p, stop) = (Arc::clone(&p), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    p.set(0x1000, 0x1000, 0x2000);
                    p.set(0x10_0000, 0x20_0000, 0x30_0000);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    for i in 0..LOOKUPS {
                        let (sim, len) = if i % 2 == 0 {
                            (0x1000, 0x1000)
                        } else {
                            (0x10_0000, 0x20_0000)
                        };
                        if let Some(host) = p.to_host(sim, 1) {
                            assert_eq!(host - sim, len, "torn read at {sim:#x}");
                        }
                    }
                })
            })
            .collect();
        let results: Vec<_> = readers.into_iter().map(|r| r.join()).collect();
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        for r in results {
            r.expect("reader");
        }
    }
}
