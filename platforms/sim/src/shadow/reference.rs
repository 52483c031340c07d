//! The cache model as first written: every operation line by line (with
//! whole-range shortcuts), three full copies per page. Kept as the oracle
//! the differential tests check the bitmap model against.

#![allow(dead_code)]

use std::collections::HashMap;

pub(crate) use super::{Finding, Outcome};
use crate::host;

/// The shadow granule; a multiple of every supported line size.
const PAGE: u64 = 4096;
const MAX_LINES: usize = (PAGE / 32) as usize;

#[derive(Clone, Copy, Default)]
struct LineMeta {
    /// Bit `i` set: byte `i` of the line is tracked.
    mask: u128,
    /// How many tracked regions touch the line.
    refs: u32,
    /// The device wrote RAM since the CPU last invalidated the line.
    device_wrote: bool,
}

struct PageShadow {
    ram: [u8; PAGE as usize],
    wb: [u8; PAGE as usize],
    synced: [u8; PAGE as usize],
    meta: [LineMeta; MAX_LINES],
    live_lines: u32,
    order_index: usize,
}

fn bits(lo: usize, hi: usize) -> u128 {
    let n = hi - lo;
    if n == 0 {
        0
    } else if n >= 128 {
        u128::MAX
    } else {
        ((1u128 << n) - 1) << lo
    }
}

/// Contiguous runs of set bits, as `(start, end)` byte offsets.
fn runs(mut mask: u128) -> impl Iterator<Item = (usize, usize)> {
    let mut base = 0usize;
    core::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let skip = mask.trailing_zeros() as usize;
        mask = mask.checked_shr(skip as u32).unwrap_or(0);
        let len = mask.trailing_ones() as usize;
        let start = base + skip;
        mask = mask.checked_shr(len as u32).unwrap_or(0);
        base = start + len;
        Some((start, start + len))
    })
}

pub(crate) struct Shadow {
    line: u64,
    full: u128,
    pages: HashMap<u64, Box<PageShadow>>,
    order: Vec<u64>,
    /// Freed page shadows, reused (mappings come and go per I/O).
    spare: Vec<Box<PageShadow>>,
    scratch: Box<[u8; PAGE as usize]>,
}

impl Shadow {
    pub(crate) fn new(line: usize) -> Self {
        Self {
            line: line as u64,
            full: bits(0, line),
            pages: HashMap::new(),
            order: Vec::new(),
            spare: Vec::new(),
            scratch: Box::new([0; PAGE as usize]),
        }
    }

    pub(crate) fn line_size(&self) -> u64 {
        self.line
    }

    /// Visits every line overlapping `[addr, addr + len)` whose page exists
    /// (or, with `create`, every line): `(page, line index, line address,
    /// first byte in line, end byte in line)`.
    fn for_lines(
        &mut self,
        addr: u64,
        len: u64,
        create: bool,
        mut f: impl FnMut(&mut PageShadow, usize, u64, usize, usize),
    ) {
        if len == 0 {
            return;
        }
        let line = self.line;
        let end = addr.saturating_add(len);
        let mut page_addr = addr & !(PAGE - 1);
        while page_addr < end {
            let page_no = page_addr / PAGE;
            if create {
                self.ensure_page(page_no);
            }
            if let Some(page) = self.pages.get_mut(&page_no) {
                let lo = addr.max(page_addr);
                let hi = end.min(page_addr + PAGE);
                let mut l = lo & !(line - 1);
                while l < hi {
                    let idx = ((l - page_addr) / line) as usize;
                    let b_lo = (lo.max(l) - l) as usize;
                    let b_hi = (hi.min(l + line) - l) as usize;
                    f(page, idx, l, b_lo, b_hi);
                    l += line;
                }
            }
            page_addr += PAGE;
        }
    }

