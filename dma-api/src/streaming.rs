//! Streaming mappings: a CPU buffer lent to a device for one transfer (or a
//! few), with ownership moving between CPU and device through syncs.

use core::fmt;
use core::marker::PhantomData;

use crate::volatile::VolatileBytes;
use crate::{
    CpuAccess, DeviceReads, DeviceWrites, Direction, DmaAddr, DmaAttrs, DmaBuffer, DmaMap, Error,
    ErrorKind, RawBuffer, RawMapping, Result,
};

/// A device-visible, contiguous range: one descriptor's worth of a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DmaSegment {
    /// The device address of the first byte.
    pub addr: DmaAddr,
    /// Length in bytes.
    pub len: u64,
}

impl DmaSegment {
    /// A segment of `len` bytes at `addr`.
    pub const fn new(addr: DmaAddr, len: u64) -> Self {
        Self { addr, len }
    }

    /// The device address one past the last byte, if it does not wrap.
    pub const fn end(&self) -> Option<u64> {
        self.addr.as_u64().checked_add(self.len)
    }
}

/// A buffer of type `B` mapped for a device in direction `D` through
/// platform `P`.
///
/// The mapping owns the buffer; [`unmap`](Self::unmap) gives it back.
/// While mapped the bytes are reachable only by volatile copies
/// ([`read`](Self::read), [`write`](Self::write)), never by reference,
/// because the device may be writing them.
///
/// The direction is in the type, so a sync it does not allow does not
/// compile. A `ToDevice` mapping has no `sync_for_cpu`:
///
/// ```compile_fail
/// # use dma_core::{DmaMap, StreamingMapping, ToDevice};
/// # fn f<P: DmaMap>(platform: &P) -> Result<(), dma_core::Error> {
/// let mut m = StreamingMapping::<_, ToDevice, _>::map(platform, vec![0u8; 64])?;
/// m.sync_for_cpu(); // error: the device never writes a ToDevice buffer
/// # Ok(()) }
/// ```
///
/// The CPU writes only to buffers the device reads. A `FromDevice` mapping
/// has no `write`: the device owns those bytes, and a CPU store could be
/// lost to the device's write or, on a non-coherent platform, written back
/// over it by a cache eviction:
///
/// ```compile_fail,E0599
/// # use dma_core::{DmaMap, FromDevice, StreamingMapping};
/// # fn f<P: DmaMap>(platform: &P) -> Result<(), dma_core::Error> {
/// let mut m = StreamingMapping::<_, FromDevice, _>::map(platform, vec![0u8; 64])?;
/// m.write(0, &[1])?; // error: the device owns a FromDevice buffer
/// # Ok(()) }
/// ```
///
/// Every direction has [`sync_for_device`](Self::sync_for_device). For a
/// `FromDevice` mapping it is the hand-back step: once the CPU has read
/// what the device wrote, the same mapping goes back to the device for the
/// next transfer, as Linux allows `dma_sync_single_for_device` on a
/// `DMA_FROM_DEVICE` mapping and `page_pool` recycles receive buffers:
///
/// ```
/// # use dma_core::{DmaBuf, DmaMap, FromDevice, StreamingMapping};
/// # fn f<P: DmaMap>(platform: &P) -> Result<(), dma_core::Error> {
/// let buf = DmaBuf::for_device(platform, 2048)?;
/// let mut rx = StreamingMapping::<_, FromDevice, _>::map(platform, buf)?;
/// // ... the device writes a packet ...
/// rx.sync_for_cpu();
/// let mut header = [0u8; 14];
/// rx.read(0, &mut header)?;
/// rx.sync_for_device(); // recycled: the device may write it again
/// # Ok(()) }
/// ```
///
/// A `Bidirectional` mapping has both:
///
/// ```
/// # use dma_core::{Bidirectional, DmaMap, StreamingMapping};
/// # fn f<P: DmaMap>(platform: &P) -> Result<(), dma_core::Error> {
/// let mut m = StreamingMapping::<_, Bidirectional, _>::map(platform, vec![0u8; 64])?;
/// m.sync_for_cpu();
/// m.sync_for_device();
/// let buf: Vec<u8> = m.unmap()?;
/// # Ok(()) }
/// ```
///
/// Forgetting a mapping (`core::mem::forget`) leaks the buffer and the
/// platform's resources for it; it is never unsound, since nothing can
/// reach the buffer afterwards. Dropping one unmaps it and drops the buffer:
/// as with Linux's `dma_unmap_*`, the device must have stopped using the
/// address by then (rings enforce this by holding mappings until their
/// completion arrives).
pub struct StreamingMapping<B: DmaBuffer, D: Direction, P: DmaMap> {
    buffer: RawBuffer,
    raw: RawMapping,
    platform: P,
    _marker: PhantomData<(B, D)>,
}

