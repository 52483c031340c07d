//! Transfer directions, as types and as values.
//!
//! The marker types let a mapping carry its direction in its type, so that a
//! sync the direction does not allow is a compile error. [`DmaDirection`] is
//! the same fact as a value, for platforms and runtime checks.
//!
//! | marker | Linux | device | `sync_for_device` | `sync_for_cpu` |
//! | --- | --- | --- | --- | --- |
//! | [`ToDevice`] | `DMA_TO_DEVICE` | reads the buffer | yes | no |
//! | [`FromDevice`] | `DMA_FROM_DEVICE` | writes the buffer | no | yes |
//! | [`Bidirectional`] | `DMA_BIDIRECTIONAL` | both | yes | yes |

/// The direction of a transfer, as a runtime value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DmaDirection {
    /// The device reads memory the CPU wrote (a transmit buffer, a write
    /// command's data).
    ToDevice,
    /// The device writes memory the CPU will read (a receive buffer, a read
    /// command's data).
    FromDevice,
    /// The device may both read and write.
    Bidirectional,
}

impl DmaDirection {
    /// Whether the device may read the memory.
    #[inline]
    pub const fn device_reads(self) -> bool {
        matches!(self, Self::ToDevice | Self::Bidirectional)
    }

    /// Whether the device may write the memory.
    #[inline]
    pub const fn device_writes(self) -> bool {
        matches!(self, Self::FromDevice | Self::Bidirectional)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ToDevice {}
    impl Sealed for super::FromDevice {}
    impl Sealed for super::Bidirectional {}
}

/// A direction marker type. Sealed: the three below are all there are.
pub trait Direction: sealed::Sealed + Send + Sync + 'static {
    /// The same direction as a value.
    const DIRECTION: DmaDirection;
}

/// Directions in which the device reads the buffer: the CPU may write it
/// (then hand it to the device with `sync_for_device`).
pub trait DeviceReads: Direction {}

/// Directions in which the device writes the buffer: the CPU must
/// `sync_for_cpu` before reading what the device wrote.
pub trait DeviceWrites: Direction {}

/// Marker: the device only reads (`DMA_TO_DEVICE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToDevice;

/// Marker: the device only writes (`DMA_FROM_DEVICE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FromDevice;

/// Marker: the device may read and write (`DMA_BIDIRECTIONAL`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bidirectional;

impl Direction for ToDevice {
    const DIRECTION: DmaDirection = DmaDirection::ToDevice;
}
impl Direction for FromDevice {
    const DIRECTION: DmaDirection = DmaDirection::FromDevice;
}
impl Direction for Bidirectional {
    const DIRECTION: DmaDirection = DmaDirection::Bidirectional;
}

impl DeviceReads for ToDevice {}
impl DeviceReads for Bidirectional {}
impl DeviceWrites for FromDevice {}
impl DeviceWrites for Bidirectional {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_match_their_values() {
        assert_eq!(ToDevice::DIRECTION, DmaDirection::ToDevice);
        assert_eq!(FromDevice::DIRECTION, DmaDirection::FromDevice);
        assert_eq!(Bidirectional::DIRECTION, DmaDirection::Bidirectional);
    }

    #[test]
    fn access_predicates() {
        assert!(DmaDirection::ToDevice.device_reads());
        assert!(!DmaDirection::ToDevice.device_writes());
        assert!(!DmaDirection::FromDevice.device_reads());
        assert!(DmaDirection::FromDevice.device_writes());
        assert!(DmaDirection::Bidirectional.device_reads());
        assert!(DmaDirection::Bidirectional.device_writes());
    }
}
