//! The non-coherent cache model: for every tracked cache line, what RAM
//! holds (the device's view) next to the CPU's view, which is the host
//! memory the driver touches through its pointers.
//!
//! Per line the model knows three values:
//! - `wb`: what the CPU's cache line held when it was last written back or
//!   filled, so "dirty" is "host bytes differ from `wb`" (the sim cannot
//!   see CPU stores, only their result);
//! - `ram`: the device's view;
//! - `synced`: what the CPU view held at the last *driver* maintenance
//!   (clean or invalidate), so "the CPU wrote since it last synced" is
//!   "host differs from `synced`", even when a lucky eviction already wrote
//!   the data back. That is what makes detection independent of the seed.
//!
//! Most of the time all three are equal, so only `wb` is always stored: a
//! line's RAM and its synced snapshot have their own copy only while they
//! differ from it (the `ram_own` and `synced_own` bitmaps). Device writes
//! give RAM its own copy, an eviction gives the snapshot its own copy, and
//! maintenance folds both back into `wb`. Per-line flags are bitmaps over a
//! page's lines (a page has at most 128 lines of 32 bytes), so range checks
//! are a few word operations instead of a walk over line records.
//!
//! Only bytes inside tracked regions (live mappings and allocations) are
//! ever read or written on the host side: a line's `mask` says which ones.
//! A line shared with untracked data is modelled for its tracked bytes
//! only, so the sim never touches memory it was not given.
//!
//! A line that starts being tracked holds the CPU's bytes in all three
//! values, but is *uncleaned*: the CPU may have written it before it became
//! mappable, and only a clean (or an invalidate, or a device write of it)
//! proves RAM holds what the CPU sees. A device read of an uncleaned line
//! is reported, so a buffer mapped with `SKIP_CPU_SYNC` and never synced
//! is caught whatever RAM happened to hold.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::host;
use page::{bits, ones, runs, PageShadow, View};

mod page;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

/// The shadow granule; a multiple of every supported line size.
pub(crate) const PAGE: u64 = 4096;

/// A run of offending lines found by one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Finding {
    /// The first offending line's address.
    pub(crate) first: Option<u64>,
    /// How many lines.
    pub(crate) count: usize,
}

impl Finding {
    /// The lines holding bytes `[lo, hi)` (`lo < hi`).
    pub(crate) fn span(lo: u64, hi: u64, line: u64) -> Self {
        let first = lo & !(line - 1);
        let last = (hi - 1) & !(line - 1);
        Self {
            first: Some(first),
            count: ((last - first) / line + 1) as usize,
        }
    }

    fn merge(&mut self, other: Finding) {
        if self.first.is_none() {
            self.first = other.first;
        }
        self.count += other.count;
    }

    fn add(&mut self, line: u64) {
        if self.first.is_none() {
            self.first = Some(line);
        }
        self.count += 1;
    }
}

/// What an operation did, for the statistics and the detector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) lines: usize,
    pub(crate) finding: Finding,
}

/// Hashes the machine's `u64` keys (page numbers, region ids): one
/// multiply by an odd constant spreads consecutive keys over both the
/// bucket bits and the tag bits, for a fraction of SipHash's cost (the
/// keys are the machine's own, not an attacker's).
#[derive(Default)]
pub(crate) struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) struct Shadow {
    line: u64,
    /// `log2(line)`: line sizes are powers of two (32, 64 or 128, checked
    /// by `Sim::new`), so line indices are shifts, not divisions.
    shift: u32,
    full: u128,
    pages: HashMap<u64, Box<PageShadow>, BuildHasherDefault<PageHasher>>,
    /// Freed page shadows, reused (mappings come and go per I/O).
    spare: Vec<Box<PageShadow>>,
}

impl Shadow {
    pub(crate) fn new(line: usize) -> Self {
        debug_assert!(line.is_power_of_two());
        Self {
            line: line as u64,
            shift: line.trailing_zeros(),
            full: bits(0, line),
            pages: HashMap::default(),
            spare: Vec::new(),
        }
    }

    pub(crate) fn line_size(&self) -> u64 {
        self.line
    }

    /// `[addr, addr + len)` split at page boundaries: `(page number, page
    /// address, first offset, end offset, position in the range)`.
    fn segments(addr: u64, len: u64) -> impl Iterator<Item = (u64, u64, usize, usize, usize)> {
        let end = addr.saturating_add(len);
        let mut a = addr;
        core::iter::from_fn(move || {
            if a >= end {
                return None;
            }
            let base = a & !(PAGE - 1);
            let e = end.min(base + PAGE);
            let seg = (
                base / PAGE,
                base,
                (a - base) as usize,
                (e - base) as usize,
                (a - addr) as usize,
            );
            a = e;
            Some(seg)
        })
    }

