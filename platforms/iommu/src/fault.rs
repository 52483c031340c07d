//! What a faulting device access looks like, so that it is never silent.

use core::fmt;

use dma_core::{DmaAddr, Error, ErrorKind};

/// The kind of device access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The device read memory.
    Read,
    /// The device wrote memory.
    Write,
}

/// The device behind an IOMMU, as the IOMMU names it (an SMMUv3 StreamID,
/// a PCI requester ID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeviceId(pub u32);

/// Why a translation failed, in the terms of the VMSAv8-64 fault status
/// codes (Arm ARM DDI 0487, chapter D8, "MMU fault types") and the
/// SMMUv3 event records (IHI 0070, §7.3: `F_TRANSLATION`, `F_ACCESS`,
/// `F_PERMISSION`, `F_ADDR_SIZE`, `F_WALK_EABT`).
///
/// Levels are `None` where the hardware does not report them (SMMUv3 event
/// records carry none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// No valid descriptor at `level` (the IOVA is not mapped).
    Translation {
        /// The lookup level that found an invalid descriptor (0 to 3).
        level: Option<u8>,
    },
    /// The leaf at `level` has its access flag clear.
    AccessFlag {
        /// The level of the leaf.
        level: Option<u8>,
    },
    /// The leaf at `level` does not allow the access (a write to a
    /// read-only mapping, or a mapping not open to unprivileged access).
    Permission {
        /// The level of the leaf.
        level: Option<u8>,
    },
    /// The IOVA lies beyond the input address size.
    AddressSize,
    /// A table could not be read during the walk (external abort).
    WalkAbort {
        /// The level being read.
        level: Option<u8>,
    },
    /// The hardware's fault queue overflowed and records were dropped (an
    /// SMMUv3 event queue overflow, IHI 0070 §7.4): faults happened that no
    /// record describes. `iova` and `access` carry no meaning here (zero,
    /// `Read`); the device is the one that asked, since the hardware cannot
    /// say whose records were lost.
    Overflow,
}

/// A faulting device access the IOMMU recorded and blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The address the device used.
    pub iova: DmaAddr,
    /// Read or write.
    pub access: Access,
    /// Which device.
    pub device: DeviceId,
    /// Why it faulted.
    pub kind: FaultKind,
}

impl Fault {
    /// The fault as a `dma-core` error ([`DeviceFault`](ErrorKind::DeviceFault)
    /// at the IOVA), for drivers that propagate it.
    pub const fn to_error(&self) -> Error {
        let message = match (self.access, self.kind) {
            (Access::Write, FaultKind::Permission { .. }) => {
                "device wrote through a read-only IOMMU mapping"
            }
            (_, FaultKind::Permission { .. }) => "device access not permitted by the IOMMU mapping",
            (_, FaultKind::Translation { .. }) => "device accessed an unmapped IOVA",
            (_, FaultKind::AccessFlag { .. }) => {
                "device access hit a mapping without its access flag"
            }
            (_, FaultKind::AddressSize) => "device used an IOVA beyond the input address size",
            (_, FaultKind::WalkAbort { .. }) => "the IOMMU could not read a page table",
            (_, FaultKind::Overflow) => "the IOMMU's fault queue overflowed: faults were lost",
        };
        Error::new(ErrorKind::DeviceFault, message).at(self.iova.as_u64())
    }
}

impl From<Fault> for Error {
    fn from(f: Fault) -> Self {
        f.to_error()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "device {} {:?} at IOVA {}: {:?}",
            self.device.0, self.access, self.iova, self.kind
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(access: Access, kind: FaultKind) -> Fault {
        Fault {
            iova: DmaAddr::new(0x7000),
            access,
            device: DeviceId(8),
            kind,
        }
    }

    #[test]
    fn every_kind_becomes_a_device_fault_error_at_the_iova() {
        let kinds = [
            FaultKind::Translation { level: Some(1) },
            FaultKind::AccessFlag { level: None },
            FaultKind::Permission { level: Some(3) },
            FaultKind::AddressSize,
            FaultKind::WalkAbort { level: Some(0) },
            FaultKind::Overflow,
        ];
        let mut messages = kinds.map(|k| fault(Access::Read, k).to_error().message());
        messages.sort_unstable();
        let before = messages.len();
        let mut unique = messages.to_vec();
        unique.dedup();
        assert_eq!(unique.len(), before, "each kind says what happened");
        let e: Error = fault(Access::Write, FaultKind::Permission { level: None }).into();
        assert_eq!(e.kind(), ErrorKind::DeviceFault);
        assert_eq!(e.addr(), Some(0x7000));
        assert_eq!(
            e.message(),
            "device wrote through a read-only IOMMU mapping"
        );
    }
}
