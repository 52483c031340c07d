//! Streaming mappings of [embedded-dma](https://docs.rs/embedded-dma)
//! buffers: what embassy and the embedded HALs pass around, mapped without
//! copying them into a `Box`.
//!
//! An [`EmbeddedMapping`] takes the buffer by value, as a
//! [`StreamingMapping`] does, and holds the buffer's handle aside while the
//! device owns the bytes:
//!
//! ```
//! # use dma_core::{DmaMap, FromDevice};
//! use dma_core::embedded::EmbeddedMapping;
//!
//! # fn f<P: DmaMap>(platform: &P, rx: &'static mut [u8; 512]) -> Result<(), dma_core::Error> {
//! // `rx` is any `'static` embedded-dma buffer: `&'static mut [u8; N]`,
//! // a `Box<[u32]>`, a HAL's own pointer type.
//! let mut m = EmbeddedMapping::<_, FromDevice, _>::map(platform, rx)?;
//! // ... the device writes ...
//! m.sync_for_cpu();
//! let mut header = [0u8; 16];
//! m.read(0, &mut header)?;
//! let rx: &'static mut [u8; 512] = m.unmap()?;
//! # let _ = rx; Ok(()) }
//! ```
//!
//! # Which buffers
//!
//! `B: ReadBuffer + WriteBuffer + 'static`, in every direction:
//!
//! - `'static`, so that forgetting the mapping (which leaks it, as it
//!   leaks any streaming mapping) can never end a borrow the device still
//!   writes through.
//! - `WriteBuffer`, because a mapping needs the buffer exclusively: the
//!   [`DmaMap::map`] contract lets a platform treat the range as its own
//!   until unmap (a bounce platform copies over it, a checker tracks who
//!   owns each byte). A shared `&'static [u8]` (only a `ReadBuffer`) is
//!   therefore refused at compile time, even for `ToDevice`.
//! - `ReadBuffer`, because the mapping lets the CPU read the bytes, so they
//!   must be initialised: embedded-dma's `MaybeUninit` targets are only
//!   `WriteBuffer`s and are refused at compile time.
//!
//! ```compile_fail,E0277
//! # use dma_core::{DmaMap, ToDevice};
//! # use dma_core::embedded::EmbeddedMapping;
//! # fn f<P: DmaMap>(platform: &P, table: &'static [u8; 64]) {
//! // error: a shared buffer is not a `WriteBuffer`
//! let m = EmbeddedMapping::<_, ToDevice, _>::map(platform, table);
//! # }
//! ```
//!
//! ```compile_fail,E0277
//! # use core::mem::MaybeUninit;
//! # use dma_core::{DmaMap, FromDevice};
//! # use dma_core::embedded::EmbeddedMapping;
//! # fn f<P: DmaMap>(platform: &P, rx: &'static mut MaybeUninit<[u8; 64]>) {
//! // error: uninitialised bytes are not a `ReadBuffer`
//! let m = EmbeddedMapping::<_, FromDevice, _>::map(platform, rx);
//! # }
//! ```
//!
//! # Why there is no scoped mapping of a borrowed buffer
//!
//! embassy's transfers borrow their buffer for a scope and, when dropped
//! early, stop the DMA engine before the borrow ends. A mapping layer
//! cannot stop a bus-master device. It can unmap, and the platform may
//! report that the unmap failed ([`DmaMap::unmap`]: "the caller must then
//! assume the device may still reach the buffer"). An owned buffer is then
//! leaked, which is sound; a borrowed one cannot be kept from its owner
//! past its scope, so the only sound reaction left would be to abort the
//! program. This family does not abort on an error, so it maps owned
//! `'static` buffers only.

use core::fmt;
use core::marker::PhantomData;
use core::mem::{ManuallyDrop, MaybeUninit};
use core::ptr::NonNull;

use embedded_dma::{ReadBuffer, WriteBuffer};

use crate::{
    DeviceReads, DeviceWrites, Direction, DmaAddr, DmaAttrs, DmaBuffer, DmaMap, DmaSegment,
    MapError, RawBuffer, RawMapping, Result, StreamingMapping,
};

