//! The machine's physical address space: where host memory appears to
//! devices, laid out by the seed so that a run replays with the same
//! addresses wherever the host allocator put its buffers.
//!
//! Host memory enters the map in *extents*: a [`SimMemory`] allocation
//! (whole pages, from a zone chosen by the caller's limit), or a buffer the
//! driver translates with `virt_to_phys` (the heap zone). An extent is one
//! host range at one sim range, so every translation inside it is
//! contiguous both ways. Each extent starts at a fresh sim page in the
//! order the program creates them, after a seeded gap, and keeps only the
//! host address's offset within its cache line: a buffer aligned to the
//! line gets a page-aligned sim address whatever its host address was.
//! Lines are the model's unit, so bytes that share a host line stay
//! together: a translation touching or overlapping an extent's lines
//! extends that extent (two unaligned heap buffers sharing a line keep
//! their host distance, as they would share a physical line).
//!
//! A heap extent retires when the last mapping in it ends; a new buffer at
//! recycled host memory then gets a fresh place (the program's sequence,
//! not the host allocator, decides addresses). Retired rooms are reused
//! oldest first behind a quarantine of newer ones, so a device's stale
//! access soon after an unmap still faults; `SimMemory` addresses are
//! never reused.
//!
//! [`SimMemory`]: crate::SimMemory

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

use dma_core::{Error, ErrorKind, Result};

use crate::rng::SplitMix64;
use crate::sorted::SortedMap;
use crate::xlate::Published;

/// The sim's page size.
pub(crate) const PAGE: u64 = 4096;

/// Where [`SimMemory`](crate::SimMemory) allocations that must lie below
/// 4 GiB go (a 32-bit device's coherent memory).
const LOW: (u64, u64) = (16 << 20, 4 << 30);
/// Where the other `SimMemory` allocations go.
const HIGH: (u64, u64) = (4 << 30, 256 << 30);
/// Where translated heap buffers go: above what a 32- or 36-bit device
/// reaches, as host heap memory was before the sim had its own layout.
const HEAP: (u64, u64) = (256 << 30, 1 << 46);
/// The sim space a heap extent may grow into, at least.
const SLOT: u64 = 2 << 20;

/// What an extent holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A `SimMemory` allocation, until it is freed.
    Pages,
    /// Translated heap memory with this many live regions in it; whether
    /// one was ever mapped; whether a map of it was refused (a bounce
    /// platform then serves the buffer, unseen by the machine, so the
    /// extent never retires).
    Heap {
        live: u32,
        was_live: bool,
        pinned: bool,
    },
}

/// One host range at one sim range.
#[derive(Clone, Copy, Debug)]
struct Extent {
    host: u64,
    sim: u64,
    len: u64,
    /// The sim range it may grow into (its own; no other extent's).
    room: (u64, u64),
    /// The host bytes translated in it (`host..host + len` rounded them
    /// out to whole lines): only a range starting or ending exactly there
    /// continues it.
    exact: (u64, u64),
    kind: Kind,
}

impl Extent {
    fn host_end(&self) -> u64 {
        self.host + self.len
    }

    /// Whether a new translation may reuse it: a heap extent whose buffer
    /// was mapped and has been unmapped since is retired, so a new buffer
    /// at recycled host memory gets a fresh address (as the program's
    /// sequence, not the host allocator, decides). It still resolves for
    /// a re-map of its old address.
    fn retired(&self) -> bool {
        matches!(
            self.kind,
            Kind::Heap {
                live: 0,
                was_live: true,
                pinned: false
            }
        )
    }
}

/// The sim's physical address space.
pub(crate) struct PhysMap {
    line: u64,
    rng: SplitMix64,
    /// Extents by sim start.
    by_sim: SortedMap<u64, Extent>,
    /// Sim start by host start.
    by_host: SortedMap<u64, u64>,
    /// Next free sim address of each zone (low, high, heap).
    next: [u64; 3],
    /// Rooms of retired heap extents, oldest first: reused once
    /// [`QUARANTINE`] newer ones wait behind them, so a device's stale
    /// access soon after an unmap still faults instead of reaching the
    /// next buffer.
    freed: VecDeque<(u64, u64)>,
    /// The extent last looked up (a map, its syncs and its unmap ask about
    /// the same one in a row); cleared by every change.
    last: Cell<Option<Extent>>,
    /// Reused by [`near`](Self::near).
    scratch: Vec<u64>,
    /// The extent last looked up, for lock-free readers
    /// ([`published`](Self::published)); emptied by every change to the
    /// extents, like `last`.
    published: Arc<Published>,
}

