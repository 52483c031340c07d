//! What a device can reach: a FreeBSD `bus_dma_tag`, as a value.
//!
//! Built once per device with [`DeviceConstraints::builder`], validated when
//! built, and consulted by every map, allocation and scatter-gather build.

use crate::{DmaAddr, Error, ErrorKind, Result};

/// The addressing and segmentation limits of one device.
///
/// | field | busdma | Linux |
/// | --- | --- | --- |
/// | [`addr_bits`](Self::addr_bits) | `lowaddr` | `dma_mask` |
/// | [`alignment`](Self::alignment) | `alignment` | (per-allocation) |
/// | [`boundary`](Self::boundary) | `boundary` | `segment_boundary_mask + 1` |
/// | [`max_segment_size`](Self::max_segment_size) | `maxsegsz` | `max_segment_size` |
/// | [`max_segments`](Self::max_segments) | `nsegments` | `max_segments` (block layer) |
/// | [`min_align_mask`](Self::min_align_mask) | | `min_align_mask` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceConstraints {
    addr_bits: u8,
    alignment: u64,
    boundary: Option<u64>,
    max_segment_size: u64,
    max_segments: usize,
    min_align_mask: u64,
}

impl DeviceConstraints {
    /// The default maximum segment size: what a 32-bit length field holds.
    pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = u32::MAX as u64;

    /// A device that can reach all 64 bits, with no alignment, boundary or
    /// segment-count limit beyond a 32-bit segment length.
    pub const UNCONSTRAINED: Self = Self {
        addr_bits: 64,
        alignment: 1,
        boundary: None,
        max_segment_size: Self::DEFAULT_MAX_SEGMENT_SIZE,
        max_segments: usize::MAX,
        min_align_mask: 0,
    };

    /// Starts a builder from [`UNCONSTRAINED`](Self::UNCONSTRAINED).
    pub const fn builder() -> ConstraintsBuilder {
        ConstraintsBuilder {
            addr_bits: 64,
            alignment: 1,
            boundary: None,
            max_segment_size: None,
            max_segments: usize::MAX,
            min_align_mask: 0,
        }
    }

    /// How many address bits the device drives (1 to 64).
    pub const fn addr_bits(&self) -> u8 {
        self.addr_bits
    }

    /// The highest address the device can reach.
    pub const fn dma_mask(&self) -> u64 {
        if self.addr_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << self.addr_bits) - 1
        }
    }

    /// Every segment must start at a multiple of this (a power of two).
    pub const fn alignment(&self) -> u64 {
        self.alignment
    }

    /// No segment may cross a multiple of this (a power of two), if set.
    pub const fn boundary(&self) -> Option<u64> {
        self.boundary
    }

    /// The longest segment the device takes.
    pub const fn max_segment_size(&self) -> u64 {
        self.max_segment_size
    }

    /// The most segments one transfer may use.
    pub const fn max_segments(&self) -> usize {
        self.max_segments
    }

    /// Low address bits a bounce buffer must preserve from the original
    /// address (`2^k - 1`; NVMe uses 4 KiB - 1 so PRP offsets survive).
    pub const fn min_align_mask(&self) -> u64 {
        self.min_align_mask
    }

    /// Checks that `len` bytes at `addr` lie below the DMA mask.
    ///
    /// Inlined: every map calls it, and inlined its empty and wrapping
    /// checks merge with the caller's own span checks.
    #[inline]
    pub fn check_reachable(&self, addr: DmaAddr, len: u64) -> Result<()> {
        let last = last_byte(addr, len)?;
        if last.as_u64() > self.dma_mask() {
            return Err(Error::new(
                ErrorKind::Unreachable,
                "range ends above the device's DMA mask",
            )
            .at(addr.as_u64())
            .len(len));
        }
        Ok(())
    }

    /// Whether `len` bytes at `addr` cross a multiple of the boundary.
    pub fn crosses_boundary(&self, addr: DmaAddr, len: u64) -> bool {
        match (self.boundary, addr.checked_end_inclusive(len)) {
            // b is a power of two (the builder checks): the first and last
            // byte lie in different b-blocks when they differ above its bits.
            (Some(b), Some(last)) => (addr.as_u64() ^ last.as_u64()) & !(b - 1) != 0,
            _ => false,
        }
    }

    /// Checks one segment against every per-segment rule: non-empty, no
    /// overflow, reachable, aligned, not too long, not crossing the boundary.
    pub fn check_segment(&self, addr: DmaAddr, len: u64) -> Result<()> {
        self.check_reachable(addr, len)?;
        if !addr.is_aligned(self.alignment) {
            return Err(Error::new(
                ErrorKind::Misaligned,
                "segment start breaks the device's alignment",
            )
            .at(addr.as_u64())
            .len(len));
        }
        if len > self.max_segment_size {
            return Err(Error::new(
                ErrorKind::SegmentTooLarge,
                "segment longer than max_segment_size",
            )
            .at(addr.as_u64())
            .len(len));
        }
        if self.crosses_boundary(addr, len) {
            return Err(Error::new(
                ErrorKind::CrossesBoundary,
                "segment crosses the device's boundary",
            )
            .at(addr.as_u64())
            .len(len));
        }
        Ok(())
    }

    /// Checks a segment count against [`max_segments`](Self::max_segments).
    pub fn check_segment_count(&self, count: usize) -> Result<()> {
        if count > self.max_segments {
            return Err(Error::new(
                ErrorKind::TooManySegments,
                "transfer needs more segments than the device takes",
            )
            .len(count as u64));
        }
        Ok(())
    }
}