    /// The lines `[lo, hi)` touches, as indices and as a bitmap.
    fn lines(&self, lo: usize, hi: usize) -> (usize, usize, u128) {
        let line = self.line as usize;
        let (l0, l1) = (lo >> self.shift, (hi + line - 1) >> self.shift);
        (l0, l1, bits(l0, l1))
    }

    fn page_or_new(&mut self, page_no: u64) -> &mut PageShadow {
        let spare = &mut self.spare;
        self.pages
            .entry(page_no)
            .or_insert_with(|| spare.pop().unwrap_or_else(PageShadow::new))
    }

    /// Starts tracking `[addr, addr + len)`, whose bytes are at host
    /// address `host` (the CPU's view); newly tracked bytes start
    /// clean and coherent (see the module docs). Returns whether every line
    /// of the range was new and filled whole from the host (so, until the
    /// CPU next writes, [`clean_unchanged`](Self::clean_unchanged) may
    /// stand for a clean of the range).
    ///
    /// # Safety
    ///
    /// `[host, host + len)` is live host memory (the region being made
    /// live), and every tracked byte of the pages it touches lies at the
    /// same distance from its physical address (one extent of the
    /// machine's physical map).
    pub(crate) unsafe fn track(&mut self, addr: u64, host: u64, len: u64) -> bool {
        let (line, full) = (self.line as usize, self.full);
        let delta = host.wrapping_sub(addr);
        let mut filled = true;
        for (page_no, base, lo, hi, _) in Self::segments(addr, len) {
            let (l0, l1, range) = self.lines(lo, hi);
            let page = self.page_or_new(page_no);
            debug_assert!(page.live == 0 || page.host == base.wrapping_add(delta));
            page.host = base.wrapping_add(delta);
            if lo % line == 0 && hi % line == 0 && page.live & range == 0 {
                // Fresh whole lines: one copy of the host bytes is all three
                // values.
                // SAFETY: the caller vouches for the range.
                unsafe { host::read_bulk(page.host + lo as u64, &mut page.wb[lo..hi]) };
                page.refs[l0..l1].fill(1);
                page.live |= range;
                page.whole |= range;
                page.ram_own &= !range;
                page.synced_own &= !range;
                page.device_wrote &= !range;
                page.uncleaned |= range;
                continue;
            }
            filled = false;
            for idx in l0..l1 {
                let bit = 1u128 << idx;
                let off = idx * line;
                let (s_lo, s_hi) = (lo.max(off) - off, hi.min(off + line) - off);
                if page.refs[idx] == 0 {
                    page.live |= bit;
                    page.masks[idx] = 0;
                    page.device_wrote &= !bit;
                    page.ram_own &= !bit;
                    page.synced_own &= !bit;
                }
                // New bytes in the line: until a clean, RAM may lack them.
                page.uncleaned |= bit;
                page.refs[idx] += 1;
                let old = page.mask(idx, line);
                let mask = old | bits(s_lo, s_hi);
                let fresh = mask & !old;
                if mask == full {
                    page.whole |= bit;
                } else {
                    page.masks[idx] = mask;
                }
                for (s, e) in runs(fresh) {
                    let r = off + s..off + e;
                    // SAFETY: inside the range the caller vouched for.
                    unsafe { host::read(page.host + r.start as u64, &mut page.wb[r.clone()]) };
                    if page.ram_own & bit != 0 {
                        page.ram[r.clone()].copy_from_slice(&page.wb[r.clone()]);
                    }
                    if page.synced_own & bit != 0 {
                        page.synced[r.clone()].copy_from_slice(&page.wb[r]);
                    }
                }
            }
        }
        filled
    }