/// How many freed rooms wait before the oldest is reused.
const QUARANTINE: usize = 16;

/// A zone's index in [`PhysMap::next`] and its bounds.
const ZONES: [(u64, u64); 3] = [LOW, HIGH, HEAP];
const Z_LOW: usize = 0;
const Z_HIGH: usize = 1;
const Z_HEAP: usize = 2;

impl PhysMap {
    /// An empty space laid out by `seed`, for a machine with `line`-byte
    /// cache lines.
    pub(crate) fn new(seed: u64, line: usize) -> Self {
        // Its own stream: the evictor's choices stay what they were.
        let mut rng = SplitMix64::new(seed ^ 0x6c61_796f_7574_0001);
        let next = ZONES.map(|(lo, _)| lo + rng.below(256) * PAGE);
        Self {
            line: line as u64,
            rng,
            by_sim: SortedMap::new(),
            by_host: SortedMap::new(),
            next,
            freed: VecDeque::new(),
            last: Cell::new(None),
            scratch: Vec::new(),
            published: Arc::default(),
        }
    }

    /// The extent last looked up, readable without the machine's lock
    /// (see [`Published`]).
    pub(crate) fn published(&self) -> Arc<Published> {
        Arc::clone(&self.published)
    }

    /// Offers `e` to lock-free readers.
    fn publish(&self, e: &Extent) {
        self.published.set(e.sim, e.len, e.host);
    }

    /// Takes `len` bytes (a page multiple, plus room) of zone `z` after a
    /// seeded gap of up to three pages; `None` when the zone, or the part
    /// of it at or below `max`, is used up.
    fn take(&mut self, z: usize, len: u64, max: u64) -> Option<u64> {
        let gap = self.rng.below(4) * PAGE;
        let start = self.next[z].checked_add(gap)?;
        let end = start.checked_add(len)?;
        if end > ZONES[z].1 || end - 1 > max {
            return None;
        }
        self.next[z] = end;
        Some(start)
    }

    fn insert(&mut self, e: Extent) {
        self.last.set(None);
        self.published.clear();
        self.by_host.insert(e.host, e.sim);
        self.by_sim.insert(e.sim, e);
    }

    fn remove(&mut self, sim: u64) -> Option<Extent> {
        self.last.set(None);
        self.published.clear();
        let e = self.by_sim.remove(&sim)?;
        self.by_host.remove(&e.host);
        Some(e)
    }

    /// The extent holding host byte `host`.
    fn at_host(&self, host: u64) -> Option<Extent> {
        if let Some(e) = self
            .last
            .get()
            .filter(|e| e.host <= host && host < e.host_end())
        {
            self.publish(&e);
            return Some(e);
        }
        let (_, sim) = self.by_host.range(..=host).next_back()?;
        let e = self.by_sim[sim];
        (host < e.host_end()).then(|| {
            self.last.set(Some(e));
            self.publish(&e);
            e
        })
    }

    /// Sim starts of the extents overlapping or touching host `[lo, hi)`,
    /// in a vector to give back with `self.scratch = ...`.
    fn near(&mut self, lo: u64, hi: u64) -> Vec<u64> {
        let mut found = std::mem::take(&mut self.scratch);
        found.clear();
        let before = self
            .by_host
            .range(..lo)
            .next_back()
            .filter(|(_, sim)| self.by_sim[*sim].host_end() >= lo);
        found.extend(
            before
                .into_iter()
                .chain(self.by_host.range(lo..=hi))
                .map(|(_, sim)| *sim),
        );
        found
    }

    /// Gives host pages `[host, host + len)` (page-aligned), just
    /// allocated, a sim address at or below `max`. Extents of heap memory
    /// the host recycled for them are dropped.
    ///
    /// # Errors
    ///
    /// [`Unreachable`](ErrorKind::Unreachable) when no zone has room below
    /// `max`.
    pub(crate) fn alloc(&mut self, host: u64, len: u64, max: u64) -> Result<u64> {
        let sim = self
            .take(Z_HIGH, len, max)
            .or_else(|| self.take(Z_LOW, len, max))
            .ok_or(
                Error::new(
                    ErrorKind::Unreachable,
                    "no sim memory left below the requested limit (sim RAM is 16 MiB..256 GiB; \
                     ask for fewer pages or a higher limit)",
                )
                .at(max),
            )?;
        let near = self.near(host, host + len);
        for s in &near {
            let e = self.by_sim[s];
            if e.host < host + len && e.host_end() > host {
                self.forget(e);
            }
        }
        self.scratch = near;
        self.insert(Extent {
            host,
            sim,
            len,
            room: (sim, sim + len),
            exact: (host, host + len),
            kind: Kind::Pages,
        });
        Ok(sim)
    }

