//! The wrapper that tells the machine what a device may reach.

use std::ptr::NonNull;

use std::sync::atomic::Ordering;

use dma_coherence::SyncPoint;
use dma_core::{
    Cacheability, CoherentRegion, CpuAccess, DeviceConstraints, DmaAddr, DmaAlloc, DmaAttrs,
    DmaDirection, DmaMap, Error, ErrorKind, PhysAddr, RawMapping, Result, SgEntry,
};

use crate::machine::{Live, State};
use crate::report::ReportKind;
use crate::shadow::Finding;
use crate::{DeviceId, Sim, SimConfig, SimStats};

/// A platform attached to a simulated device.
///
/// It forwards every call to the backend `P` unchanged (so the backend's
/// own translation and sync logic is what runs) and tells the machine
/// which memory the device may now reach: a mapping becomes live just
/// before the backend maps it (so the backend's clean reaches the cache
/// model) and stops being live after the backend unmaps it. Device
/// accesses outside live regions are bus errors.
///
/// It keeps, per streaming mapping the device writes, which bytes the CPU
/// owns (taken by `sync_for_cpu`, handed back by `sync_for_device`) and
/// runs the detector's ownership checks:
/// - a CPU read or write through the safe accessors
///   ([`DmaMap::cpu_access`]) of bytes the device owns
///   ([`CpuReadDeviceOwned`](crate::ReportKind::CpuReadDeviceOwned),
///   [`CpuWroteDeviceOwned`](crate::ReportKind::CpuWroteDeviceOwned));
/// - when the CPU takes a mapping back (`sync_for_cpu`, `unmap`) the CPU
///   must not have written it while the device owned it (writes through
///   raw pointers, which the accessors never see);
/// - and afterwards no line the device wrote may be left un-invalidated
///   ([`CpuReadNotInvalidated`](crate::ReportKind::CpuReadNotInvalidated));
/// - a sync that must clean or invalidate on this machine has to reach the
///   cache model, else the backend is configured coherent for a device
///   that does not snoop
///   ([`PlatformSkipsMaintenance`](crate::ReportKind::PlatformSkipsMaintenance)).
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
    ) -> Result<(u64, u64)> {
        self.sim.machine.with(|s, cfg| {
            let host = s.phys.to_host(phys.as_u64(), len as u64).ok_or(
                Error::new(
                    ErrorKind::NotContiguous,
                    "not sim memory: map buffers translated by this machine's SimMemory \
                     (build the backend on Sim::memory())",
                )
                .at(phys.as_u64())
                .len(len as u64),
            )?;
            s.tick(cfg);
            Ok(s.register(
                cfg,
                Live {
                    id: 0,
                    device: self.device,
                    phys: phys.as_u64(),
                    host,
                    len: len as u64,
                    dma: 0,
                    dir,
                    cached,
                    mapped_at: 0,
                },
            ))
        })
    }

    /// How many cache maintenance operations have reached the model.
    fn maintenance(&self) -> u64 {
        self.sim.machine.maintenance.load(Ordering::Relaxed)
    }

    /// After the backend synced `m` at `point` (`explicit`ly, or as part of
    /// map or unmap): reports when the sync should have reached the cache
    /// model (`before` is [`maintenance`](Self::maintenance) from before
    /// it) and did not.
    fn check_maintained(&self, m: &RawMapping, point: SyncPoint, explicit: bool, before: u64) {
        let expected = dma_coherence::plan(m.dir, point).is_some()
            && (explicit || !m.attrs.contains(DmaAttrs::SKIP_CPU_SYNC));
        // Only a change matters; another thread's maintenance moving the
        // counter can hide a report, never make one.
        if !expected || self.sim.machine.config.is_coherent() || self.maintenance() != before {
            return;
        }
        self.sim.machine.with(|s, cfg| {
            let Some((_, live)) = self.find_live(s, m) else {
                return;
            };
            if !live.cached {
                return;
            }
            let finding = Finding::span(live.phys, live.phys + live.len, s.shadow.line_size());
            s.report(
                cfg,
                ReportKind::PlatformSkipsMaintenance,
                finding,
                None,
                Some(live.info()),
            );
        });
    }

    /// The map (or allocation) is over: the region is reachable at `dma`.
    fn mapped(&self, key: (u64, u64), dma: DmaAddr, count: impl FnOnce(&mut SimStats)) {
        self.sim.machine.with(|s, _| {
            s.filled = None;
            s.set_dma(key, dma.as_u64());
            count(&mut s.stats);
        });
    }

    /// The backend refused a map: the region ends, and its buffer keeps
    /// its address (a bounce platform may serve it; see `PhysMap::pin`).
    fn refused(&self, key: (u64, u64)) {
        self.sim.machine.with(|s, _| {
            if let Some(live) = s.unregister(key) {
                s.phys.pin(live.phys);
            }
        });
    }

    fn find_live(&self, s: &State, m: &RawMapping) -> Option<((u64, u64), Live)> {
        s.find(self.device, m.phys.as_u64(), m.len as u64, m.dma.as_u64())
    }

    /// Before the CPU takes `[offset, offset + len)` of `m` back: did it
    /// write while the device owned it? Returns the mapping's key, if live.
    fn cpu_takes(&self, m: &RawMapping, offset: usize, len: usize) -> Option<(u64, u64)> {
        self.sim.machine.with(|s, cfg| {
            let (key, live) = self.find_live(s, m)?;
            check_cpu_takes(s, cfg, live, offset, len);
            Some(key)
        })
    }

    /// After the backend's sync for the CPU (if `synced`), then
    /// `and_then` unless a report is about to panic.
    fn cpu_took(
        &self,
        key: Option<(u64, u64)>,
        synced: Option<(usize, usize)>,
        and_then: impl FnOnce(&mut State),
    ) {
        self.sim.machine.with(|s, cfg| {
            if let (Some(key), Some((offset, len))) = (key, synced) {
                check_cpu_took(s, cfg, key, offset, len);
                // A report that panics (raised as the lock drops) ends the
                // call here: the unregister and counters after it do not
                // happen, as when the check took the lock on its own.
                if s.will_panic() {
                    return;
                }
            }
            and_then(s);
        });
    }
}

