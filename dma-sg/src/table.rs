//! The scatter-gather table and its builder.
//!
//! Building follows Linux's `sg_alloc_append_table_from_pages`
//! (lib/scatterlist.c): the input is cut into pieces of at most one page,
//! the first one starting at the caller's offset, and each piece extends
//! the previous entry when it starts where that entry ends, the result
//! stays within the maximum segment, and it crosses no boundary; otherwise
//! it starts a new entry. Appending to a non-empty table is Linux's append
//! mode: the first new piece continues the last entry when contiguous.
//!
//! Growing by whole pieces puts every cut where a piece ends: on a page
//! boundary, or where an input range ends. For a page list that means every
//! entry but the first starts page-aligned, as in Linux. The coalescing is
//! maximal: no two neighbouring entries could be merged without breaking
//! contiguity, the maximum or the boundary (a piece that would fit was
//! always taken).

use core::ptr::NonNull;

use dma_core::{Error, ErrorKind, PhysAddr, Result, SgEntry};

use crate::{SgLimits, SgStorage};

/// A scatter-gather table: physically contiguous entries, in order, that
/// together describe one buffer, built under a device's [`SgLimits`].
///
/// It is a description: it owns no memory and grants no access. Mapping it
/// for a device is [`MappedSgTable`](crate::MappedSgTable)'s job.
///
/// ```
/// use dma_core::PhysAddr;
/// use dma_sg::{SgLimits, SgTable};
///
/// let limits = SgLimits::unconstrained(4096)?;
/// // 10 000 bytes starting 0x200 into the first of three pages; the first
/// // two pages are physically adjacent.
/// let pages = [0x10000, 0x11000, 0x40000].map(PhysAddr::new);
/// let table = SgTable::from_pages(limits, &pages, 0x200, 10_000)?;
/// let e = table.entries();
/// assert_eq!((e[0].phys.as_u64(), e[0].len), (0x10200, 0x1e00));
/// assert_eq!((e[1].phys.as_u64(), e[1].len), (0x40000, 10_000 - 0x1e00));
/// assert_eq!(table.total_len(), 10_000);
/// # Ok::<(), dma_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SgTable<S: SgStorage> {
    storage: S,
    limits: SgLimits,
    total: u64,
}

impl<S: SgStorage> SgTable<S> {
    /// An empty table over `storage` (emptied first).
    pub fn new_in(mut storage: S, limits: SgLimits) -> Self {
        storage.truncate(0);
        Self {
            storage,
            limits,
            total: 0,
        }
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[SgEntry] {
        self.storage.as_slice()
    }

    pub(crate) fn entries_mut(&mut self) -> &mut [SgEntry] {
        self.storage.as_mut_slice()
    }

    /// The number of bytes described.
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// Whether the table describes nothing yet.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The rules the table is built under.
    pub fn limits(&self) -> &SgLimits {
        &self.limits
    }

    /// Empties the table, keeping its storage and limits.
    pub fn clear(&mut self) {
        self.storage.truncate(0);
        self.total = 0;
    }

    /// Gives back the storage.
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Appends `len` bytes starting `offset` bytes into the first of
    /// `pages` (page-aligned physical addresses, exactly as many as the
    /// bytes touch). Contiguous pages coalesce, and the first continues the
    /// table's last entry when it starts where that entry ends.
    ///
    /// On error the table is left as it was.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) for `len == 0`;
    /// [`OutOfRange`](ErrorKind::OutOfRange) when `offset` is not inside the
    /// first page or the page count does not match `offset + len`;
    /// [`Misaligned`](ErrorKind::Misaligned) for a page address that is not
    /// page-aligned or an entry start that breaks the device's alignment;
    /// [`AddressOverflow`](ErrorKind::AddressOverflow) for a page at the top
    /// of the address space; [`Unreachable`](ErrorKind::Unreachable) beyond
    /// the mask; [`TooManySegments`](ErrorKind::TooManySegments) past the
    /// device's (or the storage's) entry count.
    pub fn append_pages(&mut self, pages: &[PhysAddr], offset: usize, len: usize) -> Result<()> {
        let page = self.limits.page_size();
        let (offset, len) = (offset as u64, len as u64);
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length page list"));
        }
        if offset >= page {
            return Err(Error::new(
                ErrorKind::OutOfRange,
                "offset must lie within the first page",
            )
            .len(offset));
        }
        let needed = (offset + len).div_ceil(page);
        if pages.len() as u64 != needed {
            return Err(Error::new(
                ErrorKind::OutOfRange,
                "page count does not match offset plus length",
            )
            .len(pages.len() as u64));
        }
        let rules = Rules::of(&self.limits);
        let bad =
            |p: &&PhysAddr| p.as_u64() & (page - 1) != 0 || p.as_u64() > u64::MAX - (page - 1);
        self.transaction(|t| {
            let mut remaining = len;
            let mut in_page = offset;
            for p in pages {
                let piece = remaining.min(page - in_page);
                // One branch per page on the usual path: a page-aligned
                // address whose whole page the device reaches (an aligned
                // page's last byte does not wrap). Otherwise the exact
                // tests: misaligned, past the top of the address space, or
                // this piece beyond the mask.
                let last_byte = p.as_u64().wrapping_add(page - 1);
                if p.as_u64() & (page - 1) != 0 || last_byte > rules.reach {
                    if bad(&p) {
                        return Err(bad_page(*p, page));
                    }
                    rules.check_reach(p.as_u64() + in_page, piece)?;
                }
                t.push_reachable(&rules, p.as_u64() + in_page, piece)?;
                remaining -= piece;
                in_page = 0;
            }
            t.total += len;
            Ok(())
        })
        // Pages are checked as they are reached; a bad page anywhere is
        // reported ahead of any other error, as a check before building
        // would.
        .map_err(|e| pages.iter().find(bad).map_or(e, |p| bad_page(*p, page)))
    }