impl Default for DeviceConstraints {
    fn default() -> Self {
        Self::UNCONSTRAINED
    }
}

#[inline]
fn last_byte(addr: DmaAddr, len: u64) -> Result<DmaAddr> {
    if len == 0 {
        return Err(Error::new(ErrorKind::ZeroSize, "zero-length range").at(addr.as_u64()));
    }
    addr.checked_end_inclusive(len).ok_or_else(|| {
        Error::new(
            ErrorKind::AddressOverflow,
            "range wraps past the top of the address space",
        )
        .at(addr.as_u64())
        .len(len)
    })
}

/// Builds and validates [`DeviceConstraints`].
///
/// ```
/// use dma_core::DeviceConstraints;
///
/// // A 32-bit device that wants 4-byte aligned segments of at most 64 KiB
/// // that never cross a 4 GiB line, and takes up to 128 of them.
/// let c = DeviceConstraints::builder()
///     .addr_bits(32)
///     .alignment(4)
///     .boundary(1 << 32)
///     .max_segment_size(64 * 1024)
///     .max_segments(128)
///     .build()?;
/// assert_eq!(c.dma_mask(), 0xffff_ffff);
/// # Ok::<(), dma_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct ConstraintsBuilder {
    addr_bits: u8,
    alignment: u64,
    boundary: Option<u64>,
    max_segment_size: Option<u64>,
    max_segments: usize,
    min_align_mask: u64,
}

impl ConstraintsBuilder {
    /// Address bits the device drives, 1 to 64.
    pub const fn addr_bits(mut self, bits: u8) -> Self {
        self.addr_bits = bits;
        self
    }

    /// Segment start alignment in bytes, a power of two.
    pub const fn alignment(mut self, bytes: u64) -> Self {
        self.alignment = bytes;
        self
    }

    /// A power-of-two line no segment may cross.
    pub const fn boundary(mut self, bytes: u64) -> Self {
        self.boundary = Some(bytes);
        self
    }

    /// The longest segment, in bytes. Left unset, it is
    /// [`DEFAULT_MAX_SEGMENT_SIZE`](DeviceConstraints::DEFAULT_MAX_SEGMENT_SIZE),
    /// clamped to the boundary if one is set.
    pub const fn max_segment_size(mut self, bytes: u64) -> Self {
        self.max_segment_size = Some(bytes);
        self
    }

    /// The most segments per transfer, at least 1.
    pub const fn max_segments(mut self, count: usize) -> Self {
        self.max_segments = count;
        self
    }