    /// Drops an extent whose host memory went to another use.
    fn forget(&mut self, e: Extent) {
        self.remove(e.sim);
        if let Kind::Heap { live: 0, .. } = e.kind {
            // A retired room stays queued; a never-mapped one is freed.
            if !e.retired() {
                self.freed.push_back((e.room.0, e.room.1 - e.room.0));
            }
        }
    }

    /// Ends the allocation at sim address `sim`; returns its host start.
    pub(crate) fn free(&mut self, sim: u64) -> Option<u64> {
        if self.by_sim.get(&sim)?.kind != Kind::Pages {
            return None;
        }
        self.remove(sim).map(|e| e.host)
    }

    /// The sim address of host bytes `[host, host + len)` (`len > 0`),
    /// giving them one if they have none.
    ///
    /// # Errors
    ///
    /// [`NotContiguous`](ErrorKind::NotContiguous) when the range runs past
    /// a `SimMemory` allocation or joins memory already placed apart.
    pub(crate) fn translate(&mut self, host: u64, len: u64) -> Result<u64> {
        let end = host.checked_add(len).ok_or(Error::new(
            ErrorKind::NotContiguous,
            "the range wraps around the address space",
        ))?;
        let (lo, hi) = (host & !(self.line - 1), end.next_multiple_of(self.line));
        if let Some(e) = self.at_host(host) {
            // The common case: a buffer translated before, still in use.
            if end <= e.host_end() && !e.retired() {
                return Ok(e.sim + (host - e.host));
            }
            // A buffer mapped again after its unmap (or a new one at its
            // place): placed afresh, as the general path below would, with
            // the record reused.
            if e.retired() && (e.host, e.host_end()) == (lo, hi) && !self.continues(host, end) {
                return Ok(self.replace(e, (host, end)) + (host - lo));
            }
        }
        // Bytes sharing a line with an extent must join it; a range that
        // starts or ends exactly where one does continues it (the pages of
        // one buffer translated one by one).
        let (mut sharing, mut continuing) = (None, None);
        let near = self.near(lo, hi);
        for s in &near {
            let e = self.by_sim[s];
            let overlaps = e.host < hi && e.host_end() > lo;
            if e.retired() {
                if overlaps {
                    self.forget(e);
                }
            } else if overlaps && sharing.is_some() {
                self.scratch = near;
                return Err(Error::new(
                    ErrorKind::NotContiguous,
                    "the range joins host memory the sim already placed apart (buffers \
                     translated separately); translate and map each buffer on its own",
                )
                .at(host)
                .len(len));
            } else if overlaps {
                sharing = Some(e);
            } else if host == e.exact.1 || end == e.exact.0 {
                continuing = Some(e);
            }
        }
        self.scratch = near;
        if let Some(e) = sharing {
            return self
                .extend(e, (lo, hi), (host, end))
                .map(|e| e.sim + (host - e.host))
                .ok_or(
                    Error::new(
                        ErrorKind::NotContiguous,
                        "the range runs past the sim memory it starts in (a SimMemory \
                     allocation, or a buffer's room); translate each buffer on its own",
                    )
                    .at(host)
                    .len(len),
                );
        }
        match continuing.and_then(|e| self.extend(e, (lo, hi), (host, end))) {
            Some(e) => Ok(e.sim + (host - e.host)),
            None => Ok(self.place((lo, hi), (host, end)) + (host - lo)),
        }
    }

    /// Grows `e` to cover host lines `[lo, hi)` (the bytes `exact` of
    /// them translated) too, if its room allows.
    fn extend(&mut self, mut e: Extent, (lo, hi): (u64, u64), exact: (u64, u64)) -> Option<Extent> {
        let (new_lo, new_hi) = (lo.min(e.host), hi.max(e.host_end()));
        let sim_lo = e.sim - (e.host - new_lo);
        if sim_lo < e.room.0 || sim_lo + (new_hi - new_lo) > e.room.1 {
            return None;
        }
        let new_exact = (exact.0.min(e.exact.0), exact.1.max(e.exact.1));
        if (new_lo, new_hi, new_exact) != (e.host, e.host_end(), e.exact) {
            self.remove(e.sim);
            e.sim = sim_lo;
            e.host = new_lo;
            e.len = new_hi - new_lo;
            e.exact = new_exact;
            self.insert(e);
        }
        Some(e)
    }

