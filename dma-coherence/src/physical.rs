//! The physical-backend core: what every backend that reaches CPU memory
//! by physical address (direct, IOMMU, bounce) checks and does the same way,
//! so the argument for `DmaMap`'s "no byte outside the mapped range
//! changes" promise is written once, here.
//!
//! # The argument
//!
//! A backend's syncs change CPU-visible memory in two ways: cache
//! maintenance (a clean writes a line back; an invalidate discards it, and
//! with it any CPU write to any byte of that line) and, for bounce
//! backends, copies. [`PhysicalCore::prepare_map`] runs before a mapping is
//! made and refuses, with a typed error, every range for which a later sync
//! could not keep that promise:
//!
//! 1. an empty range ([`ErrorKind::ZeroSize`]) or one that wraps past the
//!    top of the address space ([`ErrorKind::AddressOverflow`]);
//! 2. on a non-coherent cache policy, a range the device writes that does
//!    not own its cache lines whole ([`ErrorKind::Misaligned`], see
//!    [`partial_lines`](crate::partial_lines)): the only operation that
//!    discards data, the invalidate after the device wrote, then touches
//!    only lines the mapping owns. Cleaning a line shared by a range the
//!    device only reads writes the neighbour's bytes back unchanged;
//! 3. on a non-coherent cache policy, a range the environment cannot
//!    translate to a CPU address ([`ErrorKind::NotContiguous`]): every
//!    later sync reaches the range through that translation, so it is
//!    refused now rather than left unmaintained later.
//!
//! The syncs ([`PhysicalCore::sync`], [`PhysicalCore::after_map`],
//! [`PhysicalCore::before_unmap`]) check that the sub-range lies within
//! the mapping and translate it again; a failure there (the environment
//! changed under a live mapping) is returned as an error instead of being
//! skipped silently. [`PhysicalCore::cpu_range`] is the same bounds and
//! translation check for backends that copy (bounce buffers).

use core::ptr::NonNull;

use dma_core::{
    Cacheability, DmaAttrs, DmaDirection, Error, ErrorKind, PhysAddr, PhysMemory, RawMapping,
    Result,
};

use crate::{require_whole_lines, sync, CacheMaintenance, SyncPoint};

/// Checks that `len` bytes at `phys` form a mappable span: not empty, and
/// not wrapping past the top of the physical address space.
///
/// # Errors
///
/// [`ZeroSize`](ErrorKind::ZeroSize) for `len == 0`,
/// [`AddressOverflow`](ErrorKind::AddressOverflow) when the range wraps.
#[inline(always)]
pub fn check_span(phys: PhysAddr, len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::new(ErrorKind::ZeroSize, "zero-length mapping").at(phys.as_u64()));
    }
    if phys.checked_end_inclusive(len as u64).is_none() {
        return Err(Error::new(
            ErrorKind::AddressOverflow,
            "mapping wraps past the top of memory",
        )
        .at(phys.as_u64())
        .len(len as u64));
    }
    Ok(())
}

/// A backend's cache policy and memory environment, seen together: the
/// checks and syncs every physical backend shares (see the
/// [module docs](self) for the argument they make).
#[derive(Debug)]
pub struct PhysicalCore<'a, C: ?Sized, M: ?Sized> {
    cache: &'a C,
    memory: &'a M,
}

impl<C: ?Sized, M: ?Sized> Clone for PhysicalCore<'_, C, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C: ?Sized, M: ?Sized> Copy for PhysicalCore<'_, C, M> {}

impl<'a, C: CacheMaintenance + ?Sized, M: PhysMemory + ?Sized> PhysicalCore<'a, C, M> {
    /// The core over a backend's cache policy and environment.
    #[inline(always)]
    pub const fn new(cache: &'a C, memory: &'a M) -> Self {
        Self { cache, memory }
    }

    /// The alignment and size granule a buffer the device writes needs
    /// (`DmaMap::dma_alignment`): the line size on a non-coherent policy,
    /// 1 on a coherent one.
    #[inline(always)]
    pub fn dma_alignment(&self) -> usize {
        if self.cache.is_coherent() {
            1
        } else {
            self.cache.line_size()
        }
    }

    /// Checks a streaming mapping before the backend makes it (see the
    /// [module docs](self)). Nothing is changed by a refusal.
    ///
    /// # Errors
    ///
    /// As [`check_span`]; [`Misaligned`](ErrorKind::Misaligned) for a
    /// range the device writes that shares a cache line with other data on
    /// a non-coherent policy; [`NotContiguous`](ErrorKind::NotContiguous)
    /// (the environment's error) when a non-coherent policy would have to
    /// maintain a range the environment cannot translate.
    #[inline(always)]
    pub fn prepare_map(&self, phys: PhysAddr, len: usize, dir: DmaDirection) -> Result<()> {
        check_span(phys, len)?;
        if !self.cache.is_coherent() {
            require_whole_lines(self.cache, phys.as_u64(), len, dir)?;
            self.memory.phys_to_virt(phys, len)?;
        }
        Ok(())
    }

