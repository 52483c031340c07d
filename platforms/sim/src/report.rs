//! What the coherency-bug detector reports.

use core::fmt;

use dma_core::{DmaAddr, DmaDirection, PhysAddr};

use crate::DeviceId;

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
                "wrong ownership: the CPU wrote the buffer while the device owned it; sync_for_cpu first"
            }
            Self::DirtyWritebackOverDeviceData => {
                "dirty line written back over device data: invalidate (sync_for_cpu) before writing, and align buffers to dma_alignment"
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
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: line {:#x}", self.kind, self.line.as_u64())?;
        if self.lines > 1 {
            write!(f, " (+{} more)", self.lines - 1)?;
        }
        if let Some(r) = &self.region {
            write!(
                f,
                " of region #{} ({}, phys {:#x}, dma {:#x}, {} bytes, {})",
                r.id,
                r.device,
                r.phys.as_u64(),
                r.dma.as_u64(),
                r.len,
                match r.dir {
                    Some(DmaDirection::ToDevice) => "ToDevice",
                    Some(DmaDirection::FromDevice) => "FromDevice",
                    Some(DmaDirection::Bidirectional) => "Bidirectional",
                    None => "coherent",
                }
            )?;
        }
        if let Some(d) = self.device {
            write!(f, ", seen on an access by {d}")?;
        }
        write!(f, ": {}", self.kind.fix())
    }
}