    /// Whether a live or fresh extent ends exactly at `host` or starts
    /// exactly at `end` (the general path would continue it).
    fn continues(&self, host: u64, end: u64) -> bool {
        let joins = |sim: &u64, at: fn(&Extent) -> u64, want: u64| {
            let e = &self.by_sim[sim];
            at(e) == want && !e.retired()
        };
        let before = self.by_host.range(..host).next_back();
        before.is_some_and(|(_, sim)| joins(sim, |e| e.exact.1, host))
            || self
                .by_host
                .get(&end.next_multiple_of(self.line))
                .is_some_and(|sim| joins(sim, |e| e.exact.0, end))
    }

    /// Places retired `e`'s lines afresh for host bytes `exact`, as
    /// [`place`](Self::place) would; returns the new sim start.
    fn replace(&mut self, e: Extent, exact: (u64, u64)) -> u64 {
        self.last.set(None);
        self.published.clear();
        self.by_sim.remove(&e.sim);
        let (start, room) = self.room(e.len);
        let sim = start + (room / 4).next_multiple_of(PAGE);
        let fresh = Extent {
            sim,
            room: (start, start + room),
            exact,
            kind: Kind::Heap {
                live: 0,
                was_live: false,
                pinned: false,
            },
            ..e
        };
        self.by_sim.insert(sim, fresh);
        self.by_host.insert(e.host, sim);
        // The buffer's syncs and unmap ask about it next.
        self.publish(&fresh);
        sim
    }

    /// A new heap extent for the whole lines `[lo, hi)`, at a page
    /// boundary a quarter into room four times its size: the oldest freed
    /// room of that size past the quarantine, else fresh space.
    fn place(&mut self, (lo, hi): (u64, u64), exact: (u64, u64)) -> u64 {
        let len = hi - lo;
        let (start, room) = self.room(len);
        let sim = start + (room / 4).next_multiple_of(PAGE);
        self.insert(Extent {
            host: lo,
            sim,
            len,
            room: (start, start + room),
            exact,
            kind: Kind::Heap {
                live: 0,
                was_live: false,
                pinned: false,
            },
        });
        sim
    }

    /// Room for an extent of `len` bytes: `(start, size)`.
    fn room(&mut self, len: u64) -> (u64, u64) {
        let room = len.saturating_mul(4).next_multiple_of(SLOT).max(SLOT);
        let reusable = self.freed.len().saturating_sub(QUARANTINE);
        let start = match self.freed.range(..reusable).position(|f| f.1 == room) {
            Some(i) => {
                let (start, _) = self.freed.remove(i).expect("found above");
                // Its retired extent, if still there, goes now.
                let old = self
                    .by_sim
                    .range(start..start + room)
                    .next()
                    .map(|(s, _)| *s);
                if let Some(s) = old {
                    self.remove(s);
                }
                start
            }
            // The heap zone holds 2^46 - 2^38 bytes, and rooms are reused:
            // a process runs out of host memory long before.
            None => self
                .take(Z_HEAP, room, u64::MAX)
                .expect("the sim's heap zone outlasts host memory"),
        };
        (start, room)
    }

    /// The extent holding sim bytes `[sim, sim + len)`, if one does.
    fn at_sim(&self, sim: u64, len: u64) -> Option<Extent> {
        let end = sim.checked_add(len)?;
        let holds = |e: &Extent| e.sim <= sim && end <= e.sim + e.len;
        if let Some(e) = self.last.get().filter(holds) {
            self.publish(&e);
            return Some(e);
        }
        let (_, e) = self.by_sim.range(..=sim).next_back()?;
        holds(e).then(|| {
            self.last.set(Some(*e));
            self.publish(e);
            *e
        })
    }

    /// The host address of sim bytes `[sim, sim + len)`, when they are
    /// host memory contiguously.
    pub(crate) fn to_host(&self, sim: u64, len: u64) -> Option<u64> {
        self.at_sim(sim, len).map(|e| e.host + (sim - e.sim))
    }

