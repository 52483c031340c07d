//! Coherent allocations: memory the CPU and the device share for as long as
//! the allocation lives (descriptor rings, completion queues, mailboxes).

use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::volatile::VolatileBytes;
use crate::{CoherentRegion, DmaAddr, DmaAlloc, DmaAttrs, DmaPod, Error, ErrorKind, Result};

/// A coherent allocation holding a `T` or a `[T]`, freed on drop.
///
/// The device may write it at any time, so it is never handed out as a
/// reference: reads and writes are volatile copies of whole `T`s. Writes
/// take `&mut self` so that two CPU threads never race on it; the device is
/// the only other writer.
///
/// ```
/// use dma_core::{Coherent, DmaAlloc, DmaAddr, Result};
///
/// fn ring<P: DmaAlloc>(platform: &P) -> Result<DmaAddr> {
///     let mut ring = Coherent::<[u64], _>::zeroed_slice(platform, 256)?;
///     ring.write(3, 0xfeed)?;
///     assert_eq!(ring.read(3)?, 0xfeed);
///     // The device is given ring.dma_addr(), page-aligned.
///     Ok(ring.dma_addr())
/// }
/// ```
pub struct Coherent<T: ?Sized, P: DmaAlloc> {
    region: CoherentRegion,
    mem: VolatileBytes,
    attrs: DmaAttrs,
    platform: P,
    _marker: PhantomData<T>,
}

// SAFETY: the allocation is owned; moving it to another thread moves the
// only CPU-side handle. T: Send because values of T cross with it.
unsafe impl<T: ?Sized + Send, P: DmaAlloc + Send> Send for Coherent<T, P> {}
// SAFETY: `&self` methods only do volatile reads; writes need `&mut self`,
// so shared references never race with a CPU write.
unsafe impl<T: ?Sized + Sync, P: DmaAlloc + Sync> Sync for Coherent<T, P> {}

impl<T: ?Sized, P: DmaAlloc> Coherent<T, P> {
    fn alloc_bytes(platform: P, size: usize, align: usize, attrs: DmaAttrs) -> Result<Self> {
        if size == 0 {
            return Err(Error::new(
                ErrorKind::ZeroSize,
                "zero-sized coherent allocation",
            ));
        }
        let region = platform.alloc_coherent(size, attrs)?;
        if region.cpu.as_ptr() as usize % align != 0 || region.size < size {
            // SAFETY: just allocated with these attrs and never shared.
            let _ = unsafe { platform.free_coherent(region, attrs) };
            return Err(Error::new(
                ErrorKind::Misaligned,
                "platform returned a region too small or misaligned for the type",
            )
            .len(size as u64));
        }
        // SAFETY: the platform promises the region is ours and valid for
        // `region.size >= size` bytes until freed, which happens in Drop.
        let mem = unsafe { VolatileBytes::new(region.cpu, size) };
        Ok(Self {
            region,
            mem,
            attrs,
            platform,
            _marker: PhantomData,
        })
    }

    /// The device address of the first byte.
    pub fn dma_addr(&self) -> DmaAddr {
        self.region.dma
    }

    /// The size of the data in bytes.
    pub fn size(&self) -> usize {
        self.mem.len()
    }

    /// The attributes it was allocated with.
    pub fn attrs(&self) -> DmaAttrs {
        self.attrs
    }

    /// The platform it was allocated from.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The raw CPU pointer to the first byte, for field-level volatile access
    /// (ring code reading a completion's flag before its payload).
    /// Never turn it into a reference while the device may write.
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.mem.ptr()
    }

    /// Reads a `U` at byte `offset` with one volatile load.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end,
    /// [`Misaligned`](ErrorKind::Misaligned) if `offset` is not aligned for `U`.
    pub fn read_at<U: DmaPod>(&self, offset: usize) -> Result<U> {
        self.mem.read(offset)
    }

    /// Writes a `U` at byte `offset` with one volatile store.
    ///
    /// # Errors
    ///
    /// As for [`read_at`](Self::read_at).
    pub fn write_at<U: DmaPod>(&mut self, offset: usize, value: U) -> Result<()> {
        self.mem.write(offset, value)
    }

    /// Copies bytes out, starting at byte `offset`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.mem.copy_out(offset, dst)
    }

    /// Copies bytes in, starting at byte `offset`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn copy_in(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        self.mem.copy_in(offset, src)
    }
}

impl<T: DmaPod, P: DmaAlloc> Coherent<T, P> {
    /// Allocates a zeroed `T`.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) for a zero-sized `T`, or whatever
    /// the platform's allocation returns.
    pub fn zeroed(platform: P) -> Result<Self> {
        Self::zeroed_with_attrs(platform, DmaAttrs::empty())
    }

