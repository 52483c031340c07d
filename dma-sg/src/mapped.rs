//! A scatter-gather table mapped for a device, owning what it maps.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use dma_core::{
    CpuAccess, DeviceReads, DeviceWrites, Direction, DmaAttrs, DmaBuffer, DmaMap, Error, ErrorKind,
    MapError, RawBuffer, RawMapping, Result, SgEntry,
};

use crate::{DeviceSegments, SgStorage, SgTable};

/// Marker for a [`MappedSgTable`] over pages the caller owns and vouches
/// for (see [`MappedSgTable::map_pages`]), rather than over a buffer the
/// table took over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExternalPages;

/// A scatter-gather table mapped for one device through any platform.
///
/// Ownership follows `dma-core`'s [`StreamingMapping`](dma_core::StreamingMapping):
/// - [`map`](Self::map) takes a [`DmaBuffer`] `B` (a `Vec`, `Box<[T]>`,
///   [`DmaBuf`](dma_core::DmaBuf), `&'static mut [T]`) by value and takes it
///   apart, so no reference to its bytes exists while the device owns them;
///   the buffer may be virtually contiguous and physically scattered: the
///   table is built from its pages. [`unmap`](Self::unmap) gives it back.
/// - [`map_pages`](Self::map_pages) maps a table of physical pages the
///   caller owns (a page cache, a kernel's page frames); it is `unsafe`
///   because only the caller can promise those pages stay put and
///   untouched, and its `unmap` gives the table back.
///
/// Nothing borrows with a lifetime: a borrow would end at `mem::forget`
/// while the device could still write, so forgetting a `MappedSgTable`
/// leaks the buffer and the mapping instead, which is sound. Dropping one
/// unmaps it; as with any unmap, the device must be done with it by then.
///
/// The direction is a type: `sync_for_cpu` exists only where the device
/// writes ([`DeviceWrites`]), and `write` only where it reads
/// ([`DeviceReads`]). A `FromDevice` table is the device's to write, so the
/// CPU cannot store into it:
///
/// ```compile_fail,E0599
/// # use dma_core::{DeviceConstraints, FromDevice, HostMemory};
/// # use dma_sg::{MappedSgTable, SgLimits};
/// # let c = DeviceConstraints::UNCONSTRAINED;
/// # let platform = dma_direct::DirectPlatform::x86_coherent(HostMemory, c);
/// let mut rx = MappedSgTable::<_, FromDevice, _, _>::map(&platform, vec![0u8; 8192], SgLimits::new(4096, &c).unwrap()).unwrap();
/// rx.write(0, b"lost"); // error: the device owns a FromDevice table
/// ```
///
/// `sync_for_device` exists in every direction: for `FromDevice` it hands
/// the table back to the device after the CPU read it, for the next
/// transfer (as Linux allows `dma_sync_sg_for_device` on `DMA_FROM_DEVICE`).
///
/// ```
/// use dma_core::{DeviceConstraints, HostMemory, ToDevice};
/// use dma_direct::DirectPlatform;
/// use dma_sg::{MappedSgTable, SgLimits};
///
/// let c = DeviceConstraints::builder().max_segment_size(8192).build()?;
/// let platform = DirectPlatform::x86_coherent(HostMemory, c);
/// let limits = SgLimits::new(4096, &c)?;
/// let mut tx = MappedSgTable::<_, ToDevice, _, _>::map(&platform, vec![7u8; 20_000], limits)?;
/// assert!(tx.segments().all(|s| s.len <= 8192));
/// assert_eq!(tx.segments().map(|s| s.len).sum::<u64>(), 20_000);
/// tx.write(0, b"header")?;
/// tx.sync_for_device();
/// let buf: Vec<u8> = tx.unmap()?;
/// assert_eq!(&buf[..6], b"header");
/// # Ok::<(), dma_core::Error>(())
/// ```
pub struct MappedSgTable<B, D: Direction, P: DmaMap, S: SgStorage> {
    table: SgTable<S>,
    buffer: Option<RawBuffer>,
    release: unsafe fn(RawBuffer),
    segment_count: usize,
    attrs: DmaAttrs,
    platform: P,
    _marker: PhantomData<(B, D)>,
}

/// Rebuilds and drops a buffer taken apart by `into_raw`.
///
/// # Safety
///
/// `raw` came from `B::into_raw` and is used once.
unsafe fn release_buffer<B: DmaBuffer>(raw: RawBuffer) {
    // SAFETY: the caller's promise.
    drop(unsafe { B::from_raw(raw) });
}

/// Nothing to release: the caller owns external pages.
///
/// # Safety
///
/// Always safe; `unsafe` only to fit the `release` slot.
unsafe fn release_nothing(_: RawBuffer) {}