    fn ensure_page(&mut self, page_no: u64) {
        if self.pages.contains_key(&page_no) {
            return;
        }
        let index = self.order.len();
        self.order.push(page_no);
        // A spare page's metadata is all default: untrack resets every line
        // before the page is retired.
        let mut page = self.spare.pop().unwrap_or_else(|| {
            Box::new(PageShadow {
                ram: [0; PAGE as usize],
                wb: [0; PAGE as usize],
                synced: [0; PAGE as usize],
                meta: [LineMeta::default(); MAX_LINES],
                live_lines: 0,
                order_index: 0,
            })
        });
        page.order_index = index;
        page.live_lines = 0;
        self.pages.insert(page_no, page);
    }

    /// `[addr, addr + len)` split at page boundaries.
    fn segments(addr: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
        let end = addr.saturating_add(len);
        let mut a = addr;
        core::iter::from_fn(move || {
            if a >= end {
                return None;
            }
            let e = end.min((a & !(PAGE - 1)) + PAGE);
            let seg = (a, e);
            a = e;
            Some(seg)
        })
    }

    /// For a segment inside one page: the line-extended page offsets
    /// `(lo, hi)` if every line it touches is tracked whole.
    fn whole_lines(&self, a: u64, e: u64) -> Option<(usize, usize)> {
        let page = self.pages.get(&(a / PAGE))?;
        let line = self.line as usize;
        let l0 = (a % PAGE) as usize / line;
        let l1 = ((e - 1) % PAGE) as usize / line + 1;
        page.meta[l0..l1]
            .iter()
            .all(|m| m.refs > 0 && m.mask == self.full)
            .then_some((l0 * line, l1 * line))
    }

    fn mark_lines(
        page: &mut PageShadow,
        lo: usize,
        hi: usize,
        line: usize,
        f: impl Fn(&mut LineMeta),
    ) {
        for m in &mut page.meta[lo / line..hi.div_ceil(line)] {
            f(m);
        }
    }

    /// Starts tracking `[addr, addr + len)`; newly tracked bytes start
    /// clean and coherent (see the module docs).
    ///
    /// # Safety
    ///
    /// `[addr, addr + len)` is live host memory (the region being made
    /// live).
    pub(crate) unsafe fn track(&mut self, addr: u64, len: u64) {
        let line = self.line;
        for (a, e) in Self::segments(addr, len) {
            let page_no = a / PAGE;
            self.ensure_page(page_no);
            let Some(page) = self.pages.get_mut(&page_no) else {
                continue;
            };
            let (lo, hi) = ((a % PAGE) as usize, ((e - 1) % PAGE) as usize + 1);
            let aligned = a % line == 0 && e % line == 0;
            let fresh = page.meta[lo / line as usize..hi / line as usize]
                .iter()
                .all(|m| m.refs == 0);
            if aligned && fresh {
                // SAFETY: the caller vouches for the range.
                unsafe { host::read(a, &mut page.ram[lo..hi]) };
                let (ram, wb, synced) = (&page.ram, &mut page.wb, &mut page.synced);
                wb[lo..hi].copy_from_slice(&ram[lo..hi]);
                synced[lo..hi].copy_from_slice(&ram[lo..hi]);
                let full = self.full;
                Self::mark_lines(page, lo, hi, line as usize, |m| {
                    *m = LineMeta {
                        mask: full,
                        refs: 1,
                        device_wrote: false,
                    }
                });
                page.live_lines += ((hi - lo) / line as usize) as u32;
            } else {
                // SAFETY: forwarded.
                unsafe { self.track_lines(a, e - a) };
            }
        }
    }

