//! Device accesses the machine refused: IOMMU faults and bus errors.

use core::fmt;

use dma_core::DmaAddr;

/// A device attached to a simulated machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub(crate) u32);

impl DeviceId {
    /// The index of the device in the order it was added (0, 1, ...).
    pub const fn index(self) -> u32 {
        self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {}", self.0)
    }
}

/// Read or write, as the device attempted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The device read memory.
    Read,
    /// The device wrote memory.
    Write,
}

/// Why an access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Stage-1 translation fault at this lookup level: an invalid
    /// descriptor, a reserved encoding, or an input address beyond 48 bits
    /// (Arm ARM D8.3, "Translation fault").
    Translation {
        /// Lookup level 0-3.
        level: u8,
    },
    /// The descriptor's access flag (AF, bit 10) is 0 and the IOMMU does not
    /// manage it (Arm ARM D8.4.6, "Access flag fault").
    AccessFlag {
        /// Lookup level of the leaf descriptor.
        level: u8,
    },
    /// A write through a read-only translation: AP\[2\] or APTable\[1\] set
    /// (Arm ARM D8.4.1, "Permission fault").
    Permission {
        /// Lookup level of the leaf descriptor.
        level: u8,
    },
    /// A descriptor's output address has bits set above the 48-bit output
    /// range (Arm ARM D8.3, "Address size fault").
    AddressSize {
        /// Lookup level of the descriptor.
        level: u8,
    },
    /// A table walk reached memory the sim does not hold (SMMU
    /// `F_WALK_EABT`: external abort on table walk).
    WalkAbort {
        /// Lookup level whose table was unreadable.
        level: u8,
    },
    /// The (translated) address is not inside any mapping or allocation
    /// live for this device: a bus error. Without an IOMMU this is what
    /// would silently corrupt memory on real hardware.
    NotMapped,
    /// A write into a streaming mapping the device may only read
    /// (`ToDevice`).
    ReadOnlyMapping,
    /// Injected by a test ([`Sim::inject_faults`](crate::Sim::inject_faults)).
    Injected,
}

/// One refused device access. Nothing of it reached memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The device that attempted it.
    pub device: DeviceId,
    /// The device address (IOVA behind an IOMMU) of the first refused byte.
    pub addr: DmaAddr,
    /// What it attempted.
    pub access: Access,
    /// Why it was refused.
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} at {:#x} refused: {:?}",
            self.device,
            self.access,
            self.addr.as_u64(),
            self.kind
        )
    }
}

impl From<Fault> for dma_core::Error {
    fn from(f: Fault) -> Self {
        dma_core::Error::new(
            dma_core::ErrorKind::DeviceFault,
            "device access refused by the sim",
        )
        .at(f.addr.as_u64())
    }
}
