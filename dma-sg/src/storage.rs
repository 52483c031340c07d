//! Where a table keeps its entries: a `Vec` with `alloc`, a fixed array
//! without.

use dma_core::{Error, ErrorKind, Result, SgEntry};

/// Growable storage for scatter-gather entries.
///
/// # Safety
///
/// A [`MappedSgTable`](crate::MappedSgTable) hands the platform's `unsafe`
/// sync and unmap calls exactly what [`as_slice`](Self::as_slice) returns,
/// so an implementation must behave as a `Vec` does: `as_slice` and
/// `as_mut_slice` return the same entries, in the same memory, namely those
/// pushed by [`try_push`](Self::try_push) and not removed by
/// [`truncate`](Self::truncate), with every change made through
/// `as_mut_slice`, and nothing else. The entries never change except
/// through these methods (no interior mutability, no other code path).
///
/// The contract is an `unsafe trait` rather than a private copy of what was
/// mapped because a copy needs a second buffer of entries, which a table in
/// fixed storage without `alloc` ([`SgArray`]) has nowhere to put, and
/// because it would double every table's memory for the sake of storage
/// types that are implemented once, here. A storage that breaks the
/// contract does not compile as a safe impl:
///
/// ```compile_fail,E0200
/// use dma_core::{Result, SgEntry};
/// use dma_sg::SgStorage;
///
/// struct Liar(Vec<SgEntry>);
///
/// impl SgStorage for Liar {
///     // A safe impl could return other entries here after mapping, and
///     // redirect the platform's syncs to memory the table never owned.
///     fn as_slice(&self) -> &[SgEntry] { &self.0 }
///     fn as_mut_slice(&mut self) -> &mut [SgEntry] { &mut self.0 }
///     fn try_push(&mut self, e: SgEntry) -> Result<()> { self.0.push(e); Ok(()) }
///     fn truncate(&mut self, len: usize) { self.0.truncate(len) }
/// }
/// ```
pub unsafe trait SgStorage {
    /// The entries held.
    fn as_slice(&self) -> &[SgEntry];

    /// The entries held, for mapping (which fills in their device addresses).
    fn as_mut_slice(&mut self) -> &mut [SgEntry];

    /// Appends an entry.
    ///
    /// # Errors
    ///
    /// [`TooManySegments`](ErrorKind::TooManySegments) when the storage is
    /// full.
    fn try_push(&mut self, entry: SgEntry) -> Result<()>;

    /// Keeps the first `len` entries.
    fn truncate(&mut self, len: usize);
}

#[cfg(feature = "alloc")]
// SAFETY: a `Vec`'s slices are its pushed, not truncated, elements, and it
// changes only through `&mut self`.
unsafe impl SgStorage for alloc::vec::Vec<SgEntry> {
    fn as_slice(&self) -> &[SgEntry] {
        self
    }

    fn as_mut_slice(&mut self) -> &mut [SgEntry] {
        self
    }

    #[inline]
    fn try_push(&mut self, entry: SgEntry) -> Result<()> {
        if self.len() == self.capacity() {
            self.try_reserve(1).map_err(|_| {
                Error::new(ErrorKind::OutOfMemory, "no memory for another SG entry")
                    .len(self.len() as u64)
            })?;
        }
        self.push(entry);
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        alloc::vec::Vec::truncate(self, len);
    }
}

/// Fixed-capacity storage for `N` entries, for builds without `alloc`.
///
/// ```
/// use dma_core::PhysAddr;
/// use dma_sg::{SgArray, SgLimits, SgTable};
///
/// let mut table = SgTable::new_in(SgArray::<4>::new(), SgLimits::unconstrained(4096)?);
/// table.append_pages(&[PhysAddr::new(0x1000), PhysAddr::new(0x2000)], 0, 8192)?;
/// assert_eq!(table.entries().len(), 1); // contiguous pages coalesce
/// # Ok::<(), dma_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SgArray<const N: usize> {
    entries: [SgEntry; N],
    len: usize,
}

impl<const N: usize> SgArray<N> {
    /// Empty storage.
    pub const fn new() -> Self {
        Self {
            entries: [SgEntry::new(dma_core::PhysAddr::ZERO, 0); N],
            len: 0,
        }
    }
}

impl<const N: usize> Default for SgArray<N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: both slices are `entries[..len]`; `len` and the entries change only
// through `&mut self` (try_push, truncate, as_mut_slice).
unsafe impl<const N: usize> SgStorage for SgArray<N> {
    fn as_slice(&self) -> &[SgEntry] {
        &self.entries[..self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [SgEntry] {
        &mut self.entries[..self.len]
    }

    fn try_push(&mut self, entry: SgEntry) -> Result<()> {
        let slot = self.entries.get_mut(self.len).ok_or(
            Error::new(
                ErrorKind::TooManySegments,
                "the table's fixed storage holds no more entries",
            )
            .len(N as u64),
        )?;
        *slot = entry;
        self.len += 1;
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}
