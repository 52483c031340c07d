//! Physical Region Page entries and lists (NVMe base spec 2.0, 4.1.1).
//!
//! The rules, from the spec:
//! - a PRP entry is a 64-bit memory page address; its low bits are an
//!   offset into the page, which must be dword aligned (bits 1:0 clear);
//! - only the first entry (PRP1) may carry a non-zero offset: every other
//!   entry, in PRP2 or in a list, points at the start of a memory page;
//! - so a transfer PRP can describe is contiguous within pages: its first
//!   segment may start anywhere dword aligned, every segment but the last
//!   ends on a memory page boundary, and every segment but the first
//!   starts on one;
//! - PRP2 is unused when the data lies in one page, is the second page
//!   when it spans exactly two, and otherwise points at a PRP list (qword
//!   aligned, possibly at an offset); a list runs to the end of its memory
//!   page, where, if more entries follow, the last slot points to the next
//!   list page instead of to data.
//!
//! The memory page size is the controller's CC.MPS: `2^(12 + MPS)` bytes,
//! 4 KiB to 128 MiB.

use dma_core::{DmaAddr, Error, ErrorKind, Result};

use crate::DmaSegment;

/// The size of one PRP entry in bytes.
pub const PRP_ENTRY_SIZE: usize = 8;

/// Checks an NVMe memory page size: `2^(12 + MPS)` for a 4-bit MPS.
pub(crate) fn check_page_size(page: u64) -> Result<()> {
    if page.is_power_of_two() && (1 << 12..=1 << 27).contains(&page) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidConstraints,
            "NVMe memory page size must be a power of two from 4 KiB to 128 MiB",
        )
        .len(page))
    }
}

/// The PRP geometry of a transfer, once its segments are known to be
/// describable by PRPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrpLayout {
    /// How many PRP entries describe the data (PRP1, PRP2 and list
    /// entries, not counting chain pointers).
    pub entries: usize,
    /// The transfer length in bytes.
    pub total_len: u64,
}

impl PrpLayout {
    /// Checks that `segments` can be described by PRPs with memory pages
    /// of `page_size` bytes, and counts the entries.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) for no segments or an empty one;
    /// [`AddressOverflow`](ErrorKind::AddressOverflow) for one that wraps;
    /// [`Misaligned`](ErrorKind::Misaligned) when the first address is not
    /// dword aligned, a later segment does not start on a memory page, or a
    /// segment other than the last does not end on one;
    /// [`InvalidConstraints`](ErrorKind::InvalidConstraints) for a page
    /// size NVMe cannot use; [`TooManySegments`](ErrorKind::TooManySegments)
    /// when the entry count does not fit in `usize`.
    pub fn of<I>(segments: I, page_size: usize) -> Result<Self>
    where
        I: IntoIterator<Item = DmaSegment>,
    {
        let mut rules = PrpRules::new(page_size as u64)?;
        for seg in segments {
            rules.check(&seg)?;
        }
        rules.layout()
    }
}

/// The PRP rules applied to segments one at a time, in order, counting
/// entries and bytes as they pass: the one implementation of the checks,
/// shared by [`PrpLayout::of`] and the encoder's single pass.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PrpRules {
    mask: u64,
    shift: u32,
    /// The end of the last segment checked; before the first, 1, which is
    /// never on a page boundary, so the first takes the full checks.
    prev_end: u64,
    started: bool,
    entries: u64,
    total: u64,
}

impl PrpRules {
    /// Rules for `page`-byte memory pages.
    pub(crate) fn new(page: u64) -> Result<Self> {
        check_page_size(page)?;
        Ok(Self {
            mask: page - 1,
            shift: page.trailing_zeros(),
            prev_end: 1,
            started: false,
            entries: 0,
            total: 0,
        })
    }

