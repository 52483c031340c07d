//! The sync plan: which cache operation each (direction, sync point) pair
//! needs.
//!
//! NetBSD's `bus_dmamap_sync(9)` names the four moments a sync can mark;
//! [`bus_dma_ops`] maps a (direction, point) pair onto them and
//! [`plan_ops`] says what each needs on a non-coherent CPU, with the
//! choices Linux's arm64 `arch_sync_dma_for_{device,cpu}` makes:
//!
//! | direction | for device | op | for CPU | op |
//! | --- | --- | --- | --- | --- |
//! | to device | PREWRITE | clean | POSTWRITE | nothing |
//! | from device | PREREAD | clean | POSTREAD | invalidate |
//! | bidirectional | PREREAD \| PREWRITE | clean | POSTREAD \| POSTWRITE | invalidate |
//!
//! - PREWRITE (the device will read): clean, so memory holds what the CPU
//!   wrote.
//! - PREREAD (the device will write): clean too, where NetBSD's ARM code
//!   invalidates line-aligned ranges. Invalidating would let the CPU later
//!   see memory's older contents where the device wrote nothing (a short
//!   receive); cleaning leaves no dirty line that an eviction could write
//!   back over the device's data, which is the point of the PREREAD sync.
//! - POSTREAD (the device wrote): invalidate, so the CPU's next read
//!   fetches the device's data instead of lines cached, perhaps
//!   speculatively, while the device owned the buffer.
//! - POSTWRITE (the device read): nothing is stale.
//!
//! `SKIP_CPU_SYNC` skips the implicit syncs at map and unmap; a driver's
//! explicit `sync_for_*` always runs ([`sync`]'s `explicit` argument).

use dma_core::{DmaAttrs, DmaDirection};

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

bitflags::bitflags! {
    /// NetBSD `bus_dmamap_sync(9)` operations.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct BusDmaOps: u8 {
        /// Before the device writes memory (`BUS_DMASYNC_PREREAD`).
        const PREREAD = 1 << 0;
        /// Before the device reads memory (`BUS_DMASYNC_PREWRITE`).
        const PREWRITE = 1 << 1;
        /// After the device wrote memory (`BUS_DMASYNC_POSTREAD`).
        const POSTREAD = 1 << 2;
        /// After the device read memory (`BUS_DMASYNC_POSTWRITE`).
        const POSTWRITE = 1 << 3;
    }
}

/// The NetBSD operations a (direction, point) sync stands for.
#[inline]
pub const fn bus_dma_ops(dir: DmaDirection, point: SyncPoint) -> BusDmaOps {
    let (reads, writes) = (dir.device_reads(), dir.device_writes());
    let (on_read, on_write) = match point {
        SyncPoint::ForDevice => (BusDmaOps::PREWRITE, BusDmaOps::PREREAD),
        SyncPoint::ForCpu => (BusDmaOps::POSTWRITE, BusDmaOps::POSTREAD),
    };
    let mut bits = 0;
    if reads {
        bits |= on_read.bits();
    }
    if writes {
        bits |= on_write.bits();
    }
    BusDmaOps::from_bits_truncate(bits)
}

/// The operation a set of NetBSD sync operations needs on a non-coherent
/// CPU, or `None`.
#[inline]
pub const fn plan_ops(ops: BusDmaOps) -> Option<CacheOp> {
    let pre = BusDmaOps::PREREAD.union(BusDmaOps::PREWRITE);
    if ops.intersects(pre) {
        Some(CacheOp::Clean)
    } else if ops.contains(BusDmaOps::POSTREAD) {
        Some(CacheOp::Invalidate)
    } else {
        None
    }
}

/// The operation a sync needs on a non-coherent CPU, or `None`.
#[inline]
pub const fn plan(dir: DmaDirection, point: SyncPoint) -> Option<CacheOp> {
    plan_ops(bus_dma_ops(dir, point))
}

/// Performs the sync for `len` bytes at `va`.
///
/// Nothing happens on a coherent cache policy, nor for an implicit sync (at
/// map or unmap, `explicit == false`) when `attrs` has `SKIP_CPU_SYNC`; a
/// driver's own `sync_for_*` call (`explicit == true`) always maintains.
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
        // SAFETY: the caller promises the range is mapped and that the CPU
        // owns its lines (the device is done with them), so dropping their
        // cached contents loses nothing the caller needs.
        Some(CacheOp::Invalidate) => unsafe { cache.invalidate(va, len) },
        // SAFETY: the caller promises the range is mapped; writing back and
        // dropping lines the caller owns changes no byte outside them.
        Some(CacheOp::CleanInvalidate) => unsafe { cache.clean_invalidate(va, len) },
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DmaDirection::*;

    #[test]
    fn directions_map_to_netbsd_operations() {
        use BusDmaOps as B;
        assert_eq!(bus_dma_ops(ToDevice, SyncPoint::ForDevice), B::PREWRITE);
        assert_eq!(bus_dma_ops(FromDevice, SyncPoint::ForDevice), B::PREREAD);
        assert_eq!(
            bus_dma_ops(Bidirectional, SyncPoint::ForDevice),
            B::PREREAD | B::PREWRITE
        );
        assert_eq!(bus_dma_ops(ToDevice, SyncPoint::ForCpu), B::POSTWRITE);
        assert_eq!(bus_dma_ops(FromDevice, SyncPoint::ForCpu), B::POSTREAD);
        assert_eq!(
            bus_dma_ops(Bidirectional, SyncPoint::ForCpu),
            B::POSTREAD | B::POSTWRITE
        );
    }

    #[test]
    fn table_matches_linux_arm64() {
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
        assert_eq!(plan_ops(BusDmaOps::empty()), None);
    }
}