impl<B, D: Direction, P: DmaMap, S: SgStorage> MappedSgTable<B, D, P, S> {
    /// Maps every entry and checks the merged device segments against the
    /// device's constraints; on failure nothing stays mapped.
    ///
    /// # Safety
    ///
    /// As for [`DmaMap::map_sg`]: the caller owns every page in `table`,
    /// which stays allocated and untouched by the CPU (other than through
    /// this table's syncs) until unmapped.
    unsafe fn map_table(platform: &P, table: &mut SgTable<S>, attrs: DmaAttrs) -> Result<usize> {
        if table.is_empty() {
            return Err(Error::new(
                ErrorKind::ZeroSize,
                "empty scatter-gather table",
            ));
        }
        // SAFETY: the caller's promise covers every entry.
        unsafe { platform.map_sg(table.entries_mut(), D::DIRECTION, attrs)? };
        let c = platform.constraints();
        let mut count = 0usize;
        let mut check = Ok(());
        for seg in DeviceSegments::new(table.entries(), c) {
            count += 1;
            check = c.check_segment(seg.addr, seg.len);
            if check.is_err() {
                break;
            }
        }
        if let Err(e) = check.and_then(|()| c.check_segment_count(count)) {
            // SAFETY: mapped just above with these arguments; the device has
            // not been told about it.
            let _ = unsafe { platform.unmap_sg(table.entries(), D::DIRECTION, attrs) };
            return Err(e);
        }
        Ok(count)
    }

    /// The entries, with their device addresses.
    pub fn entries(&self) -> &[SgEntry] {
        self.table.entries()
    }

    /// The device segments: what to write into descriptors (see
    /// [`DeviceSegments`]).
    pub fn segments(&self) -> DeviceSegments<'_> {
        DeviceSegments::new(self.table.entries(), self.platform.constraints())
    }

    /// How many device segments [`segments`](Self::segments) yields (at
    /// most the device's `max_segments`, checked at map time).
    pub fn segment_count(&self) -> usize {
        self.segment_count
    }

    /// The number of bytes mapped.
    pub fn total_len(&self) -> u64 {
        self.table.total_len()
    }

    /// The attributes the table was mapped with.
    pub fn attrs(&self) -> DmaAttrs {
        self.attrs
    }

    /// The platform it is mapped through.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Calls `sync` for the part of every entry overlapping `len` bytes at
    /// byte `offset` of the table.
    fn for_range(
        &self,
        offset: u64,
        len: u64,
        mut sync: impl FnMut(&P, &RawMapping, usize, usize),
    ) -> Result<()> {
        let end = offset.checked_add(len).filter(|&e| e <= self.total_len());
        let Some(end) = end else {
            return Err(
                Error::new(ErrorKind::OutOfRange, "sync range leaves the mapped table")
                    .at(offset)
                    .len(len),
            );
        };
        let mut at = 0u64;
        for e in self.table.entries() {
            let e_end = at + e.len as u64;
            let (from, to) = (offset.max(at), end.min(e_end));
            if from < to {
                let raw = e.as_raw(D::DIRECTION, self.attrs);
                sync(
                    &self.platform,
                    &raw,
                    (from - at) as usize,
                    (to - from) as usize,
                );
            }
            if e_end >= end {
                break;
            }
            at = e_end;
        }
        Ok(())
    }

    fn unmap_inner(self) -> (Result<()>, SgTable<S>, Option<RawBuffer>) {
        let this = ManuallyDrop::new(self);
        // SAFETY: the table is live and mapped once; `this` is never used or
        // dropped again, so it is unmapped once. The device has stopped (the
        // documented contract of unmap).
        let result = unsafe {
            this.platform
                .unmap_sg(this.table.entries(), D::DIRECTION, this.attrs)
        };
        // SAFETY: each field is read out once from a ManuallyDrop that is
        // never dropped, so each is dropped exactly once, by the caller.
        let (table, _platform) = unsafe {
            (
                core::ptr::read(&this.table),
                core::ptr::read(&this.platform),
            )
        };
        (result, table, this.buffer)
    }
}

