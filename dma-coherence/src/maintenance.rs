//! The cache-maintenance trait and the policy for hardware-coherent devices.

/// Cache maintenance by virtual address range, to the point of coherency
/// with DMA.
///
/// Ranges are widened to whole cache lines by the implementation: a call
/// for bytes `[va, va + len)` maintains every line those bytes touch.
///
/// # Safety
///
/// Implementations promise that after
/// - [`clean`](Self::clean), every dirty line in the range has been written
///   to memory and the write is visible to devices;
/// - [`invalidate`](Self::invalidate), no line in the range is cached, so
///   the next CPU read fetches from memory (a dirty line's contents may be
///   discarded);
/// - [`clean_invalidate`](Self::clean_invalidate), both: dirty data reached
///   memory first, then the lines left the cache;
///
/// all completed (waited for) before the method returns; and that
/// [`line_size`](Self::line_size) is no larger than the smallest data cache
/// line in the system (a power of two). An implementation for which
/// [`is_coherent`](Self::is_coherent) is true promises the hardware keeps
/// CPU caches and device accesses coherent, so the three operations may do
/// nothing.
pub unsafe trait CacheMaintenance {
    /// True when the hardware keeps caches coherent with DMA and the
    /// operations are no-ops. Inlined as a constant by every implementation
    /// here, so coherent paths compile to nothing.
    fn is_coherent(&self) -> bool;

    /// The line size in bytes the operations work in.
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
