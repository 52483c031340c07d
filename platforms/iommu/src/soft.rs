//! A software IOMMU: the reference model of [`IommuHardware`] for tests,
//! benches and hosted use.
//!
//! It walks the attached domains' tables with the reference
//! [`walk`](crate::pgtable::vmsav8::walk), keeps a small IOTLB (so a missing
//! invalidation shows up as a stale translation, as on real hardware),
//! records every blocked access as a [`Fault`], and logs the commands it was
//! given. Devices in tests reach memory only through
//! [`device_read`](SoftIommu::device_read) and
//! [`device_write`](SoftIommu::device_write).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use dma_core::{DmaAddr, Error, ErrorKind, PhysAddr, PhysMemory, Result};

use crate::fault::{Access, DeviceId, Fault, FaultKind};
use crate::hw::{Asid, DomainContext, IommuHardware, TableFormat};
use crate::pgtable::vmsav8::{self, Translation};
use spin::Mutex;

/// A command the model received, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// A domain was attached.
    Attach(DeviceId),
    /// A domain was detached.
    Detach(DeviceId),
    /// `invalidate_range(asid, iova, size)`.
    InvalidateRange(Asid, DmaAddr, u64),
    /// `invalidate_all(asid)`.
    InvalidateAll(Asid),
    /// `sync()`.
    Sync,
}

/// One cached leaf, whole (as hardware caches it): an invalidation that
/// touches any part of it drops all of it.
#[derive(Clone, Copy, Debug)]
struct TlbEntry {
    asid: Asid,
    /// The leaf's first IOVA; `translation.phys` is where it goes.
    base: u64,
    translation: Translation,
}

impl TlbEntry {
    fn end(&self) -> u64 {
        self.base + self.translation.size
    }
}

struct State {
    domains: Vec<DomainContext>,
    tlb: VecDeque<TlbEntry>,
    faults: VecDeque<Fault>,
    log: Vec<Command>,
    record_log: bool,
}

/// The software IOMMU over the environment's memory `M`.
///
/// ```
/// use dma_core::{DeviceConstraints, HostMemory, DmaMap, DmaDirection, DmaAttrs};
/// use dma_coherence::HardwareCoherent;
/// use dma_iommu::{soft::SoftIommu, Access, Asid, DeviceId, DomainConfig, IommuPlatform, Strict};
///
/// let hw = SoftIommu::new(HostMemory, 64);
/// let dev = DomainConfig::new(DeviceId(8), Asid(1));
/// let p = IommuPlatform::new(HostMemory, HardwareCoherent, &hw, Strict, DeviceConstraints::UNCONSTRAINED, dev)?;
/// // Nothing is mapped: the device's write faults and is recorded.
/// assert!(hw.device_write(DeviceId(8), dma_core::DmaAddr::new(0x1000), &[1]).is_err());
/// assert_eq!(p.take_fault().unwrap().access, Access::Write);
/// # Ok::<(), dma_core::Error>(())
/// ```
pub struct SoftIommu<M: PhysMemory> {
    memory: M,
    tlb_entries: usize,
    state: Mutex<State>,
}

impl<M: PhysMemory> SoftIommu<M> {
    /// A model with an IOTLB of `tlb_entries` leaves (pages or blocks; 0
    /// caches nothing), replaced first-in first-out.
    pub fn new(memory: M, tlb_entries: usize) -> Self {
        Self {
            memory,
            tlb_entries,
            state: Mutex::new(State {
                domains: Vec::new(),
                tlb: VecDeque::new(),
                faults: VecDeque::new(),
                log: Vec::new(),
                record_log: true,
            }),
        }
    }

    /// Stops (or restarts) recording commands, for long benchmark runs.
    pub fn set_logging(&self, on: bool) {
        let mut s = self.state.lock();
        s.record_log = on;
        s.log.clear();
    }

    /// The commands received so far.
    pub fn log(&self) -> Vec<Command> {
        self.state.lock().log.clone()
    }

    /// Entries currently cached in the IOTLB.
    pub fn tlb_len(&self) -> usize {
        self.state.lock().tlb.len()
    }

    /// Translates one access, through the IOTLB or a table walk; a fault is
    /// recorded and returned.
    pub fn translate(
        &self,
        device: DeviceId,
        iova: DmaAddr,
        access: Access,
    ) -> Result<PhysAddr, Fault> {
        let mut s = self.state.lock();
        let fault = |kind| Fault {
            iova,
            access,
            device,
            kind,
        };
        let Some(ctx) = s.domains.iter().find(|d| d.device == device).copied() else {
            let f = fault(FaultKind::Translation { level: Some(0) });
            s.faults.push_back(f);
            return Err(f);
        };
        let at = iova.as_u64();
        let cached = s
            .tlb
            .iter()
            .find(|e| e.asid == ctx.asid && (e.base..e.end()).contains(&at))
            .copied();
        let entry = match cached {
            Some(e) => Ok(e),
            None => self.walk(&ctx, at).map(|t| {
                let base = at & !(t.size - 1);
                let phys = PhysAddr::new(t.phys.as_u64() - (at - base));
                TlbEntry {
                    asid: ctx.asid,
                    base,
                    translation: Translation { phys, ..t },
                }
            }),
        };
        let result = entry.and_then(|e| {
            e.translation.check(access)?;
            Ok(e)
        });
        match result {
            Ok(e) => {
                if cached.is_none() && self.tlb_entries > 0 {
                    if s.tlb.len() == self.tlb_entries {
                        s.tlb.pop_front();
                    }
                    s.tlb.push_back(e);
                }
                Ok(PhysAddr::new(e.translation.phys.as_u64() + (at - e.base)))
            }
            Err(kind) => {
                let f = fault(kind);
                s.faults.push_back(f);
                Err(f)
            }
        }
    }