impl<B: DmaBuffer, D: Direction, P: DmaMap, S: SgStorage> MappedSgTable<B, D, P, S> {
    /// Takes `buffer` over, builds its table in `table` (emptied first;
    /// its limits and storage are used) from the buffer's pages, and maps
    /// it for the device.
    ///
    /// # Errors
    ///
    /// A [`MapError`] holding the buffer when it is empty, its table breaks
    /// the limits (see [`SgTable::append_virt`]), or mapping fails or yields
    /// segments the device cannot take (more than `max_segments`:
    /// [`TooManySegments`](ErrorKind::TooManySegments)).
    pub fn map_in(
        platform: P,
        buffer: B,
        mut table: SgTable<S>,
        attrs: DmaAttrs,
    ) -> Result<Self, MapError<B>> {
        let raw = buffer.into_raw();
        let give_back = |error: Error| MapError {
            error,
            // SAFETY: raw came from into_raw just above and is rebuilt once,
            // on this failure path only; nothing is mapped then.
            buffer: unsafe { B::from_raw(raw) },
        };
        table.clear();
        if raw.len == 0 {
            return Err(give_back(Error::new(
                ErrorKind::ZeroSize,
                "zero-length buffer",
            )));
        }
        if let Err(e) = table.append_virt(|p, l| platform.virt_to_phys(p, l), raw.ptr, raw.len) {
            return Err(give_back(e));
        }
        // SAFETY: the buffer was given up by value, so we own its pages and
        // nothing else reaches them; they stay allocated until rebuilt after
        // unmap; mapped once here and unmapped once (unmap or Drop).
        match unsafe { Self::map_table(&platform, &mut table, attrs) } {
            Ok(segment_count) => Ok(Self {
                table,
                buffer: Some(raw),
                release: release_buffer::<B>,
                segment_count,
                attrs,
                platform,
                _marker: PhantomData,
            }),
            Err(e) => Err(give_back(e)),
        }
    }

    /// Ends the mapping and gives the buffer back, holding what the device
    /// wrote (synced for the CPU unless mapped with `SKIP_CPU_SYNC`).
    ///
    /// # Errors
    ///
    /// If the platform reports an entry was not mapped, the buffer is
    /// leaked rather than returned (the device might still reach it).
    pub fn unmap(self) -> Result<B> {
        let (result, _table, buffer) = self.unmap_inner();
        result?;
        let raw = buffer.ok_or(Error::new(ErrorKind::NotMapped, "buffer already released"))?;
        // SAFETY: raw came from B::into_raw in map_in and is rebuilt once.
        Ok(unsafe { B::from_raw(raw) })
    }

    /// Tells the platform of a CPU access to `len` bytes at `offset` of the
    /// buffer, entry by entry (the range was checked by `bytes`).
    fn tell_cpu_access(&self, offset: usize, len: usize, access: CpuAccess) {
        // The table lists the buffer's bytes in order, so a range inside the
        // buffer lies inside the table; bytes past the table's end are in no
        // entry and there is nothing to tell.
        let _ = self.for_range(offset as u64, len as u64, |p, raw, off, n| {
            p.cpu_access(raw, off, n, access)
        });
    }

    fn bytes(&self, offset: usize, len: usize) -> Result<NonNull<u8>> {
        let raw = self
            .buffer
            .ok_or(Error::new(ErrorKind::NotMapped, "no buffer"))?;
        if offset.checked_add(len).is_none_or(|end| end > raw.len) {
            return Err(Error::new(
                ErrorKind::OutOfRange,
                "access past the end of the mapped buffer",
            )
            .at(offset as u64)
            .len(len as u64));
        }
        // SAFETY: offset + len <= raw.len, inside the buffer we own.
        Ok(unsafe { raw.ptr.add(offset) })
    }

    /// Copies bytes out of the buffer with volatile loads (the device may
    /// be writing). On a non-coherent platform, sync for the CPU first.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let src = self.bytes(offset, dst.len())?;
        self.tell_cpu_access(offset, dst.len(), CpuAccess::Read);
        for (i, d) in dst.iter_mut().enumerate() {
            // SAFETY: in bounds (checked in `bytes`), owned by this mapping.
            *d = unsafe { src.add(i).as_ptr().read_volatile() };
        }
        Ok(())
    }
}

impl<B: DmaBuffer, D: DeviceReads, P: DmaMap, S: SgStorage> MappedSgTable<B, D, P, S> {
    /// Copies bytes into the buffer with volatile stores, for the device to
    /// read. On a non-coherent platform, sync for the device afterwards.
    /// Only directions the device reads have it (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn write(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        let dst = self.bytes(offset, src.len())?;
        self.tell_cpu_access(offset, src.len(), CpuAccess::Write);
        for (i, s) in src.iter().enumerate() {
            // SAFETY: in bounds (checked in `bytes`); `&mut self` excludes
            // other CPU writers.
            unsafe { dst.add(i).as_ptr().write_volatile(*s) };
        }
        Ok(())
    }
}

#[cfg(feature = "alloc")]
impl<B: DmaBuffer, D: Direction, P: DmaMap> MappedSgTable<B, D, P, alloc::vec::Vec<SgEntry>> {
    /// Takes `buffer` over, builds its table under `limits` and maps it
    /// (see [`map_in`](Self::map_in)).
    ///
    /// # Errors
    ///
    /// As for [`map_in`](Self::map_in).
    pub fn map(platform: P, buffer: B, limits: crate::SgLimits) -> Result<Self, MapError<B>> {
        Self::map_in(platform, buffer, SgTable::new(limits), DmaAttrs::empty())
    }
}

