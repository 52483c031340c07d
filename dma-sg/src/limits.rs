//! How a table is cut: page size, longest entry, and the device's limits.

use dma_core::{DeviceConstraints, Error, ErrorKind, Result};

/// The rules an [`SgTable`](crate::SgTable) is built under: the page size
/// the input is described in, the longest entry, and the device's boundary,
/// alignment, addressing mask and segment count.
///
/// Validated once, then copied into every table built with it.
///
/// ```
/// use dma_core::DeviceConstraints;
/// use dma_sg::SgLimits;
///
/// let c = DeviceConstraints::builder().boundary(1 << 16).max_segments(8).build()?;
/// let limits = SgLimits::new(4096, &c)?;
/// // Unset, the maximum segment comes from the constraints (here clamped to
/// // the boundary) and is rounded down to whole pages.
/// assert_eq!(limits.max_segment(), 1 << 16);
/// assert_eq!(limits.with_max_segment(10_000)?.max_segment(), 8192);
/// # Ok::<(), dma_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgLimits {
    page_size: u64,
    max_segment: u64,
    boundary: Option<u64>,
    alignment: u64,
    dma_mask: u64,
    max_segments: usize,
    translated: bool,
}

impl SgLimits {
    /// Limits for `page_size`-byte pages under `constraints`; the maximum
    /// entry length is the constraints' maximum segment size rounded down
    /// to whole pages.
    ///
    /// # Errors
    ///
    /// [`InvalidConstraints`](ErrorKind::InvalidConstraints) when the page
    /// size is not a power of two, the maximum segment size is smaller than
    /// a page (Linux's `sg_alloc_table_from_pages` refuses it too: a page
    /// could never be described), or the boundary is smaller than a page
    /// (a page would have to be cut, which the block layer refuses as well).
    pub fn new(page_size: usize, constraints: &DeviceConstraints) -> Result<Self> {
        let page = page_size as u64;
        if !page.is_power_of_two() {
            return Err(Error::new(
                ErrorKind::InvalidConstraints,
                "page size must be a power of two",
            )
            .len(page));
        }
        if let Some(b) = constraints.boundary() {
            if b < page {
                return Err(Error::new(
                    ErrorKind::InvalidConstraints,
                    "boundary smaller than a page: pages would have to be cut",
                )
                .len(b));
            }
        }
        let limits = Self {
            page_size: page,
            max_segment: 0,
            boundary: constraints.boundary(),
            alignment: constraints.alignment(),
            dma_mask: constraints.dma_mask(),
            max_segments: constraints.max_segments(),
            translated: false,
        };
        limits.with_max_segment(constraints.max_segment_size())
    }

    /// Limits with no device constraint beyond a 32-bit entry length.
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn unconstrained(page_size: usize) -> Result<Self> {
        Self::new(page_size, &DeviceConstraints::UNCONSTRAINED)
    }

    /// Lowers the maximum entry length (Linux's `max_segment` argument);
    /// it is rounded down to whole pages and never exceeds the device's.
    ///
    /// # Errors
    ///
    /// [`InvalidConstraints`](ErrorKind::InvalidConstraints) when it is
    /// smaller than a page.
    pub fn with_max_segment(mut self, bytes: u64) -> Result<Self> {
        let rounded = bytes & !(self.page_size - 1);
        if rounded < self.page_size {
            return Err(Error::new(
                ErrorKind::InvalidConstraints,
                "maximum segment size smaller than a page",
            )
            .len(bytes));
        }
        self.max_segment = if self.max_segment == 0 {
            rounded
        } else {
            rounded.min(self.max_segment)
        };
        Ok(self)
    }

    /// For a platform that translates addresses (an IOMMU): the addressing
    /// mask and the segment count are then checked on the device addresses
    /// when the table is mapped, not on the physical entries, because the
    /// translation may place far-apart pages side by side. Boundary,
    /// alignment and maximum length are still applied to the entries.
    pub const fn translated(mut self) -> Self {
        self.translated = true;
        self
    }

    /// The page size the input is described in.
    pub const fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The longest entry, a whole number of pages.
    pub const fn max_segment(&self) -> u64 {
        self.max_segment
    }

    /// No entry crosses a multiple of this, if set (at least a page).
    pub const fn boundary(&self) -> Option<u64> {
        self.boundary
    }

    /// Every entry starts at a multiple of this.
    pub const fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The highest address an entry may touch (ignored when
    /// [`is_translated`](Self::is_translated)).
    pub const fn dma_mask(&self) -> u64 {
        self.dma_mask
    }

    /// The most entries a table may hold (ignored when
    /// [`is_translated`](Self::is_translated)).
    pub const fn max_segments(&self) -> usize {
        self.max_segments
    }

    /// Whether mask and count are left to map time.
    pub const fn is_translated(&self) -> bool {
        self.translated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_segment_rounds_down_to_pages() {
        let l = SgLimits::unconstrained(4096).unwrap();
        assert_eq!(l.max_segment(), 0xffff_f000);
        assert_eq!(l.with_max_segment(0x2fff).unwrap().max_segment(), 0x2000);
        // Never above the device's own limit.
        let c = DeviceConstraints::builder()
            .max_segment_size(0x3000)
            .build()
            .unwrap();
        let l = SgLimits::new(4096, &c).unwrap();
        assert_eq!(l.with_max_segment(0x10_0000).unwrap().max_segment(), 0x3000);
    }

    #[test]
    fn impossible_limits_are_refused() {
        let kind = |r: Result<SgLimits>| r.unwrap_err().kind();
        assert_eq!(
            kind(SgLimits::unconstrained(3000)),
            ErrorKind::InvalidConstraints
        );
        let small = DeviceConstraints::builder()
            .max_segment_size(512)
            .build()
            .unwrap();
        assert_eq!(
            kind(SgLimits::new(4096, &small)),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(
                SgLimits::unconstrained(4096)
                    .unwrap()
                    .with_max_segment(4095)
            ),
            ErrorKind::InvalidConstraints
        );
        let tight = DeviceConstraints::builder().boundary(1024).build().unwrap();
        assert_eq!(
            kind(SgLimits::new(4096, &tight)),
            ErrorKind::InvalidConstraints
        );
    }
}
