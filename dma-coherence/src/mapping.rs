//! What every backend that reaches memory physically does the same way:
//! maintain a mapping's CPU range, and pick how coherent allocations are
//! mapped for the CPU.

use dma_core::{Cacheability, DmaAttrs, PhysMemory, RawMapping};

use crate::{sync, CacheMaintenance, SyncPoint};

/// Runs the sync plan over `len` bytes at `offset` within a mapping,
/// finding their CPU address through the environment's linear map. Does
/// nothing at all on a coherent cache policy, or for an empty range.
///
/// A range the environment cannot translate is left alone: backends check
/// the translation when they map, so that can only mean the environment
/// changed under a live mapping, and there is nothing safe to maintain.
///
/// # Safety
///
/// The range lies within `mapping`, which is live, and the caller owns it
/// (as [`sync`] requires).
#[inline(always)]
pub unsafe fn sync_mapping<C: CacheMaintenance + ?Sized, M: PhysMemory + ?Sized>(
    cache: &C,
    memory: &M,
    mapping: &RawMapping,
    offset: usize,
    len: usize,
    point: SyncPoint,
    explicit: bool,
) {
    if cache.is_coherent() || len == 0 {
        return;
    }
    let Some(phys) = mapping.phys.checked_add(offset as u64) else {
        return;
    };
    let Ok(va) = memory.phys_to_virt(phys, len) else {
        return;
    };
    // SAFETY: the caller owns the range through a live mapping, and the
    // environment's translation makes `va` its CPU address.
    unsafe {
        sync(
            cache,
            va.as_ptr() as usize,
            len,
            mapping.dir,
            point,
            mapping.attrs,
            explicit,
        )
    }
}

/// How a coherent allocation is mapped for the CPU: write-combining on
/// request; cached where the hardware is coherent; otherwise uncached, so
/// CPU and device see the same bytes without maintenance on every access
/// (Linux arm64 remaps `dma_alloc_coherent` memory the same way).
pub fn coherent_cacheability<C: CacheMaintenance + ?Sized>(
    cache: &C,
    attrs: DmaAttrs,
) -> Cacheability {
    if attrs.contains(DmaAttrs::WRITE_COMBINE) {
        Cacheability::WriteCombine
    } else if cache.is_coherent() {
        Cacheability::Cached
    } else {
        Cacheability::Uncached
    }
}
