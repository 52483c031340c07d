//! Where a table keeps its entries: a `Vec` with `alloc`, a fixed array
//! without.

use dma_core::{Error, ErrorKind, Result, SgEntry};

/// Growable storage for scatter-gather entries.
pub trait SgStorage {
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
impl SgStorage for alloc::vec::Vec<SgEntry> {
    fn as_slice(&self) -> &[SgEntry] {
        self
    }

    fn as_mut_slice(&mut self) -> &mut [SgEntry] {
        self
    }

    fn try_push(&mut self, entry: SgEntry) -> Result<()> {
        self.try_reserve(1).map_err(|_| {
            Error::new(ErrorKind::OutOfMemory, "no memory for another SG entry")
                .len(self.len() as u64)
        })?;
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

impl<const N: usize> SgStorage for SgArray<N> {
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
