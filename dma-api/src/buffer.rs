//! Buffers a streaming mapping can own: memory whose address does not move
//! when its owner does.

use core::ptr::NonNull;

use crate::DmaPod;
#[cfg(feature = "alloc")]
use crate::{Error, ErrorKind, Result};

/// A buffer taken apart into its raw parts while a device owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawBuffer {
    /// The first byte.
    pub ptr: NonNull<u8>,
    /// Length in bytes of the part the device may access.
    pub len: usize,
    /// Whatever else the owner needs to be rebuilt (a `Vec`'s capacity).
    pub extra: usize,
}

// SAFETY: a description; the owning mapping decides who may access it.
unsafe impl Send for RawBuffer {}
// SAFETY: sharing `&RawBuffer` shares only the address and lengths (it is
// `Copy`); no method dereferences `ptr`, so no access races through it.
unsafe impl Sync for RawBuffer {}

/// An owned buffer with a stable address that a streaming mapping can take
/// over: `Box<[T]>`, `Vec<T>`, `Box<T>`, `&'static mut [T]`, [`DmaBuf`].
///
/// Taking it apart into raw parts, rather than holding it and a pointer
/// into it, means no reference to the bytes exists while the device owns
/// them, and that a forgotten mapping simply leaks the buffer.
///
/// # Safety
///
/// Implementations promise that the [`RawBuffer`] from
/// [`into_raw`](Self::into_raw) describes memory valid for reads and writes
/// of `len` bytes (and of [`padded_len`](Self::padded_len) bytes where that
/// is given), reachable through nothing but that pointer until
/// [`from_raw`](Self::from_raw) rebuilds the buffer, which it does without
/// reading or writing the bytes; and that any bytes a device writes there
/// leave the buffer's contents valid (the elements are [`DmaPod`]).
pub unsafe trait DmaBuffer: Sized {
    /// Gives up the buffer as raw parts.
    fn into_raw(self) -> RawBuffer;

    /// How many bytes from the start the buffer owns outright, when that is
    /// more than its length (an allocation padded to whole cache lines).
    /// A mapping may then cover the padding too, so that a device-written
    /// buffer owns its last cache line whole. `None` (the default) means
    /// exactly the length.
    fn padded_len(&self) -> Option<usize> {
        None
    }

    /// Rebuilds the buffer.
    ///
    /// # Safety
    ///
    /// `raw` came from `into_raw` on the same type and is used once.
    unsafe fn from_raw(raw: RawBuffer) -> Self;
}

// SAFETY: `Box::into_raw` gives up the allocation without freeing it; the
// pointer is unique and stable until `Box::from_raw`. T: DmaPod makes any
// written bytes valid.
#[cfg(feature = "alloc")]
unsafe impl<T: DmaPod> DmaBuffer for alloc::boxed::Box<[T]> {
    fn into_raw(self) -> RawBuffer {
        let len = self.len();
        let ptr = alloc::boxed::Box::into_raw(self);
        // SAFETY: Box::into_raw never returns null.
        let ptr = unsafe { NonNull::new_unchecked(ptr.cast::<u8>()) };
        RawBuffer {
            ptr,
            len: core::mem::size_of::<T>() * len,
            extra: len,
        }
    }

    unsafe fn from_raw(raw: RawBuffer) -> Self {
        let slice = core::ptr::slice_from_raw_parts_mut(raw.ptr.as_ptr().cast::<T>(), raw.extra);
        // SAFETY: the caller promises raw came from into_raw above, which
        // leaked exactly this Box<[T]> of `extra` elements.
        unsafe { alloc::boxed::Box::from_raw(slice) }
    }
}

// SAFETY: as for Box<[T]>.
#[cfg(feature = "alloc")]
unsafe impl<T: DmaPod> DmaBuffer for alloc::boxed::Box<T> {
    fn into_raw(self) -> RawBuffer {
        let ptr = alloc::boxed::Box::into_raw(self);
        // SAFETY: Box::into_raw never returns null.
        let ptr = unsafe { NonNull::new_unchecked(ptr.cast::<u8>()) };
        RawBuffer {
            ptr,
            len: core::mem::size_of::<T>(),
            extra: 0,
        }
    }

    unsafe fn from_raw(raw: RawBuffer) -> Self {
        // SAFETY: the caller promises raw came from into_raw above.
        unsafe { alloc::boxed::Box::from_raw(raw.ptr.as_ptr().cast::<T>()) }
    }
}

// SAFETY: the Vec is taken apart with ManuallyDrop and rebuilt with the same
// pointer, length and capacity; only the `len` initialised elements are
// exposed to the device.
#[cfg(feature = "alloc")]
unsafe impl<T: DmaPod> DmaBuffer for alloc::vec::Vec<T> {
    fn into_raw(self) -> RawBuffer {
        let mut v = core::mem::ManuallyDrop::new(self);
        let len = v.len();
        let cap = v.capacity();
        // SAFETY: Vec's pointer is never null (dangling when unallocated).
        let ptr = unsafe { NonNull::new_unchecked(v.as_mut_ptr().cast::<u8>()) };
        // Capacity travels in `extra`; length is recovered from `len`.
        RawBuffer {
            ptr,
            len: core::mem::size_of::<T>() * len,
            extra: cap,
        }
    }

    unsafe fn from_raw(raw: RawBuffer) -> Self {
        let len = raw.len.checked_div(core::mem::size_of::<T>()).unwrap_or(0);
        // SAFETY: the caller promises raw came from into_raw above, whose
        // pointer, length and capacity these are.
        unsafe { alloc::vec::Vec::from_raw_parts(raw.ptr.as_ptr().cast::<T>(), len, raw.extra) }
    }
}