    /// Clean: writes dirty tracked lines in the range back to RAM.
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory.
    pub(crate) unsafe fn clean(&mut self, addr: u64, len: u64) -> Outcome {
        let mut out = Outcome::default();
        for (a, e) in Self::segments(addr, len) {
            if let Some((lo, hi)) = self.whole_lines(a, e) {
                let base = a & !(PAGE - 1);
                let scratch = &mut self.scratch[lo..hi];
                // SAFETY: whole tracked lines are live.
                unsafe { host::read(base + lo as u64, scratch) };
                if let Some(page) = self.pages.get_mut(&(a / PAGE)) {
                    let line = self.line as usize;
                    if *scratch != page.wb[lo..hi] {
                        // Write back the dirty lines (whole, as a cache does).
                        for l in (lo..hi).step_by(line) {
                            let host_line = &scratch[l - lo..l - lo + line];
                            if *host_line != page.wb[l..l + line] {
                                page.ram[l..l + line].copy_from_slice(host_line);
                                page.wb[l..l + line].copy_from_slice(host_line);
                                let m = &mut page.meta[l / line];
                                if m.device_wrote {
                                    out.finding.add(base + l as u64);
                                }
                                m.device_wrote = false;
                            }
                        }
                    }
                    let (wb, synced) = (&page.wb, &mut page.synced);
                    synced[lo..hi].copy_from_slice(&wb[lo..hi]);
                    out.lines += (hi - lo) / line;
                    continue;
                }
            }
            // SAFETY: forwarded.
            let o = unsafe { self.clean_lines(a, e - a) };
            out.lines += o.lines;
            out.finding.merge(o.finding);
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
        let mut out = Outcome::default();
        let line = self.line as usize;
        for (a, e) in Self::segments(addr, len) {
            if let Some((lo, hi)) = self.whole_lines(a, e) {
                let base = a & !(PAGE - 1);
                if let Some(page) = self.pages.get_mut(&(a / PAGE)) {
                    // SAFETY: whole tracked lines are live.
                    unsafe { host::write(base + lo as u64, &page.ram[lo..hi]) };
                    let (ram, wb, synced) = (&page.ram, &mut page.wb, &mut page.synced);
                    wb[lo..hi].copy_from_slice(&ram[lo..hi]);
                    synced[lo..hi].copy_from_slice(&ram[lo..hi]);
                    Self::mark_lines(page, lo, hi, line, |m| m.device_wrote = false);
                    out.lines += (hi - lo) / line;
                    continue;
                }
            }
            // SAFETY: forwarded.
            out.lines += unsafe { self.invalidate_lines(a, e - a) }.lines;
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
        let mut finding = Finding::default();
        let mut pos = 0usize;
        for (a, e) in Self::segments(addr, out.len() as u64) {
            let n = (e - a) as usize;
            let (lo, hi) = ((a % PAGE) as usize, (a % PAGE) as usize + n);
            let Some(page) = self.pages.get(&(a / PAGE)) else {
                pos += n;
                continue;
            };
            out[pos..pos + n].copy_from_slice(&page.ram[lo..hi]);
            if detect {
                let scratch = &mut self.scratch[lo..hi];
                // SAFETY: the accessed bytes are tracked, hence live.
                unsafe { host::read(a, scratch) };
                if *scratch != page.synced[lo..hi] {
                    let mut tmp = vec![0u8; n];
                    // SAFETY: forwarded.
                    finding.merge(unsafe { self.device_read_lines(a, &mut tmp, true) });
                }
            }
            pos += n;
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
        let mut finding = Finding::default();
        let mut pos = 0usize;
        let line = self.line as usize;
        for (a, e) in Self::segments(addr, data.len() as u64) {
            let n = (e - a) as usize;
            let whole = self.whole_lines(a, e);
            let (lo, hi) = ((a % PAGE) as usize, (a % PAGE) as usize + n);
            if let (Some((llo, lhi)), Some(page)) = (whole, self.pages.get_mut(&(a / PAGE))) {
                let clean = if detect {
                    let scratch = &mut self.scratch[llo..lhi];
                    // SAFETY: whole tracked lines are live.
                    unsafe { host::read((a & !(PAGE - 1)) + llo as u64, scratch) };
                    *scratch == page.synced[llo..lhi]
                } else {
                    true
                };
                if clean {
                    page.ram[lo..hi].copy_from_slice(&data[pos..pos + n]);
                    Self::mark_lines(page, lo, hi, line, |m| m.device_wrote = true);
                    pos += n;
                    continue;
                }
            }
            // SAFETY: forwarded.
            finding.merge(unsafe { self.device_write_lines(a, &data[pos..pos + n], detect) });
            pos += n;
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
        let mut finding = Finding::default();
        for (a, e) in Self::segments(addr, len) {
            if self.whole_lines(a, e).is_some() {
                let (lo, hi) = ((a % PAGE) as usize, ((e - 1) % PAGE) as usize + 1);
                let scratch = &mut self.scratch[lo..hi];
                // SAFETY: whole tracked lines are live.
                unsafe { host::read(a, scratch) };
                if self
                    .pages
                    .get(&(a / PAGE))
                    .is_some_and(|p| *scratch == p.synced[lo..hi])
                {
                    continue;
                }
            }
            // SAFETY: forwarded.
            finding.merge(unsafe { self.cpu_modified_lines(a, e - a) });
        }
        finding
    }

    /// Per-line tracking (edge lines shared with other regions).
    ///
    /// Starts tracking `[addr, addr + len)`; newly tracked bytes start
    /// clean and coherent (see the module docs).
    ///
    /// # Safety
    ///
    /// `[addr, addr + len)` is live host memory (the region being made
    /// live).
    unsafe fn track_lines(&mut self, addr: u64, len: u64) {
        let line = self.line as usize;
        self.for_lines(addr, len, true, |page, idx, l, lo, hi| {
            let m = &mut page.meta[idx];
            if m.refs == 0 {
                m.device_wrote = false;
                m.mask = 0;
                page.live_lines += 1;
            }
            m.refs += 1;
            let fresh = bits(lo, hi) & !m.mask;
            m.mask |= bits(lo, hi);
            let off = idx * line;
            for (s, e) in runs(fresh) {
                // SAFETY: inside the range the caller vouched for.
                unsafe { host::read(l + s as u64, &mut page.ram[off + s..off + e]) };
                let (ram, wb, synced) = (&page.ram, &mut page.wb, &mut page.synced);
                wb[off + s..off + e].copy_from_slice(&ram[off + s..off + e]);
                synced[off + s..off + e].copy_from_slice(&ram[off + s..off + e]);
            }
        });
    }

    /// Stops tracking `[addr, addr + len)`. `still` gives, for a line still
    /// referenced by other regions, the mask of bytes they cover.
    pub(crate) fn untrack(&mut self, addr: u64, len: u64, still: impl Fn(u64) -> u128) {
        let mut emptied = Vec::new();
        self.for_lines(addr, len, false, |page, idx, l, _lo, _hi| {
            let m = &mut page.meta[idx];
            if m.refs == 0 {
                return;
            }
            m.refs -= 1;
            if m.refs == 0 {
                *m = LineMeta::default();
                page.live_lines -= 1;
                if page.live_lines == 0 {
                    emptied.push(l / PAGE);
                }
            } else {
                m.mask = still(l);
            }
        });
        for page_no in emptied {
            if let Some(page) = self.pages.remove(&page_no) {
                let i = page.order_index;
                self.order.swap_remove(i);
                if let Some(&moved) = self.order.get(i) {
                    if let Some(p) = self.pages.get_mut(&moved) {
                        p.order_index = i;
                    }
                }
                if self.spare.len() < 64 {
                    self.spare.push(page);
                }
            }
        }
    }

    /// Writes a line back if dirty; returns whether it was dirty and
    /// whether that overwrote device data.
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory (the machine's invariant).
    unsafe fn write_back(page: &mut PageShadow, idx: usize, l: u64, line: usize) -> (bool, bool) {
        let m = page.meta[idx];
        let off = idx * line;
        let mut host_line = [0u8; 128];
        let mut dirty = false;
        for (s, e) in runs(m.mask) {
            // SAFETY: tracked bytes are live (caller).
            unsafe { host::read(l + s as u64, &mut host_line[s..e]) };
            if host_line[s..e] != page.wb[off + s..off + e] {
                dirty = true;
            }
        }
        if !dirty {
            return (false, false);
        }
        for (s, e) in runs(m.mask) {
            page.ram[off + s..off + e].copy_from_slice(&host_line[s..e]);
            page.wb[off + s..off + e].copy_from_slice(&host_line[s..e]);
        }
        let over = m.device_wrote;
        page.meta[idx].device_wrote = false;
        (true, over)
    }

    /// Clean: writes dirty tracked lines in the range back to RAM.
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory.
    unsafe fn clean_lines(&mut self, addr: u64, len: u64) -> Outcome {
        let line = self.line as usize;
        let mut out = Outcome::default();
        self.for_lines(addr, len, false, |page, idx, l, _lo, _hi| {
            let m = page.meta[idx];
            if m.refs == 0 {
                return;
            }
            out.lines += 1;
            // SAFETY: forwarded.
            let (_, over) = unsafe { Self::write_back(page, idx, l, line) };
            if over {
                out.finding.add(l);
            }
            let off = idx * line;
            for (s, e) in runs(m.mask) {
                let (wb, synced) = (&page.wb, &mut page.synced);
                synced[off + s..off + e].copy_from_slice(&wb[off + s..off + e]);
            }
        });
        out
    }

    /// Invalidate: the CPU view of every tracked line in the range is
    /// reloaded from RAM (dirty CPU data is discarded, as the instruction
    /// does).
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory the caller owns.
    unsafe fn invalidate_lines(&mut self, addr: u64, len: u64) -> Outcome {
        let line = self.line as usize;
        let mut out = Outcome::default();
        self.for_lines(addr, len, false, |page, idx, l, _lo, _hi| {
            let m = page.meta[idx];
            if m.refs == 0 {
                return;
            }
            out.lines += 1;
            let off = idx * line;
            for (s, e) in runs(m.mask) {
                // SAFETY: tracked bytes are live (caller).
                unsafe { host::write(l + s as u64, &page.ram[off + s..off + e]) };
                let (ram, wb, synced) = (&page.ram, &mut page.wb, &mut page.synced);
                wb[off + s..off + e].copy_from_slice(&ram[off + s..off + e]);
                synced[off + s..off + e].copy_from_slice(&ram[off + s..off + e]);
            }
            page.meta[idx].device_wrote = false;
        });
        out
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
        self.for_lines(addr, len, false, |page, idx, l, _lo, _hi| {
            if page.meta[idx].refs == 0 {
                return;
            }
            // SAFETY: forwarded.
            let (dirty, over) = unsafe { Self::write_back(page, idx, l, line) };
            if dirty {
                out.lines += 1;
            }
            if over {
                out.finding.add(l);
            }
        });
        out
    }

    /// Whether every byte of `[addr, addr + len)` is tracked.
    #[cfg(test)]
    pub(crate) fn covers(&mut self, addr: u64, len: u64) -> bool {
        let mut all = true;
        let mut seen = 0u64;
        self.for_lines(addr, len, false, |page, idx, _l, lo, hi| {
            let want = bits(lo, hi);
            if page.meta[idx].mask & want != want {
                all = false;
            }
            seen += (hi - lo) as u64;
        });
        all && seen == len
    }

    /// A device read of tracked bytes: from RAM. Finds bytes the CPU wrote
    /// after its last maintenance (the device gets stale data).
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory; `[addr, addr + out.len())` is
    /// tracked.
    unsafe fn device_read_lines(&mut self, addr: u64, out: &mut [u8], detect: bool) -> Finding {
        let line = self.line as usize;
        let mut finding = Finding::default();
        let mut pos = 0usize;
        self.for_lines(addr, out.len() as u64, false, |page, idx, l, lo, hi| {
            let off = idx * line;
            let n = hi - lo;
            out[pos..pos + n].copy_from_slice(&page.ram[off + lo..off + hi]);
            if detect {
                let mut host_bytes = [0u8; 128];
                // SAFETY: the accessed bytes are tracked, hence live.
                unsafe { host::read(l + lo as u64, &mut host_bytes[..n]) };
                if host_bytes[..n] != page.synced[off + lo..off + hi] {
                    finding.add(l);
                }
            }
            pos += n;
        });
        finding
    }

    /// A device write of tracked bytes: into RAM. Finds lines the CPU has
    /// dirtied since its last maintenance (a later eviction would write
    /// them back over the device's data).
    ///
    /// # Safety
    ///
    /// As for [`device_read`](Self::device_read).
    unsafe fn device_write_lines(&mut self, addr: u64, data: &[u8], detect: bool) -> Finding {
        let line = self.line as usize;
        let mut finding = Finding::default();
        let mut pos = 0usize;
        self.for_lines(addr, data.len() as u64, false, |page, idx, l, lo, hi| {
            let off = idx * line;
            let n = hi - lo;
            page.ram[off + lo..off + hi].copy_from_slice(&data[pos..pos + n]);
            page.meta[idx].device_wrote = true;
            if detect {
                let mask = page.meta[idx].mask;
                let mut host_line = [0u8; 128];
                for (s, e) in runs(mask) {
                    // SAFETY: tracked bytes are live.
                    unsafe { host::read(l + s as u64, &mut host_line[s..e]) };
                    if host_line[s..e] != page.synced[off + s..off + e] {
                        finding.add(l);
                        break;
                    }
                }
            }
            pos += n;
        });
        finding
    }

    /// Lines in the range whose tracked bytes the CPU changed since its last
    /// maintenance.
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory.
    unsafe fn cpu_modified_lines(&mut self, addr: u64, len: u64) -> Finding {
        let line = self.line as usize;
        let mut finding = Finding::default();
        self.for_lines(addr, len, false, |page, idx, l, lo, hi| {
            let off = idx * line;
            let mask = page.meta[idx].mask & bits(lo, hi);
            let mut host_line = [0u8; 128];
            for (s, e) in runs(mask) {
                // SAFETY: tracked bytes are live.
                unsafe { host::read(l + s as u64, &mut host_line[s..e]) };
                if host_line[s..e] != page.synced[off + s..off + e] {
                    finding.add(l);
                    break;
                }
            }
        });
        finding
    }

    /// Lines in the range the device wrote and the CPU has not invalidated.
    pub(crate) fn not_invalidated(&mut self, addr: u64, len: u64) -> Finding {
        let mut finding = Finding::default();
        self.for_lines(addr, len, false, |page, idx, l, _lo, _hi| {
            if page.meta[idx].refs > 0 && page.meta[idx].device_wrote {
                finding.add(l);
            }
        });
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
        let l = addr & !(self.line - 1);
        let Some(page) = self.pages.get_mut(&(l / PAGE)) else {
            return (false, false);
        };
        let idx = (l % PAGE) as usize / line;
        if page.meta[idx].refs == 0 {
            return (false, false);
        }
        // SAFETY: forwarded.
        unsafe { Self::write_back(page, idx, l, line) }
    }

    /// Whether the line is tracked with every byte covered (a fast path
    /// check used by tests).
    #[cfg(test)]
    fn line_full(&mut self, l: u64) -> bool {
        let full = self.full;
        let mut r = false;
        self.for_lines(l, 1, false, |page, idx, _, _, _| {
            r = page.meta[idx].mask == full
        });
        r
    }

    /// Number of shadow pages alive (tests check nothing leaks).
    pub(crate) fn pages(&self) -> usize {
        self.pages.len()
    }
}