    /// Appends physically contiguous ranges `(start, len)`, each cut at
    /// page boundaries and coalesced as for
    /// [`append_pages`](Self::append_pages).
    ///
    /// On error the table is left as it was.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) for an empty range (or no ranges),
    /// [`AddressOverflow`](ErrorKind::AddressOverflow) for one that wraps,
    /// and the constraint errors of [`append_pages`](Self::append_pages).
    pub fn append_ranges<I>(&mut self, ranges: I) -> Result<()>
    where
        I: IntoIterator<Item = (PhysAddr, usize)>,
    {
        self.transaction(|t| {
            let mut any = false;
            for (phys, len) in ranges {
                t.push_range(phys.as_u64(), len as u64)?;
                any = true;
            }
            if any {
                Ok(())
            } else {
                Err(Error::new(ErrorKind::ZeroSize, "no ranges given"))
            }
        })
    }

    /// Appends a virtually contiguous buffer of `len` bytes at `cpu`,
    /// translating it one page at a time with `translate` (for example
    /// [`DmaMap::virt_to_phys`](dma_core::DmaMap::virt_to_phys) or
    /// [`PhysMemory::virt_to_phys`](dma_core::PhysMemory::virt_to_phys)).
    /// The memory is never accessed.
    ///
    /// On error the table is left as it was.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize), [`AddressOverflow`](ErrorKind::AddressOverflow)
    /// when the range wraps, whatever `translate` returns, and the
    /// constraint errors of [`append_pages`](Self::append_pages).
    pub fn append_virt<F>(&mut self, mut translate: F, cpu: NonNull<u8>, len: usize) -> Result<()>
    where
        F: FnMut(NonNull<u8>, usize) -> Result<PhysAddr>,
    {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length buffer"));
        }
        let start = cpu.as_ptr() as usize;
        if start.checked_add(len).is_none() {
            return Err(Error::new(
                ErrorKind::AddressOverflow,
                "buffer wraps past the top of the address space",
            )
            .at(start as u64)
            .len(len as u64));
        }
        let page = self.limits.page_size();
        self.transaction(|t| {
            let mut done = 0usize;
            while done < len {
                let here = cpu.as_ptr().wrapping_add(done);
                let to_page_end = page - (here as usize as u64 & (page - 1));
                let chunk = ((len - done) as u64).min(to_page_end) as usize;
                // Non-null: start + len does not wrap and start is non-null.
                let here = NonNull::new(here).ok_or(Error::new(
                    ErrorKind::AddressOverflow,
                    "buffer wraps past the top of the address space",
                ))?;
                let phys = translate(here, chunk)?;
                t.push_range(phys.as_u64(), chunk as u64)?;
                done += chunk;
            }
            Ok(())
        })
    }

    /// Runs `f`, restoring the table if it fails.
    fn transaction(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let count = self.storage.as_slice().len();
        let last = self.storage.as_slice().last().copied();
        let total = self.total;
        let result = f(self);
        if result.is_err() {
            self.storage.truncate(count);
            if let (Some(last), Some(slot)) = (last, self.storage.as_mut_slice().last_mut()) {
                *slot = last;
            }
            self.total = total;
        }
        result
    }

    /// Splits a physically contiguous range at page boundaries.
    fn push_range(&mut self, phys: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length range").at(phys));
        }
        if phys.checked_add(len - 1).is_none() {
            return Err(Error::new(
                ErrorKind::AddressOverflow,
                "range wraps past the top of the address space",
            )
            .at(phys)
            .len(len));
        }
        let page = self.limits.page_size();
        let rules = Rules::of(&self.limits);
        let (mut addr, mut remaining) = (phys, len);
        while remaining > 0 {
            let piece = remaining.min(page - (addr & (page - 1)));
            self.push_piece(&rules, addr, piece)?;
            remaining -= piece;
            addr = addr.wrapping_add(piece);
        }
        self.total += len;
        Ok(())
    }

    /// Adds a piece lying within one page: extends the last entry when
    /// allowed, else starts a new one. The caller adds to `total` once
    /// its whole append succeeds.
    #[inline]
    fn push_piece(&mut self, l: &Rules, phys: u64, len: u64) -> Result<()> {
        l.check_reach(phys, len)?;
        self.push_reachable(l, phys, len)
    }

    /// [`push_piece`](Self::push_piece) for a piece already known to lie
    /// within the device's reach.
    #[inline]
    fn push_reachable(&mut self, l: &Rules, phys: u64, len: u64) -> Result<()> {
        if let Some(last) = self.storage.as_mut_slice().last_mut() {
            let start = last.phys.as_u64();
            let merged = last.len as u64 + len;
            let contiguous = start.checked_add(last.len as u64) == Some(phys);
            if contiguous && merged <= l.max_segment && !l.crosses_boundary(start, merged) {
                if let Ok(merged) = usize::try_from(merged) {
                    last.len = merged;
                    return Ok(());
                }
            }
        }
        if phys & l.align_mask != 0 {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "entry start breaks the device's alignment",
            )
            .at(phys));
        }
        if self.storage.as_slice().len() >= l.max_entries {
            return Err(Error::new(
                ErrorKind::TooManySegments,
                "buffer needs more segments than the device takes",
            )
            .len(l.max_entries as u64 + 1));
        }
        // A piece is at most a page, which fits in usize (it is an allocation unit).
        self.storage
            .try_push(SgEntry::new(PhysAddr::new(phys), len as usize))
    }
}

