//! The SMMU as `dma-iommu` sees it: [`IommuHardware`] over this driver.
//!
//! `dma-iommu`'s [`IommuPlatform`](dma_iommu::IommuPlatform) owns the page
//! tables and the IOVA space and asks the hardware for four things, each of
//! which is one SMMUv3 operation here (Arm IHI 0070 E.a):
//! - attach: a stage-1 context descriptor with the table root, TG0 and
//!   T0SZ from the tables' format (4, 16 or 64 KiB granule, as SMMU_IDR5
//!   allows) and MAIR, and the STE pointing at it, each followed by CMD_CFGI_* and
//!   CMD_SYNC ([`Smmu::attach_stage1`], §3.21.3);
//! - invalidate: CMD_TLBI_NH_VA per granule of the ASID's tables, or
//!   CMD_TLBI_NH_ASID for long ranges (§4.4.2-4.4.4), published without
//!   waiting;
//! - sync: CMD_SYNC, waiting until the SMMU consumed it (§4.7.3);
//! - faults: the event queue's translation-stage records (§7.3), decoded
//!   into `dma-iommu` [`Fault`]s.
//!
//! `IommuHardware` takes `&self`, and the board also drives the SMMU
//! directly (bypass for the direct backend, shutdown), so the driver sits
//! behind a spin lock: [`lock`](SmmuIommu::lock) hands it out.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use dma_core::{DmaAddr, PhysMemory};
use dma_iommu::pgtable::vmsav8::Stage;
use dma_iommu::{
    Access, Asid, DeviceId, DomainContext, Fault, FaultKind, IommuHardware, TableFormat,
};

use super::{Event, EventKind, Smmu, Stage1Config, WalkAttrs};
use crate::timer::Clock;
use crate::BoardError;

/// Invalidations longer than this many pages invalidate the whole ASID
/// instead, as Linux's `arm-smmu-v3` does past its command batch: one
/// command rather than hundreds.
pub const TLBI_VA_LIMIT_PAGES: u64 = 64;

/// The step of a range invalidation for an ASID no attached domain uses:
/// the smallest granule, so every leaf in the range is hit.
const SMALLEST_GRANULE: u64 = 4096;

/// The board's SMMU behind a lock, implementing [`IommuHardware`].
pub struct SmmuIommu<M: PhysMemory, K: Clock> {
    inner: spin::Mutex<Inner<M>>,
    clock: K,
}

struct Inner<M: PhysMemory> {
    smmu: Smmu<M>,
    /// A command that failed inside `invalidate_*` or `detach` (which
    /// cannot return errors); the next `sync` reports it.
    deferred_error: Option<BoardError>,
    /// Faults of other devices, popped while looking for one device's.
    others: VecDeque<Fault>,
    /// Event-queue overflows already reported as `FaultKind::Overflow`.
    overflows_reported: u32,
    /// The granule of each attached ASID's tables (the step of its
    /// CMD_TLBI_NH_VA: one command per leaf).
    granules: Vec<(u16, u64)>,
}

impl<M: PhysMemory, K: Clock> SmmuIommu<M, K> {
    /// Wraps an initialised SMMU; waits are measured on `clock`.
    pub fn new(smmu: Smmu<M>, clock: K) -> Self {
        Self {
            inner: spin::Mutex::new(Inner {
                smmu,
                deferred_error: None,
                others: VecDeque::new(),
                overflows_reported: 0,
                granules: Vec::new(),
            }),
            clock,
        }
    }

    /// The SMMU driver itself, for what `dma-iommu` does not cover
    /// (enable, bypass, raw events).
    pub fn lock(&self) -> SmmuGuard<'_, M> {
        SmmuGuard(self.inner.lock())
    }

    /// The clock the waits use.
    pub fn clock(&self) -> &K {
        &self.clock
    }

    /// Takes the SMMU back out.
    pub fn into_inner(self) -> Smmu<M> {
        self.inner.into_inner().smmu
    }

    fn record(inner: &mut Inner<M>, result: crate::Result<()>) {
        if let Err(e) = result {
            inner.deferred_error.get_or_insert(e);
        }
    }
}