    /// Stops tracking `[addr, addr + len)`. `still` gives, for a line still
    /// referenced by other regions, the mask of bytes they cover.
    pub(crate) fn untrack(&mut self, addr: u64, len: u64, still: impl Fn(u64) -> u128) {
        let (line, full) = (self.line as usize, self.full);
        for (page_no, base, lo, hi, _) in Self::segments(addr, len) {
            let (l0, l1, _) = self.lines(lo, hi);
            let Some(page) = self.pages.get_mut(&page_no) else {
                continue;
            };
            let range = bits(l0, l1);
            if lo % line == 0
                && hi % line == 0
                && page.whole & range == range
                // Without an early exit, so the compiler vectorises it.
                && page.refs[l0..l1].iter().fold(true, |all, &r| all & (r == 1))
            {
                // Whole lines of this region only: they all stop being live.
                page.refs[l0..l1].fill(0);
                page.live &= !range;
                page.whole &= !range;
                page.device_wrote &= !range;
                page.ram_own &= !range;
                page.synced_own &= !range;
                page.uncleaned &= !range;
            } else {
                for idx in l0..l1 {
                    let bit = 1u128 << idx;
                    if page.refs[idx] == 0 {
                        continue;
                    }
                    page.refs[idx] -= 1;
                    if page.refs[idx] == 0 {
                        page.live &= !bit;
                        page.whole &= !bit;
                        page.device_wrote &= !bit;
                        page.ram_own &= !bit;
                        page.synced_own &= !bit;
                        page.uncleaned &= !bit;
                    } else {
                        let mask = still(base + (idx * line) as u64);
                        if mask == full {
                            page.whole |= bit;
                        } else {
                            page.whole &= !bit;
                            page.masks[idx] = mask;
                        }
                    }
                }
            }
            if page.live == 0 {
                if let Some(page) = self.pages.remove(&page_no) {
                    if self.spare.len() < 64 {
                        self.spare.push(page);
                    }
                }
            }
        }
    }

    /// Clean: writes dirty tracked lines in the range back to RAM.
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory.
    pub(crate) unsafe fn clean(&mut self, addr: u64, len: u64) -> Outcome {
        let line = self.line as usize;
        let mut out = Outcome::default();
        for (page_no, base, lo, hi, _) in Self::segments(addr, len) {
            let (_, _, range) = self.lines(lo, hi);
            let Some(page) = self.pages.get_mut(&page_no) else {
                continue;
            };
            let live = range & page.live;
            let mut over = 0u128;
            // Runs of whole lines are scanned in one pass for dirty lines.
            for (r0, r1) in runs(live & page.whole) {
                let (mut pos, end) = (r0 * line, r1 * line);
                loop {
                    // SAFETY: whole tracked lines are live.
                    let dirty = unsafe {
                        host::first_difference(page.host + pos as u64, &page.wb[pos..end])
                    };
                    let Some(d) = dirty else {
                        break;
                    };
                    let idx = (pos + d) / line;
                    // SAFETY: forwarded.
                    let (_, o) = unsafe { page.write_back(page.host, idx, line, false) };
                    over |= u128::from(o) << idx;
                    pos = (idx + 1) * line;
                    if pos >= end {
                        break;
                    }
                }
            }
            for idx in ones(live & !page.whole) {
                // SAFETY: forwarded.
                let (_, o) = unsafe { page.write_back(page.host, idx, line, false) };
                over |= u128::from(o) << idx;
            }
            if over != 0 {
                out.finding.merge(Finding {
                    first: Some(base + (over.trailing_zeros() as usize * line) as u64),
                    count: over.count_ones() as usize,
                });
            }
            // The driver's snapshot is now what was written back.
            page.synced_own &= !live;
            page.uncleaned &= !live;
            out.lines += live.count_ones() as usize;
        }
        out
    }

    /// A clean of a range whose host bytes are known to equal what the cache
    /// holds: [`track`](Self::track) filled it and the CPU has not run
    /// since (the backend's clean inside the same map call). A clean would
    /// compare every line, find none dirty and only move the driver's
    /// snapshot to `wb`; this does just that, without reading the host.
    pub(crate) fn clean_unchanged(&mut self, addr: u64, len: u64) -> Outcome {
        let mut out = Outcome::default();
        for (page_no, _, lo, hi, _) in Self::segments(addr, len) {
            let (_, _, range) = self.lines(lo, hi);
            let Some(page) = self.pages.get_mut(&page_no) else {
                continue;
            };
            let live = range & page.live;
            page.synced_own &= !live;
            page.uncleaned &= !live;
            out.lines += live.count_ones() as usize;
        }
        out
    }

