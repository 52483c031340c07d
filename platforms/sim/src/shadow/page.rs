//! One page of the cache model: the cache's copy of each line, RAM and
//! the driver's snapshot where they differ from it, and the per-line state
//! as bitmaps over the page's lines.

use crate::host;

use super::PAGE;

const PAGE_BYTES: usize = PAGE as usize;
/// Lines in a page at the smallest line size.
const MAX_LINES: usize = PAGE_BYTES / 32;

/// Bits `lo..hi` set (byte offsets in a line, or line indices in a page).
pub(super) fn bits(lo: usize, hi: usize) -> u128 {
    let n = hi - lo;
    if n == 0 {
        0
    } else if n >= 128 {
        u128::MAX
    } else {
        ((1u128 << n) - 1) << lo
    }
}

/// Contiguous runs of set bits, as `(start, end)` bit indices.
pub(super) fn runs(mut mask: u128) -> impl Iterator<Item = (usize, usize)> {
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

/// Indices of set bits, lowest first.
pub(super) fn ones(mut mask: u128) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}

/// Which of the lazily stored values to read.
#[derive(Clone, Copy)]
pub(super) enum View {
    Ram,
    Synced,
}

pub(super) struct PageShadow {
    /// The host address of the page's first byte (its tracked bytes are
    /// the CPU's view; the page itself is a sim physical page).
    pub(super) host: u64,
    pub(super) wb: Box<[u8; PAGE_BYTES]>,
    /// RAM of the lines in `ram_own`; other lines' RAM is their `wb`.
    /// (Boxed, as `wb` is, so a reload of a whole page swaps the two.)
    pub(super) ram: Box<[u8; PAGE_BYTES]>,
    /// The snapshot of the lines in `synced_own`; others' is their `wb`.
    pub(super) synced: [u8; PAGE_BYTES],
    /// Of a live line not tracked whole: bit `i` set if its byte `i` is.
    pub(super) masks: [u128; MAX_LINES],
    /// How many tracked regions touch each line.
    pub(super) refs: [u32; MAX_LINES],
    /// Lines with `refs > 0`.
    pub(super) live: u128,
    /// Live lines tracked in every byte.
    pub(super) whole: u128,
    /// The device wrote RAM since the CPU last invalidated the line.
    pub(super) device_wrote: u128,
    pub(super) ram_own: u128,
    pub(super) synced_own: u128,
    /// Lines not cleaned since they became tracked: the CPU may hold
    /// dirty data for them that RAM never got (dirty by default).
    pub(super) uncleaned: u128,
}

impl PageShadow {
    pub(super) fn new() -> Box<Self> {
        Box::new(Self {
            host: 0,
            wb: Box::new([0; PAGE_BYTES]),
            ram: Box::new([0; PAGE_BYTES]),
            synced: [0; PAGE_BYTES],
            masks: [0; MAX_LINES],
            refs: [0; MAX_LINES],
            live: 0,
            whole: 0,
            device_wrote: 0,
            ram_own: 0,
            synced_own: 0,
            uncleaned: 0,
        })
    }

    /// Which bytes of line `idx` are tracked.
    pub(super) fn mask(&self, idx: usize, line: usize) -> u128 {
        if self.whole >> idx & 1 == 1 {
            bits(0, line)
        } else if self.live >> idx & 1 == 1 {
            self.masks[idx]
        } else {
            0
        }
    }

    fn own_bits(&self, view: View) -> (u128, &[u8; PAGE_BYTES]) {
        match view {
            View::Ram => (self.ram_own, &*self.ram),
            View::Synced => (self.synced_own, &self.synced),
        }
    }

    /// Calls `f(offset, bytes)` over `[lo, hi)` of the page as `view` holds
    /// it, in as few pieces as the ownership bitmaps allow.
    pub(super) fn view(
        &self,
        view: View,
        lo: usize,
        hi: usize,
        line: usize,
        mut f: impl FnMut(usize, &[u8]),
    ) {
        if lo >= hi {
            return;
        }
        let (own, bytes) = self.own_bits(view);
        // Line sizes are powers of two: indices are shifts.
        let shift = line.trailing_zeros();
        let (l0, l1) = (lo >> shift, (hi + line - 1) >> shift);
        let range = bits(l0, l1);
        if own & range == 0 {
            return f(lo, &self.wb[lo..hi]);
        }
        if own & range == range {
            return f(lo, &bytes[lo..hi]);
        }
        let mut pos = lo;
        while pos < hi {
            let owned = own >> (pos >> shift) & 1 == 1;
            let mut end = ((pos >> shift) + 1) << shift;
            while end < hi && (own >> (end >> shift) & 1 == 1) == owned {
                end += line;
            }
            let end = end.min(hi);
            f(
                pos,
                if owned {
                    &bytes[pos..end]
                } else {
                    &self.wb[pos..end]
                },
            );
            pos = end;
        }
    }

