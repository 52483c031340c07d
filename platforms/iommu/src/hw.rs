//! The IOMMU hardware as the platform needs it: attach a domain, invalidate
//! its IOTLB entries, wait for that, and report recorded faults.
//!
//! Deliberately small, so that an SMMUv3 driver (CD and STE writes,
//! `CMD_TLBI_NH_VA` / `CMD_TLBI_NH_ASID` + `CMD_SYNC` on the command queue,
//! the event queue for faults; IHI 0070 §4.4 and §7), the mock hardware's
//! IOMMU and the [software model](crate::soft) can all implement it.

use dma_core::{DmaAddr, PhysAddr, Result};

use crate::fault::{DeviceId, Fault};
use crate::pgtable::vmsav8::Format;

/// The address space identifier that tags a domain's IOTLB entries (an
/// SMMUv3 CD's ASID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Asid(pub u16);

/// The page-table format a domain uses, with what the hardware context
/// needs to interpret its attribute bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TableFormat {
    /// Arm VMSAv8-64 ([`vmsav8`](crate::pgtable::vmsav8)) of `format`:
    /// granule (an SMMUv3 CD's TG0, an STE's S2TG), input size (T0SZ,
    /// S2T0SZ; equal to [`DomainContext::ias_bits`]) and stage.
    Vmsav8 {
        /// Granule, input size and stage: where the walk starts and how
        /// the leaves' attributes read.
        format: Format,
        /// The MAIR value stage-1 descriptors' AttrIndx refers to
        /// (CD.MAIR0); stage-2 descriptors carry their attributes
        /// themselves and ignore it.
        mair: u64,
    },
}

/// Everything the hardware needs to translate one device's accesses: what
/// an SMMUv3 puts in the device's STE and CD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DomainContext {
    /// The device (StreamID).
    pub device: DeviceId,
    /// The ASID its translations are tagged with.
    pub asid: Asid,
    /// The physical address of the top-level table (CD.TTB0).
    pub root: PhysAddr,
    /// Input address bits (64 - CD.T0SZ).
    pub ias_bits: u32,
    /// The table format.
    pub format: TableFormat,
    /// Whether the hardware's walk is coherent with the CPU caches (CD.SH0,
    /// IRGN0, ORGN0 cacheable and inner shareable); if not, the tables are
    /// cleaned to memory after every write.
    pub walk_coherent: bool,
}

/// The IOMMU hardware.
///
/// # Safety
///
/// The platform relies on these promises to keep devices away from memory
/// they were not given. Implementations promise that
/// - between [`attach`](Self::attach) and [`detach`](Self::detach), the
///   device's accesses are translated through the context's tables (or
///   blocked), never passed through untranslated;
/// - once [`sync`](Self::sync) returns `Ok`, every invalidation issued
///   before it has completed: no IOTLB or walk-cache entry for the
///   invalidated addresses of that ASID remains;
/// - once [`detach`](Self::detach) returns, the hardware neither walks the
///   context's tables nor lets the device through with any translation
///   cached from them;
/// - a blocked access is recorded and returned by
///   [`take_fault`](Self::take_fault), never dropped silently (an
///   implementation whose fault queue overflows says so with a fault of its
///   own rather than losing the fact).
pub unsafe trait IommuHardware {
    /// Starts translating `ctx.device`'s accesses through `ctx.root`.
    ///
    /// # Errors
    ///
    /// Whatever stops the hardware from taking the context (no such device,
    /// an unsupported format, a command timeout).
    fn attach(&self, ctx: &DomainContext) -> Result<()>;

    /// Stops translating for the context: blocks the device, invalidates
    /// its ASID and waits for that.
    fn detach(&self, ctx: &DomainContext);

    /// Invalidates the ASID's IOTLB entries for `size` bytes at `iova`
    /// (leaf and walk-cache entries; `CMD_TLBI_NH_VA` per page or a range
    /// command). Completes at the next [`sync`](Self::sync).
    fn invalidate_range(&self, asid: Asid, iova: DmaAddr, size: u64);

    /// Invalidates every IOTLB entry of the ASID (`CMD_TLBI_NH_ASID`).
    /// Completes at the next [`sync`](Self::sync).
    fn invalidate_all(&self, asid: Asid);

    /// Waits until every invalidation issued so far has completed
    /// (`CMD_SYNC`).
    ///
    /// # Errors
    ///
    /// A timeout or a hardware error; the invalidations are then not known
    /// to have completed, and the IOVAs concerned stay out of use.
    fn sync(&self) -> Result<()>;

    /// The oldest recorded fault of `device` not yet taken.
    fn take_fault(&self, device: DeviceId) -> Option<Fault>;
}

// SAFETY: forwards every call unchanged to the implementation behind the
// reference, which upholds the contract.
unsafe impl<H: IommuHardware + ?Sized> IommuHardware for &H {
    fn attach(&self, ctx: &DomainContext) -> Result<()> {
        (**self).attach(ctx)
    }
    fn detach(&self, ctx: &DomainContext) {
        (**self).detach(ctx)
    }
    fn invalidate_range(&self, asid: Asid, iova: DmaAddr, size: u64) {
        (**self).invalidate_range(asid, iova, size)
    }
    fn invalidate_all(&self, asid: Asid) {
        (**self).invalidate_all(asid)
    }
    fn sync(&self) -> Result<()> {
        (**self).sync()
    }
    fn take_fault(&self, device: DeviceId) -> Option<Fault> {
        (**self).take_fault(device)
    }
}

#[cfg(feature = "alloc")]
// SAFETY: as for `&H`.
unsafe impl<H: IommuHardware + ?Sized> IommuHardware for alloc::sync::Arc<H> {
    fn attach(&self, ctx: &DomainContext) -> Result<()> {
        (**self).attach(ctx)
    }
    fn detach(&self, ctx: &DomainContext) {
        (**self).detach(ctx)
    }
    fn invalidate_range(&self, asid: Asid, iova: DmaAddr, size: u64) {
        (**self).invalidate_range(asid, iova, size)
    }
    fn invalidate_all(&self, asid: Asid) {
        (**self).invalidate_all(asid)
    }
    fn sync(&self) -> Result<()> {
        (**self).sync()
    }
    fn take_fault(&self, device: DeviceId) -> Option<Fault> {
        (**self).take_fault(device)
    }
}
