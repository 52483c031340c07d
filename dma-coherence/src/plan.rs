//! The sync plan: which cache operation each (direction, sync point) pair
//! needs.
//!
//! NetBSD's `bus_dmamap_sync(9)` names the four points; Linux's arm64
//! `arch_sync_dma_for_{device,cpu}` makes the choices this table follows.
//!
//! | direction | for device (PREWRITE / PREREAD) | for CPU (POSTREAD / POSTWRITE) |
//! | --- | --- | --- |
//! | to device | clean | nothing |
//! | from device | clean | invalidate |
//! | bidirectional | clean | invalidate |
//!
//! Cleaning before a device write is not wasted: it leaves no dirty line
//! that a later eviction could write back over the device's data.

use dma_api::{DmaAttrs, DmaDirection};

use crate::CacheMaintenance;

/// When a sync happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncPoint {
    /// Before the device accesses the memory (map, `sync_for_device`).
    ForDevice,
    /// After the device accessed it, before the CPU reads (unmap,
    /// `sync_for_cpu`).
    ForCpu,
}

/// A cache operation over a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheOp {
    /// Write dirty lines back.
    Clean,
    /// Discard lines.
    Invalidate,
    /// Write back, then discard.
    CleanInvalidate,
}

/// The operation a sync needs, or `None`.
pub const fn plan(dir: DmaDirection, point: SyncPoint) -> Option<CacheOp> {
    match (point, dir) {
        (SyncPoint::ForDevice, _) => Some(CacheOp::Clean),
        (SyncPoint::ForCpu, DmaDirection::ToDevice) => None,
        (SyncPoint::ForCpu, DmaDirection::FromDevice | DmaDirection::Bidirectional) => {
            Some(CacheOp::Invalidate)
        }
    }
}

/// Performs the sync for `len` bytes at `va`.
///
/// An implicit sync (at map or unmap) is skipped when `attrs` has
/// `SKIP_CPU_SYNC`; pass `explicit = true` for a driver's own
/// `sync_for_*` call, which always maintains.
///
/// # Safety
///
/// `[va, va + len)` is mapped; for an invalidate, the caller owns every
/// line the range touches (see [`CacheMaintenance::invalidate`]).
#[inline(always)]
pub unsafe fn sync<C: CacheMaintenance + ?Sized>(
    cache: &C,
    va: usize,
    len: usize,
    dir: DmaDirection,
    point: SyncPoint,
    attrs: DmaAttrs,
    explicit: bool,
) {
    if cache.is_coherent() || (!explicit && attrs.contains(DmaAttrs::SKIP_CPU_SYNC)) {
        return;
    }
    match plan(dir, point) {
        // SAFETY: the caller's promises cover the range.
        Some(CacheOp::Clean) => unsafe { cache.clean(va, len) },
        // SAFETY: as above, including ownership of the touched lines.
        Some(CacheOp::Invalidate) => unsafe { cache.invalidate(va, len) },
        // SAFETY: as above.
        Some(CacheOp::CleanInvalidate) => unsafe { cache.clean_invalidate(va, len) },
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_linux_arm64() {
        use DmaDirection::*;
        assert_eq!(plan(ToDevice, SyncPoint::ForDevice), Some(CacheOp::Clean));
        assert_eq!(plan(FromDevice, SyncPoint::ForDevice), Some(CacheOp::Clean));
        assert_eq!(
            plan(Bidirectional, SyncPoint::ForDevice),
            Some(CacheOp::Clean)
        );
        assert_eq!(plan(ToDevice, SyncPoint::ForCpu), None);
        assert_eq!(
            plan(FromDevice, SyncPoint::ForCpu),
            Some(CacheOp::Invalidate)
        );
        assert_eq!(
            plan(Bidirectional, SyncPoint::ForCpu),
            Some(CacheOp::Invalidate)
        );
    }
}