/// Did the CPU write `[offset, offset + len)` of region `live` (just found
/// under the same lock) while the device owned it?
fn check_cpu_takes(s: &mut State, cfg: &SimConfig, live: Live, offset: usize, len: usize) {
    s.tick(cfg);
    let (lo, hi) = (offset as u64, (offset + len) as u64);
    let device_owns_some = s
        .cpu_owned
        .get(&live.id)
        .is_none_or(|o| o.first_not_owned(lo, hi).is_some());
    if !live.cached || !device_owns_some || !cfg.detector_on() {
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
}

/// After the backend's sync for the CPU: nothing the device wrote may be
/// left un-invalidated.
fn check_cpu_took(s: &mut State, cfg: &SimConfig, key: (u64, u64), offset: usize, len: usize) {
    let Some(live) = s.live.get(&key).copied() else {
        return;
    };
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
        // A range the backend refuses anyway must not reach the shadow.
        dma_coherence::check_span(phys, len)?;
        let key = self.register(phys, len, Some(dir), true)?;
        let before = self.maintenance();
        // SAFETY: the caller's promise is passed on unchanged.
        match unsafe { self.inner.map(phys, len, dir, attrs) } {
            Ok(dma) => {
                self.mapped(key, dma, |s| s.maps += 1);
                let m = RawMapping {
                    phys,
                    dma,
                    len,
                    dir,
                    attrs,
                };
                self.check_maintained(&m, SyncPoint::ForDevice, false, before);
                Ok(dma)
            }
            Err(e) => {
                self.refused(key);
                Err(e)
            }
        }
    }

    unsafe fn unmap(&self, mapping: &RawMapping) -> Result<()> {
        let key = self.cpu_takes(mapping, 0, mapping.len);
        let before = self.maintenance();
        // SAFETY: the caller's promise is passed on unchanged.
        let result = unsafe { self.inner.unmap(mapping) };
        if result.is_ok() {
            self.check_maintained(mapping, SyncPoint::ForCpu, false, before);
        }
        if let (Some(key), true) = (key, result.is_ok()) {
            let synced = (mapping.dir != DmaDirection::ToDevice).then_some((0, mapping.len));
            self.cpu_took(Some(key), synced, |s| {
                s.unregister(key);
                s.stats.unmaps += 1;
            });
        }
        result
    }

    unsafe fn sync_for_cpu(&self, mapping: &RawMapping, offset: usize, len: usize) {
        let key = self.cpu_takes(mapping, offset, len);
        let before = self.maintenance();
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.inner.sync_for_cpu(mapping, offset, len) };
        self.check_maintained(mapping, SyncPoint::ForCpu, true, before);
        self.cpu_took(key, Some((offset, len)), |s| {
            s.stats.syncs_for_cpu += 1;
            // The CPU owns the range now (an unmap needs no record: the
            // region ends).
            let live = key.and_then(|k| s.live.get(&k)).copied();
            if let Some(live) = live.filter(Live::owned_in_turns) {
                let (lo, hi) = (offset as u64, (offset + len) as u64);
                s.cpu_owned.entry(live.id).or_default().take(lo, hi);
            }
        });
    }

    unsafe fn sync_for_device(&self, mapping: &RawMapping, offset: usize, len: usize) {
        let before = self.maintenance();
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.inner.sync_for_device(mapping, offset, len) };
        self.check_maintained(mapping, SyncPoint::ForDevice, true, before);
        self.sim.machine.with(|s, cfg| {
            if let Some((_, live)) = self.find_live(s, mapping) {
                s.tick(cfg);
                let (lo, hi) = (offset as u64, (offset + len) as u64);
                if let Some(owned) = s.cpu_owned.get_mut(&live.id) {
                    owned.give(lo, hi);
                    if owned.is_empty() {
                        s.cpu_owned.remove(&live.id);
                    }
                }
            }
            s.stats.syncs_for_device += 1;
        });
    }

    fn cpu_access(&self, mapping: &RawMapping, offset: usize, len: usize, access: CpuAccess) {
        self.inner.cpu_access(mapping, offset, len, access);
        self.sim.machine.with(|s, cfg| {
            if !cfg.detector_on() || len == 0 {
                return;
            }
            let Some((_, live)) = self.find_live(s, mapping) else {
                return;
            };
            if !live.owned_in_turns() {
                return;
            }
            let (lo, hi) = (offset as u64, (offset + len) as u64);
            let not_owned = match s.cpu_owned.get(&live.id) {
                Some(owned) => owned.first_not_owned(lo, hi),
                None => Some(lo),
            };
            let Some(at) = not_owned else {
                return;
            };
            let line = s.shadow.line_size();
            let finding = Finding::span(live.phys + at, live.phys + hi, line);
            let kind = match access {
                CpuAccess::Read => ReportKind::CpuReadDeviceOwned,
                CpuAccess::Write => ReportKind::CpuWroteDeviceOwned,
            };
            s.report(cfg, kind, finding, None, Some(live.info()));
        });
    }

    unsafe fn map_sg(
        &self,
        entries: &mut [SgEntry],
        dir: DmaDirection,
        attrs: DmaAttrs,
    ) -> Result<()> {
        for e in entries.iter() {
            dma_coherence::check_span(e.phys, e.len)?;
        }
        let mut keys = Vec::with_capacity(entries.len());
        for e in entries.iter() {
            match self.register(e.phys, e.len, Some(dir), true) {
                Ok(k) => keys.push(k),
                Err(err) => {
                    for k in keys {
                        self.refused(k);
                    }
                    return Err(err);
                }
            }
        }
        // SAFETY: the caller's promise is passed on unchanged.
        match unsafe { self.inner.map_sg(entries, dir, attrs) } {
            Ok(()) => {
                for (k, e) in keys.iter().zip(entries.iter()) {
                    self.mapped(*k, e.dma, |s| s.maps += 1);
                }
                Ok(())
            }
            Err(err) => {
                for k in keys {
                    self.refused(k);
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
        for e in entries.iter() {
            dma_coherence::check_span(e.phys, e.len)?;
        }
        let keys: Vec<_> = entries
            .iter()
            .map(|e| self.cpu_takes(&e.as_raw(dir, attrs), 0, e.len))
            .collect();
        // SAFETY: the caller's promise is passed on unchanged.
        let result = unsafe { self.inner.unmap_sg(entries, dir, attrs) };
        for (k, e) in keys.into_iter().zip(entries) {
            if let Some(k) = k {
                let synced = (dir != DmaDirection::ToDevice).then_some((0, e.len));
                self.cpu_took(Some(k), synced, |s| {
                    s.unregister(k);
                    s.stats.unmaps += 1;
                });
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
        let host = region.cpu.as_ptr().expose_provenance() as u64;
        let (phys, cached) = self.sim.machine.with(|s, _| {
            let phys = s.phys.to_sim(host, region.size as u64);
            let cached = phys
                .and_then(|p| s.allocations.get(&p))
                .is_none_or(|(_, c, _)| *c == Cacheability::Cached);
            (phys, cached)
        });
        let registered = phys
            .ok_or(Error::new(
                ErrorKind::NotContiguous,
                "the backend's coherent memory is not sim memory (build it on Sim::memory())",
            ))
            .and_then(|p| self.register(PhysAddr::new(p), region.size, None, cached));
        let key = match registered {
            Ok(key) => key,
            Err(e) => {
                // SAFETY: just allocated by the backend, never handed out.
                unsafe { self.inner.free_coherent(region, attrs) }?;
                return Err(e);
            }
        };
        self.mapped(key, region.dma, |s| s.coherent_allocs += 1);
        self.sim.machine.with(|s, cfg| {
            let Some(live) = s.live.get(&key).copied() else {
                return;
            };
            // `register` keeps `cached` only on a non-coherent machine.
            if live.cached {
                let finding = Finding::span(live.phys, live.phys + live.len, s.shadow.line_size());
                let kind = ReportKind::CacheableCoherentMemory;
                s.report(cfg, kind, finding, None, Some(live.info()));
            }
        });
        Ok(region)
    }

    unsafe fn free_coherent(&self, region: CoherentRegion, attrs: DmaAttrs) -> Result<()> {
        let host = region.cpu.as_ptr().expose_provenance() as u64;
        self.sim.machine.with(|s, _| {
            let Some(phys) = s.phys.to_sim(host, region.size as u64) else {
                return;
            };
            let found = s.find(self.device, phys, region.size as u64, region.dma.as_u64());
            if let Some((key, _)) = found {
                s.unregister(key);
                s.stats.coherent_frees += 1;
            }
        });
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { self.inner.free_coherent(region, attrs) }
    }
}