    /// Gives line `idx` its own copy of `view` (about to diverge from `wb`).
    pub(super) fn own(&mut self, view: View, idx: usize, line: usize) {
        let bit = 1u128 << idx;
        let (own, bytes): (_, &mut [u8; PAGE_BYTES]) = match view {
            View::Ram => (&mut self.ram_own, &mut self.ram),
            View::Synced => (&mut self.synced_own, &mut self.synced),
        };
        if *own & bit == 0 {
            let r = idx * line..(idx + 1) * line;
            bytes[r.clone()].copy_from_slice(&self.wb[r]);
            *own |= bit;
        }
    }

    /// Whether the host bytes of `[lo, hi)` (page offsets; the page is at
    /// host address `base`) equal the `view`.
    ///
    /// # Safety
    ///
    /// The range is tracked, hence live host memory.
    pub(super) unsafe fn host_matches(
        &self,
        view: View,
        base: u64,
        lo: usize,
        hi: usize,
        line: usize,
    ) -> bool {
        let mut same = true;
        self.view(view, lo, hi, line, |off, expected| {
            // SAFETY: inside the tracked range (caller).
            same = same && unsafe { host::equals(base + off as u64, expected) };
        });
        same
    }

    /// Whether the tracked host bytes of line `idx` within byte range
    /// `within` of the line equal the `view`.
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory.
    pub(super) unsafe fn line_matches(
        &self,
        view: View,
        base: u64,
        idx: usize,
        line: usize,
        within: u128,
    ) -> bool {
        let off = idx * line;
        let mask = self.mask(idx, line) & within;
        if mask == bits(0, line) {
            // SAFETY: a whole tracked line (caller).
            return unsafe { self.host_matches(view, base, off, off + line, line) };
        }
        runs(mask).all(|(s, e)| {
            // SAFETY: tracked bytes (caller).
            unsafe { self.host_matches(view, base, off + s, off + e, line) }
        })
    }

    /// Writes line `idx` back if dirty; returns whether it was dirty and
    /// whether that overwrote device data. `keep_synced` keeps the driver's
    /// snapshot (an eviction is not a sync).
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory.
    pub(super) unsafe fn write_back(
        &mut self,
        base: u64,
        idx: usize,
        line: usize,
        keep_synced: bool,
    ) -> (bool, bool) {
        let bit = 1u128 << idx;
        let off = idx * line;
        let l = base + off as u64;
        let whole = self.whole & bit != 0;
        // SAFETY: a whole tracked line (the common case, checked without
        // copying).
        if whole && unsafe { host::equals(l, &self.wb[off..off + line]) } {
            return (false, false);
        }
        let mask = self.mask(idx, line);
        let mut host_line = [0u8; 128];
        let mut dirty = false;
        for (s, e) in runs(mask) {
            // SAFETY: tracked bytes are live (caller).
            unsafe { host::read(l + s as u64, &mut host_line[s..e]) };
            dirty |= host_line[s..e] != self.wb[off + s..off + e];
        }
        if !dirty {
            return (false, false);
        }
        if keep_synced {
            self.own(View::Synced, idx, line);
        }
        for (s, e) in runs(mask) {
            self.wb[off + s..off + e].copy_from_slice(&host_line[s..e]);
        }
        // RAM now holds the written-back bytes, which are `wb`.
        self.ram_own &= !bit;
        let over = self.device_wrote & bit != 0;
        self.device_wrote &= !bit;
        (true, over)
    }

    /// Makes the host's tracked bytes of `lines` equal `wb`.
    ///
    /// # Safety
    ///
    /// Tracked bytes are live host memory the caller may write.
    pub(super) unsafe fn store_to_host(&self, base: u64, lines: u128, line: usize) {
        for (l0, l1) in runs(lines & self.whole) {
            let (lo, hi) = (l0 * line, l1 * line);
            // SAFETY: whole tracked lines.
            unsafe { host::write_bulk(base + lo as u64, &self.wb[lo..hi]) };
        }
        for idx in ones(lines & !self.whole) {
            let off = idx * line;
            for (s, e) in runs(self.mask(idx, line)) {
                // SAFETY: tracked bytes.
                unsafe { host::write(base + (off + s) as u64, &self.wb[off + s..off + e]) };
            }
        }
    }
}