    /// Checks the next segment; returns how many PRP entries it takes (one
    /// per memory page it touches).
    #[inline]
    pub(crate) fn check(&mut self, seg: &DmaSegment) -> Result<u64> {
        let addr = seg.addr.as_u64();
        let page = self.mask + 1;
        // A whole memory page following a page-aligned end (never the
        // first segment, whose prev_end is 1), not the top page: one entry.
        if seg.len == page
            && (addr | self.prev_end) & self.mask == 0
            && addr < 0u64.wrapping_sub(page)
        {
            self.total = self.total.checked_add(page).ok_or(
                Error::new(ErrorKind::AddressOverflow, "transfer length overflows").len(page),
            )?;
            self.entries += 1;
            self.prev_end = addr + page;
            return Ok(1);
        }
        // One test for the usual segment: not the first, not empty, not
        // wrapping, and starting where the previous one ended on a page
        // boundary.
        let end = match seg.end() {
            Some(end) if seg.len != 0 && (addr | self.prev_end) & self.mask == 0 => end,
            _ => {
                let prev = self.started.then_some(self.prev_end);
                segment_end(seg, prev, self.mask + 1)?
            }
        };
        self.total = self.total.checked_add(seg.len).ok_or(
            Error::new(ErrorKind::AddressOverflow, "transfer length overflows").len(seg.len),
        )?;
        // A shift, not a division: the page size is a power of two. Only
        // the first segment may start inside a page.
        let bytes = (addr & self.mask) + seg.len;
        let pages = (bytes >> self.shift) + u64::from(bytes & self.mask != 0);
        self.entries += pages;
        self.prev_end = end;
        self.started = true;
        Ok(pages)
    }

    /// The layout of the segments checked so far.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) when there were none;
    /// [`TooManySegments`](ErrorKind::TooManySegments) when the entry count
    /// does not fit in `usize`.
    pub(crate) fn layout(&self) -> Result<PrpLayout> {
        if !self.started {
            return Err(no_segments());
        }
        let entries = usize::try_from(self.entries).map_err(|_| {
            Error::new(
                ErrorKind::TooManySegments,
                "more PRP entries than fit in usize",
            )
            .len(self.entries)
        })?;
        Ok(PrpLayout {
            entries,
            total_len: self.total,
        })
    }
}

/// The error for a transfer of no segments.
pub(crate) fn no_segments() -> Error {
    Error::new(ErrorKind::ZeroSize, "no segments to describe")
}

/// Checks one segment against the PRP rules, in the order they are
/// reported; `prev_end` is the end of the segment before it, `None` for the
/// first. Returns the segment's end.
fn segment_end(seg: &DmaSegment, prev_end: Option<u64>, page: u64) -> Result<u64> {
    let addr = seg.addr.as_u64();
    if seg.len == 0 {
        return Err(Error::new(ErrorKind::ZeroSize, "empty PRP segment").at(addr));
    }
    let end = seg.end().ok_or(
        Error::new(
            ErrorKind::AddressOverflow,
            "segment wraps past the top of the address space",
        )
        .at(addr)
        .len(seg.len),
    )?;
    match prev_end {
        None if addr & 3 != 0 => {
            return Err(
                Error::new(ErrorKind::Misaligned, "PRP entries must be dword aligned").at(addr),
            );
        }
        Some(_) if addr & (page - 1) != 0 => {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "only the first PRP entry may carry a page offset",
            )
            .at(addr));
        }
        Some(e) if e & (page - 1) != 0 => {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "every PRP segment but the last must end on a memory page boundary",
            )
            .at(e));
        }
        _ => {}
    }
    Ok(end)
}

/// The PRP entries of a transfer, in order: the first segment's address,
/// then the start of every further memory page it and the other segments
/// touch. Check the segments with [`PrpLayout::of`] first; this iterator
/// assumes they are describable.
#[derive(Clone, Debug)]
pub struct PrpEntries<I> {
    segments: I,
    next: u64,
    end: u64,
    page: u64,
}

impl<I: Iterator<Item = DmaSegment>> PrpEntries<I> {
    /// The entries of `segments` with `page_size`-byte memory pages.
    pub fn new<T: IntoIterator<IntoIter = I>>(segments: T, page_size: usize) -> Self {
        Self {
            segments: segments.into_iter(),
            next: 0,
            end: 0,
            page: page_size as u64,
        }
    }
}

impl<I: Iterator<Item = DmaSegment>> Iterator for PrpEntries<I> {
    type Item = DmaAddr;

    fn next(&mut self) -> Option<DmaAddr> {
        while self.next >= self.end {
            let seg = self.segments.next()?;
            self.next = seg.addr.as_u64();
            self.end = seg.end().unwrap_or(u64::MAX);
        }
        let entry = self.next;
        self.next = (entry & !(self.page - 1))
            .checked_add(self.page)
            .unwrap_or(self.end);
        Some(DmaAddr::new(entry))
    }
}