// SAFETY: a 'static unique borrow is given up whole; rebuilding it recreates
// the same unique borrow.
unsafe impl<T: DmaPod> DmaBuffer for &'static mut [T] {
    fn into_raw(self) -> RawBuffer {
        let (len, bytes) = (self.len(), core::mem::size_of_val(self));
        RawBuffer {
            ptr: NonNull::from(self).cast(),
            len: bytes,
            extra: len,
        }
    }

    unsafe fn from_raw(raw: RawBuffer) -> Self {
        // SAFETY: the caller promises raw came from into_raw above.
        unsafe { core::slice::from_raw_parts_mut(raw.ptr.as_ptr().cast::<T>(), raw.extra) }
    }
}

/// A heap byte buffer whose start is aligned, and whose allocation is
/// padded, to a chosen granule, so that no cache line it touches holds
/// anyone else's data. Its length is what was asked for; a streaming
/// mapping covers the padding too ([`DmaBuffer::padded_len`]).
///
/// On a non-coherent platform a buffer the device writes must own its cache
/// lines whole (see [`DmaMap::dma_alignment`](crate::DmaMap::dma_alignment)):
/// [`DmaBuf::for_device`] makes one that does.
///
/// ```
/// use dma_core::DmaBuf;
/// let mut buf = DmaBuf::new(1500, 64)?;
/// buf[0] = 0xff;
/// assert_eq!(buf.len(), 1500);
/// assert_eq!(buf.as_ptr() as usize % 64, 0);
/// # Ok::<(), dma_core::Error>(())
/// ```
#[cfg(feature = "alloc")]
pub struct DmaBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: core::alloc::Layout,
}

// SAFETY: DmaBuf owns its allocation exclusively, like Box<[u8]>.
#[cfg(feature = "alloc")]
unsafe impl Send for DmaBuf {}
// SAFETY: shared access is only through `&[u8]`, like Box<[u8]>.
#[cfg(feature = "alloc")]
unsafe impl Sync for DmaBuf {}

#[cfg(feature = "alloc")]
impl DmaBuf {
    /// A zeroed buffer of `len` bytes aligned and padded to `align` (a power
    /// of two).
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize), [`Misaligned`](ErrorKind::Misaligned)
    /// for an `align` that is not a power of two,
    /// [`OutOfMemory`](ErrorKind::OutOfMemory).
    pub fn new(len: usize, align: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::new(ErrorKind::ZeroSize, "zero-length DmaBuf"));
        }
        if !align.is_power_of_two() {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "DmaBuf alignment must be a power of two",
            )
            .len(align as u64));
        }
        let padded = len
            .checked_next_multiple_of(align)
            .ok_or(Error::new(ErrorKind::OutOfMemory, "DmaBuf size overflows").len(len as u64))?;
        let layout = core::alloc::Layout::from_size_align(padded, align).map_err(|_| {
            Error::new(ErrorKind::OutOfMemory, "DmaBuf layout too large").len(len as u64)
        })?;
        // SAFETY: layout has non-zero size.
        let raw = unsafe { alloc::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(Error::new(
            ErrorKind::OutOfMemory,
            "global allocator failed",
        ))?;
        Ok(Self { ptr, len, layout })
    }

    /// A zeroed buffer aligned and padded to what `platform` needs for a
    /// buffer the device writes ([`dma_alignment`](crate::DmaMap::dma_alignment)),
    /// and aligned to the device's own address alignment
    /// ([`DeviceConstraints::alignment`](crate::DeviceConstraints::alignment)),
    /// whichever is larger.
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new); [`OutOfMemory`](ErrorKind::OutOfMemory)
    /// for a device alignment beyond the address space.
    pub fn for_device<P: crate::DmaMap + ?Sized>(platform: &P, len: usize) -> Result<Self> {
        let device = usize::try_from(platform.constraints().alignment()).map_err(|_| {
            Error::new(
                ErrorKind::OutOfMemory,
                "device alignment exceeds the address space",
            )
            .len(platform.constraints().alignment())
        })?;
        Self::new(len, platform.dma_alignment().max(device).max(1))
    }
}

#[cfg(feature = "alloc")]
impl core::ops::Deref for DmaBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for len initialised (zeroed) bytes, owned by self.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(feature = "alloc")]
impl core::ops::DerefMut for DmaBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; &mut self makes the access unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

#[cfg(feature = "alloc")]
impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { alloc::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(feature = "alloc")]
impl core::fmt::Debug for DmaBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmaBuf")
            .field("len", &self.len)
            .field("align", &self.layout.align())
            .finish()
    }
}

#[cfg(feature = "alloc")]
// SAFETY: the allocation is given up whole; the layout is rebuilt from
// `extra` (the alignment) and `len`, exactly as `new` computed it.
unsafe impl DmaBuffer for DmaBuf {
    fn padded_len(&self) -> Option<usize> {
        Some(self.layout.size())
    }

    fn into_raw(self) -> RawBuffer {
        let this = core::mem::ManuallyDrop::new(self);
        RawBuffer {
            ptr: this.ptr,
            len: this.len,
            extra: this.layout.align(),
        }
    }

    unsafe fn from_raw(raw: RawBuffer) -> Self {
        let padded = raw.len.next_multiple_of(raw.extra);
        // SAFETY: `new` validated exactly this size and alignment.
        let layout = unsafe { core::alloc::Layout::from_size_align_unchecked(padded, raw.extra) };
        Self {
            ptr: raw.ptr,
            len: raw.len,
            layout,
        }
    }
}
