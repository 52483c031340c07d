//! The sim's IOMMU as `dma-iommu`'s hardware, and the IOMMU-translated
//! preset.

use std::sync::Mutex;

use dma_core::{DeviceConstraints, DmaAddr, Error, ErrorKind, Result};
use dma_iommu::{
    Asid, DomainConfig, DomainContext, IommuHardware, IommuPlatform, Strict, TableFormat,
};

use dma_iommu::pgtable::vmsav8::{Format, Stage};

use crate::iommu::Regime;
use crate::machine::Translation;
use crate::{Access, DeviceId, FaultKind, Sim, SimCache, SimMemory, SimPlatform};

/// The sim's IOMMU seen through `dma-iommu`'s [`IommuHardware`] trait:
/// attaching a domain points the device's translation at the domain's
/// root table (walked by [`iommu::walk`](crate::iommu::walk), written by
/// `dma-iommu`: each checks the other), invalidations drop the device's
/// IOTLB entries, and faults come from the machine's fault record.
///
/// `dma-iommu` device ids are the sim's [`DeviceId::index`].
#[derive(Debug)]
pub struct SimIommu {
    sim: Sim,
    attached: Mutex<Vec<DomainContext>>,
}

impl SimIommu {
    /// The IOMMU of `sim`.
    pub fn new(sim: &Sim) -> Self {
        Self {
            sim: sim.clone(),
            attached: Mutex::new(Vec::new()),
        }
    }

    fn with_asid(&self, asid: Asid, f: impl Fn(DeviceId)) {
        let attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        for ctx in attached.iter().filter(|c| c.asid == asid) {
            f(DeviceId(ctx.device.0));
        }
    }
}

// SAFETY: attach makes the machine translate the device through the
// context's root (never pass-through); detach blocks the device and drops
// its IOTLB; invalidations take effect at once (the model has no queue),
// so `sync` has nothing left to wait for; every refused access is kept in
// the machine's fault record until taken.
unsafe impl IommuHardware for SimIommu {
    fn attach(&self, ctx: &DomainContext) -> Result<()> {
        let known = self
            .sim
            .machine
            .with(|s, _| (ctx.device.0 as usize) < s.devices.len());
        if !known {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "no such device on the sim",
            ));
        }
        let regime = regime(&ctx.format).ok_or(Error::new(
            ErrorKind::Unsupported,
            "the sim walks VMSAv8-64 tables of 4, 16 or 64 KiB granules and 25 to 48 input bits",
        ))?;
        self.sim.set_translation(
            DeviceId(ctx.device.0),
            Translation::Iommu {
                root: ctx.root,
                regime,
            },
        );
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(*ctx);
        Ok(())
    }

    fn detach(&self, ctx: &DomainContext) {
        self.sim
            .set_translation(DeviceId(ctx.device.0), Translation::Blocked);
        self.attached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| c.device != ctx.device);
    }

    fn invalidate_range(&self, asid: Asid, iova: DmaAddr, size: u64) {
        self.with_asid(asid, |d| self.sim.iotlb_invalidate(d, iova.as_u64(), size));
    }

    fn invalidate_all(&self, asid: Asid) {
        self.with_asid(asid, |d| self.sim.iotlb_invalidate_all(d));
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn take_fault(&self, device: dma_iommu::DeviceId) -> Option<dma_iommu::Fault> {
        let f = self
            .sim
            .machine
            .with(|s, _| s.take_fault_of(DeviceId(device.0)))?;
        use dma_iommu::FaultKind as K;
        let kind = match f.kind {
            FaultKind::Translation { level } => K::Translation { level: Some(level) },
            FaultKind::AccessFlag { level } => K::AccessFlag { level: Some(level) },
            FaultKind::Permission { level } => K::Permission { level: Some(level) },
            FaultKind::AddressSize { .. } => K::AddressSize,
            FaultKind::WalkAbort { level } => K::WalkAbort { level: Some(level) },
            // Translated, but to memory no live region covers (the rest of
            // a page whose mapping is smaller than the page), or injected:
            // to the platform it is an unmapped access.
            FaultKind::NotMapped | FaultKind::ReadOnlyMapping | FaultKind::Injected => {
                K::Translation { level: Some(3) }
            }
        };
        Some(dma_iommu::Fault {
            iova: f.addr,
            access: match f.access {
                Access::Read => dma_iommu::Access::Read,
                Access::Write => dma_iommu::Access::Write,
            },
            device,
            kind,
        })
    }
}

/// The sim walker's regime for a `dma-iommu` table format: the same facts
/// (granule, input size, stage, initial level) in the walker's own terms.
fn regime(format: &TableFormat) -> Option<Regime> {
    let TableFormat::Vmsav8 { format, .. } = format else {
        return None;
    };
    let (shift, bits) = (format.granule().shift(), format.ias_bits());
    match format.stage() {
        Stage::One => Regime::stage1(shift, bits),
        Stage::Two => Regime::stage2(shift, bits, format.start_level()),
    }
}

/// The IOMMU-translated preset's platform: `dma-iommu`'s backend (its
/// tables, IOVA allocator and strict invalidation) on sim memory and the
/// sim's cache, translating through the sim's IOMMU.
pub type IommuTranslatedPlatform =
    SimPlatform<IommuPlatform<SimMemory, SimCache, SimIommu, Strict>>;

impl Sim {
    /// The IOMMU-translated preset for `device` (composes with the
    /// machine's cache policy: coherent or not), on the default 4 KiB
    /// stage-1 tables.
    ///
    /// # Errors
    ///
    /// Whatever `dma-iommu` refuses (constraints leaving no IOVA space).
    pub fn iommu_platform(
        &self,
        device: DeviceId,
        constraints: DeviceConstraints,
    ) -> Result<IommuTranslatedPlatform> {
        self.iommu_platform_with(device, constraints, Format::default())
    }

    /// The IOMMU-translated preset on tables of `format`: any granule,
    /// input size and stage, which the sim's own walker follows.
    ///
    /// # Errors
    ///
    /// As for [`iommu_platform`](Self::iommu_platform).
    pub fn iommu_platform_with(
        &self,
        device: DeviceId,
        constraints: DeviceConstraints,
        format: Format,
    ) -> Result<IommuTranslatedPlatform> {
        let id = dma_iommu::DeviceId(device.index());
        let config = DomainConfig::new(id, Asid(device.index() as u16 + 1)).with_format(format);
        let inner = IommuPlatform::new(
            self.memory(),
            self.cache(),
            SimIommu::new(self),
            Strict,
            constraints,
            config,
        )?;
        Ok(self.attach(device, inner))
    }
}