    /// Low address bits a bounce buffer must preserve: `2^k - 1`.
    pub const fn min_align_mask(mut self, mask: u64) -> Self {
        self.min_align_mask = mask;
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConstraints`] when the address width is outside
    /// 1..=64, the alignment or boundary is not a power of two, a segment
    /// size or count is zero, the boundary is smaller than an explicitly set
    /// maximum segment size, the alignment exceeds the boundary, or the
    /// minimum-alignment mask is not of the form `2^k - 1`.
    pub fn build(self) -> Result<DeviceConstraints> {
        let invalid = |msg| Err(Error::new(ErrorKind::InvalidConstraints, msg));
        if self.addr_bits == 0 || self.addr_bits > 64 {
            return invalid("addr_bits must be 1 to 64");
        }
        if !self.alignment.is_power_of_two() {
            return invalid("alignment must be a power of two");
        }
        if let Some(b) = self.boundary {
            if !b.is_power_of_two() {
                return invalid("boundary must be a power of two");
            }
            if self.alignment > b {
                return invalid("alignment larger than the boundary");
            }
        }
        let max_segment_size = match (self.max_segment_size, self.boundary) {
            (Some(0), _) => return invalid("max_segment_size must be at least 1"),
            (Some(m), Some(b)) if m > b => {
                return invalid(
                    "boundary smaller than max_segment_size: a full segment could never fit",
                )
            }
            (Some(m), _) => m,
            (None, Some(b)) => b.min(DeviceConstraints::DEFAULT_MAX_SEGMENT_SIZE),
            (None, None) => DeviceConstraints::DEFAULT_MAX_SEGMENT_SIZE,
        };
        if self.max_segments == 0 {
            return invalid("max_segments must be at least 1");
        }
        if self.min_align_mask.wrapping_add(1) & self.min_align_mask != 0 {
            return invalid("min_align_mask must be 2^k - 1");
        }
        Ok(DeviceConstraints {
            addr_bits: self.addr_bits,
            alignment: self.alignment,
            boundary: self.boundary,
            max_segment_size,
            max_segments: self.max_segments,
            min_align_mask: self.min_align_mask,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(r: Result<DeviceConstraints>) -> ErrorKind {
        r.expect_err("constraints should be rejected").kind()
    }

    #[test]
    fn invalid_constraints_are_rejected() {
        let b = DeviceConstraints::builder;
        assert_eq!(
            kind(b().addr_bits(0).build()),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(b().addr_bits(65).build()),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(b().alignment(0).build()),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(b().alignment(12).build()),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(b().boundary(3000).build()),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(b().boundary(4096).max_segment_size(8192).build()),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(b().boundary(16).alignment(32).build()),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(b().max_segment_size(0).build()),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(b().max_segments(0).build()),
            ErrorKind::InvalidConstraints
        );
        assert_eq!(
            kind(b().min_align_mask(0x1000).build()),
            ErrorKind::InvalidConstraints
        );
    }

    #[test]
    fn unset_max_segment_is_clamped_to_the_boundary() {
        let c = DeviceConstraints::builder()
            .boundary(0x1_0000)
            .build()
            .unwrap();
        assert_eq!(c.max_segment_size(), 0x1_0000);
        let c = DeviceConstraints::builder()
            .boundary(1 << 40)
            .build()
            .unwrap();
        assert_eq!(
            c.max_segment_size(),
            DeviceConstraints::DEFAULT_MAX_SEGMENT_SIZE
        );
    }

    #[test]
    fn masks() {
        assert_eq!(DeviceConstraints::UNCONSTRAINED.dma_mask(), u64::MAX);
        let c = DeviceConstraints::builder().addr_bits(32).build().unwrap();
        assert_eq!(c.dma_mask(), 0xffff_ffff);
        assert!(c.check_reachable(DmaAddr::new(0xffff_f000), 0x1000).is_ok());
        let e = c
            .check_reachable(DmaAddr::new(0xffff_f000), 0x1001)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
    }

    #[test]
    fn segment_rules() {
        let c = DeviceConstraints::builder()
            .addr_bits(36)
            .alignment(8)
            .boundary(0x1_0000)
            .max_segment_size(0x8000)
            .max_segments(4)
            .build()
            .unwrap();
        assert!(c.check_segment(DmaAddr::new(0x8000), 0x8000).is_ok());
        let k = |a, l| c.check_segment(DmaAddr::new(a), l).unwrap_err().kind();
        assert_eq!(k(0x8000, 0), ErrorKind::ZeroSize);
        assert_eq!(k(u64::MAX - 8, 0x100), ErrorKind::AddressOverflow);
        assert_eq!(k(1 << 36, 8), ErrorKind::Unreachable);
        assert_eq!(k(0x8004, 8), ErrorKind::Misaligned);
        assert_eq!(k(0x0, 0x8001), ErrorKind::SegmentTooLarge);
        assert_eq!(k(0xc000, 0x8000), ErrorKind::CrossesBoundary);
        assert!(c.check_segment_count(4).is_ok());
        assert_eq!(
            c.check_segment_count(5).unwrap_err().kind(),
            ErrorKind::TooManySegments
        );
    }

    proptest::proptest! {
        #[test]
        #[cfg_attr(miri, ignore = "proptest is too slow under miri; no unsafe code here")]
        fn boundary_check_matches_brute_force(addr in 0u64..0x4_0000, len in 1u64..0x4000, shift in 4u32..16) {
            let b = 1u64 << shift;
            let c = DeviceConstraints::builder().boundary(b).max_segment_size(b).build().unwrap();
            let brute = (addr..addr + len).any(|x| x != addr && x % b == 0);
            proptest::prop_assert_eq!(c.crosses_boundary(DmaAddr::new(addr), len), brute);
        }
    }
}