/// The error for a page address [`SgTable::append_pages`] refuses:
/// misaligned, or so high that the page runs past the top of the address
/// space.
fn bad_page(p: PhysAddr, page: u64) -> Error {
    if !p.is_aligned(page) {
        Error::new(
            ErrorKind::Misaligned,
            "page address not aligned to the page size",
        )
    } else {
        Error::new(
            ErrorKind::AddressOverflow,
            "page runs past the top of the address space",
        )
    }
    .at(p.as_u64())
}

/// The limits as each piece is checked against them, worked out once per
/// append so the per-page loop reads locals, not the table.
struct Rules {
    /// The highest address an entry may touch (all of them when
    /// translated: the mask is checked at map time).
    reach: u64,
    align_mask: u64,
    max_segment: u64,
    boundary: Option<u64>,
    /// The most entries (unbounded when translated).
    max_entries: usize,
}

impl Rules {
    fn of(l: &SgLimits) -> Self {
        let translated = l.is_translated();
        Self {
            reach: if translated { u64::MAX } else { l.dma_mask() },
            align_mask: l.alignment() - 1,
            max_segment: l.max_segment(),
            boundary: l.boundary(),
            max_entries: if translated {
                usize::MAX
            } else {
                l.max_segments()
            },
        }
    }

    /// Refuses a piece (`len` bytes at `phys`, not wrapping) that touches
    /// memory beyond the device's reach.
    #[inline]
    fn check_reach(&self, phys: u64, len: u64) -> Result<()> {
        if phys + (len - 1) > self.reach {
            return Err(Error::new(
                ErrorKind::Unreachable,
                "page lies above the device's DMA mask",
            )
            .at(phys)
            .len(len));
        }
        Ok(())
    }

    /// Whether `len` bytes at `addr` cross the boundary.
    fn crosses_boundary(&self, addr: u64, len: u64) -> bool {
        match self.boundary {
            Some(b) if len > 0 => addr / b != (addr + (len - 1)) / b,
            _ => false,
        }
    }
}

#[cfg(feature = "alloc")]
impl SgTable<alloc::vec::Vec<SgEntry>> {
    /// An empty heap-backed table.
    pub fn new(limits: SgLimits) -> Self {
        Self::new_in(alloc::vec::Vec::new(), limits)
    }

    /// A table of `len` bytes starting `offset` into the first of `pages`
    /// (see [`append_pages`](Self::append_pages)).
    ///
    /// # Errors
    ///
    /// As for [`append_pages`](Self::append_pages).
    pub fn from_pages(
        limits: SgLimits,
        pages: &[PhysAddr],
        offset: usize,
        len: usize,
    ) -> Result<Self> {
        let mut t = Self::new(limits);
        t.append_pages(pages, offset, len)?;
        Ok(t)
    }

    /// A table of physically contiguous ranges (see
    /// [`append_ranges`](Self::append_ranges)).
    ///
    /// # Errors
    ///
    /// As for [`append_ranges`](Self::append_ranges).
    pub fn from_ranges<I>(limits: SgLimits, ranges: I) -> Result<Self>
    where
        I: IntoIterator<Item = (PhysAddr, usize)>,
    {
        let mut t = Self::new(limits);
        t.append_ranges(ranges)?;
        Ok(t)
    }

    /// A table for a virtually contiguous buffer (see
    /// [`append_virt`](Self::append_virt)).
    ///
    /// # Errors
    ///
    /// As for [`append_virt`](Self::append_virt).
    pub fn from_virt<F>(
        limits: SgLimits,
        translate: F,
        cpu: NonNull<u8>,
        len: usize,
    ) -> Result<Self>
    where
        F: FnMut(NonNull<u8>, usize) -> Result<PhysAddr>,
    {
        let mut t = Self::new(limits);
        t.append_virt(translate, cpu, len)?;
        Ok(t)
    }
}