    /// Invalidate: the CPU view of every tracked line in the range is
    /// reloaded from RAM (dirty CPU data is discarded, as the instruction
    /// does).
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory the caller owns.
    pub(crate) unsafe fn invalidate(&mut self, addr: u64, len: u64) -> Outcome {
        let line = self.line as usize;
        let mut out = Outcome::default();
        for (page_no, _, lo, hi, _) in Self::segments(addr, len) {
            let (_, _, range) = self.lines(lo, hi);
            let Some(page) = self.pages.get_mut(&page_no) else {
                continue;
            };
            let live = range & page.live;
            // The reload makes the cache, and the snapshot, RAM.
            if live == page.live && page.ram_own & live == live {
                // Every live line of the page has its own RAM: what `wb`
                // held is needed by none of them.
                core::mem::swap(&mut page.wb, &mut page.ram);
            } else {
                for (l0, l1) in runs(live & page.ram_own) {
                    let r = l0 * line..l1 * line;
                    page.wb[r.clone()].copy_from_slice(&page.ram[r]);
                }
            }
            page.ram_own &= !live;
            page.synced_own &= !live;
            page.device_wrote &= !live;
            page.uncleaned &= !live;
            // SAFETY: forwarded.
            unsafe { page.store_to_host(page.host, live, line) };
            out.lines += live.count_ones() as usize;
        }
        out
    }

    /// A device read of tracked bytes: from RAM. Finds bytes the CPU wrote
    /// after its last maintenance (the device gets stale data).
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory; `[addr, addr + out.len())` is
    /// tracked.
    pub(crate) unsafe fn device_read(
        &mut self,
        addr: u64,
        out: &mut [u8],
        detect: bool,
    ) -> Finding {
        let line = self.line as usize;
        let mut finding = Finding::default();
        for (page_no, base, lo, hi, pos) in Self::segments(addr, out.len() as u64) {
            let Some(page) = self.pages.get(&page_no) else {
                continue;
            };
            page.view(View::Ram, lo, hi, line, |off, bytes| {
                out[pos + off - lo..pos + off - lo + bytes.len()].copy_from_slice(bytes);
            });
            // SAFETY: the accessed bytes are tracked, hence live.
            if !detect || unsafe { page.host_matches(View::Synced, page.host, lo, hi, line) } {
                continue;
            }
            let (l0, l1, _) = self.lines(lo, hi);
            for idx in l0..l1 {
                let off = idx * line;
                let (a, b) = (lo.max(off), hi.min(off + line));
                // SAFETY: `[a, b)` lies within `[lo, hi)`, tracked bytes, hence live.
                if !unsafe { page.host_matches(View::Synced, page.host, a, b, line) } {
                    finding.add(base + off as u64);
                }
            }
        }
        finding
    }

    /// A device write of tracked bytes: into RAM. Finds lines the CPU has
    /// dirtied since its last maintenance (a later eviction would write
    /// them back over the device's data).
    ///
    /// # Safety
    ///
    /// As for [`device_read`](Self::device_read).
    pub(crate) unsafe fn device_write(&mut self, addr: u64, data: &[u8], detect: bool) -> Finding {
        let line = self.line as usize;
        let mut finding = Finding::default();
        for (page_no, base, lo, hi, pos) in Self::segments(addr, data.len() as u64) {
            let (l0, l1, range) = self.lines(lo, hi);
            let Some(page) = self.pages.get_mut(&page_no) else {
                continue;
            };
            if detect {
                let (llo, lhi) = (l0 * line, l1 * line);
                // SAFETY: whole tracked lines are live.
                let clean = page.whole & range == range
                    && unsafe { page.host_matches(View::Synced, page.host, llo, lhi, line) };
                if !clean {
                    for idx in l0..l1 {
                        // SAFETY: tracked bytes are live.
                        if !unsafe {
                            page.line_matches(View::Synced, page.host, idx, line, u128::MAX)
                        } {
                            finding.add(base + (idx * line) as u64);
                        }
                    }
                }
            }
            // Lines written in part keep the rest of their RAM.
            if lo % line != 0 || hi < (l0 + 1) * line {
                page.own(View::Ram, l0, line);
            }
            if hi % line != 0 {
                page.own(View::Ram, l1 - 1, line);
            }
            page.ram[lo..hi].copy_from_slice(&data[pos..pos + hi - lo]);
            page.ram_own |= range;
            page.device_wrote |= range;
            // What the device wrote is what RAM holds, whatever the CPU did
            // before.
            page.uncleaned &= !range;
        }
        finding
    }

    /// Lines in the range whose tracked bytes the CPU changed since its last
    /// maintenance.
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory.
    pub(crate) unsafe fn cpu_modified(&mut self, addr: u64, len: u64) -> Finding {
        let line = self.line as usize;
        let mut finding = Finding::default();
        for (page_no, base, lo, hi, _) in Self::segments(addr, len) {
            let (_, _, range) = self.lines(lo, hi);
            let Some(page) = self.pages.get(&page_no) else {
                continue;
            };
            // SAFETY: whole tracked lines are live.
            let unchanged = || unsafe { page.host_matches(View::Synced, page.host, lo, hi, line) };
            if page.whole & range == range && unchanged() {
                continue;
            }
            for idx in ones(range & page.live) {
                let off = idx * line;
                let within = bits(lo.max(off) - off, hi.min(off + line) - off);
                // SAFETY: tracked bytes are live.
                if !unsafe { page.line_matches(View::Synced, page.host, idx, line, within) } {
                    finding.add(base + off as u64);
                }
            }
        }
        finding
    }

