//! The wrapper that tells the machine what a device may reach.

use std::ptr::NonNull;

use dma_api::{
    Cacheability, CoherentRegion, DeviceConstraints, DmaAddr, DmaAlloc, DmaAttrs, DmaDirection,
    DmaMap, PhysAddr, RawMapping, Result, SgEntry,
};

use crate::machine::Live;
use crate::report::ReportKind;
use crate::{DeviceId, Sim};

/// A platform attached to a simulated device.
///
/// It forwards every call to the backend `P` unchanged (so the backend's
/// own translation and sync logic is what runs) and tells the machine
/// which memory the device may now reach: a mapping becomes live just
/// before the backend maps it (so the backend's clean reaches the cache
/// model) and stops being live after the backend unmaps it. Device
/// accesses outside live regions are bus errors.
///
/// Around the backend's syncs it runs the detector's ownership checks:
/// - when the CPU takes a mapping back (`sync_for_cpu`, `unmap`) the CPU
///   must not have written it while the device owned it
///   ([`CpuWroteDeviceOwned`](crate::ReportKind::CpuWroteDeviceOwned)),
/// - and afterwards no line the device wrote may be left un-invalidated
///   ([`CpuReadNotInvalidated`](crate::ReportKind::CpuReadNotInvalidated)).
///
/// Neither `PhysMemory` nor `CacheMaintenance` sees map and unmap, which
/// is why this wrapper exists rather than the bare `DirectPlatform`.
#[derive(Clone, Debug)]
pub struct SimPlatform<P> {
    pub(crate) sim: Sim,
    pub(crate) device: DeviceId,
    pub(crate) inner: P,
}

impl<P> SimPlatform<P> {
    /// The backend.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The device it serves.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// The machine.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    fn register(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: Option<DmaDirection>,
        cached: bool,
    ) -> (u64, u64) {
        self.sim.machine.with(|s, cfg| {
            s.tick(cfg);
            s.register(
                cfg,
                Live {
                    id: 0,
                    device: self.device,
                    phys: phys.as_u64(),
                    len: len as u64,
                    dma: 0,
                    dir,
                    cached,
                    device_owns: true,
                },
            )
        })
    }

    fn set_dma(&self, key: (u64, u64), dma: DmaAddr) {
        self.sim.machine.with(|s, _| {
            if let Some(l) = s.live.get_mut(&key) {
                l.dma = dma.as_u64();
            }
        });
    }

    fn unregister(&self, key: (u64, u64)) {
        self.sim.machine.with(|s, _| {
            s.unregister(key);
        });
    }

    fn find(&self, m: &RawMapping) -> Option<(u64, u64)> {
        self.sim.machine.with(|s, _| {
            s.find(self.device, m.phys.as_u64(), m.len as u64, m.dma.as_u64())
                .map(|(k, _)| k)
        })
    }

    /// Before the CPU takes `[offset, offset + len)` back: did it write
    /// while the device owned it?
    fn check_cpu_takes(&self, key: (u64, u64), offset: usize, len: usize) {
        self.sim.machine.with(|s, cfg| {
            s.tick(cfg);
            let Some(live) = s.live.get(&key).copied() else {
                return;
            };
            if !live.cached || !live.device_owns || !cfg.detector_on() {
                return;
            }
            let start = live.phys + offset as u64;
            // SAFETY: the region is live, so its tracked bytes are allocated.
            let finding = unsafe { s.shadow.cpu_modified(start, len as u64) };
            s.report(
                cfg,
                ReportKind::CpuWroteDeviceOwned,
                finding,
                None,
                Some(live.info()),
            );
        });
    }

    /// After the backend's sync for the CPU: nothing the device wrote may be
    /// left un-invalidated. The CPU owns the mapping from here.
    fn check_cpu_took(&self, key: (u64, u64), offset: usize, len: usize) {
        self.sim.machine.with(|s, cfg| {
            let Some(live) = s.live.get_mut(&key) else {
                return;
            };
            live.device_owns = false;
            let live = *live;
            if !live.cached {
                return;
            }
            let finding = s
                .shadow
                .not_invalidated(live.phys + offset as u64, len as u64);
            s.report(
                cfg,
                ReportKind::CpuReadNotInvalidated,
                finding,
                None,
                Some(live.info()),
            );
        });
    }

    fn device_owns(&self, key: (u64, u64)) {
        self.sim.machine.with(|s, cfg| {
            s.tick(cfg);
            if let Some(l) = s.live.get_mut(&key) {
                l.device_owns = true;
            }
        });
    }

    fn count(&self, f: impl FnOnce(&mut crate::SimStats)) {
        self.sim.machine.with(|s, _| f(&mut s.stats));
    }
}

// SAFETY: every call is forwarded unchanged to `P`, which upholds the
// contract; the wrapper only records what the device may reach and reads
// the CPU's view of live regions for its checks, writing nothing.
unsafe impl<P: DmaMap> DmaMap for SimPlatform<P> {
    fn constraints(&self) -> &DeviceConstraints {
        self.inner.constraints()
    }

    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> Result<PhysAddr> {
        self.inner.virt_to_phys(cpu, len)
    }