    /// The sim address of host bytes `[host, host + len)`, when they have
    /// one (no new placement).
    pub(crate) fn to_sim(&self, host: u64, len: u64) -> Option<u64> {
        let e = self.at_host(host)?;
        (host.checked_add(len)? <= e.host_end()).then(|| e.sim + (host - e.host))
    }

    /// A region at sim address `sim` became live (`+1`) or ended (`-1`).
    /// A heap extent whose last region ends after one was mapped
    /// ([`mapped`](Self::mapped)) is retired and its room queued for
    /// reuse, unless [`pinned`](Self::pin); one live again leaves the
    /// queue.
    pub(crate) fn count_live(&mut self, sim: u64, delta: i32) {
        let Some((_, e)) = self.by_sim.last_in_mut(..=sim) else {
            return;
        };
        let Kind::Heap {
            live,
            was_live,
            pinned,
        } = &mut e.kind
        else {
            return;
        };
        if sim >= e.sim + e.len {
            return;
        }
        let (before, revived) = (*live, *live == 0 && *was_live && delta > 0);
        *live = live.saturating_add_signed(delta);
        let room = (e.room.0, e.room.1 - e.room.0);
        if before > 0 && *live == 0 && *was_live && !*pinned {
            self.freed.push_back(room);
        } else if revived {
            self.freed.retain(|f| *f != room);
        }
        // The copy looked up last must not keep the old count.
        self.last.set(Some(*e));
    }

    /// The backend refused to map the region at sim address `sim`: a
    /// bounce platform may serve the buffer instead, out of the machine's
    /// sight, and translate it again to unmap, so its extent never
    /// retires (it keeps its address).
    pub(crate) fn pin(&mut self, sim: u64) {
        let Some((_, e)) = self.by_sim.last_in_mut(..=sim) else {
            return;
        };
        if let Kind::Heap { pinned, .. } = &mut e.kind {
            *pinned = true;
            self.last.set(Some(*e));
        }
    }