/// Walks a command's PRPs as a controller does, calling `visit` with each
/// data range in order, and checking every rule a controller checks
/// (anything read from memory is untrusted). `read_entry` returns the
/// eight bytes at a device address, as a little-endian `u64`.
///
/// It is the reference a device model (or a test) decodes encodings with.
///
/// # Errors
///
/// [`ZeroSize`](ErrorKind::ZeroSize) for `len == 0`;
/// [`Misaligned`](ErrorKind::Misaligned) for a PRP1 offset that is not
/// dword aligned, a PRP2 or list entry with an offset, or a list pointer
/// that is not qword aligned; [`AddressOverflow`](ErrorKind::AddressOverflow)
/// when a list or page runs off the top of the address space;
/// [`InvalidConstraints`](ErrorKind::InvalidConstraints) for a bad page
/// size; and whatever `read_entry` or `visit` return.
pub fn walk_prp<R, V>(
    prp1: DmaAddr,
    prp2: DmaAddr,
    len: u64,
    page_size: usize,
    mut read_entry: R,
    mut visit: V,
) -> Result<()>
where
    R: FnMut(DmaAddr) -> Result<u64>,
    V: FnMut(DmaSegment) -> Result<()>,
{
    let page = page_size as u64;
    check_page_size(page)?;
    if len == 0 {
        return Err(Error::new(ErrorKind::ZeroSize, "zero-length transfer"));
    }
    let offset_error = |msg, at: u64| Err(Error::new(ErrorKind::Misaligned, msg).at(at));
    let p1 = prp1.as_u64();
    if p1 & 3 != 0 {
        return offset_error("PRP1 offset is not dword aligned", p1);
    }
    let first = len.min(page - (p1 & (page - 1)));
    visit(DmaSegment::new(prp1, first))?;
    let mut remaining = len - first;
    if remaining == 0 {
        return Ok(());
    }
    let p2 = prp2.as_u64();
    if remaining <= page {
        if p2 & (page - 1) != 0 {
            return offset_error("PRP2 data page has an offset", p2);
        }
        return visit(DmaSegment::new(prp2, remaining));
    }
    if p2 & 7 != 0 {
        return offset_error("PRP list pointer is not qword aligned", p2);
    }
    let mut slot = p2;
    while remaining > 0 {
        let next_slot = slot.checked_add(PRP_ENTRY_SIZE as u64).ok_or(
            Error::new(
                ErrorKind::AddressOverflow,
                "PRP list runs off the address space",
            )
            .at(slot),
        )?;
        let entry = read_entry(DmaAddr::new(slot))?;
        if entry & (page - 1) != 0 {
            return offset_error("PRP list entry has an offset", entry);
        }
        if next_slot & (page - 1) == 0 && remaining > page {
            // The last slot of a list page with more than one page to go:
            // a pointer to the next list page.
            slot = entry;
            continue;
        }
        let n = remaining.min(page);
        if entry.checked_add(n - 1).is_none() {
            return Err(Error::new(
                ErrorKind::AddressOverflow,
                "data page runs off the address space",
            )
            .at(entry));
        }
        visit(DmaSegment::new(DmaAddr::new(entry), n))?;
        remaining -= n;
        slot = next_slot;
    }
    Ok(())
}

#[cfg(feature = "alloc")]
pub use encode::{encode_prp, PrpRequest};

#[cfg(feature = "alloc")]
mod encode {
    use alloc::vec::Vec;

    use dma_core::{DmaAddr, DmaAlloc, Error, ErrorKind, PoolBlock, Result};

    use super::{no_segments, PrpLayout, PrpRules, PRP_ENTRY_SIZE};
    use crate::nvme::pools::SMALL_BLOCK;
    use crate::nvme::NvmePools;
    use crate::DmaSegment;