    fn walk(&self, ctx: &DomainContext, iova: u64) -> core::result::Result<Translation, FaultKind> {
        let TableFormat::Vmsav8 { format, .. } = ctx.format;
        vmsav8::walk(&format, ctx.root, iova, |at| {
            let p = self.memory.phys_to_virt(at, 8).ok()?;
            if p.as_ptr() as usize % 8 != 0 {
                return None;
            }
            // SAFETY: the context's tables live in the environment's memory
            // (the attach contract); an aligned volatile load of one
            // descriptor, as the hardware's walker makes.
            Some(unsafe { p.cast::<u64>().as_ptr().read_volatile() })
        })
    }

    /// Copies `buf.len()` bytes from the device's view at `iova` (a DMA
    /// read), page by page; the first fault stops it.
    ///
    /// # Errors
    ///
    /// The fault, also recorded for [`take_fault`](IommuHardware::take_fault).
    pub fn device_read(
        &self,
        device: DeviceId,
        iova: DmaAddr,
        buf: &mut [u8],
    ) -> Result<(), Fault> {
        self.each_page(device, iova, buf.len(), Access::Read, |phys, at, n| {
            let src = self.memory.phys_to_virt(phys, n).map_err(|_| ())?;
            // SAFETY: the IOMMU translated the IOVA to memory the driver
            // mapped for the device; a device read of it is what the mapping
            // allows, and `buf[at..at + n]` is in bounds.
            unsafe { core::ptr::copy(src.as_ptr(), buf.as_mut_ptr().add(at), n) };
            Ok(())
        })
    }

    /// Copies `data` into the device's view at `iova` (a DMA write).
    ///
    /// # Errors
    ///
    /// As for [`device_read`](Self::device_read).
    pub fn device_write(&self, device: DeviceId, iova: DmaAddr, data: &[u8]) -> Result<(), Fault> {
        self.each_page(device, iova, data.len(), Access::Write, |phys, at, n| {
            let dst = self.memory.phys_to_virt(phys, n).map_err(|_| ())?;
            // SAFETY: as in device_read, for a write the mapping permits.
            unsafe { core::ptr::copy(data.as_ptr().add(at), dst.as_ptr(), n) };
            Ok(())
        })
    }

    fn each_page(
        &self,
        device: DeviceId,
        iova: DmaAddr,
        len: usize,
        access: Access,
        mut copy: impl FnMut(PhysAddr, usize, usize) -> core::result::Result<(), ()>,
    ) -> Result<(), Fault> {
        let mut done = 0;
        while done < len {
            let at = DmaAddr::new(iova.as_u64() + done as u64);
            // 4 KiB steps: no leaf of any granule is smaller, so each step
            // is physically contiguous.
            let room = (vmsav8::GRANULE - at.offset_in(vmsav8::GRANULE)) as usize;
            let n = room.min(len - done);
            let phys = self.translate(device, at, access)?;
            copy(phys, done, n).map_err(|()| {
                let f = Fault {
                    iova: at,
                    access,
                    device,
                    kind: FaultKind::WalkAbort { level: Some(3) },
                };
                self.state.lock().faults.push_back(f);
                f
            })?;
            done += n;
        }
        Ok(())
    }

    fn record(s: &mut State, c: Command) {
        if s.record_log {
            s.log.push(c);
        }
    }
}

// SAFETY: a device reaches memory only through `translate`, which uses the
// attached context's tables or an IOTLB entry filled from them; invalidations
// take effect immediately (so `sync` has nothing to wait for); detach drops
// the context and its IOTLB entries; every blocked access is queued as a
// fault until taken.
unsafe impl<M: PhysMemory> IommuHardware for SoftIommu<M> {
    fn attach(&self, ctx: &DomainContext) -> Result<()> {
        let mut s = self.state.lock();
        if s.domains.iter().any(|d| d.device == ctx.device) {
            return Err(Error::new(
                ErrorKind::AlreadyMapped,
                "device already attached to a domain",
            )
            .at(u64::from(ctx.device.0)));
        }
        s.domains.push(*ctx);
        Self::record(&mut s, Command::Attach(ctx.device));
        Ok(())
    }

    fn detach(&self, ctx: &DomainContext) {
        let mut s = self.state.lock();
        s.domains.retain(|d| d.device != ctx.device);
        s.tlb.retain(|e| e.asid != ctx.asid);
        Self::record(&mut s, Command::Detach(ctx.device));
    }

    fn invalidate_range(&self, asid: Asid, iova: DmaAddr, size: u64) {
        let mut s = self.state.lock();
        let (start, end) = (iova.as_u64(), iova.as_u64().saturating_add(size));
        s.tlb
            .retain(|e| e.asid != asid || e.end() <= start || e.base >= end);
        Self::record(&mut s, Command::InvalidateRange(asid, iova, size));
    }

    fn invalidate_all(&self, asid: Asid) {
        let mut s = self.state.lock();
        s.tlb.retain(|e| e.asid != asid);
        Self::record(&mut s, Command::InvalidateAll(asid));
    }

    fn sync(&self) -> Result<()> {
        Self::record(&mut self.state.lock(), Command::Sync);
        Ok(())
    }

    fn take_fault(&self, device: DeviceId) -> Option<Fault> {
        let mut s = self.state.lock();
        let i = s.faults.iter().position(|f| f.device == device)?;
        s.faults.remove(i)
    }
}

impl<M: PhysMemory> core::fmt::Debug for SoftIommu<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftIommu")
            .field("tlb_entries", &self.tlb_entries)
            .finish_non_exhaustive()
    }
}