impl<D: Direction, P: DmaMap, S: SgStorage> MappedSgTable<ExternalPages, D, P, S> {
    /// Maps a table of pages the caller owns.
    ///
    /// # Errors
    ///
    /// A [`MapError`] holding the table when it is empty, mapping fails, or
    /// the merged segments break the device's constraints; nothing stays
    /// mapped then.
    ///
    /// # Safety
    ///
    /// The caller owns every page the table describes; they stay allocated,
    /// and the CPU does not access them other than through this table's
    /// syncs, until the table is unmapped or dropped — or forever, if it is
    /// forgotten.
    // The table comes back by value on failure, as a StreamingMapping's
    // buffer does; boxing it would need `alloc`.
    #[allow(clippy::result_large_err)]
    pub unsafe fn map_pages(
        platform: P,
        mut table: SgTable<S>,
        attrs: DmaAttrs,
    ) -> Result<Self, MapError<SgTable<S>>> {
        // SAFETY: the caller's promise, passed on.
        match unsafe { Self::map_table(&platform, &mut table, attrs) } {
            Ok(segment_count) => Ok(Self {
                table,
                buffer: None,
                release: release_nothing,
                segment_count,
                attrs,
                platform,
                _marker: PhantomData,
            }),
            Err(error) => Err(MapError {
                error,
                buffer: table,
            }),
        }
    }

    /// Ends the mapping and gives the table back.
    ///
    /// # Errors
    ///
    /// The platform's unmap error; the device might then still reach the
    /// pages.
    pub fn unmap(self) -> Result<SgTable<S>> {
        let (result, table, _) = self.unmap_inner();
        result.map(|()| table)
    }
}

impl<B, D: DeviceWrites, P: DmaMap, S: SgStorage> MappedSgTable<B, D, P, S> {
    /// Gives the whole table back to the CPU after the device wrote it.
    pub fn sync_for_cpu(&mut self) {
        // The table is never handed out mutably while mapped, and
        // `SgStorage`'s contract makes the storage return what it holds.
        // SAFETY: so the entries are exactly what map_sg filled in, still
        // mapped, with this direction and these attributes.
        unsafe {
            self.platform
                .sync_sg_for_cpu(self.table.entries(), D::DIRECTION, self.attrs)
        }
    }

    /// Gives `len` bytes at byte `offset` of the table back to the CPU
    /// (for example only what the device reported it wrote).
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) when the range leaves the
    /// table; nothing is synced then.
    pub fn sync_range_for_cpu(&mut self, offset: u64, len: u64) -> Result<()> {
        self.for_range(offset, len, |p, raw, off, n| {
            // SAFETY: `raw` is a live entry of this table and `off + n` lies
            // within it (for_range clips to the entry).
            unsafe { p.sync_for_cpu(raw, off, n) }
        })
    }
}

impl<B, D: Direction, P: DmaMap, S: SgStorage> MappedSgTable<B, D, P, S> {
    /// Hands the whole table back to the device: after the CPU wrote it,
    /// or, for `FromDevice`, after the CPU read what the device wrote, so
    /// the device may write it again.
    pub fn sync_for_device(&mut self) {
        // SAFETY: as in sync_for_cpu.
        unsafe {
            self.platform
                .sync_sg_for_device(self.table.entries(), D::DIRECTION, self.attrs)
        }
    }

    /// Hands `len` bytes at byte `offset` of the table back to the device.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) when the range leaves the
    /// table; nothing is synced then.
    pub fn sync_range_for_device(&mut self, offset: u64, len: u64) -> Result<()> {
        self.for_range(offset, len, |p, raw, off, n| {
            // SAFETY: `raw` is a live entry of this table and `off + n` lies
            // within it (for_range clips to the entry).
            unsafe { p.sync_for_device(raw, off, n) }
        })
    }
}

impl<B, D: Direction, P: DmaMap, S: SgStorage> Drop for MappedSgTable<B, D, P, S> {
    fn drop(&mut self) {
        // SAFETY: the table is live and unmapped only here (unmap suppresses
        // Drop); the device has stopped (documented contract).
        let unmapped = unsafe {
            self.platform
                .unmap_sg(self.table.entries(), D::DIRECTION, self.attrs)
        };
        if let (Ok(()), Some(raw)) = (unmapped, self.buffer.take()) {
            // SAFETY: raw came from into_raw in map_in and is released once.
            unsafe { (self.release)(raw) };
        }
    }
}

impl<B, D: Direction, P: DmaMap, S: SgStorage> fmt::Debug for MappedSgTable<B, D, P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedSgTable")
            .field("direction", &D::DIRECTION)
            .field("entries", &self.table.entries().len())
            .field("segments", &self.segment_count)
            .field("total_len", &self.total_len())
            .finish_non_exhaustive()
    }
}