    /// Writes back every dirty tracked line in the range, as evictions
    /// would (the driver's `synced` snapshot is left alone).
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory.
    pub(crate) unsafe fn clean_by_eviction(&mut self, addr: u64, len: u64) -> Outcome {
        let line = self.line as usize;
        let mut out = Outcome::default();
        for (page_no, base, lo, hi, _) in Self::segments(addr, len) {
            let (_, _, range) = self.lines(lo, hi);
            let Some(page) = self.pages.get_mut(&page_no) else {
                continue;
            };
            for idx in ones(range & page.live) {
                // SAFETY: forwarded.
                let (dirty, over) = unsafe { page.write_back(page.host, idx, line, true) };
                if dirty {
                    out.lines += 1;
                }
                if over {
                    out.finding.add(base + (idx * line) as u64);
                }
            }
        }
        out
    }

    /// Lines in the range never cleaned since they became tracked.
    pub(crate) fn never_cleaned(&self, addr: u64, len: u64) -> Finding {
        let line = self.line as usize;
        let mut finding = Finding::default();
        for (page_no, base, lo, hi, _) in Self::segments(addr, len) {
            let (_, _, range) = self.lines(lo, hi);
            let Some(page) = self.pages.get(&page_no) else {
                continue;
            };
            let stale = range & page.live & page.uncleaned;
            if stale != 0 {
                finding.merge(Finding {
                    first: Some(base + (stale.trailing_zeros() as usize * line) as u64),
                    count: stale.count_ones() as usize,
                });
            }
        }
        finding
    }

    /// Lines in the range the device wrote and the CPU has not invalidated.
    pub(crate) fn not_invalidated(&mut self, addr: u64, len: u64) -> Finding {
        let line = self.line as usize;
        let mut finding = Finding::default();
        for (page_no, base, lo, hi, _) in Self::segments(addr, len) {
            let (_, _, range) = self.lines(lo, hi);
            let Some(page) = self.pages.get(&page_no) else {
                continue;
            };
            let stale = range & page.live & page.device_wrote;
            if stale != 0 {
                finding.merge(Finding {
                    first: Some(base + (stale.trailing_zeros() as usize * line) as u64),
                    count: stale.count_ones() as usize,
                });
            }
        }
        finding
    }

    /// Evicts the line holding `addr`: written back if dirty. Returns
    /// whether it was dirty and whether that overwrote device data.
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory.
    pub(crate) unsafe fn evict(&mut self, addr: u64) -> (bool, bool) {
        let line = self.line as usize;
        let base = addr & !(PAGE - 1);
        let Some(page) = self.pages.get_mut(&(addr / PAGE)) else {
            return (false, false);
        };
        let idx = (addr - base) as usize >> self.shift;
        if page.live >> idx & 1 == 0 {
            return (false, false);
        }
        // SAFETY: forwarded.
        unsafe { page.write_back(page.host, idx, line, true) }
    }

    /// Whether every byte of `[addr, addr + len)` is tracked.
    #[cfg(test)]
    pub(crate) fn covers(&self, addr: u64, len: u64) -> bool {
        let line = self.line as usize;
        Self::segments(addr, len).all(|(page_no, _, lo, hi, _)| {
            let Some(page) = self.pages.get(&page_no) else {
                return false;
            };
            let (l0, l1, _) = self.lines(lo, hi);
            (l0..l1).all(|idx| {
                let off = idx * line;
                let want = bits(lo.max(off) - off, hi.min(off + line) - off);
                page.mask(idx, line) & want == want
            })
        })
    }

    /// Whether the line is tracked with every byte covered.
    #[cfg(test)]
    pub(crate) fn line_full(&self, l: u64) -> bool {
        let idx = (l % PAGE) as usize / self.line as usize;
        self.pages
            .get(&(l / PAGE))
            .is_some_and(|p| p.whole >> idx & 1 == 1)
    }

    /// Number of shadow pages alive (tests check nothing leaks).
    pub(crate) fn pages(&self) -> usize {
        self.pages.len()
    }
}