    /// The backend mapped the region at sim address `sim`: its extent
    /// retires when its last region ends.
    pub(crate) fn mapped(&mut self, sim: u64) {
        let Some((_, e)) = self.by_sim.last_in_mut(..=sim) else {
            return;
        };
        if let Kind::Heap { was_live, .. } = &mut e.kind {
            *was_live = true;
            self.last.set(Some(*e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: usize = 64;

    #[test]
    fn placement_depends_on_the_sequence_not_the_host_address() {
        let (mut a, mut b) = (PhysMap::new(5, LINE), PhysMap::new(5, LINE));
        let x = a.translate(0x5555_0000_1040, 4096).unwrap();
        let y = b.translate(0x7f00_dead_0000, 4096).unwrap();
        assert_eq!(x, y);
        assert_eq!(x % PAGE, 0, "a line-aligned buffer starts a sim page");
        // The offset within the line is the buffer's own.
        let x = a.translate(0x5555_0100_0010, 100).unwrap();
        let y = b.translate(0x7f00_beef_0810, 100).unwrap();
        assert_eq!((x, x % PAGE), (y, 0x10));
        let c = PhysMap::new(6, LINE)
            .translate(0x5555_0000_1040, 4096)
            .unwrap();
        assert_ne!(
            c,
            a.to_sim(0x5555_0000_1040, 1).unwrap(),
            "the seed moves it"
        );
    }

    #[test]
    fn sub_ranges_and_extensions_stay_contiguous() {
        let mut m = PhysMap::new(1, LINE);
        let base = m.translate(0x10_0000, 8192).unwrap();
        assert_eq!(m.translate(0x10_1000, 4096).unwrap(), base + 4096);
        // The next page, touching the extent, continues it.
        assert_eq!(m.translate(0x10_2000, 4096).unwrap(), base + 8192);
        // A line before it too, within the room.
        assert_eq!(m.translate(0x0f_ffc0, 64).unwrap(), base - 64);
        assert_eq!(m.to_host(base - 64, 64 + 3 * 4096), Some(0x0f_ffc0));
        // A buffer starting 16 bytes after another's end (a heap chunk
        // header between them) in the next line is placed on its own.
        let c = m.translate(0x30_0000, 0x30).unwrap();
        let d = m.translate(0x30_0040, 64).unwrap();
        assert_ne!(d - c, 0x40);
        // Two buffers sharing a line share it in sim space too.
        let a = m.translate(0x20_0010, 40).unwrap();
        let b = m.translate(0x20_0038, 40).unwrap();
        assert_eq!(b - a, 0x28);
    }

    #[test]
    fn joining_memory_placed_apart_is_refused() {
        let mut m = PhysMap::new(1, LINE);
        m.translate(0x10_0000, 64).unwrap();
        m.translate(0x10_0100, 64).unwrap();
        let e = m.translate(0x10_0000, 0x140).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotContiguous);
        let p = m.alloc(0x40_0000, 8192, u64::MAX).unwrap();
        assert_eq!(m.translate(0x40_1000, 4096).unwrap(), p + 4096);
        let e = m.translate(0x40_1000, 8192).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotContiguous);
    }

    #[test]
    fn allocations_respect_the_limit_and_are_never_reused() {
        let mut m = PhysMap::new(3, LINE);
        let low = m.alloc(0x1000, 4096, u32::MAX.into()).unwrap();
        assert!(low + 4096 <= 1 << 32);
        let high = m.alloc(0x3000, 4096, u64::MAX).unwrap();
        assert!(high >= 4 << 30);
        assert_eq!(m.to_host(high + 8, 8), Some(0x3008));
        assert_eq!(m.free(high), Some(0x3000));
        assert_eq!(
            m.to_host(high, 1),
            None,
            "a freed address resolves to nothing"
        );
        let again = m.alloc(0x3000, 4096, u64::MAX).unwrap();
        assert!(again > high);
        let e = m.alloc(0x5000, 4096, 0xff_ffff).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        // A heap extent over host memory later given to an allocation goes.
        m.translate(0x9000, 64).unwrap();
        let p = m.alloc(0x9000, 4096, u64::MAX).unwrap();
        assert_eq!(m.to_sim(0x9000, 64), Some(p));
    }

    #[test]
    fn retired_rooms_are_reused_only_behind_the_quarantine() {
        let mut m = PhysMap::new(4, LINE);
        let first = m.translate(0x100_0000, 4096).unwrap();
        let mut seen = vec![first];
        m.count_live(first, 1);
        m.mapped(first);
        m.count_live(first, -1);
        m.count_live(first, -1); // an extra end changes nothing
        for i in 1..=QUARANTINE as u64 {
            let a = m.translate(0x100_0000 + i * 0x10_0000, 4096).unwrap();
            assert!(!seen.contains(&a), "reused before the quarantine passed");
            seen.push(a);
            m.count_live(a, 1);
            m.mapped(a);
            m.count_live(a, -1);
        }
        // Sixteen newer rooms wait behind the first: it is reused now, once.
        let next = m.translate(0x900_0000, 4096).unwrap();
        assert_eq!(next, first);
        let after = m.translate(0xa00_0000, 4096).unwrap();
        assert!(!seen.contains(&after));
        // A room whose buffer is mapped again leaves the queue.
        let mut m = PhysMap::new(4, LINE);
        let a = m.translate(0x100_0000, 4096).unwrap();
        m.count_live(a, 1);
        m.mapped(a);
        m.count_live(a, -1);
        m.count_live(a, 1);
        assert!(m.freed.is_empty());
        // A region whose map was refused retires nothing: translating the
        // buffer again (to unmap its bounce) gives the same address, even
        // after a neighbour sharing its line was mapped and unmapped.
        let b = m.translate(0x200_0000, 1).unwrap();
        m.count_live(b, 1);
        m.count_live(b, -1);
        m.pin(b);
        let c = m.translate(0x200_0010, 16).unwrap();
        m.count_live(c, 1);
        m.mapped(c);
        m.count_live(c, -1);
        assert_eq!(m.translate(0x200_0000, 1).unwrap(), b);
    }

    #[test]
    fn a_retired_buffer_keeps_its_address_until_its_memory_is_reused() {
        let mut m = PhysMap::new(9, LINE);
        let a = m.translate(0x7000, 256).unwrap();
        // Translating again before mapping gives the same address.
        assert_eq!(m.translate(0x7000, 256).unwrap(), a);
        m.count_live(a, 1);
        m.mapped(a);
        m.count_live(a, -1);
        // Re-mapping the old address still finds the memory...
        assert_eq!(m.to_host(a, 256), Some(0x7000));
        // ...but a new buffer there is placed afresh, and the old address
        // is gone.
        let b = m.translate(0x7000, 128).unwrap();
        assert_ne!(a, b);
        assert_eq!(m.to_host(a, 1), None);
    }
}
