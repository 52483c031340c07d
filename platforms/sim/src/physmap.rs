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
//! Sim addresses are never reused within a machine: a stale address of a
//! freed allocation or a retired buffer is refused, never another
//! buffer's memory.
//!
//! [`SimMemory`]: crate::SimMemory

use std::collections::BTreeMap;

use dma_core::{Error, ErrorKind, Result};

use crate::rng::SplitMix64;

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
    /// Translated heap memory with this many live regions in it.
    Heap { live: u32, was_live: bool },
}

/// One host range at one sim range.
#[derive(Clone, Copy, Debug)]
struct Extent {
    host: u64,
    sim: u64,
    len: u64,
    /// The sim range it may grow into (its own; no other extent's).
    room: (u64, u64),
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
                was_live: true
            }
        )
    }
}

/// The sim's physical address space.
pub(crate) struct PhysMap {
    line: u64,
    rng: SplitMix64,
    /// Extents by host start.
    by_host: BTreeMap<u64, Extent>,
    /// Host start by sim start.
    by_sim: BTreeMap<u64, u64>,
    /// Next free sim address of each zone (low, high, heap).
    next: [u64; 3],
}

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
            by_host: BTreeMap::new(),
            by_sim: BTreeMap::new(),
            next,
        }
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
        self.by_sim.insert(e.sim, e.host);
        self.by_host.insert(e.host, e);
    }

    fn remove(&mut self, host: u64) -> Option<Extent> {
        let e = self.by_host.remove(&host)?;
        self.by_sim.remove(&e.sim);
        Some(e)
    }

    /// Host starts of the extents overlapping or touching `[lo, hi)`.
    fn near(&self, lo: u64, hi: u64) -> Vec<u64> {
        let mut found: Vec<u64> = self.by_host.range(lo..=hi).map(|(h, _)| *h).collect();
        if let Some((h, e)) = self.by_host.range(..lo).next_back() {
            if e.host_end() >= lo {
                found.insert(0, *h);
            }
        }
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
        for h in self.near(host, host + len) {
            let e = self.by_host[&h];
            if e.host < host + len && e.host_end() > host {
                self.remove(h);
            }
        }
        self.insert(Extent {
            host,
            sim,
            len,
            room: (sim, sim + len),
            kind: Kind::Pages,
        });
        Ok(sim)
    }

    /// Ends the allocation at sim address `sim`; returns its host start.
    pub(crate) fn free(&mut self, sim: u64) -> Option<u64> {
        let host = *self.by_sim.get(&sim)?;
        if self.by_host.get(&host)?.kind != Kind::Pages {
            return None;
        }
        self.remove(host).map(|e| e.host)
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
        // Bytes sharing a line with an extent must join it; a range that
        // starts or ends exactly where one does continues it (the pages of
        // one buffer translated one by one).
        let (mut sharing, mut continuing) = (None, None);
        for h in self.near(lo, hi) {
            let e = self.by_host[&h];
            let overlaps = e.host < hi && e.host_end() > lo;
            if e.retired() {
                if overlaps {
                    self.remove(h);
                }
            } else if overlaps && sharing.is_some() {
                return Err(Error::new(
                    ErrorKind::NotContiguous,
                    "the range joins host memory the sim already placed apart (buffers \
                     translated separately); translate and map each buffer on its own",
                )
                .at(host)
                .len(len));
            } else if overlaps {
                sharing = Some(e);
            } else if host == e.host_end() || end == e.host {
                continuing = Some(e);
            }
        }
        if let Some(e) = sharing {
            return self
                .extend(e, lo, hi)
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
        match continuing.and_then(|e| self.extend(e, lo, hi)) {
            Some(e) => Ok(e.sim + (host - e.host)),
            None => Ok(self.place(lo, hi) + (host - lo)),
        }
    }

    /// Grows `e` to cover host lines `[lo, hi)` too, if its room allows.
    fn extend(&mut self, mut e: Extent, lo: u64, hi: u64) -> Option<Extent> {
        let (new_lo, new_hi) = (lo.min(e.host), hi.max(e.host_end()));
        let sim_lo = e.sim - (e.host - new_lo);
        if sim_lo < e.room.0 || sim_lo + (new_hi - new_lo) > e.room.1 {
            return None;
        }
        if (new_lo, new_hi) != (e.host, e.host_end()) {
            self.remove(e.host);
            e.sim = sim_lo;
            e.host = new_lo;
            e.len = new_hi - new_lo;
            self.insert(e);
        }
        Some(e)
    }

    /// A new heap extent for the whole lines `[lo, hi)`, at a page
    /// boundary a quarter into room four times its size.
    fn place(&mut self, lo: u64, hi: u64) -> u64 {
        let len = hi - lo;
        let room = len.saturating_mul(4).next_multiple_of(SLOT).max(SLOT);
        // The heap zone holds 2^46 - 2^38 bytes: a process runs out of
        // host memory long before.
        let start = self
            .take(Z_HEAP, room, u64::MAX)
            .expect("the sim's heap zone outlasts host memory");
        let sim = start + (room / 4).next_multiple_of(PAGE);
        self.insert(Extent {
            host: lo,
            sim,
            len,
            room: (start, start + room),
            kind: Kind::Heap {
                live: 0,
                was_live: false,
            },
        });
        sim
    }

    /// The extent holding sim bytes `[sim, sim + len)`, if one does.
    fn at_sim(&self, sim: u64, len: u64) -> Option<&Extent> {
        let (_, host) = self.by_sim.range(..=sim).next_back()?;
        let e = &self.by_host[host];
        (sim.checked_add(len)? <= e.sim + e.len).then_some(e)
    }

    /// The host address of sim bytes `[sim, sim + len)`, when they are
    /// host memory contiguously.
    pub(crate) fn to_host(&self, sim: u64, len: u64) -> Option<u64> {
        self.at_sim(sim, len).map(|e| e.host + (sim - e.sim))
    }

    /// The sim address of host bytes `[host, host + len)`, when they have
    /// one (no new placement).
    pub(crate) fn to_sim(&self, host: u64, len: u64) -> Option<u64> {
        let (_, e) = self.by_host.range(..=host).next_back()?;
        (host.checked_add(len)? <= e.host_end()).then(|| e.sim + (host - e.host))
    }

    /// A region at sim address `sim` became live (`+1`) or ended (`-1`).
    pub(crate) fn count_live(&mut self, sim: u64, delta: i32) {
        let Some((_, host)) = self.by_sim.range(..=sim).next_back() else {
            return;
        };
        let host = *host;
        if self.by_host[&host].sim + self.by_host[&host].len <= sim {
            return;
        }
        if let Some(Extent {
            kind: Kind::Heap { live, was_live },
            ..
        }) = self.by_host.get_mut(&host)
        {
            *live = live.saturating_add_signed(delta);
            *was_live = true;
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
    fn a_retired_buffer_keeps_its_address_until_its_memory_is_reused() {
        let mut m = PhysMap::new(9, LINE);
        let a = m.translate(0x7000, 256).unwrap();
        // Translating again before mapping gives the same address.
        assert_eq!(m.translate(0x7000, 256).unwrap(), a);
        m.count_live(a, 1);
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
