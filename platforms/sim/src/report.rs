//! What the coherency-bug detector reports.

use core::fmt;

use dma_core::{DmaAddr, DmaDirection, PhysAddr};

use crate::{DeviceId, Fault, FaultKind};

/// Which live region a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionInfo {
    /// A number the sim gave the mapping or allocation, unique per machine.
    pub id: u64,
    /// The device it is mapped for.
    pub device: DeviceId,
    /// Its CPU physical address (a host address on the sim).
    pub phys: PhysAddr,
    /// Its device address.
    pub dma: DmaAddr,
    /// Its length in bytes.
    pub len: usize,
    /// A streaming mapping's direction; `None` for a coherent allocation.
    pub dir: Option<DmaDirection>,
    /// The machine's clock (it counts maps, unmaps, allocations and frees)
    /// when the region became live.
    pub mapped_at: u64,
    /// The clock when it stopped being live; `None` while it is live.
    pub unmapped_at: Option<u64>,
}

impl RegionInfo {
    /// Whether device address `dma` lies inside the region.
    pub fn holds(&self, dma: DmaAddr) -> bool {
        dma.as_u64()
            .checked_sub(self.dma.as_u64())
            .is_some_and(|off| off < self.len as u64)
    }
}

impl fmt::Display for RegionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "region #{} ({}, phys {:#x}, dma {:#x}, {} bytes, {}, mapped at clock {}",
            self.id,
            self.device,
            self.phys.as_u64(),
            self.dma.as_u64(),
            self.len,
            match self.dir {
                Some(DmaDirection::ToDevice) => "ToDevice",
                Some(DmaDirection::FromDevice) => "FromDevice",
                Some(DmaDirection::Bidirectional) => "Bidirectional",
                None => "coherent",
            },
            self.mapped_at,
        )?;
        match self.unmapped_at {
            Some(at) => write!(f, ", unmapped at clock {at})"),
            None => write!(f, ", live)"),
        }
    }
}

/// The class of coherency bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// The device read bytes the CPU wrote after the last clean: RAM held
    /// stale data. Missing: `sync_for_device` (clean) after the CPU wrote.
    DeviceReadUncleaned,
    /// At `sync_for_cpu` or unmap, a line the device wrote was still not
    /// invalidated: the CPU would read its stale cached copy. Missing:
    /// invalidate (`sync_for_cpu`, or an unmap without `SKIP_CPU_SYNC`).
    CpuReadNotInvalidated,
    /// The CPU wrote bytes of a region while the device owned it (found
    /// when the device wrote the line, or when the CPU took the region
    /// back). Wrong: touching a mapped buffer before `sync_for_cpu`.
    CpuWroteDeviceOwned,
    /// A dirty CPU line was written back over data the device had written
    /// and the CPU had not yet invalidated: the device's data is lost.
    /// Found at eviction (the line shares a cache line with CPU-written
    /// data: misaligned buffer) or at a clean (`sync_for_device` without
    /// `sync_for_cpu` first).
    DirtyWritebackOverDeviceData,
    /// The device read lines never cleaned since they became mappable: the
    /// CPU's writes before mapping may still sit in its cache. Missing: the
    /// map-time clean (mapped with `SKIP_CPU_SYNC`) or a `sync_for_device`.
    DeviceReadNeverCleaned,
    /// The CPU read bytes of a mapping through its safe accessor while the
    /// device owned them: before `sync_for_cpu`, or outside the range a
    /// `sync_range_for_cpu` gave back. It reads stale data.
    CpuReadDeviceOwned,
    /// The device read or wrote bytes of a mapping the CPU owned at that
    /// moment: after `sync_for_cpu`, before `sync_for_device` handed them
    /// back (a buffer reposted without the hand-back, or an overrun into a
    /// neighbour the CPU holds).
    DeviceAccessCpuOwned,
    /// The machine refused a device access (the [`Fault`] says how); the
    /// report names the region that holds, last held, or lies nearest to
    /// the address.
    DeviceFault,
    /// A sync that must clean or invalidate on this machine reached no
    /// cache maintenance: the platform is configured coherent for a device
    /// that does not snoop (a wrong `dma-coherent` in a device tree).
    PlatformSkipsMaintenance,
    /// Coherent memory the CPU maps cacheable on a machine whose device
    /// reads RAM: mismatched memory attributes (CPU and device disagree on
    /// what the memory holds).
    CacheableCoherentMemory,
}