// SAFETY: the mapping owns the buffer exclusively (it was given up by value),
// so sending the mapping sends the only handle to it. B: Send because the
// buffer comes back out on another thread.
unsafe impl<B: DmaBuffer + Send, D: Direction, P: DmaMap + Send> Send
    for StreamingMapping<B, D, P>
{
}
// SAFETY: `&self` methods only read (volatile copies, addresses); every write
// to the buffer needs `&mut self`.
unsafe impl<B: DmaBuffer + Sync, D: Direction, P: DmaMap + Sync> Sync
    for StreamingMapping<B, D, P>
{
}

/// A failed map: the error, and the buffer back, untouched.
pub struct MapError<B> {
    /// Why the map failed.
    pub error: Error,
    /// The buffer, returned so that nothing is lost.
    pub buffer: B,
}

impl<B> MapError<B> {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }
}

impl<B> fmt::Debug for MapError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<B> fmt::Display for MapError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<B> core::error::Error for MapError<B> {}

/// `?` on a failed map: the error is kept and the buffer is dropped. Match
/// on the [`MapError`] instead to keep the buffer.
impl<B> From<MapError<B>> for Error {
    fn from(e: MapError<B>) -> Self {
        e.error
    }
}

impl<B: DmaBuffer, D: Direction, P: DmaMap> StreamingMapping<B, D, P> {
    /// Maps `buffer` for the device, handing it over (the CPU's writes are
    /// made visible to the device).
    ///
    /// # Errors
    ///
    /// A [`MapError`] holding the buffer when it is empty, not physically
    /// contiguous, cannot be made reachable, or the platform refuses it.
    #[inline]
    pub fn map(platform: P, buffer: B) -> Result<Self, MapError<B>> {
        Self::map_with_attrs(platform, buffer, DmaAttrs::empty())
    }

    /// As [`map`](Self::map), with attributes.
    ///
    /// # Errors
    ///
    /// As for [`map`](Self::map).
    #[inline]
    pub fn map_with_attrs(platform: P, buffer: B, attrs: DmaAttrs) -> Result<Self, MapError<B>> {
        let padded = buffer.padded_len();
        let raw_buf = buffer.into_raw();
        // The padding of a padded buffer is its own, so the mapping covers it
        // and a device-written buffer owns its last cache line whole.
        let map_len = padded.map_or(raw_buf.len, |p| p.max(raw_buf.len));
        let give_back = |error: Error| MapError {
            error,
            // SAFETY: raw_buf came from into_raw just above and is rebuilt
            // once, on this failure path only.
            buffer: unsafe { B::from_raw(raw_buf) },
        };
        if raw_buf.len == 0 {
            return Err(give_back(Error::new(
                ErrorKind::ZeroSize,
                "zero-length streaming mapping",
            )));
        }
        let phys = match platform.virt_to_phys(raw_buf.ptr, map_len) {
            Ok(p) => p,
            Err(e) => return Err(give_back(e)),
        };
        // SAFETY: the buffer was given up by value, so we own it and nothing
        // else reaches it; it stays allocated until we rebuild it after
        // unmap; it is mapped once here and unmapped once (unmap or Drop).
        let dma = match unsafe { platform.map(phys, map_len, D::DIRECTION, attrs) } {
            Ok(d) => d,
            Err(e) => return Err(give_back(e)),
        };
        let raw = RawMapping {
            phys,
            dma,
            len: map_len,
            dir: D::DIRECTION,
            attrs,
        };
        Ok(Self {
            buffer: raw_buf,
            raw,
            platform,
            _marker: PhantomData,
        })
    }

    /// The device address of the first byte.
    pub fn dma_addr(&self) -> DmaAddr {
        self.raw.dma
    }

    /// The mapped length in bytes: the buffer's length, or its padded
    /// length for a padded buffer such as [`DmaBuf`](crate::DmaBuf).
    pub fn len(&self) -> usize {
        self.raw.len
    }

    /// The mapping as device segments: one, since a streaming mapping is
    /// contiguous in device addresses. It is what `dma-sg`'s encoders
    /// (`encode_prp`, SGL, hardware SG, virtio chains) take, so a single
    /// buffer is encoded as a table's segments are.
    pub fn segments(&self) -> impl Iterator<Item = DmaSegment> {
        core::iter::once(DmaSegment::new(self.dma_addr(), self.len() as u64))
    }

    /// Always false: empty mappings are refused.
    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// The mapping as the platform sees it.
    pub fn raw(&self) -> &RawMapping {
        &self.raw
    }