/// The bytes of an embedded-dma buffer, as a [`DmaBuffer`] the
/// [`StreamingMapping`] inside an [`EmbeddedMapping`] owns. It owns no
/// memory itself: the buffer's handle does, held aside by the
/// `EmbeddedMapping`. Private, so nothing else can map arbitrary memory
/// through it.
struct Region(RawBuffer);

// SAFETY: a `Region` is only made in `EmbeddedMapping::map_with_attrs`,
// from `WriteBuffer::write_buffer` on a handle that is then held,
// untouched, until the region is rebuilt: the bytes are valid for reads
// and writes (a `WriteBuffer`, initialised because it is also a
// `ReadBuffer`) and reachable through nothing else; rebuilding touches no
// byte; the words are plain integers (embedded-dma's `Word` types), valid
// for any bytes a device writes.
unsafe impl DmaBuffer for Region {
    fn into_raw(self) -> RawBuffer {
        self.0
    }

    unsafe fn from_raw(raw: RawBuffer) -> Self {
        Self(raw)
    }
}

/// An embedded-dma buffer `B` mapped for a device in direction `D` through
/// platform `P`: a [`StreamingMapping`] whose buffer is any `'static`
/// [`WriteBuffer`] (see the [module docs](self) for which, and why).
///
/// The same safe surface as [`StreamingMapping`]: volatile copies while
/// mapped, syncs allowed by the direction, [`unmap`](Self::unmap) gives the
/// buffer back, dropping unmaps and drops it, forgetting leaks it.
pub struct EmbeddedMapping<B, D: Direction, P: DmaMap> {
    mapping: ManuallyDrop<StreamingMapping<Region, D, P>>,
    // Not a live `B` while mapped: inside `MaybeUninit` its pointer is not
    // a reference the compiler may assume unchanged while the device
    // writes through it.
    handle: MaybeUninit<B>,
    _marker: PhantomData<B>,
}

// SAFETY: the mapping holds the buffer's only handle (taken by value), so
// sending it sends the buffer; `B: Send` because `unmap` hands it out on
// the other thread.
unsafe impl<B: Send, D: Direction, P: DmaMap + Send> Send for EmbeddedMapping<B, D, P> {}
// SAFETY: `&self` methods only read (volatile copies, addresses); writes
// and syncs need `&mut self`; the handle is never reached through `&self`.
unsafe impl<B: Sync, D: Direction, P: DmaMap + Sync> Sync for EmbeddedMapping<B, D, P> {}

impl<B, W, D: Direction, P: DmaMap> EmbeddedMapping<B, D, P>
where
    B: WriteBuffer<Word = W> + ReadBuffer<Word = W> + 'static,
{
    /// Maps `buffer` for the device, handing it over (the CPU's writes are
    /// made visible to the device).
    ///
    /// # Errors
    ///
    /// A [`MapError`] holding the buffer, as for [`StreamingMapping::map`]
    /// (for example `Misaligned` for a device-written buffer that shares
    /// cache lines on a non-coherent platform).
    pub fn map(platform: P, buffer: B) -> Result<Self, MapError<B>> {
        Self::map_with_attrs(platform, buffer, DmaAttrs::empty())
    }

    /// As [`map`](Self::map), with attributes.
    ///
    /// # Errors
    ///
    /// As for [`map`](Self::map).
    pub fn map_with_attrs(platform: P, buffer: B, attrs: DmaAttrs) -> Result<Self, MapError<B>> {
        let mut handle = MaybeUninit::new(buffer);
        // The pointer is taken from the handle in its final place, so no
        // later move of a live `B` can invalidate it.
        // SAFETY: `handle` was initialised just above.
        let (ptr, words) = unsafe { handle.assume_init_mut().write_buffer() };
        let len = words.saturating_mul(core::mem::size_of::<W>());
        let give_back = |error, handle: MaybeUninit<B>| MapError {
            error,
            // SAFETY: initialised above and read out once, on a failure
            // path that drops nothing else holding it.
            buffer: unsafe { handle.assume_init() },
        };
        let Some(ptr) = NonNull::new(ptr.cast::<u8>()) else {
            let error = crate::Error::new(
                crate::ErrorKind::Unreachable,
                "the embedded-dma buffer returned a null pointer",
            );
            return Err(give_back(error, handle));
        };
        let region = Region(RawBuffer { ptr, len, extra: 0 });
        match StreamingMapping::map_with_attrs(platform, region, attrs) {
            Ok(mapping) => Ok(Self {
                mapping: ManuallyDrop::new(mapping),
                handle,
                _marker: PhantomData,
            }),
            Err(e) => Err(give_back(e.error, handle)),
        }
    }
}

