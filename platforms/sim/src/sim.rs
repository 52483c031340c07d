//! The public handle on a simulated machine.

use std::sync::Arc;

use dma_coherence::HardwareCoherent;
use dma_core::{DeviceConstraints, DmaAlloc, DmaMap, PhysAddr, Result};
use dma_direct::{BusOffset, DirectPlatform};

use crate::iommu::Iotlb;
use crate::machine::{DeviceEntry, Machine, Translation};
use crate::{Bus, DeviceId, Fault, Report, SimCache, SimConfig, SimMemory, SimPlatform};

/// Counters for everything the machine did, for demo tables and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Streaming mappings made through [`SimPlatform`]s (sg entries count one each).
    pub maps: u64,
    /// Streaming mappings ended.
    pub unmaps: u64,
    /// `sync_for_device` calls.
    pub syncs_for_device: u64,
    /// `sync_for_cpu` calls.
    pub syncs_for_cpu: u64,
    /// Coherent allocations made.
    pub coherent_allocs: u64,
    /// Coherent allocations freed.
    pub coherent_frees: u64,
    /// Tracked lines cleaned by cache maintenance.
    pub lines_cleaned: u64,
    /// Tracked lines invalidated by cache maintenance.
    pub lines_invalidated: u64,
    /// Dirty lines written back by the evictor.
    pub lines_evicted: u64,
    /// Device read accesses that went through.
    pub device_reads: u64,
    /// Device write accesses that went through.
    pub device_writes: u64,
    /// Bytes devices read.
    pub bytes_read: u64,
    /// Bytes devices wrote.
    pub bytes_written: u64,
    /// IOMMU table walks.
    pub iommu_walks: u64,
    /// IOTLB hits.
    pub iotlb_hits: u64,
    /// Refused device accesses.
    pub faults: u64,
    /// Detector reports.
    pub reports: u64,
    /// Pages allocated from [`SimMemory`].
    pub pages_allocated: u64,
}

/// A simulated machine. Cheap to clone: every clone is the same machine.
///
/// ```
/// use dma_core::{DeviceConstraints, DmaBuf, FromDevice, StreamingMapping};
/// use dma_sim::{Sim, SimConfig};
///
/// let sim = Sim::new(SimConfig::non_coherent().seed(3))?;
/// let dev = sim.add_device("dma0");
/// let platform = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
/// // A buffer the device writes owns its cache lines whole.
/// let buf = DmaBuf::for_device(&platform, 256)?;
/// let mut rx = StreamingMapping::<_, FromDevice, _>::map(&platform, buf)
///     .map_err(|e| e.error)?;
/// sim.bus(dev).write(rx.dma_addr(), &[0xab; 256])?; // the device writes RAM
/// rx.sync_for_cpu();                                // the CPU invalidates
/// assert_eq!(rx.unmap()?[..], [0xab; 256]);
/// assert!(sim.reports().is_empty());
/// # Ok::<(), dma_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Sim {
    pub(crate) machine: Arc<Machine>,
}

impl core::fmt::Debug for Sim {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sim")
            .field("config", &self.machine.config)
            .finish_non_exhaustive()
    }
}

/// The coherent preset's platform (x86-like): the real direct backend
/// with no cache maintenance, on sim memory.
pub type CoherentPlatform = SimPlatform<DirectPlatform<SimMemory, HardwareCoherent>>;

/// The non-coherent preset's platform (ARM-like): the real direct backend
/// doing its own cache maintenance through the sim's cache model.
pub type NonCoherentPlatform = SimPlatform<DirectPlatform<SimMemory, SimCache>>;