    /// The platform it is mapped through.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    fn bytes(&self) -> VolatileBytes {
        // SAFETY: the buffer is owned by this mapping and valid for the mapped
        // length (its length, or its padded length, per DmaBuffer's contract)
        // until it is rebuilt in unmap/drop, after which `self` is gone.
        unsafe { VolatileBytes::new(self.buffer.ptr, self.raw.len) }
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        self.bytes().checked(offset, len, 1).map(|_| ())
    }

    /// Copies bytes out of the buffer. On a non-coherent platform, call
    /// [`sync_for_cpu`](Self::sync_for_cpu) first or read stale data.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.check_range(offset, dst.len())?;
        self.platform
            .cpu_access(&self.raw, offset, dst.len(), CpuAccess::Read);
        self.bytes().copy_out(offset, dst)
    }

    /// Ends the mapping and gives the buffer back, holding whatever the
    /// device wrote (synced for the CPU unless mapped with `SKIP_CPU_SYNC`).
    ///
    /// # Errors
    ///
    /// If the platform reports the mapping was not live, the buffer is
    /// leaked rather than returned (the device might still reach it) and
    /// the error is returned.
    pub fn unmap(self) -> Result<B> {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `raw` is exactly what map returned; `this` is never used
        // again, so it is unmapped once. The device has stopped (contract).
        let result = unsafe { this.platform.unmap(&this.raw) };
        // SAFETY: `platform` is read out once from a ManuallyDrop that is never
        // dropped, so it is dropped exactly once, here.
        let _platform = unsafe { core::ptr::read(&this.platform) };
        result?;
        // SAFETY: `buffer` came from into_raw in map and is rebuilt once.
        Ok(unsafe { B::from_raw(this.buffer) })
    }
}

impl<B: DmaBuffer, D: DeviceWrites, P: DmaMap> StreamingMapping<B, D, P> {
    /// Gives the whole buffer back to the CPU after the device wrote it
    /// (invalidating stale cache lines on non-coherent platforms).
    pub fn sync_for_cpu(&mut self) {
        // SAFETY: the mapping is live (we own it) and the range is all of it.
        unsafe { self.platform.sync_for_cpu(&self.raw, 0, self.raw.len) }
    }

    /// Gives `len` bytes at `offset` back to the CPU (for example only the
    /// bytes a NIC reported it received).
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) when the range leaves the
    /// mapping; nothing is synced then.
    pub fn sync_range_for_cpu(&mut self, offset: usize, len: usize) -> Result<()> {
        self.check_range(offset, len)?;
        // SAFETY: live mapping, range checked just above.
        unsafe { self.platform.sync_for_cpu(&self.raw, offset, len) };
        Ok(())
    }
}

impl<B: DmaBuffer, D: DeviceReads, P: DmaMap> StreamingMapping<B, D, P> {
    /// Copies bytes into the buffer, for the device to read. On a
    /// non-coherent platform, call [`sync_for_device`](Self::sync_for_device)
    /// afterwards or the device reads stale data. Only directions the device
    /// reads have it (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn write(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        self.check_range(offset, src.len())?;
        self.platform
            .cpu_access(&self.raw, offset, src.len(), CpuAccess::Write);
        self.bytes().copy_in(offset, src)
    }
}

impl<B: DmaBuffer, D: Direction, P: DmaMap> StreamingMapping<B, D, P> {
    /// Hands the whole buffer back to the device: after the CPU wrote it
    /// (cleaning dirty cache lines on non-coherent platforms), or, for a
    /// `FromDevice` mapping, after the CPU read what the device wrote, so
    /// the device may write it again (receive-buffer recycling).
    pub fn sync_for_device(&mut self) {
        // SAFETY: the mapping is live (we own it) and the range is all of it.
        unsafe { self.platform.sync_for_device(&self.raw, 0, self.raw.len) }
    }

    /// Hands `len` bytes at `offset` back to the device.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) when the range leaves the
    /// mapping; nothing is synced then.
    pub fn sync_range_for_device(&mut self, offset: usize, len: usize) -> Result<()> {
        self.check_range(offset, len)?;
        // SAFETY: live mapping, range checked just above.
        unsafe { self.platform.sync_for_device(&self.raw, offset, len) };
        Ok(())
    }
}

impl<B: DmaBuffer, D: Direction, P: DmaMap> Drop for StreamingMapping<B, D, P> {
    fn drop(&mut self) {
        // SAFETY: the mapping is live and is unmapped only here (unmap()
        // suppresses Drop); the device has stopped (documented contract).
        if unsafe { self.platform.unmap(&self.raw) }.is_ok() {
            // SAFETY: buffer came from into_raw and is rebuilt once, then dropped.
            drop(unsafe { B::from_raw(self.buffer) });
        }
    }
}

impl<B: DmaBuffer, D: Direction, P: DmaMap> fmt::Debug for StreamingMapping<B, D, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingMapping")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}