impl ReportKind {
    /// The operation that was missing or wrong.
    pub const fn fix(self) -> &'static str {
        match self {
            Self::DeviceReadUncleaned => {
                "missing clean: call sync_for_device after the CPU writes and before the device reads"
            }
            Self::CpuReadNotInvalidated => {
                "missing invalidate: call sync_for_cpu (or unmap without SKIP_CPU_SYNC) before the CPU reads"
            }
            Self::CpuWroteDeviceOwned => {
                "wrong ownership: the CPU wrote bytes the device owned; write only between sync_for_cpu and sync_for_device"
            }
            Self::DirtyWritebackOverDeviceData => {
                "dirty line written back over device data: invalidate (sync_for_cpu) before writing, and align buffers to dma_alignment"
            }
            Self::DeviceReadNeverCleaned => {
                "missing clean at map time: map without SKIP_CPU_SYNC, or call sync_for_device before the device reads"
            }
            Self::CpuReadDeviceOwned => {
                "read before the device handed the bytes back: call sync_for_cpu (or a sync_range_for_cpu covering the read) after the device finished"
            }
            Self::DeviceAccessCpuOwned => {
                "the CPU owned these bytes: hand them back with sync_for_device before the device uses them again, and keep the device inside its buffer"
            }
            Self::DeviceFault => {
                "the device used an address no live mapping of it holds: program only addresses of live mappings, within their length"
            }
            Self::PlatformSkipsMaintenance => {
                "the platform is configured coherent but the device does not snoop: use the non-coherent platform (drop the wrong dma-coherent)"
            }
            Self::CacheableCoherentMemory => {
                "coherent memory is mapped cacheable while the device reads RAM: allocate it through a platform that knows the device does not snoop (uncached or write-combining)"
            }
        }
    }
}

/// One coherency bug the detector saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Report {
    /// What went wrong.
    pub kind: ReportKind,
    /// The region involved, when the line belongs to a live one.
    pub region: Option<RegionInfo>,
    /// The device whose access revealed it, if a device access did.
    pub device: Option<DeviceId>,
    /// The physical address of the first offending cache line.
    pub line: PhysAddr,
    /// How many lines of this region this one event found (reports are
    /// coalesced per event and region).
    pub lines: usize,
    /// For a [`DeviceFault`](ReportKind::DeviceFault), the refused access
    /// (`line` is then its device address).
    pub fault: Option<Fault>,
}

impl Report {
    /// What to do about it: the kind's fix, made precise for a fault by
    /// where its address lies relative to the region named.
    pub fn hint(&self) -> &'static str {
        let (Some(fault), Some(region)) = (self.fault, self.region) else {
            return self.kind.fix();
        };
        match fault.kind {
            FaultKind::ReadOnlyMapping => {
                "the device wrote a ToDevice mapping: map it FromDevice or Bidirectional if the device writes it"
            }
            FaultKind::Injected => "injected by the test",
            FaultKind::NotMapped | FaultKind::Translation { .. }
                if region.unmapped_at.is_some() && region.holds(fault.addr) =>
            {
                "use after unmap: keep the mapping live until the device's completion for it arrives"
            }
            FaultKind::NotMapped | FaultKind::Translation { .. }
                if region.unmapped_at.is_none() =>
            {
                "access beyond the mapping: the length given to the device exceeds what was mapped; map the whole transfer or shorten the descriptor"
            }
            FaultKind::NotMapped | FaultKind::Translation { .. } => self.kind.fix(),
            FaultKind::AccessFlag { .. }
            | FaultKind::Permission { .. }
            | FaultKind::AddressSize { .. }
            | FaultKind::WalkAbort { .. } => {
                "the IOMMU's tables refuse this access: check the page-table entries the platform wrote for the region"
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fault) = &self.fault {
            write!(f, "{:?}: {fault}", self.kind)?;
            if let Some(r) = &self.region {
                let (at, base) = (fault.addr.as_u64(), r.dma.as_u64());
                let end = base + r.len as u64;
                if at < base {
                    write!(f, "; {} bytes before {r}", base - at)?;
                } else if at >= end {
                    write!(f, "; {} bytes past the end of {r}", at - end)?;
                } else {
                    write!(f, "; at offset {:#x} of {r}", at - base)?;
                }
            }
            return write!(f, ": {}", self.hint());
        }
        write!(f, "{:?}: line {:#x}", self.kind, self.line.as_u64())?;
        if self.lines > 1 {
            write!(f, " (+{} more)", self.lines - 1)?;
        }
        if let Some(r) = &self.region {
            write!(f, " of {r}")?;
        }
        if let Some(d) = self.device {
            write!(f, ", seen on an access by {d}")?;
        }
        write!(f, ": {}", self.hint())
    }
}