/// Exclusive access to the SMMU driver inside a [`SmmuIommu`].
pub struct SmmuGuard<'a, M: PhysMemory>(spin::MutexGuard<'a, Inner<M>>);

impl<M: PhysMemory> core::ops::Deref for SmmuGuard<'_, M> {
    type Target = Smmu<M>;
    fn deref(&self) -> &Smmu<M> {
        &self.0.smmu
    }
}

impl<M: PhysMemory> core::ops::DerefMut for SmmuGuard<'_, M> {
    fn deref_mut(&mut self) -> &mut Smmu<M> {
        &mut self.0.smmu
    }
}

/// The stage-1 configuration for `ctx`, checked against what the SMMU can
/// walk: `dma-iommu` says whether its tables are cleaned to memory after
/// every write (`walk_coherent = false`: the SMMU then walks them
/// non-cacheable) or left in the CPU caches (the SMMU must snoop). The
/// granule is checked against SMMU_IDR5 at attach.
///
/// # Errors
///
/// [`BoardError::Unsupported`] for a table format other than VMSAv8-64
/// stage 1, or coherent walks on an SMMU without COHACC;
/// [`BoardError::InvalidArgument`] when the context's input size is not
/// its format's.
pub fn stage1_config(ctx: &DomainContext, smmu_coherent: bool) -> crate::Result<Stage1Config> {
    let TableFormat::Vmsav8 { format, mair } = ctx.format else {
        return Err(BoardError::Unsupported(
            "page-table formats other than VMSAv8-64",
        ));
    };
    if format.stage() != Stage::One {
        return Err(BoardError::Unsupported(
            "stage-2 tables (this driver programs stage-1 context descriptors; QEMU 7.2's SMMUv3 has stage 1 only)",
        ));
    }
    if ctx.ias_bits != format.ias_bits() {
        return Err(BoardError::InvalidArgument(
            "the context's input size must be its table format's",
        ));
    }
    let walk = if ctx.walk_coherent {
        if !smmu_coherent {
            return Err(BoardError::Unsupported("coherent table walks (COHACC)"));
        }
        WalkAttrs::WriteBack
    } else {
        WalkAttrs::NonCacheable
    };
    Ok(Stage1Config {
        ttb0: ctx.root.as_u64(),
        format,
        mair,
        asid: ctx.asid.0,
        walk,
    })
}

/// The `dma-iommu` fault for an SMMU event.
///
/// An SMMUv3 event record names neither the table level a translation
/// fault happened at nor, for configuration errors (C_BAD_STE, F_CD_FETCH
/// and the like), an address: those report level 0, and configuration
/// errors become [`FaultKind::WalkAbort`] at IOVA 0 (the SMMU could not
/// use the tables it was given).
pub fn fault_of(event: &Event) -> Fault {
    let kind = match event.kind {
        EventKind::Translation => FaultKind::Translation { level: None },
        EventKind::Permission => FaultKind::Permission { level: None },
        EventKind::AccessFlag => FaultKind::AccessFlag { level: None },
        EventKind::AddressSize => FaultKind::AddressSize,
        _ => FaultKind::WalkAbort { level: None },
    };
    Fault {
        iova: DmaAddr::new(event.address.unwrap_or(0)),
        access: if event.read == Some(true) {
            Access::Read
        } else {
            Access::Write
        },
        device: DeviceId(event.stream_id),
        kind,
    }
}

