//! Device segments: what the device is told, after mapping.

use dma_core::{DeviceConstraints, SgEntry};

/// Defined beside the streaming types, so that a single mapping yields them
/// too; re-exported here, where tables produce them.
pub use dma_core::DmaSegment;

/// The device segments of mapped entries: runs of entries whose device
/// addresses are contiguous, merged as far as the device's maximum segment
/// size and boundary allow (what Linux's `dma_map_sg` returns as its
/// segment count). A direct platform yields one segment per entry; an IOMMU
/// that placed the table in one IOVA range yields a few long ones.
///
/// ```
/// use dma_core::{DeviceConstraints, DmaAddr, PhysAddr, SgEntry};
/// use dma_sg::{DeviceSegments, DmaSegment};
///
/// let mut e = [SgEntry::new(PhysAddr::new(0x5000), 0x1000), SgEntry::new(PhysAddr::new(0x9000), 0x800)];
/// e[0].dma = DmaAddr::new(0x10_0000); // an IOVA range laid out back to back
/// e[1].dma = DmaAddr::new(0x10_1000);
/// let segs: Vec<_> = DeviceSegments::new(&e, &DeviceConstraints::UNCONSTRAINED).collect();
/// assert_eq!(segs, [DmaSegment::new(DmaAddr::new(0x10_0000), 0x1800)]);
/// ```
#[derive(Clone, Debug)]
pub struct DeviceSegments<'a> {
    entries: core::slice::Iter<'a, SgEntry>,
    max: u64,
    boundary: Option<u64>,
    pending: Option<DmaSegment>,
}

impl<'a> DeviceSegments<'a> {
    /// Merges `entries` (whose `dma` fields are filled) under `constraints`.
    pub fn new(entries: &'a [SgEntry], constraints: &DeviceConstraints) -> Self {
        Self {
            entries: entries.iter(),
            max: constraints.max_segment_size(),
            boundary: constraints.boundary(),
            pending: None,
        }
    }

    /// Whether `next` continues `seg` and the merge stays a valid segment.
    fn can_extend(max: u64, boundary: Option<u64>, seg: &DmaSegment, next: &SgEntry) -> bool {
        let merged = seg.len + next.len as u64;
        let first = seg.addr.as_u64();
        seg.end() == Some(next.dma.as_u64())
            && merged <= max
            && boundary.is_none_or(|b| first / b == (first + (merged - 1)) / b)
    }
}

impl Iterator for DeviceSegments<'_> {
    type Item = DmaSegment;

    fn next(&mut self) -> Option<DmaSegment> {
        let mut seg = match self.pending.take() {
            Some(s) => s,
            None => {
                let e = self.entries.next()?;
                DmaSegment::new(e.dma, e.len as u64)
            }
        };
        let (max, boundary) = (self.max, self.boundary);
        for e in self.entries.by_ref() {
            if Self::can_extend(max, boundary, &seg, e) {
                seg.len += e.len as u64;
            } else {
                self.pending = Some(DmaSegment::new(e.dma, e.len as u64));
                break;
            }
        }
        Some(seg)
    }
}
