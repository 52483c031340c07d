//! Which cache lines the device-writable mappings cover, for the overlap
//! check (Linux's active-cacheline tracking, over whole spans rather than
//! only each mapping's first line).
//!
//! Every map of a device-writable buffer asks for the live span that
//! overlaps it, so the usual case is made cheap: a short span (at most
//! [`SHORT_GRANULES`] granules of 64 lines, 16 KiB
//! or more with 64-byte lines) is hashed under each granule it touches, and a query for
//! one probes those few buckets. Long spans live in a B-tree by first line,
//! searched back as far as the longest of them reaches, which is what every
//! span cost before (measured with callgrind, docs/performance.md). A long
//! query must also find the short spans inside it: it probes its granules
//! or looks at every short span, whichever is fewer.

use alloc::collections::BTreeMap;

use crate::bucket::BucketMap;

/// Lines per hashed granule (64), as a shift.
const GRANULE_SHIFT: u32 = 6;
/// The most granules a span may touch and still be hashed.
const SHORT_GRANULES: u64 = 5;

/// The cache lines `first..=last` of the live mapping `id` at device
/// address `dma`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) id: u64,
    pub(crate) dma: u64,
}

impl Span {
    fn overlaps(&self, first: u64, last: u64) -> bool {
        self.first <= last && self.last >= first
    }

    fn granules(first: u64, last: u64) -> core::ops::RangeInclusive<u64> {
        (first >> GRANULE_SHIFT)..=(last >> GRANULE_SHIFT)
    }

    fn is_short(&self) -> bool {
        (self.last >> GRANULE_SHIFT) - (self.first >> GRANULE_SHIFT) < SHORT_GRANULES
    }

    /// The order clashes are reported in: lowest first line, then oldest.
    fn order(&self) -> (u64, u64) {
        (self.first, self.id)
    }
}

/// The spans of the live device-writable mappings.
pub(crate) struct LineIndex {
    short: BucketMap<Span>,
    /// Long spans by (first line, id) -> (last line, device address).
    long: BTreeMap<(u64, u64), (u64, u64)>,
    /// The longest run of lines in `long`, which bounds its scan.
    long_max_span: u64,
}

impl LineIndex {
    pub(crate) const fn new() -> Self {
        Self {
            short: BucketMap::new(),
            long: BTreeMap::new(),
            long_max_span: 0,
        }
    }

    /// The live span overlapping `first..=last` with the lowest first line
    /// (the oldest among equals), if any.
    pub(crate) fn clash(&self, first: u64, last: u64) -> Option<Span> {
        let lo = first.saturating_sub(self.long_max_span);
        let mut best = self
            .long
            .range((lo, 0)..=(last, u64::MAX))
            .map(|(&(first, id), &(last, dma))| Span {
                first,
                last,
                id,
                dma,
            })
            .find(|s| s.overlaps(first, last));
        let mut consider = |s: &Span| {
            if s.overlaps(first, last) && best.is_none_or(|b| s.order() < b.order()) {
                best = Some(*s);
            }
        };
        let granules = Span::granules(first, last);
        if granules.end() - granules.start() < self.short.keys() as u64 {
            for g in granules {
                self.short
                    .get(g)
                    .into_iter()
                    .flat_map(|b| b.iter())
                    .for_each(&mut consider);
            }
        } else {
            self.short.values().for_each(consider);
        }
        best
    }

    /// Tracks `span`, returning what [`clash`](Self::clash) would have
    /// before. A span within one granule (the usual page-sized buffer)
    /// is checked and added in one probe.
    #[inline]
    pub(crate) fn track(&mut self, span: Span) -> Option<Span> {
        let granule = span.first >> GRANULE_SHIFT;
        if granule != span.last >> GRANULE_SHIFT || !self.long.is_empty() {
            let clash = self.clash(span.first, span.last);
            self.insert(span);
            return clash;
        }
        self.short
            .push(granule, span)
            .iter()
            .filter(|s| s.id != span.id && s.overlaps(span.first, span.last))
            .min_by_key(|s| s.order())
            .copied()
    }

    /// Tracks `span`.
    pub(crate) fn insert(&mut self, span: Span) {
        if span.is_short() {
            for g in Span::granules(span.first, span.last) {
                self.short.push(g, span);
            }
        } else {
            self.long
                .insert((span.first, span.id), (span.last, span.dma));
            self.long_max_span = self.long_max_span.max(span.last - span.first);
        }
    }

    /// Stops tracking `span`.
    #[inline]
    pub(crate) fn remove(&mut self, span: Span) {
        if span.is_short() {
            for g in Span::granules(span.first, span.last) {
                self.short.remove(g, |s| s.id == span.id);
            }
        } else {
            self.long.remove(&(span.first, span.id));
        }
    }

    /// Forgets every span.
    pub(crate) fn clear(&mut self) {
        self.short.clear();
        self.long.clear();
        self.long_max_span = 0;
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::{LineIndex, Span, GRANULE_SHIFT, SHORT_GRANULES};

    /// What `clash` must return, by looking at every live span.
    fn brute_force(live: &[Span], first: u64, last: u64) -> Option<Span> {
        live.iter()
            .filter(|s| s.overlaps(first, last))
            .min_by_key(|s| s.order())
            .copied()
    }

    /// Random spans, short and long, inserted and removed in random order
    /// over 64 granules: every query agrees with a scan of every live
    /// span. Two phases, so both strategies of a long query run: many
    /// short spans live (it probes its granules), then few short spans
    /// and queries up to all 64 granules long (it scans every short span).
    #[test]
    fn clash_agrees_with_a_scan_of_every_live_span() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let lines = 64 << GRANULE_SHIFT;
        let mut index = LineIndex::new();
        let (mut shorts, mut longs) = (0, 0);
        let mut id = 0;
        for (max_live, long_lines) in [(80, (SHORT_GRANULES + 3) << GRANULE_SHIFT), (6, lines)] {
            let mut live = Vec::<Span>::new();
            for _ in 0..3000 {
                id += 1;
                let len = if rand(8) == 0 {
                    1 + rand(long_lines)
                } else {
                    1 + rand(100)
                };
                let first = rand(lines);
                let last = first + len - 1;
                let want = brute_force(&live, first, last);
                assert_eq!(index.clash(first, last), want, "query {first}..={last}");
                if !live.is_empty() && (live.len() >= max_live || rand(3) == 0) {
                    let gone = live.swap_remove(rand(live.len() as u64) as usize);
                    index.remove(gone);
                } else {
                    let span = Span {
                        first,
                        last,
                        id,
                        dma: first * 64,
                    };
                    if span.is_short() {
                        shorts += 1;
                    } else {
                        longs += 1;
                    }
                    if rand(2) == 0 {
                        index.insert(span);
                    } else {
                        assert_eq!(index.track(span), want, "tracking {first}..={last}");
                    }
                    live.push(span);
                }
            }
            for span in live {
                index.remove(span);
            }
            assert_eq!(index.clash(0, u64::MAX), None, "every span was removed");
        }
        assert!(shorts > 1000 && longs > 100, "{shorts} short, {longs} long");
        index.clear();
        assert_eq!(index.clash(0, u64::MAX), None);
    }
}