    fn dma_alignment(&self) -> usize {
        self.inner.dma_alignment()
    }

    unsafe fn map(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<DmaAddr> {
        let key = self.register(phys, len, Some(dir), true);
        // SAFETY: the caller's promise is passed on unchanged.
        match unsafe { self.inner.map(phys, len, dir, attrs) } {
            Ok(dma) => {
                self.set_dma(key, dma);
                self.count(|s| s.maps += 1);
                Ok(dma)
            }
            Err(e) => {
                self.unregister(key);
                Err(e)
            }
        }
    }

    unsafe fn unmap(&self, mapping: &RawMapping) -> Result<()> {
        let key = self.find(mapping);
        if let Some(key) = key {
            self.check_cpu_takes(key, 0, mapping.len);
        }
        // SAFETY: the caller's promise is passed on unchanged.
        let result = unsafe { self.inner.unmap(mapping) };
        if let Some(key) = key {
            if result.is_ok() {
                if mapping.dir != DmaDirection::ToDevice {
                    self.check_cpu_took(key, 0, mapping.len);
                }
                self.unregister(key);
                self.count(|s| s.unmaps += 1);
            }
        }
        result
    }

    unsafe fn sync_for_cpu(&self, mapping: &RawMapping, offset: usize, len: usize) {
        let key = self.find(mapping);
        if let Some(key) = key {
            self.check_cpu_takes(key, offset, len);
        }
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.inner.sync_for_cpu(mapping, offset, len) };
        if let Some(key) = key {
            self.check_cpu_took(key, offset, len);
        }
        self.count(|s| s.syncs_for_cpu += 1);
    }

    unsafe fn sync_for_device(&self, mapping: &RawMapping, offset: usize, len: usize) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.inner.sync_for_device(mapping, offset, len) };
        if let Some(key) = self.find(mapping) {
            self.device_owns(key);
        }
        self.count(|s| s.syncs_for_device += 1);
    }

    unsafe fn map_sg(
        &self,
        entries: &mut [SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        let keys: Vec<_> = entries
            .iter()
            .map(|e| self.register(e.phys, e.len, Some(dir), true))
            .collect();
        // SAFETY: the caller's promise is passed on unchanged.
        match unsafe { self.inner.map_sg(entries, dir, attrs) } {
            Ok(()) => {
                for (k, e) in keys.iter().zip(entries.iter()) {
                    self.set_dma(*k, e.dma);
                }
                self.count(|s| s.maps += entries.len() as u64);
                Ok(())
            }
            Err(err) => {
                for k in keys {
                    self.unregister(k);
                }
                Err(err)
            }
        }
    }

    unsafe fn unmap_sg(
        &self,
        entries: &[SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        let keys: Vec<_> = entries
            .iter()
            .map(|e| self.find(&e.as_raw(dir, attrs)))
            .collect();
        for (k, e) in keys.iter().zip(entries) {
            if let Some(k) = k {
                self.check_cpu_takes(*k, 0, e.len);
            }
        }
        // SAFETY: the caller's promise is passed on unchanged.
        let result = unsafe { self.inner.unmap_sg(entries, dir, attrs) };
        for (k, e) in keys.into_iter().zip(entries) {
            if let Some(k) = k {
                if dir != DmaDirection::ToDevice {
                    self.check_cpu_took(k, 0, e.len);
                }
                self.unregister(k);
                self.count(|s| s.unmaps += 1);
            }
        }
        result
    }
}

// SAFETY: forwarded unchanged to `P`; the wrapper records the region as
// reachable by the device while it is allocated.
unsafe impl<P: DmaAlloc> DmaAlloc for SimPlatform<P> {
    fn alloc_coherent(&self, size: usize, attrs: DmaAttrs) -> Result<CoherentRegion> {
        let region = self.inner.alloc_coherent(size, attrs)?;
        let phys = region.cpu.as_ptr().expose_provenance() as u64;
        let cached = self.sim.machine.with(|s, _| {
            s.allocations
                .get(&phys)
                .is_none_or(|(_, c)| *c == Cacheability::Cached)
        });
        let key = self.register(PhysAddr::new(phys), region.size, None, cached);
        self.set_dma(key, region.dma);
        self.count(|s| s.coherent_allocs += 1);
        Ok(region)
    }

    unsafe fn free_coherent(&self, region: CoherentRegion, attrs: DmaAttrs) -> Result<()> {
        let phys = region.cpu.as_ptr().expose_provenance() as u64;
        let key = self.sim.machine.with(|s, _| {
            s.find(self.device, phys, region.size as u64, region.dma.as_u64())
                .map(|(k, _)| k)
        });
        if let Some(key) = key {
            self.unregister(key);
            self.count(|s| s.coherent_frees += 1);
        }
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.inner.free_coherent(region, attrs) }
    }
}
