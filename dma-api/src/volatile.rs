//! Bounds-checked volatile access to memory a device may touch.
//!
//! No `&T` or `&mut T` is ever formed to such memory: the device may write
//! it at any moment, which would break the guarantees references carry.

use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::{DmaPod, Error, ErrorKind, Result};

/// A pointer and length to device-visible bytes, accessed only by volatile
/// loads and stores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VolatileBytes {
    ptr: NonNull<u8>,
    len: usize,
}

impl VolatileBytes {
    /// # Safety
    ///
    /// `ptr` is valid for volatile reads and writes of `len` bytes for as long
    /// as the value is used.
    pub(crate) const unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        Self { ptr, len }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Pointer to `size` bytes at `offset`, checked against the bounds and
    /// against `align`.
    pub(crate) fn checked(&self, offset: usize, size: usize, align: usize) -> Result<NonNull<u8>> {
        let end = offset.checked_add(size).ok_or(
            Error::new(ErrorKind::OutOfRange, "offset plus size overflows").at(offset as u64),
        )?;
        if end > self.len {
            return Err(Error::new(
                ErrorKind::OutOfRange,
                "access past the end of the DMA region",
            )
            .at(offset as u64)
            .len(size as u64));
        }
        // SAFETY: offset <= end <= len, so the result stays inside (or one
        // past) the region `new` was promised valid for.
        let p = unsafe { self.ptr.add(offset) };
        if p.as_ptr() as usize % align != 0 {
            return Err(
                Error::new(ErrorKind::Misaligned, "access not aligned for its type")
                    .at(offset as u64),
            );
        }
        Ok(p)
    }

    pub(crate) fn read<T: DmaPod>(&self, offset: usize) -> Result<T> {
        let p = self
            .checked(offset, size_of::<T>(), align_of::<T>())?
            .cast::<T>();
        // SAFETY: in bounds and aligned (checked); valid for reads per `new`;
        // any bit pattern is a valid T (DmaPod).
        Ok(unsafe { p.as_ptr().read_volatile() })
    }

    pub(crate) fn write<T: DmaPod>(&self, offset: usize, value: T) -> Result<()> {
        let p = self
            .checked(offset, size_of::<T>(), align_of::<T>())?
            .cast::<T>();
        // SAFETY: in bounds and aligned (checked); valid for writes per `new`.
        unsafe { p.as_ptr().write_volatile(value) };
        Ok(())
    }

    pub(crate) fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let src = self.checked(offset, dst.len(), 1)?;
        for (i, d) in dst.iter_mut().enumerate() {
            // SAFETY: src..src+dst.len() is in bounds (checked above).
            *d = unsafe { src.add(i).as_ptr().read_volatile() };
        }
        Ok(())
    }

    pub(crate) fn copy_in(&self, offset: usize, src: &[u8]) -> Result<()> {
        let dst = self.checked(offset, src.len(), 1)?;
        for (i, s) in src.iter().enumerate() {
            // SAFETY: dst..dst+src.len() is in bounds (checked above).
            unsafe { dst.add(i).as_ptr().write_volatile(*s) };
        }
        Ok(())
    }

    pub(crate) fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        let dst = self.checked(offset, len, 1)?;
        for i in 0..len {
            // SAFETY: dst..dst+len is in bounds (checked above).
            unsafe { dst.add(i).as_ptr().write_volatile(byte) };
        }
        Ok(())
    }
}