    /// The CPU address of `len` bytes at `offset` within `mapping`.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](ErrorKind::OutOfRange) when the sub-range does not lie
    /// within the mapping; the environment's error when it cannot be
    /// translated.
    #[inline(always)]
    pub fn cpu_range(
        &self,
        mapping: &RawMapping,
        offset: usize,
        len: usize,
    ) -> Result<NonNull<u8>> {
        let inside = offset
            .checked_add(len)
            .is_some_and(|end| end <= mapping.len);
        let phys = mapping.phys.checked_add(offset as u64);
        match phys {
            Some(phys) if inside => self.memory.phys_to_virt(phys, len),
            _ => Err(Error::new(
                ErrorKind::OutOfRange,
                "sync range does not lie within the mapping",
            )
            .at(mapping.phys.as_u64().wrapping_add(offset as u64))
            .len(len as u64)),
        }
    }

    /// A driver's explicit sync of `len` bytes at `offset` within
    /// `mapping`: the sync plan for `point`, even with `SKIP_CPU_SYNC`.
    /// Does nothing on a coherent policy or for an empty range.
    ///
    /// # Errors
    ///
    /// As [`cpu_range`](Self::cpu_range); nothing was maintained then.
    ///
    /// # Safety
    ///
    /// `mapping` is live and was checked by
    /// [`prepare_map`](Self::prepare_map) on this core's policy, and the
    /// caller owns the range (as [`sync`] requires).
    #[inline(always)]
    pub unsafe fn sync(
        &self,
        mapping: &RawMapping,
        offset: usize,
        len: usize,
        point: SyncPoint,
    ) -> Result<()> {
        // SAFETY: the caller's promise is passed on.
        unsafe { self.maintain(mapping, offset, len, point, true) }
    }

    /// The implicit sync at map: hands the whole mapping to the device
    /// unless `SKIP_CPU_SYNC`.
    ///
    /// # Errors
    ///
    /// As [`sync`](Self::sync).
    ///
    /// # Safety
    ///
    /// As for [`sync`](Self::sync).
    #[inline(always)]
    pub unsafe fn after_map(&self, mapping: &RawMapping) -> Result<()> {
        // SAFETY: the caller's promise is passed on; 0..len is the mapping.
        unsafe { self.maintain(mapping, 0, mapping.len, SyncPoint::ForDevice, false) }
    }

    /// The implicit sync at unmap: gives the whole mapping back to the CPU
    /// unless `SKIP_CPU_SYNC`.
    ///
    /// # Errors
    ///
    /// As [`sync`](Self::sync).
    ///
    /// # Safety
    ///
    /// As for [`sync`](Self::sync), and the device has stopped using the
    /// mapping.
    #[inline(always)]
    pub unsafe fn before_unmap(&self, mapping: &RawMapping) -> Result<()> {
        // SAFETY: the caller's promise is passed on; 0..len is the mapping.
        unsafe { self.maintain(mapping, 0, mapping.len, SyncPoint::ForCpu, false) }
    }

    /// # Safety
    ///
    /// As for [`sync`](Self::sync).
    #[inline(always)]
    unsafe fn maintain(
        &self,
        mapping: &RawMapping,
        offset: usize,
        len: usize,
        point: SyncPoint,
        explicit: bool,
    ) -> Result<()> {
        if self.cache.is_coherent() || len == 0 {
            return Ok(());
        }
        let va = self.cpu_range(mapping, offset, len)?;
        // prepare_map refused device-written mappings that do not own their
        // lines whole, so an invalidate discards no byte outside this one.
        // SAFETY: `va` is the CPU address (by the environment's translation)
        // of a range inside the live mapping, which the caller owns.
        unsafe {
            sync(
                self.cache,
                va.as_ptr() as usize,
                len,
                mapping.dir,
                point,
                mapping.attrs,
                explicit,
            )
        };
        Ok(())
    }