// SAFETY: attach makes the SMMU translate the StreamID through a stage-1
// CD whose TTB0 is the context's root (the STE is broken to abort first,
// so nothing passes untranslated in between); detach points the STE at
// abort and invalidates the ASID before returning; invalidations are
// CMD_TLBI_NH_VA (Leaf = 0, so walk caches too) at every granule of the
// range, the ASID's table granule or else the smallest one, so each leaf it
// touches is named, or CMD_TLBI_NH_ASID, and
// `sync` returns Ok only after a CMD_SYNC queued behind them was consumed,
// with any error from an earlier command reported instead; faults come
// from the event queue, and an overflow of it is reported as a
// `FaultKind::Overflow` fault rather than lost.
unsafe impl<M: PhysMemory, K: Clock> IommuHardware for SmmuIommu<M, K> {
    fn attach(&self, ctx: &DomainContext) -> dma_core::Result<()> {
        let mut inner = self.inner.lock();
        let cfg = stage1_config(ctx, inner.smmu.features().coherent)?;
        inner.smmu.attach_stage1(ctx.device.0, &cfg, &self.clock)?;
        let granule = cfg.format.granule().size();
        inner.granules.retain(|&(asid, _)| asid != cfg.asid);
        inner.granules.push((cfg.asid, granule));
        if !inner.smmu.is_enabled() {
            inner.smmu.enable(&self.clock)?;
        }
        Ok(())
    }

    fn detach(&self, ctx: &DomainContext) {
        let mut inner = self.inner.lock();
        let result = inner
            .smmu
            .set_abort(ctx.device.0, &self.clock)
            .and_then(|()| inner.smmu.invalidate_asid(ctx.asid.0, &self.clock));
        inner.granules.retain(|&(asid, _)| asid != ctx.asid.0);
        Self::record(&mut inner, result);
    }

    fn invalidate_range(&self, asid: Asid, iova: DmaAddr, size: u64) {
        let mut inner = self.inner.lock();
        let page = inner
            .granules
            .iter()
            .find(|&&(a, _)| a == asid.0)
            .map_or(SMALLEST_GRANULE, |&(_, g)| g);
        let first = iova.as_u64() & !(page - 1);
        let end = iova.as_u64().saturating_add(size);
        let pages = end.saturating_sub(first).div_ceil(page);
        let result = if pages > TLBI_VA_LIMIT_PAGES {
            inner
                .smmu
                .push(&[super::Command::tlbi_nh_asid(asid.0)], &self.clock)
        } else {
            (0..pages).try_for_each(|i| {
                let cmd = super::Command::tlbi_nh_va(asid.0, first + i * page);
                inner.smmu.push(&[cmd], &self.clock)
            })
        };
        Self::record(&mut inner, result);
    }

    fn invalidate_all(&self, asid: Asid) {
        let mut inner = self.inner.lock();
        let result = inner
            .smmu
            .push(&[super::Command::tlbi_nh_asid(asid.0)], &self.clock);
        Self::record(&mut inner, result);
    }

    fn sync(&self) -> dma_core::Result<()> {
        let mut inner = self.inner.lock();
        let synced = inner.smmu.sync(&self.clock);
        if let Some(e) = inner.deferred_error.take() {
            return Err(e.into());
        }
        Ok(synced?)
    }

    fn take_fault(&self, device: DeviceId) -> Option<Fault> {
        let mut inner = self.inner.lock();
        // An overflow loses records of unknown devices: tell whoever asks
        // first, ahead of the records that survived.
        if inner.smmu.event_overflows() != inner.overflows_reported {
            inner.overflows_reported = inner.smmu.event_overflows();
            return Some(Fault {
                iova: DmaAddr::ZERO,
                access: Access::Read,
                device,
                kind: FaultKind::Overflow,
            });
        }
        if let Some(i) = inner.others.iter().position(|f| f.device == device) {
            return inner.others.remove(i);
        }
        while let Some(event) = inner.smmu.pop_event() {
            let fault = fault_of(&event);
            if fault.device == device {
                return Some(fault);
            }
            inner.others.push_back(fault);
        }
        None
    }
}

impl<M: PhysMemory, K: Clock> core::fmt::Debug for SmmuIommu<M, K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmmuIommu").finish_non_exhaustive()
    }
}
