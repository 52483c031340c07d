//! The simulated machine: its memory state, devices, reports and faults,
//! behind one lock shared by the CPU-side handles (memory, cache, platform
//! wrappers) and the device-side ports.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use dma_core::{Cacheability, CpuOwned, DmaAddr, DmaDirection, PhysAddr};
use dma_direct::BusOffset;

use crate::iommu::{self, Iotlb};
use crate::physmap::PhysMap;
use crate::report::{RegionInfo, Report, ReportKind};
use crate::rng::SplitMix64;
use crate::shadow::{Finding, PageHasher, Shadow};
use crate::sorted::SortedMap;
use crate::xlate::Published;
use crate::{host, Access, DeviceId, Fault, FaultKind, SimConfig, SimStats};

/// How a device's addresses reach physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    /// No IOMMU: device address = physical address through a fixed bus
    /// offset ([`BusOffset::IDENTITY`] on the presets).
    Direct(BusOffset),
    /// Behind the sim's IOMMU: tables of `regime` rooted at this physical
    /// address (the table must lie in [`SimMemory`](crate::SimMemory)).
    Iommu {
        /// Physical address of the initial table.
        root: PhysAddr,
        /// Granule, input size, stage and initial level of the walk.
        regime: iommu::Regime,
    },
    /// Every access is refused (an IOMMU stream with no context attached).
    Blocked,
}

/// A mapping or allocation a device may currently reach.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Live {
    pub(crate) id: u64,
    pub(crate) device: DeviceId,
    /// The sim physical address.
    pub(crate) phys: u64,
    /// Where its bytes are in host memory.
    pub(crate) host: u64,
    pub(crate) len: u64,
    pub(crate) dma: u64,
    pub(crate) dir: Option<DmaDirection>,
    /// Goes through the cache model.
    pub(crate) cached: bool,
    /// The machine's clock when it became live.
    pub(crate) mapped_at: u64,
}

impl Live {
    fn end(&self) -> u64 {
        self.phys + self.len
    }

    pub(crate) fn info(&self) -> RegionInfo {
        RegionInfo {
            id: self.id,
            device: self.device,
            phys: PhysAddr::new(self.phys),
            dma: DmaAddr::new(self.dma),
            len: self.len as usize,
            dir: self.dir,
            mapped_at: self.mapped_at,
            unmapped_at: None,
        }
    }

    /// A streaming mapping the device may write, whose ownership moves
    /// with the syncs (a `ToDevice` one has no `sync_for_cpu`: the CPU may
    /// write it between transfers and the clean checks catch a missing
    /// `sync_for_device`).
    pub(crate) fn owned_in_turns(&self) -> bool {
        matches!(
            self.dir,
            Some(DmaDirection::FromDevice | DmaDirection::Bidirectional)
        )
    }
}

pub(crate) struct DeviceEntry {
    pub(crate) name: String,
    pub(crate) translation: Translation,
    pub(crate) iotlb: Iotlb,
    pub(crate) injected_faults: u32,
    /// Accesses to let through before the injected faults start.
    pub(crate) injected_skip: u32,
}

/// One piece of a device access after translation.
#[derive(Clone, Copy)]
struct Chunk {
    phys: u64,
    host: u64,
    len: usize,
    cached: bool,
    key: (u64, u64),
    /// Where the chunk starts within its region.
    offset: u64,
    /// The region's ownership moves with the syncs.
    in_turns: bool,
    id: u64,
}

pub(crate) struct State {
    pub(crate) rng: SplitMix64,
    pub(crate) shadow: Shadow,
    /// Keyed by (phys, id).
    pub(crate) live: SortedMap<(u64, u64), Live>,
    max_live_len: u64,
    /// Cached regions in the order they became live: the evictor picks its
    /// victims here, so its choices depend on the seed and the sequence of
    /// events, never on where the allocator placed buffers.
    cached: Vec<(u64, u64, u64)>,
    pub(crate) devices: Vec<DeviceEntry>,
    /// SimMemory allocations: phys -> (bytes, cacheability, host address).
    pub(crate) allocations: BTreeMap<u64, (u64, Cacheability, u64)>,
    /// Where host memory lies in the machine's physical address space.
    pub(crate) phys: PhysMap,
    pub(crate) reports: Vec<Report>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) stats: SimStats,
    next_id: u64,
    panic: Option<String>,
    scratch: Vec<Chunk>,
    /// The region a map is making live, while its host bytes are known to
    /// equal the cache model's (see [`Shadow::clean_unchanged`]): set by
    /// `register`, taken by the backend's clean, dropped when the map
    /// returns.
    pub(crate) filled: Option<(u64, u64)>,
    /// The CPU-owned ranges of streaming mappings, by region id; a region
    /// not in it is wholly the device's.
    pub(crate) cpu_owned: HashMap<u64, CpuOwned, BuildHasherDefault<PageHasher>>,
    /// Counts maps, unmaps, allocations and frees: the "when" of a
    /// region's history in reports.
    pub(crate) clock: u64,
    /// Regions that stopped being live, newest last, with the clock then:
    /// a fault names the one that last held its address.
    retired: VecDeque<(Live, u64)>,
    /// The last answer of [`find`](Self::find) (a sync and the unmap
    /// after it ask about the same region); cleared whenever `live`
    /// changes, so it is always the answer a search would give.
    found: Cell<Option<((u64, u64), Live)>>,
}