    /// How a coherent allocation is mapped for the CPU (see
    /// [`coherent_cacheability`]).
    #[inline(always)]
    pub fn coherent_cacheability(&self, attrs: DmaAttrs) -> Cacheability {
        coherent_cacheability(self.cache, attrs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheOp, RecordingCache};
    use dma_core::{DmaAddr, Pages};

    /// An environment whose linear map covers only `[lo, hi)`.
    struct Window(u64, u64);

    // SAFETY: allocates nothing; its one translation is the identity over
    // the window, so it is its own inverse.
    unsafe impl PhysMemory for Window {
        fn page_size(&self) -> usize {
            4096
        }
        fn alloc_pages(&self, _: usize, _: Cacheability, _: u64) -> Result<Pages> {
            Err(Error::new(
                ErrorKind::Unsupported,
                "the window allocates nothing",
            ))
        }
        unsafe fn free_pages(&self, _: Pages) {}
        fn virt_to_phys(&self, cpu: NonNull<u8>, _: usize) -> Result<PhysAddr> {
            Ok(PhysAddr::new(cpu.as_ptr() as u64))
        }
        fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> Result<NonNull<u8>> {
            let (lo, hi) = (phys.as_u64(), phys.as_u64() + len as u64);
            if lo < self.0 || hi > self.1 {
                return Err(Error::new(ErrorKind::NotContiguous, "outside the window"));
            }
            NonNull::new(lo as usize as *mut u8).ok_or(Error::new(ErrorKind::NotContiguous, "null"))
        }
    }

    fn mapping(phys: u64, len: usize, dir: DmaDirection) -> RawMapping {
        RawMapping {
            phys: PhysAddr::new(phys),
            dma: DmaAddr::new(phys),
            len,
            dir,
            attrs: DmaAttrs::empty(),
        }
    }

    #[test]
    fn prepare_map_refuses_what_a_sync_could_not_keep() {
        use DmaDirection::*;
        let cache = RecordingCache::new(64);
        let core = PhysicalCore::new(&cache, &Window(0x1000, 0x2000));
        let kind = |phys, len, dir| {
            core.prepare_map(PhysAddr::new(phys), len, dir)
                .map_err(|e| e.kind())
        };
        assert_eq!(kind(0x1000, 0, ToDevice), Err(ErrorKind::ZeroSize));
        assert_eq!(
            kind(u64::MAX - 3, 8, ToDevice),
            Err(ErrorKind::AddressOverflow)
        );
        assert_eq!(kind(0x1008, 64, FromDevice), Err(ErrorKind::Misaligned));
        assert_eq!(kind(0x1000, 8, Bidirectional), Err(ErrorKind::Misaligned));
        assert_eq!(kind(0x1008, 64, ToDevice), Ok(()));
        assert_eq!(kind(0x1fc0, 128, FromDevice), Err(ErrorKind::NotContiguous));
        assert_eq!(kind(0x1f00, 256, FromDevice), Ok(()));
        assert_eq!(cache.recorded().count(), 0, "checks maintain nothing");
        // A coherent policy maintains nothing, so it needs no translation
        // and no whole lines.
        let coherent = PhysicalCore::new(&crate::HardwareCoherent, &Window(0, 0));
        assert_eq!(
            coherent.prepare_map(PhysAddr::new(0x5008), 8, FromDevice),
            Ok(())
        );
        assert_eq!(core.dma_alignment(), 64);
        assert_eq!(coherent.dma_alignment(), 1);
    }

    #[test]
    fn syncs_report_what_they_cannot_maintain() {
        let cache = RecordingCache::new(64);
        let core = PhysicalCore::new(&cache, &Window(0x1000, 0x2000));
        let m = mapping(0x1000, 256, DmaDirection::FromDevice);
        // SAFETY: nothing is maintained (the policy records only), so no
        // memory is touched at these addresses.
        unsafe {
            assert_eq!(
                core.sync(&m, 200, 100, SyncPoint::ForCpu)
                    .unwrap_err()
                    .kind(),
                ErrorKind::OutOfRange,
                "past the mapping's end"
            );
            assert_eq!(
                core.sync(&m, usize::MAX, 2, SyncPoint::ForCpu)
                    .unwrap_err()
                    .kind(),
                ErrorKind::OutOfRange,
                "offset + len overflows"
            );
            let lost = mapping(0x1f00, 512, DmaDirection::FromDevice);
            assert_eq!(
                core.before_unmap(&lost).unwrap_err().kind(),
                ErrorKind::NotContiguous,
                "a translation lost under a live mapping is reported"
            );
            assert_eq!(cache.recorded().count(), 0, "nothing maintained");
            core.sync(&m, 64, 64, SyncPoint::ForCpu).unwrap();
            core.after_map(&m).unwrap();
            core.sync(&m, 0, 0, SyncPoint::ForCpu).unwrap();
        }
        let ops = cache.recorded().map(|r| (r.op, r.va, r.len));
        assert!(ops.eq([
            (CacheOp::Invalidate, 0x1040, 64),
            (CacheOp::Clean, 0x1000, 256)
        ]));
    }

    #[test]
    fn skip_cpu_sync_skips_only_the_implicit_syncs() {
        let cache = RecordingCache::new(64);
        let core = PhysicalCore::new(&cache, &Window(0x1000, 0x2000));
        let mut m = mapping(0x1000, 128, DmaDirection::Bidirectional);
        m.attrs = DmaAttrs::SKIP_CPU_SYNC;
        // SAFETY: the policy only records, so no memory is touched at these addresses.
        unsafe {
            core.after_map(&m).unwrap();
            core.before_unmap(&m).unwrap();
            assert_eq!(cache.recorded().count(), 0);
            core.sync(&m, 0, 128, SyncPoint::ForDevice).unwrap();
        }
        assert_eq!(cache.recorded().count(), 1);
        assert_eq!(
            core.coherent_cacheability(DmaAttrs::empty()),
            Cacheability::Uncached
        );
    }
}
