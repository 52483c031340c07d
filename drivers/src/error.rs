//! What a driver reports when a bring-up or a request fails.

use core::fmt;

/// What went wrong in a reference driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DriverError {
    /// Mapping, allocation or encoding failed (a typed `dma-core` error).
    Dma(dma_core::Error),
    /// The ring refused a request, or the device wrote an invalid
    /// completion (then the queue is broken until `recover`).
    Ring(dma_ring::RingError),
    /// An NVMe command completed with an error status.
    Nvme {
        /// The command's opcode.
        opcode: u8,
        /// Status code type (SCT).
        code_type: u8,
        /// Status code (SC).
        code: u8,
    },
    /// The NIC reported a transmit error (status bits).
    Transmit(dma_ring::nic::TxStatus),
    /// The NIC reported a receive error (error bits); the frame is dropped.
    Receive(dma_ring::nic::RxErrors),
    /// The device did not answer within the [`Wait`](crate::Wait)'s budget.
    Timeout(&'static str),
    /// The NVMe controller set CSTS.CFS (controller fatal status).
    ControllerFatal,
    /// The request cannot be made as asked.
    InvalidArgument(&'static str),
    /// The device lacks a feature the driver needs; names it.
    Unsupported(&'static str),
    /// The virtio device cleared `FEATURES_OK` on re-read: it refused the
    /// features the driver accepted (virtio 1.2 §3.1.1 step 6).
    FeaturesRefused,
    /// The virtio device set `DEVICE_NEEDS_RESET` (§2.1.2): it hit an
    /// error, and nothing more completes until the driver resets it.
    DeviceNeedsReset,
    /// A virtio-blk request completed with this status byte (1 `IOERR`,
    /// 2 `UNSUPP`; §5.2.6).
    BlockStatus(u8),
    /// The device wrote something its specification rules out (a status
    /// value that does not exist, a used length too short for what it
    /// says it did); names it. The request's buffer comes back.
    DeviceProtocol(&'static str),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dma(e) => write!(f, "DMA: {e}"),
            Self::Ring(e) => write!(f, "ring: {e}"),
            Self::Nvme {
                opcode,
                code_type,
                code,
            } => write!(
                f,
                "NVMe command {opcode:#04x} failed: status code type {code_type}, code {code:#04x}"
            ),
            Self::Transmit(s) => write!(f, "transmit failed: status {s:?}"),
            Self::Receive(e) => write!(f, "receive error: {e:?}"),
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Self::ControllerFatal => f.write_str("controller fatal status (CSTS.CFS)"),
            Self::InvalidArgument(m) => write!(f, "invalid request: {m}"),
            Self::Unsupported(what) => write!(f, "the device does not support {what}"),
            Self::FeaturesRefused => f.write_str(
                "the virtio device refused the negotiated features (FEATURES_OK cleared); \
                 check the device's options against what the driver accepts",
            ),
            Self::DeviceNeedsReset => {
                f.write_str("the virtio device needs a reset (DEVICE_NEEDS_RESET); shut the driver down and start it again")
            }
            Self::BlockStatus(1) => f.write_str("virtio-blk request failed: status IOERR"),
            Self::BlockStatus(2) => f.write_str("virtio-blk request failed: status UNSUPP (the device does not implement it)"),
            Self::BlockStatus(s) => write!(f, "virtio-blk request failed: status {s}"),
            Self::DeviceProtocol(m) => write!(f, "the device broke its protocol: {m}"),
        }
    }
}

impl core::error::Error for DriverError {}

impl From<dma_core::Error> for DriverError {
    fn from(e: dma_core::Error) -> Self {
        Self::Dma(e)
    }
}

impl From<dma_ring::RingError> for DriverError {
    fn from(e: dma_ring::RingError) -> Self {
        Self::Ring(e)
    }
}

/// A request the driver could not take or finish, with the caller's
/// buffer back when it can be given back (it cannot when the platform
/// failed to unmap it: then it is leaked, as the device might reach it).
pub struct Refused<B> {
    /// Why.
    pub error: DriverError,
    /// The buffer, untouched by the device unless the command ran.
    pub buffer: Option<B>,
}

impl<B> Refused<B> {
    /// `error`, with `buffer` back when it can be given back.
    pub fn new(error: impl Into<DriverError>, buffer: Option<B>) -> Self {
        Self {
            error: error.into(),
            buffer,
        }
    }
}

impl<B> fmt::Debug for Refused<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refused")
            .field("error", &self.error)
            .field("buffer_returned", &self.buffer.is_some())
            .finish()
    }
}

impl<B> fmt::Display for Refused<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<B> core::error::Error for Refused<B> {}

impl<B> From<Refused<B>> for DriverError {
    fn from(r: Refused<B>) -> Self {
        r.error
    }
}