    /// A command's PRPs, owning the list memory they point into; the list
    /// blocks go back to their pools when it is dropped, so keep it until
    /// the command completes.
    pub struct PrpRequest<'pool, P: DmaAlloc> {
        prp1: DmaAddr,
        prp2: DmaAddr,
        lists: Vec<PoolBlock<'pool, P>>,
    }

    impl<P: DmaAlloc> PrpRequest<'_, P> {
        /// PRP1: command dwords 6 and 7.
        pub fn prp1(&self) -> DmaAddr {
            self.prp1
        }

        /// PRP2: command dwords 8 and 9 (zero when unused).
        pub fn prp2(&self) -> DmaAddr {
            self.prp2
        }

        /// How many list blocks the request holds.
        pub fn list_blocks(&self) -> usize {
            self.lists.len()
        }

        /// The list blocks as device ranges (address and block size), in
        /// chain order.
        pub fn list_regions(&self) -> impl Iterator<Item = DmaSegment> + '_ {
            self.lists
                .iter()
                .map(|b| DmaSegment::new(b.dma_addr(), b.size() as u64))
        }
    }

    impl<P: DmaAlloc> core::fmt::Debug for PrpRequest<'_, P> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("PrpRequest")
                .field("prp1", &self.prp1)
                .field("prp2", &self.prp2)
                .field("list_blocks", &self.lists.len())
                .finish()
        }
    }

    /// Encodes `segments` (in device addresses) as PRP1, PRP2 and, when
    /// they span more than two memory pages, a PRP list in pool memory:
    /// a 256-byte block for up to 32 entries, else memory pages chained
    /// through their last slot, as Linux's `nvme_pci_setup_prps` does.
    ///
    /// ```
    /// use dma_core::{DeviceConstraints, DmaAddr, HostMemory};
    /// use dma_direct::DirectPlatform;
    /// use dma_sg::{nvme, DmaSegment};
    ///
    /// let platform = DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED);
    /// let pools = nvme::NvmePools::new(&platform, 4096, 4, 8)?;
    /// // 0x200 bytes before a page boundary, then one full page elsewhere.
    /// let segs = [
    ///     DmaSegment::new(DmaAddr::new(0x1_0e00), 0x200),
    ///     DmaSegment::new(DmaAddr::new(0x8_0000), 0x1000),
    /// ];
    /// let req = nvme::encode_prp(&pools, segs)?;
    /// assert_eq!(req.prp1(), DmaAddr::new(0x1_0e00));
    /// assert_eq!(req.prp2(), DmaAddr::new(0x8_0000)); // two pages: no list
    /// assert_eq!(req.list_blocks(), 0);
    /// # Ok::<(), dma_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The errors of [`PrpLayout::of`] for segments PRPs cannot describe;
    /// [`PoolExhausted`](ErrorKind::PoolExhausted) when the pools run dry
    /// (blocks taken so far go back); [`Misaligned`](ErrorKind::Misaligned)
    /// if the platform hands out list memory that is not page (or qword)
    /// aligned.
    pub fn encode_prp<'pool, P, I>(
        pools: &'pool NvmePools<P>,
        segments: I,
    ) -> Result<PrpRequest<'pool, P>>
    where
        P: DmaAlloc,
        I: IntoIterator<Item = DmaSegment>,
        I::IntoIter: Clone,
    {
        let segments = segments.into_iter();
        let page = pools.page_size();
        let mut entries = CheckedEntries::new(segments.clone(), page)?;
        encode(pools, &mut entries).map_err(|e| {
            // One pass checks and writes, so it may meet a pool error
            // before a later segment's rule error; report as a separate
            // check first would: the segments' error, if they have one.
            PrpLayout::of(segments, page).err().unwrap_or(e)
        })
    }

    /// The PRP entries of segments, each segment checked against the PRP
    /// rules when it is reached: the check and the entries in one pass.
    struct CheckedEntries<I> {
        segments: I,
        rules: PrpRules,
        /// The next entry of the current segment, and how many are left.
        next: u64,
        left: u64,
        page: u64,
    }

    impl<I: Iterator<Item = DmaSegment>> CheckedEntries<I> {
        fn new(segments: I, page: usize) -> Result<Self> {
            Ok(Self {
                segments,
                rules: PrpRules::new(page as u64)?,
                next: 0,
                left: 0,
                page: page as u64,
            })
        }

        /// Fills `out` with the next entries, little-endian; returns how
        /// many, fewer than `out.len()` only when the segments end.
        #[inline]
        fn fill(&mut self, out: &mut [u64]) -> Result<usize> {
            let mut n = 0;
            while n < out.len() {
                if self.left == 0 {
                    let Some(seg) = self.segments.next() else {
                        break;
                    };
                    // At least one: a checked segment is not empty.
                    self.left = self.rules.check(&seg)?;
                    self.next = seg.addr.as_u64();
                }
                out[n] = self.next.to_le();
                n += 1;
                self.left -= 1;
                // The next page's start; it passes the top of the address
                // space only after a segment's last entry, when unused.
                self.next = (self.next & !(self.page - 1)).wrapping_add(self.page);
            }
            Ok(n)
        }
    }

    /// The most list entries a small block takes.
    const SMALL_ENTRIES: usize = SMALL_BLOCK / PRP_ENTRY_SIZE;
    /// Entries written to list memory per bounds-checked run.
    const CHUNK: usize = 64;

    /// The single pass: PRP1, then PRP2 as a data page or a list.
    fn encode<'pool, P: DmaAlloc, I: Iterator<Item = DmaSegment>>(
        pools: &'pool NvmePools<P>,
        entries: &mut CheckedEntries<I>,
    ) -> Result<PrpRequest<'pool, P>> {
        // The count is not known ahead: read PRP1 and up to one more list
        // entry than a small block takes, which is enough to choose.
        let mut chunk = [0u64; CHUNK];
        let known = entries.fill(&mut chunk[..SMALL_ENTRIES + 2])?;
        let entry = |i: usize| DmaAddr::new(u64::from_le(chunk[i]));
        let mut request = PrpRequest {
            prp1: entry(0),
            prp2: DmaAddr::ZERO,
            lists: Vec::new(),
        };
        match known {
            0 => return Err(no_segments()),
            1 => {}
            2 => request.prp2 = entry(1),
            _ => {
                chunk.copy_within(1..known, 0);
                request.prp2 = write_lists(pools, chunk, known - 1, entries, &mut request.lists)?;
            }
        }
        Ok(request)
    }

    /// Writes the list entries, the first `read` of them already in
    /// `chunk`, into list blocks: one small block when they fit, else
    /// memory pages chained through their last slot. Returns the first
    /// block's address.
    fn write_lists<'pool, P: DmaAlloc, I: Iterator<Item = DmaSegment>>(
        pools: &'pool NvmePools<P>,
        mut chunk: [u64; CHUNK],
        read: usize,
        entries: &mut CheckedEntries<I>,
        lists: &mut Vec<PoolBlock<'pool, P>>,
    ) -> Result<DmaAddr> {
        let page = pools.page_size() as u64;
        let mut block = pools.alloc_for(read * PRP_ENTRY_SIZE)?;
        let head = block.dma_addr();
        if !head.is_aligned(PRP_ENTRY_SIZE as u64) {
            return Err(
                Error::new(ErrorKind::Misaligned, "PRP list is not qword aligned")
                    .at(head.as_u64()),
            );
        }
        let mut carried = read;
        loop {
            // A list runs to the end of its memory page; a block that stops
            // short of it cannot chain, since the controller would take the
            // page's last slot as the pointer. Pool blocks are aligned to
            // their size, so a small block holds all its entries and a page
            // block spans its memory page; the test guards that promise.
            let start = block.dma_addr().as_u64();
            let to_page_end = page - (start & (page - 1));
            let slots = (block.size() as u64).min(to_page_end) as usize / PRP_ENTRY_SIZE;
            if read <= SMALL_ENTRIES && read <= slots {
                block.write_slice(0, &chunk[..read])?;
                track(&mut *lists, block)?;
                return Ok(head);
            }
            if (block.size() as u64) < to_page_end || slots <= CHUNK {
                return Err(Error::new(
                    ErrorKind::InvalidConstraints,
                    "PRP list block too short to chain",
                )
                .at(start));
            }
            // Every slot but the last takes data, in chunks.
            let last = slots - 1;
            let mut slot = 0;
            while slot < last {
                let room = (last - slot).min(CHUNK);
                let got = carried + entries.fill(&mut chunk[carried..room])?;
                block.write_slice(slot * PRP_ENTRY_SIZE, &chunk[..got])?;
                (slot, carried) = (slot + got, 0);
                if got < room {
                    track(&mut *lists, block)?;
                    return Ok(head);
                }
            }
            // The last slot holds the final entry, or points to the next
            // page when more than one is left.
            let mut tail = [0u64; 2];
            let at = last * PRP_ENTRY_SIZE;
            match entries.fill(&mut tail)? {
                0 => {}
                1 => block.write_at::<u64>(at, tail[0])?,
                _ => {
                    let chained = pools.alloc_page()?;
                    block.write_at::<u64>(at, chained.dma_addr().as_u64().to_le())?;
                    track(&mut *lists, core::mem::replace(&mut block, chained))?;
                    chunk[..2].copy_from_slice(&tail);
                    carried = 2;
                    continue;
                }
            }
            track(&mut *lists, block)?;
            return Ok(head);
        }
    }

    /// Adds `block` to the request's list blocks.
    fn track<'pool, P: DmaAlloc>(
        lists: &mut Vec<PoolBlock<'pool, P>>,
        block: PoolBlock<'pool, P>,
    ) -> Result<()> {
        lists.try_reserve(1).map_err(|_| {
            Error::new(ErrorKind::OutOfMemory, "no memory to track PRP list blocks")
        })?;
        lists.push(block);
        Ok(())
    }
}
