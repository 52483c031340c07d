//! How a polled driver lets time pass.

/// How a polled driver lets time pass while it waits for its device.
///
/// A polled driver waits by polling; what happens between two polls is the
/// environment's business: a simulator steps its device model, a board
/// reads its timer, a user-space driver blocks on an interrupt eventfd.
/// A wait that gives up becomes a [`DriverError::Timeout`](crate::DriverError::Timeout),
/// never a hang.
pub trait Wait {
    /// A new wait begins (reset any budget or deadline).
    fn begin(&mut self) {}

    /// The driver polled and found nothing new. Let the device make
    /// progress, and return whether to keep waiting: `false` means the
    /// device took too long, and the driver reports a timeout.
    fn pause(&mut self) -> bool;
}
