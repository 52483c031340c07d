//! Bounds-checked volatile access to memory a device may touch.
//!
//! No `&T` or `&mut T` is ever formed to such memory: the device may write
//! it at any moment, which would break the guarantees references carry.

use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crate::{DmaPod, Error, ErrorKind, Result};

const WORD: usize = size_of::<usize>();

/// Splits `len` bytes at `ptr` into a byte-wise head up to the first word
/// boundary and a number of whole aligned words after it.
fn split_aligned(ptr: NonNull<u8>, len: usize) -> (usize, usize) {
    let head = (ptr.as_ptr() as usize).wrapping_neg() % WORD;
    if head >= len {
        return (len, 0);
    }
    (head, (len - head) / WORD)
}

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

    #[cfg(feature = "alloc")]
    pub(crate) fn write_slice<T: DmaPod>(&self, offset: usize, values: &[T]) -> Result<()> {
        let p = self
            .checked(offset, core::mem::size_of_val(values), align_of::<T>())?
            .cast::<T>();
        for (i, v) in values.iter().enumerate() {
            // SAFETY: `values.len()` elements from `p` are in bounds and `p`
            // is aligned for T (checked above); valid for writes per `new`.
            unsafe { p.add(i).as_ptr().write_volatile(*v) };
        }
        Ok(())
    }

    /// Copies out with volatile loads, a machine word at a time where the
    /// source is word-aligned (a byte at a time for the ragged edges).
    pub(crate) fn copy_out(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let src = self.checked(offset, dst.len(), 1)?;
        let (head, words) = split_aligned(src, dst.len());
        for (i, d) in dst.iter_mut().enumerate() {
            if i >= head && i < head + words * WORD {
                continue;
            }
            // SAFETY: i < dst.len(), and src..src+dst.len() is in bounds.
            *d = unsafe { src.add(i).as_ptr().read_volatile() };
        }
        for w in 0..words {
            let at = head + w * WORD;
            // SAFETY: in bounds as above, and word-aligned by split_aligned.
            let word = unsafe { src.add(at).cast::<usize>().as_ptr().read_volatile() };
            dst[at..at + WORD].copy_from_slice(&word.to_ne_bytes());
        }
        Ok(())
    }

    /// Copies in with volatile stores, a machine word at a time where the
    /// destination is word-aligned.
    pub(crate) fn copy_in(&self, offset: usize, src: &[u8]) -> Result<()> {
        let dst = self.checked(offset, src.len(), 1)?;
        let (head, words) = split_aligned(dst, src.len());
        for (i, s) in src.iter().enumerate() {
            if i >= head && i < head + words * WORD {
                continue;
            }
            // SAFETY: i < src.len(), and dst..dst+src.len() is in bounds.
            unsafe { dst.add(i).as_ptr().write_volatile(*s) };
        }
        for w in 0..words {
            let at = head + w * WORD;
            let mut bytes = [0u8; WORD];
            bytes.copy_from_slice(&src[at..at + WORD]);
            // SAFETY: in bounds as above, and word-aligned by split_aligned.
            unsafe {
                dst.add(at)
                    .cast::<usize>()
                    .as_ptr()
                    .write_volatile(usize::from_ne_bytes(bytes))
            };
        }
        Ok(())
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        let dst = self.checked(offset, len, 1)?;
        for i in 0..len {
            // SAFETY: dst..dst+len is in bounds (checked above).
            unsafe { dst.add(i).as_ptr().write_volatile(byte) };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_round_trip_at_every_offset_and_length() {
        let mut backing = [0u64; 8];
        let base = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `backing` is a live local array of 64 bytes, used only
        // through `mem` in this test.
        let mem = unsafe { VolatileBytes::new(base, 64) };
        // Miri interprets every access: a smaller sweep still covers every
        // head/word/tail split on a 64-bit target.
        let (offsets, lens) = if cfg!(miri) { (9, 18) } else { (16, 40) };
        for offset in 0..offsets {
            for len in 0..lens {
                let src: [u8; 40] = core::array::from_fn(|i| (i * 7 + offset + len) as u8);
                mem.fill(0, 64, 0xee).unwrap();
                mem.copy_in(offset, &src[..len]).unwrap();
                let mut out = [0u8; 64];
                mem.copy_out(0, &mut out).unwrap();
                assert_eq!(&out[offset..offset + len], &src[..len]);
                assert!(
                    out[..offset].iter().all(|&b| b == 0xee),
                    "wrote before the range"
                );
                assert!(
                    out[offset + len..].iter().all(|&b| b == 0xee),
                    "wrote past the range"
                );
                let mut back = [0u8; 40];
                mem.copy_out(offset, &mut back[..len]).unwrap();
                assert_eq!(&back[..len], &src[..len]);
            }
        }
    }

    #[test]
    fn write_slice_writes_the_run_or_nothing() {
        let mut backing = [0u64; 4];
        let base = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `backing` is a live local array of 32 bytes, used only
        // through `mem` in this test.
        let mem = unsafe { VolatileBytes::new(base, 32) };
        mem.write_slice(8, &[1u64, 2, 3]).unwrap();
        let words: [u64; 4] = core::array::from_fn(|i| mem.read(i * 8).unwrap());
        assert_eq!(words, [0, 1, 2, 3]);
        let err = mem.write_slice(16, &[9u64, 9, 9]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfRange);
        let err = mem.write_slice(4, &[9u64]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Misaligned);
        let words: [u64; 4] = core::array::from_fn(|i| mem.read(i * 8).unwrap());
        assert_eq!(words, [0, 1, 2, 3], "a refused run writes nothing");
        mem.write_slice::<u64>(32, &[]).unwrap();
    }

    #[test]
    fn bounds_and_alignment_are_checked() {
        let mut backing = [0u64; 2];
        let base = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `backing` is a live local array of 16 bytes.
        let mem = unsafe { VolatileBytes::new(base, 16) };
        assert_eq!(
            mem.copy_in(10, &[0; 7]).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            mem.copy_out(usize::MAX, &mut [0; 2]).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            mem.read::<u32>(2).unwrap_err().kind(),
            ErrorKind::Misaligned
        );
        assert_eq!(
            mem.write::<u64>(16, 0).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        mem.write::<u32>(4, 0xabcd).unwrap();
        assert_eq!(mem.read::<u32>(4).unwrap(), 0xabcd);
    }
}