    /// Allocates a zeroed `T` with attributes (for example write-combining).
    ///
    /// # Errors
    ///
    /// As for [`zeroed`](Self::zeroed).
    pub fn zeroed_with_attrs(platform: P, attrs: DmaAttrs) -> Result<Self> {
        Self::alloc_bytes(platform, size_of::<T>(), align_of::<T>(), attrs)
    }

    /// Allocates and writes `value`.
    ///
    /// # Errors
    ///
    /// As for [`zeroed`](Self::zeroed).
    pub fn new(platform: P, value: T) -> Result<Self> {
        let mut this = Self::zeroed(platform)?;
        this.write(value);
        Ok(this)
    }

    /// Reads the value (one volatile load of the whole `T`).
    pub fn read(&self) -> T {
        // SAFETY: the region holds exactly one T, aligned (checked at
        // allocation), valid for volatile reads until drop; any bit pattern
        // is a valid T.
        unsafe { self.mem.ptr().cast::<T>().as_ptr().read_volatile() }
    }

    /// Writes the value (one volatile store of the whole `T`).
    pub fn write(&mut self, value: T) {
        // SAFETY: as in `read`; `&mut self` excludes other CPU writers.
        unsafe { self.mem.ptr().cast::<T>().as_ptr().write_volatile(value) }
    }
}

impl<T: DmaPod, P: DmaAlloc> Coherent<[T], P> {
    /// Allocates `len` zeroed elements.
    ///
    /// # Errors
    ///
    /// [`ZeroSize`](ErrorKind::ZeroSize) for `len == 0` or a zero-sized `T`,
    /// [`OutOfMemory`](ErrorKind::OutOfMemory) if the size overflows, or
    /// whatever the platform's allocation returns.
    pub fn zeroed_slice(platform: P, len: usize) -> Result<Self> {
        Self::zeroed_slice_with_attrs(platform, len, DmaAttrs::empty())
    }

    /// Allocates `len` zeroed elements with attributes.
    ///
    /// # Errors
    ///
    /// As for [`zeroed_slice`](Self::zeroed_slice).
    pub fn zeroed_slice_with_attrs(platform: P, len: usize, attrs: DmaAttrs) -> Result<Self> {
        let size = len.checked_mul(size_of::<T>()).ok_or(
            Error::new(ErrorKind::OutOfMemory, "slice size overflows usize").len(len as u64),
        )?;
        Self::alloc_bytes(platform, size, align_of::<T>(), attrs)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        // A zero-sized T is refused at allocation, so the division is safe.
        self.mem.len() / size_of::<T>()
    }

    /// Always false: empty allocations are refused.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn offset_of(&self, index: usize) -> Result<usize> {
        if index >= self.len() {
            return Err(
                Error::new(ErrorKind::OutOfRange, "index past the end of the slice")
                    .at(index as u64),
            );
        }
        Ok(index * size_of::<T>())
    }

    /// Reads element `index`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn read(&self, index: usize) -> Result<T> {
        self.mem.read(self.offset_of(index)?)
    }

    /// Writes element `index`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn write(&mut self, index: usize, value: T) -> Result<()> {
        let offset = self.offset_of(index)?;
        self.mem.write(offset, value)
    }

    /// The device address of element `index`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn dma_addr_of(&self, index: usize) -> Result<DmaAddr> {
        let offset = self.offset_of(index)?;
        self.dma_addr().checked_add(offset as u64).ok_or(Error::new(
            ErrorKind::AddressOverflow,
            "element address overflows",
        ))
    }

    /// The raw pointer to element `index`, for field-level volatile access.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) past the end.
    pub fn element_ptr(&self, index: usize) -> Result<NonNull<T>> {
        let offset = self.offset_of(index)?;
        Ok(self
            .mem
            .checked(offset, size_of::<T>(), align_of::<T>())?
            .cast())
    }
}

impl<T: ?Sized, P: DmaAlloc> Drop for Coherent<T, P> {
    fn drop(&mut self) {
        // SAFETY: the region came from this platform with these attrs, is
        // freed only here, and no handle to it outlives `self`. An error means
        // the platform kept (leaked) it, which is safe.
        let _ = unsafe { self.platform.free_coherent(self.region, self.attrs) };
    }
}

impl<T: ?Sized, P: DmaAlloc> core::fmt::Debug for Coherent<T, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Coherent")
            .field("dma", &self.region.dma)
            .field("size", &self.mem.len())
            .field("attrs", &self.attrs)
            .finish()
    }
}
