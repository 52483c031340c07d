//! The cache-maintenance trait, the policy for hardware-coherent devices,
//! and the line arithmetic every implementation shares.

/// Cache maintenance by virtual address range, to the point of coherency
/// with DMA.
///
/// Ranges are widened to whole cache lines by the implementation: a call
/// for bytes `[va, va + len)` maintains every line those bytes touch (see
/// [`cache_lines`]).
///
/// # Safety
///
/// Implementations promise that after
/// - [`clean`](Self::clean), every dirty line in the range has been written
///   to memory and the write is visible to devices;
/// - [`invalidate`](Self::invalidate), no line in the range is cached, so
///   the next CPU read fetches from memory (a dirty line's contents may be
///   discarded, or written back first: callers own the lines either way);
/// - [`clean_invalidate`](Self::clean_invalidate), both: dirty data reached
///   memory first, then the lines left the cache;
///
/// all completed (waited for) before the method returns, and ordered after
/// the CPU's earlier accesses and before its later ones, so no extra barrier
/// is needed around a call; and that [`line_size`](Self::line_size) is a
/// power of two no larger than the smallest data cache line in the system.
/// An implementation for which [`is_coherent`](Self::is_coherent) is true
/// promises the hardware keeps CPU caches and device accesses coherent, so
/// the three operations may do nothing.
pub unsafe trait CacheMaintenance {
    /// True when the hardware keeps caches coherent with DMA and the
    /// operations are no-ops. Inlined as a constant by every implementation
    /// here, so coherent paths compile to nothing.
    fn is_coherent(&self) -> bool;

    /// The line size in bytes the operations work in: the granule a buffer
    /// the device writes must be aligned and padded to.
    fn line_size(&self) -> usize;

    /// Writes dirty lines in `[va, va + len)` back to memory.
    ///
    /// # Safety
    ///
    /// The range is mapped in the current address space.
    unsafe fn clean(&self, va: usize, len: usize);

    /// Discards lines in `[va, va + len)`, dirty or not.
    ///
    /// # Safety
    ///
    /// The range is mapped, and the caller owns every byte of every line the
    /// range touches: discarding a dirty line loses whatever the CPU wrote
    /// to it, including bytes outside `[va, va + len)` on the edge lines.
    unsafe fn invalidate(&self, va: usize, len: usize);

    /// Writes back, then discards, lines in `[va, va + len)`.
    ///
    /// # Safety
    ///
    /// The range is mapped in the current address space.
    unsafe fn clean_invalidate(&self, va: usize, len: usize);
}

/// Maintenance for hardware-coherent DMA (x86, coherent ARM interconnects):
/// every operation is a no-op and compiles to nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardwareCoherent;

// SAFETY: used only where the hardware keeps caches coherent with DMA, which
// `is_coherent` reports; then doing nothing meets every postcondition.
unsafe impl CacheMaintenance for HardwareCoherent {
    #[inline(always)]
    fn is_coherent(&self) -> bool {
        true
    }

    #[inline(always)]
    fn line_size(&self) -> usize {
        1
    }

    #[inline(always)]
    unsafe fn clean(&self, _va: usize, _len: usize) {}

    #[inline(always)]
    unsafe fn invalidate(&self, _va: usize, _len: usize) {}

    #[inline(always)]
    unsafe fn clean_invalidate(&self, _va: usize, _len: usize) {}
}

// SAFETY: forwards every call unchanged to the implementation behind the
// reference, which upholds the contract.
unsafe impl<C: CacheMaintenance + ?Sized> CacheMaintenance for &C {
    #[inline(always)]
    fn is_coherent(&self) -> bool {
        (**self).is_coherent()
    }
    #[inline(always)]
    fn line_size(&self) -> usize {
        (**self).line_size()
    }
    #[inline(always)]
    unsafe fn clean(&self, va: usize, len: usize) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { (**self).clean(va, len) }
    }
    #[inline(always)]
    unsafe fn invalidate(&self, va: usize, len: usize) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { (**self).invalidate(va, len) }
    }
    #[inline(always)]
    unsafe fn clean_invalidate(&self, va: usize, len: usize) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { (**self).clean_invalidate(va, len) }
    }
}

/// The start address of every `line`-byte cache line that the bytes
/// `[va, va + len)` touch, in ascending order; empty when `len == 0`.
///
/// `line` must be a power of two. A range running past the top of the
/// address space stops at the last line.
///
/// ```
/// use dma_coherence::cache_lines;
/// let lines: Vec<usize> = cache_lines(0x1030, 0x20, 64).collect();
/// assert_eq!(lines, [0x1000, 0x1040]);
/// ```
#[inline(always)]
pub fn cache_lines(va: usize, len: usize, line: usize) -> CacheLines {
    debug_assert!(
        line.is_power_of_two(),
        "cache line size {line} is not a power of two"
    );
    let end = va.saturating_add(len);
    CacheLines {
        next: if len == 0 { end } else { va & !(line - 1) },
        end,
        line,
    }
}

/// The iterator [`cache_lines`] returns.
#[derive(Clone, Debug)]
pub struct CacheLines {
    next: usize,
    end: usize,
    line: usize,
}

impl Iterator for CacheLines {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        if self.next >= self.end {
            return None;
        }
        let addr = self.next;
        // The last line of the address space ends the walk.
        self.next = addr.checked_add(self.line).unwrap_or(self.end);
        Some(addr)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.next >= self.end {
            0
        } else {
            (self.end - self.next).div_ceil(self.line)
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for CacheLines {}
impl core::iter::FusedIterator for CacheLines {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    #[test]
    fn empty_and_edge_ranges() {
        assert_eq!(cache_lines(0x1000, 0, 64).count(), 0);
        assert_eq!(cache_lines(0x1000, 1, 64).collect::<Vec<_>>(), [0x1000]);
        assert_eq!(
            cache_lines(0x103f, 2, 64).collect::<Vec<_>>(),
            [0x1000, 0x1040]
        );
        assert_eq!(cache_lines(0x1000, 64, 64).collect::<Vec<_>>(), [0x1000]);
        let top = usize::MAX - 63;
        assert_eq!(cache_lines(top + 8, 100, 64).collect::<Vec<_>>(), [top]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn lines_cover_exactly_the_touched_lines(
            va in 0usize..1 << 20,
            len in 0usize..4096,
            shift in 4u32..8,
        ) {
            let line = 1usize << shift;
            let lines: Vec<usize> = cache_lines(va, len, line).collect();
            prop_assert_eq!(lines.len(), cache_lines(va, len, line).len());
            if len == 0 {
                prop_assert!(lines.is_empty());
            } else {
                prop_assert_eq!(lines[0], va / line * line);
                prop_assert_eq!(*lines.last().unwrap(), (va + len - 1) / line * line);
                prop_assert!(lines.windows(2).all(|w| w[1] == w[0] + line));
            }
        }
    }
}