impl<B, D: Direction, P: DmaMap> EmbeddedMapping<B, D, P> {
    /// The device address of the first byte.
    pub fn dma_addr(&self) -> DmaAddr {
        self.mapping.dma_addr()
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    /// Always false: empty mappings are refused.
    pub fn is_empty(&self) -> bool {
        self.mapping.is_empty()
    }

    /// The mapping as device segments (one), for `dma-sg`'s encoders.
    pub fn segments(&self) -> impl Iterator<Item = DmaSegment> {
        self.mapping.segments()
    }

    /// The mapping as the platform sees it.
    pub fn raw(&self) -> &RawMapping {
        self.mapping.raw()
    }

    /// The platform it is mapped through.
    pub fn platform(&self) -> &P {
        self.mapping.platform()
    }

    /// Copies bytes out of the buffer, as [`StreamingMapping::read`].
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](crate::ErrorKind::OutOfRange) past the end.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.mapping.read(offset, dst)
    }

    /// Hands the whole buffer back to the device, as
    /// [`StreamingMapping::sync_for_device`].
    pub fn sync_for_device(&mut self) {
        self.mapping.sync_for_device()
    }

    /// Hands `len` bytes at `offset` back to the device.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](crate::ErrorKind::OutOfRange) when the range leaves
    /// the mapping; nothing is synced then.
    pub fn sync_range_for_device(&mut self, offset: usize, len: usize) -> Result<()> {
        self.mapping.sync_range_for_device(offset, len)
    }

    /// Ends the mapping and gives the buffer back, as
    /// [`StreamingMapping::unmap`].
    ///
    /// # Errors
    ///
    /// If the platform reports the mapping was not live, the buffer is
    /// leaked rather than returned (the device might still reach it).
    pub fn unmap(self) -> Result<B> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the mapping is taken out once.
        let mapping = unsafe { ManuallyDrop::take(&mut this.mapping) };
        mapping.unmap()?;
        // SAFETY: initialised at map and read out once; `this` is never
        // dropped, so the handle is not dropped again.
        Ok(unsafe { this.handle.assume_init_read() })
    }
}

impl<B, D: DeviceWrites, P: DmaMap> EmbeddedMapping<B, D, P> {
    /// Gives the whole buffer back to the CPU after the device wrote it.
    pub fn sync_for_cpu(&mut self) {
        self.mapping.sync_for_cpu()
    }

    /// Gives `len` bytes at `offset` back to the CPU.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](crate::ErrorKind::OutOfRange) when the range leaves
    /// the mapping; nothing is synced then.
    pub fn sync_range_for_cpu(&mut self, offset: usize, len: usize) -> Result<()> {
        self.mapping.sync_range_for_cpu(offset, len)
    }
}

impl<B, D: DeviceReads, P: DmaMap> EmbeddedMapping<B, D, P> {
    /// Copies bytes into the buffer for the device to read, as
    /// [`StreamingMapping::write`].
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](crate::ErrorKind::OutOfRange) past the end.
    pub fn write(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        self.mapping.write(offset, src)
    }
}

impl<B, D: Direction, P: DmaMap> Drop for EmbeddedMapping<B, D, P> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and `unmap` suppresses it, so the
        // mapping is taken out once.
        let mapping = unsafe { ManuallyDrop::take(&mut self.mapping) };
        if mapping.unmap().is_ok() {
            // SAFETY: initialised at map and dropped once, here; on a failed
            // unmap it is leaked instead (the device might still reach it).
            unsafe { self.handle.assume_init_drop() };
        }
    }
}

impl<B, D: Direction, P: DmaMap> fmt::Debug for EmbeddedMapping<B, D, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedMapping")
            .field("raw", self.raw())
            .finish_non_exhaustive()
    }
}