/// How many ended regions the machine remembers for fault reports.
const RETIRED: usize = 256;

pub(crate) struct Machine {
    pub(crate) config: SimConfig,
    state: Mutex<State>,
    /// Cache maintenance operations that reached the cache model: a sync
    /// that should have cleaned or invalidated and did not move it means
    /// the platform is configured coherent for a device that does not
    /// snoop. Outside the lock so that checking it costs no lock.
    pub(crate) maintenance: AtomicU64,
    /// The physical map's last extent, for translations without the lock
    /// (`SimMemory::phys_to_virt`).
    pub(crate) xlate: Arc<Published>,
}

impl Machine {
    pub(crate) fn new(config: SimConfig) -> Arc<Self> {
        let phys = PhysMap::new(config.seed_value(), config.line());
        Arc::new(Self {
            config,
            maintenance: AtomicU64::new(0),
            xlate: phys.published(),
            state: Mutex::new(State {
                rng: SplitMix64::new(config.seed_value()),
                shadow: Shadow::new(config.line()),
                live: SortedMap::new(),
                max_live_len: 0,
                cached: Vec::new(),
                devices: Vec::new(),
                allocations: BTreeMap::new(),
                phys,
                reports: Vec::new(),
                faults: Vec::new(),
                stats: SimStats::default(),
                next_id: 1,
                panic: None,
                scratch: Vec::new(),
                filled: None,
                cpu_owned: HashMap::default(),
                clock: 0,
                retired: VecDeque::new(),
                found: Cell::new(None),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (a report made into a panic is
        // raised after unlocking, so only a sim bug) leaves consistent
        // state: every mutation completes before anything can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the state; raises a pending report panic after unlocking.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State, &SimConfig) -> R) -> R {
        let mut guard = self.lock();
        let r = f(&mut guard, &self.config);
        // Tested in place: the usual answer (no report to raise) moves
        // nothing.
        if guard.panic.is_none() {
            return r;
        }
        let message = guard.panic.take();
        drop(guard);
        self.raise(message);
        r
    }

    /// Raises a report recorded as a panic, after the lock was dropped.
    #[cold]
    #[inline(never)]
    fn raise(&self, message: Option<String>) {
        let Some(message) = message else {
            return;
        };
        if std::thread::panicking() {
            // Already unwinding (a mapping dropped during a report's
            // panic): the report is recorded; a second panic would abort.
            return;
        }
        panic!(
            "dma-sim report: {message}\n{}",
            crate::replay::command(self.config.seed_value())
        );
    }
}

impl State {
    /// Reports `finding` (nothing when it found nothing, the usual answer,
    /// which this inlined test settles without a call).
    #[inline]
    pub(crate) fn report(
        &mut self,
        cfg: &SimConfig,
        kind: ReportKind,
        finding: Finding,
        device: Option<DeviceId>,
        region: Option<RegionInfo>,
    ) {
        let Some(first) = finding.first else {
            return;
        };
        if !cfg.detector_on() {
            return;
        }
        self.report_found(cfg, kind, first, finding.count, device, region);
    }

    /// [`report`](Self::report) of a finding whose first line is `first`.
    #[inline(never)]
    fn report_found(
        &mut self,
        cfg: &SimConfig,
        kind: ReportKind,
        first: u64,
        count: usize,
        device: Option<DeviceId>,
        region: Option<RegionInfo>,
    ) {
        let region = region.or_else(|| self.live_overlapping(first, 1).map(|l| l.info()));
        self.push_report(
            cfg,
            Report {
                kind,
                region,
                device,
                line: PhysAddr::new(first),
                lines: count,
                fault: None,
            },
        );
    }

    /// Records a report, made into a panic when so configured.
    fn push_report(&mut self, cfg: &SimConfig, report: Report) {
        self.stats.reports += 1;
        if cfg.panics() && self.panic.is_none() {
            self.panic = Some(report.to_string());
        }
        self.reports.push(report);
    }

    /// Whether a report recorded under this lock will panic once it drops.
    pub(crate) fn will_panic(&self) -> bool {
        self.panic.is_some() && !std::thread::panicking()
    }

    /// Takes the oldest recorded fault of `device`.
    pub(crate) fn take_fault_of(&mut self, device: DeviceId) -> Option<Fault> {
        let i = self.faults.iter().position(|f| f.device == device)?;
        Some(self.faults.remove(i))
    }

    /// Records a refused access; unless a test injected it, it is also a
    /// report naming the region that holds, last held or lies nearest to
    /// the address.
    fn fault(&mut self, cfg: &SimConfig, fault: Fault) -> Fault {
        self.stats.faults += 1;
        self.faults.push(fault);
        if fault.kind != FaultKind::Injected {
            let region = self.region_near(fault.device, fault.addr.as_u64());
            self.push_report(
                cfg,
                Report {
                    kind: ReportKind::DeviceFault,
                    region,
                    device: Some(fault.device),
                    line: PhysAddr::new(fault.addr.as_u64()),
                    lines: 1,
                    fault: Some(fault),
                },
            );
        }
        fault
    }

    /// The region of `device` a fault at device address `dma` is about:
    /// the live one holding it, else the most recently ended one that held
    /// it (use after unmap), else the live one nearest to it (an overrun),
    /// else the most recently ended one nearest to it.
    fn region_near(&self, device: DeviceId, dma: u64) -> Option<RegionInfo> {
        let holds = |l: &Live| l.dma <= dma && dma - l.dma < l.len;
        let distance = |l: &Live| {
            if dma < l.dma {
                l.dma - dma
            } else {
                (dma - l.dma).saturating_sub(l.len - 1)
            }
        };
        let live = || self.live.values().filter(|l| l.device == device);
        let retired = || {
            self.retired
                .iter()
                .rev()
                .filter(|(l, _)| l.device == device)
        };
        let ended = |(l, at): &(Live, u64)| RegionInfo {
            unmapped_at: Some(*at),
            ..l.info()
        };
        live()
            .find(|l| holds(l))
            .map(Live::info)
            .or_else(|| retired().find(|(l, _)| holds(l)).map(ended))
            .or_else(|| live().min_by_key(|l| distance(l)).map(Live::info))
            .or_else(|| retired().min_by_key(|(l, _)| distance(l)).map(ended))
    }

    /// Any live region overlapping `[addr, addr + len)`.
    pub(crate) fn live_overlapping(&self, addr: u64, len: u64) -> Option<Live> {
        let end = addr.saturating_add(len);
        self.live
            .range(..(end, 0))
            .rev()
            .take_while(|(k, _)| k.0.saturating_add(self.max_live_len) > addr)
            .map(|(_, l)| *l)
            .find(|l| l.phys < end && l.end() > addr)
    }

    /// The live region of `device` holding byte `addr`.
    fn live_for(&self, device: DeviceId, addr: u64) -> Option<(&(u64, u64), &Live)> {
        self.live
            .range(..=(addr, u64::MAX))
            .rev()
            .take_while(|(k, _)| k.0.saturating_add(self.max_live_len) > addr)
            .find(|(_, l)| l.device == device && l.phys <= addr && addr < l.end())
    }

    pub(crate) fn register(&mut self, cfg: &SimConfig, mut live: Live) -> (u64, u64) {
        live.id = self.next_id;
        self.next_id += 1;
        self.clock += 1;
        live.mapped_at = self.clock;
        live.cached &= !cfg.is_coherent();
        self.filled = None;
        if live.cached {
            // SAFETY: the region is being made live: its owner vouched that
            // it is allocated for as long as it is live.
            if unsafe { self.shadow.track(live.phys, live.host, live.len) } {
                self.filled = Some((live.phys, live.len));
            }
            self.cached.push((live.id, live.phys, live.len));
        }
        self.max_live_len = self.max_live_len.max(live.len);
        self.found.set(None);
        self.phys.count_live(live.phys, 1);
        let key = (live.phys, live.id);
        self.live.insert(key, live);
        key
    }

    pub(crate) fn unregister(&mut self, key: (u64, u64)) -> Option<Live> {
        self.filled = None;
        let live = self.live.remove(&key)?;
        self.found.set(None);
        self.phys.count_live(live.phys, -1);
        self.clock += 1;
        self.cpu_owned.remove(&live.id);
        if self.retired.len() == RETIRED {
            self.retired.pop_front();
        }
        self.retired.push_back((live, self.clock));
        if live.cached {
            if let Some(i) = self.cached.iter().position(|c| c.0 == live.id) {
                self.cached.swap_remove(i);
            }
            let line = self.shadow.line_size();
            // Regions sharing a line with this one start at most a line
            // past its end and at most the longest region before it.
            let from = live.phys.saturating_sub(line + self.max_live_len);
            let others: Vec<Live> = self
                .live
                .range((from, 0)..(live.end() + line, 0))
                .map(|(_, l)| l)
                .filter(|l| l.cached && l.phys < live.end() + line && l.end() + line > live.phys)
                .copied()
                .collect();
            self.shadow.untrack(live.phys, live.len, |l| {
                let mut mask = 0u128;
                for o in &others {
                    let lo = o.phys.max(l);
                    let hi = o.end().min(l + line);
                    if lo < hi {
                        let (a, b) = ((lo - l) as usize, (hi - l) as usize);
                        mask |= if b - a >= 128 {
                            u128::MAX
                        } else {
                            ((1u128 << (b - a)) - 1) << a
                        };
                    }
                }
                mask
            });
        }
        Some(live)
    }

    /// Finds a live region by exact description.
    pub(crate) fn find(
        &self,
        device: DeviceId,
        phys: u64,
        len: u64,
        dma: u64,
    ) -> Option<((u64, u64), Live)> {
        let matches =
            |l: &Live| l.device == device && l.phys == phys && l.len == len && l.dma == dma;
        if let Some(hit) = self.found.get().filter(|(_, l)| matches(l)) {
            return Some(hit);
        }
        let hit = self
            .live
            .range((phys, 0)..=(phys, u64::MAX))
            .find(|(_, l)| matches(l))
            .map(|(k, l)| (*k, *l));
        if hit.is_some() {
            self.found.set(hit);
        }
        hit
    }

    /// Sets the device address of a region the backend just mapped.
    pub(crate) fn set_dma(&mut self, key: (u64, u64), dma: u64) {
        self.found.set(None);
        if let Some(l) = self.live.get_mut(&key) {
            l.dma = dma;
            self.phys.mapped(l.phys);
        }
    }

    /// Gives the evictor its chance: the draw is inlined at every call
    /// site, the eviction (about one draw in four) is out of line.
    #[inline]
    pub(crate) fn tick(&mut self, cfg: &SimConfig) {
        if cfg.is_coherent() || cfg.eviction() == 0 || !self.rng.chance(cfg.eviction()) {
            return;
        }
        self.evict_one(cfg);
    }

    /// The evictor's turn after a draw that chose to evict.
    #[inline(never)]
    fn evict_one(&mut self, cfg: &SimConfig) {
        if self.cached.is_empty() {
            return;
        }
        let (_, phys, len) = self.cached[self.rng.below(self.cached.len() as u64) as usize];
        let addr = phys + self.rng.below(len);
        // SAFETY: every tracked byte belongs to a live region, whose memory
        // stays allocated while it is live (the platform contract).
        let (dirty, over) = unsafe { self.shadow.evict(addr) };
        if dirty {
            self.stats.lines_evicted += 1;
            let line = addr & !(self.shadow.line_size() - 1);
            if over {
                let finding = Finding {
                    first: Some(line),
                    count: 1,
                };
                self.report(
                    cfg,
                    ReportKind::DirtyWritebackOverDeviceData,
                    finding,
                    None,
                    None,
                );
            }
        }
    }

    /// Writes back every dirty tracked line (a full cache flush by
    /// eviction), reporting lines that overwrite device data.
    pub(crate) fn evict_all(&mut self, cfg: &SimConfig) {
        let regions: Vec<Live> = self.live.values().filter(|l| l.cached).copied().collect();
        for r in regions {
            // SAFETY: the region is live, so its tracked bytes are.
            let out = unsafe { self.shadow.clean_by_eviction(r.phys, r.len) };
            self.stats.lines_evicted += out.lines as u64;
            self.report(
                cfg,
                ReportKind::DirtyWritebackOverDeviceData,
                out.finding,
                None,
                Some(r.info()),
            );
        }
    }

    fn translate(
        &mut self,
        device: DeviceId,
        dma: u64,
        access: Access,
    ) -> Result<(u64, u64), FaultKind> {
        let entry = &mut self.devices[device.0 as usize];
        match entry.translation {
            Translation::Direct(bus) => {
                let off = dma
                    .checked_sub(bus.dma_base.as_u64())
                    .ok_or(FaultKind::NotMapped)?;
                let phys = bus
                    .phys_base
                    .as_u64()
                    .checked_add(off)
                    .ok_or(FaultKind::NotMapped)?;
                Ok((phys, u64::MAX))
            }
            Translation::Blocked => Err(FaultKind::Translation { level: 0 }),
            Translation::Iommu { root, regime } => {
                let page_off = dma % iommu::GRANULE;
                let leaf = match entry.iotlb.lookup(dma) {
                    Some(leaf) => {
                        self.stats.iotlb_hits += 1;
                        leaf
                    }
                    None => {
                        self.stats.iommu_walks += 1;
                        let allocations = &self.allocations;
                        let leaf = iommu::walk_regime(&regime, root.as_u64(), dma, access, |a| {
                            read_table_word(allocations, a)
                        })?;
                        self.devices[device.0 as usize].iotlb.insert(dma, leaf);
                        leaf
                    }
                };
                let allowed = match access {
                    Access::Read => leaf.readable,
                    Access::Write => leaf.writable,
                };
                if !allowed {
                    return Err(FaultKind::Permission { level: leaf.level });
                }
                Ok((leaf.page + page_off, iommu::GRANULE - page_off))
            }
        }
    }

    /// Translates and checks a whole access; nothing is touched unless all
    /// of it is allowed.
    fn plan(
        &mut self,
        cfg: &SimConfig,
        device: DeviceId,
        dma: u64,
        len: usize,
        access: Access,
    ) -> Result<(), Fault> {
        let mut chunks = std::mem::take(&mut self.scratch);
        chunks.clear();
        let mut done = 0usize;
        let result = loop {
            if done == len {
                break Ok(());
            }
            let addr = dma.wrapping_add(done as u64);
            let fault = |kind| Fault {
                device,
                addr: DmaAddr::new(addr),
                access,
                kind,
            };
            let (phys, room) = match self.translate(device, addr, access) {
                Ok(t) => t,
                Err(kind) => break Err(fault(kind)),
            };
            let Some((&key, live)) = self.live_for(device, phys) else {
                break Err(fault(FaultKind::NotMapped));
            };
            if access == Access::Write && live.dir == Some(DmaDirection::ToDevice) {
                break Err(fault(FaultKind::ReadOnlyMapping));
            }
            let n = ((len - done) as u64).min(room).min(live.end() - phys) as usize;
            chunks.push(Chunk {
                phys,
                host: live.host + (phys - live.phys),
                len: n,
                cached: live.cached,
                key,
                offset: phys - live.phys,
                in_turns: live.owned_in_turns(),
                id: live.id,
            });
            done += n;
        };
        self.scratch = chunks;
        result.map_err(|f| self.fault(cfg, f))
    }

    /// A device read of lines never cleaned since they became mappable
    /// (coherent memory the CPU caches is the wrong attribute instead).
    fn check_never_cleaned(&mut self, cfg: &SimConfig, device: DeviceId, c: &Chunk) {
        let finding = self.shadow.never_cleaned(c.phys, c.len as u64);
        if finding.first.is_none() {
            return;
        }
        let region = self.live.get(&c.key).map(|l| l.info());
        let kind = if region.is_some_and(|r| r.dir.is_none()) {
            ReportKind::CacheableCoherentMemory
        } else {
            ReportKind::DeviceReadNeverCleaned
        };
        self.report(cfg, kind, finding, Some(device), region);
    }

    /// A device access to bytes of a streaming mapping the CPU owns at the
    /// moment (taken by `sync_for_cpu`, not yet handed back).
    /// Returns whether it reported.
    fn check_device_owns(&mut self, cfg: &SimConfig, device: DeviceId, c: &Chunk) -> bool {
        if !c.in_turns || !cfg.detector_on() {
            return false;
        }
        let Some(owned) = self.cpu_owned.get(&c.id) else {
            return false;
        };
        let Some(at) = owned.first_owned(c.offset, c.offset + c.len as u64) else {
            return false;
        };
        let line = self.shadow.line_size();
        let finding = Finding::span(c.phys - c.offset + at, c.phys + c.len as u64, line);
        let region = self.live.get(&c.key).map(|l| l.info());
        self.report(
            cfg,
            ReportKind::DeviceAccessCpuOwned,
            finding,
            Some(device),
            region,
        );
        true
    }

    /// A device access: translate, check, then move the bytes through the
    /// device's view of memory.
    pub(crate) fn device_access(
        &mut self,
        cfg: &SimConfig,
        device: DeviceId,
        dma: u64,
        mut data: DeviceData<'_>,
    ) -> Result<(), Fault> {
        self.tick(cfg);
        let len = data.len();
        let access = data.access();
        let entry = &mut self.devices[device.0 as usize];
        if entry.injected_faults > 0 && entry.injected_skip > 0 {
            entry.injected_skip -= 1;
        } else if entry.injected_faults > 0 {
            entry.injected_faults -= 1;
            let f = Fault {
                device,
                addr: DmaAddr::new(dma),
                access,
                kind: FaultKind::Injected,
            };
            return Err(self.fault(cfg, f));
        }
        if len == 0 {
            return Ok(());
        }
        self.plan(cfg, device, dma, len, access)?;
        let chunks = std::mem::take(&mut self.scratch);
        let mut pos = 0usize;
        for c in &chunks {
            let range = pos..pos + c.len;
            // Bytes the CPU owns may hold its writes legitimately: what is
            // missing is the hand-back, which this report's hint says, so
            // the clean checks below would only repeat it with the wrong fix.
            let cpu_owned = self.check_device_owns(cfg, device, c);
            if c.cached {
                if access == Access::Read && cfg.detector_on() {
                    self.check_never_cleaned(cfg, device, c);
                }
                // SAFETY: the chunk lies inside a live tracked region, so
                // its bytes (and every tracked byte) are live host memory.
                let finding = unsafe {
                    match &mut data {
                        DeviceData::Read(out) => {
                            self.shadow
                                .device_read(c.phys, &mut out[range], cfg.detector_on())
                        }
                        DeviceData::Write(src) => {
                            self.shadow
                                .device_write(c.phys, &src[range], cfg.detector_on())
                        }
                    }
                };
                if finding.first.is_some() && !cpu_owned {
                    let region = self.live.get(&c.key).map(|l| l.info());
                    let kind = match access {
                        // Coherent memory the CPU caches: the attributes are
                        // wrong, not a sync missing.
                        _ if region.is_some_and(|r| r.dir.is_none()) => {
                            ReportKind::CacheableCoherentMemory
                        }
                        Access::Read => ReportKind::DeviceReadUncleaned,
                        Access::Write => ReportKind::CpuWroteDeviceOwned,
                    };
                    self.report(cfg, kind, finding, Some(device), region);
                }
            } else {
                // SAFETY: the chunk lies inside a region live for this
                // device, whose memory stays allocated while live.
                unsafe {
                    match &mut data {
                        DeviceData::Read(out) => host::read(c.host, &mut out[range]),
                        DeviceData::Write(src) => host::write(c.host, &src[range]),
                    }
                }
            }
            pos += c.len;
        }
        self.scratch = chunks;
        match access {
            Access::Read => {
                self.stats.device_reads += 1;
                self.stats.bytes_read += len as u64;
            }
            Access::Write => {
                self.stats.device_writes += 1;
                self.stats.bytes_written += len as u64;
            }
        }
        Ok(())
    }
}

/// Reads a page-table word for the walker, from SimMemory allocations
/// only (anything else is an external abort on the walk). Table walks are
/// coherent (as with SMMU_IDR0.COHACC): they read the CPU's view.
fn read_table_word(
    allocations: &BTreeMap<u64, (u64, Cacheability, u64)>,
    addr: u64,
) -> Option<u64> {
    if addr % 8 != 0 {
        return None;
    }
    let (&base, &(len, _, host)) = allocations.range(..=addr).next_back()?;
    if addr + 8 > base + len {
        return None;
    }
    let mut word = [0u8; 8];
    // SAFETY: the 8 bytes lie inside a live SimMemory allocation.
    unsafe { host::read(host + (addr - base), &mut word) };
    Some(u64::from_le_bytes(word))
}

/// The bytes of one device access.
pub(crate) enum DeviceData<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl DeviceData<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Read(b) => b.len(),
            Self::Write(b) => b.len(),
        }
    }

    fn access(&self) -> Access {
        match self {
            Self::Read(_) => Access::Read,
            Self::Write(_) => Access::Write,
        }
    }
}