impl Sim {
    /// Builds a machine.
    ///
    /// The environment variable [`SEED_VAR`](crate::SEED_VAR), when set to
    /// a number, replaces the configured seed: it is how the command a
    /// failing report prints replays the run.
    ///
    /// # Errors
    ///
    /// [`InvalidConstraints`](dma_core::ErrorKind::InvalidConstraints) for a
    /// line size other than 32, 64 or 128, or an eviction chance above 1000.
    pub fn new(config: SimConfig) -> Result<Self> {
        let config = match crate::replay::forced_seed() {
            Some(seed) => config.seed(seed),
            None => config,
        };
        config.validate()?;
        Ok(Self {
            machine: Machine::new(config),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> SimConfig {
        self.machine.config
    }

    /// The machine's physical memory (implements [`dma_core::PhysMemory`]).
    pub fn memory(&self) -> SimMemory {
        SimMemory { sim: self.clone() }
    }

    /// The machine's CPU cache (implements
    /// [`dma_coherence::CacheMaintenance`]); coherent on a coherent machine.
    pub fn cache(&self) -> SimCache {
        SimCache { sim: self.clone() }
    }

    /// Adds a device with direct (identity) addressing.
    pub fn add_device(&self, name: &str) -> DeviceId {
        self.add_device_with(name, Translation::Direct(BusOffset::IDENTITY))
    }

    /// Adds a device with the given translation.
    pub fn add_device_with(&self, name: &str, translation: Translation) -> DeviceId {
        self.machine.with(|s, _| {
            s.devices.push(DeviceEntry {
                name: name.to_owned(),
                translation,
                iotlb: Iotlb::default(),
                injected_faults: 0,
                injected_skip: 0,
            });
            DeviceId(s.devices.len() as u32 - 1)
        })
    }

    /// Changes a device's translation (e.g. once its IOMMU tables exist),
    /// dropping its IOTLB.
    ///
    /// # Panics
    ///
    /// If `device` does not belong to this machine.
    pub fn set_translation(&self, device: DeviceId, translation: Translation) {
        self.machine.with(|s, _| {
            let d = &mut s.devices[device.0 as usize];
            d.translation = translation;
            d.iotlb.invalidate_all();
        });
    }

    /// The device's name.
    ///
    /// # Panics
    ///
    /// If `device` does not belong to this machine.
    pub fn device_name(&self, device: DeviceId) -> String {
        self.machine
            .with(|s, _| s.devices[device.0 as usize].name.clone())
    }

    /// The device's port onto the machine's memory.
    pub fn bus(&self, device: DeviceId) -> Bus {
        Bus {
            sim: self.clone(),
            device,
        }
    }

    /// Wraps any platform serving `device` so the machine knows what the
    /// device may reach (see [`SimPlatform`]).
    pub fn attach<P: DmaMap + DmaAlloc>(&self, device: DeviceId, platform: P) -> SimPlatform<P> {
        SimPlatform {
            sim: self.clone(),
            device,
            inner: platform,
        }
    }

    /// The coherent preset: `DirectPlatform::x86_coherent` on sim memory.
    /// Meant for a coherent machine; on a non-coherent one it is the bug of
    /// a driver that assumes coherence, and the detector says so.
    pub fn coherent_platform(
        &self,
        device: DeviceId,
        constraints: DeviceConstraints,
    ) -> CoherentPlatform {
        self.attach(
            device,
            DirectPlatform::x86_coherent(self.memory(), constraints),
        )
    }

    /// The non-coherent preset: `DirectPlatform` with the sim's cache as
    /// its maintenance policy, so the direct backend's own sync logic is
    /// what runs. On a coherent machine the cache reports itself coherent
    /// and this behaves as the coherent preset.
    pub fn non_coherent_platform(
        &self,
        device: DeviceId,
        constraints: DeviceConstraints,
    ) -> NonCoherentPlatform {
        self.attach(
            device,
            DirectPlatform::new(
                self.memory(),
                self.cache(),
                BusOffset::IDENTITY,
                constraints,
            ),
        )
    }

    /// Every report so far.
    pub fn reports(&self) -> Vec<Report> {
        self.machine.with(|s, _| s.reports.clone())
    }

    /// Takes the reports, leaving none.
    pub fn take_reports(&self) -> Vec<Report> {
        self.machine.with(|s, _| std::mem::take(&mut s.reports))
    }

    /// Every refused device access so far.
    pub fn faults(&self) -> Vec<Fault> {
        self.machine.with(|s, _| s.faults.clone())
    }

    /// Takes the faults, leaving none.
    pub fn take_faults(&self) -> Vec<Fault> {
        self.machine.with(|s, _| std::mem::take(&mut s.faults))
    }

    /// The counters.
    pub fn stats(&self) -> SimStats {
        self.machine.with(|s, _| s.stats)
    }

    /// How many mappings and allocations devices can currently reach.
    pub fn live_regions(&self) -> usize {
        self.machine.with(|s, _| s.live.len())
    }

    /// Makes the device's next `count` accesses fault
    /// ([`FaultKind::Injected`](crate::FaultKind::Injected)); nothing of them
    /// reaches memory.
    ///
    /// # Panics
    ///
    /// If `device` does not belong to this machine.
    pub fn inject_faults(&self, device: DeviceId, count: u32) {
        self.inject_faults_after(device, 0, count);
    }

    /// Lets the device's next `skip` accesses through, then makes `count`
    /// fault (to hit, say, a data transfer rather than the command fetch
    /// before it).
    ///
    /// # Panics
    ///
    /// If `device` does not belong to this machine.
    pub fn inject_faults_after(&self, device: DeviceId, skip: u32, count: u32) {
        self.machine.with(|s, _| {
            let d = &mut s.devices[device.0 as usize];
            d.injected_skip = skip;
            d.injected_faults = count;
        });
    }

    /// Drops the device's whole IOTLB.
    ///
    /// # Panics
    ///
    /// If `device` does not belong to this machine.
    pub fn iotlb_invalidate_all(&self, device: DeviceId) {
        self.machine
            .with(|s, _| s.devices[device.0 as usize].iotlb.invalidate_all());
    }

    /// Drops the device's IOTLB entries for `[iova, iova + len)`.
    ///
    /// # Panics
    ///
    /// If `device` does not belong to this machine.
    pub fn iotlb_invalidate(&self, device: DeviceId, iova: u64, len: u64) {
        self.machine
            .with(|s, _| s.devices[device.0 as usize].iotlb.invalidate(iova, len));
    }

    /// Lets time pass: the evictor gets one chance, as at any sim event.
    pub fn tick(&self) {
        self.machine.with(|s, cfg| s.tick(cfg));
    }

    /// Writes back every dirty tracked line, as if the whole cache were
    /// evicted now (reports lines that overwrite device data).
    pub fn evict_all(&self) {
        self.machine.with(|s, cfg| s.evict_all(cfg));
    }

    /// Number of pages the cache model holds shadows for (0 when nothing
    /// cached is live: tests use it to check nothing leaks).
    pub fn shadow_pages(&self) -> usize {
        self.machine.with(|s, _| s.shadow.pages())
    }

    /// The physical address of a [`SimMemory`] allocation holding `addr`,
    /// if any (tests use it to check table placement).
    pub fn is_sim_memory(&self, addr: PhysAddr) -> bool {
        self.machine.with(|s, _| {
            s.allocations
                .range(..=addr.as_u64())
                .next_back()
                .is_some_and(|(b, (l, _, _))| addr.as_u64() < b + l)
        })
    }
}
