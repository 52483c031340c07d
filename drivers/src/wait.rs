//! How a polled driver lets time pass.

use crate::DriverError;

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

/// Polls `ready` until it answers (`Some`), pausing through `wait` in
/// between; checks once more after `wait` gives up, so a slow waiter never
/// turns a met condition into a timeout.
///
/// # Errors
///
/// What `ready` answers, or [`DriverError::Timeout`] naming `what` when
/// `wait` gives up first.
pub fn poll_until<T>(
    wait: &mut impl Wait,
    what: &'static str,
    mut ready: impl FnMut() -> Option<Result<T, DriverError>>,
) -> Result<T, DriverError> {
    wait.begin();
    loop {
        if let Some(answer) = ready() {
            return answer;
        }
        if !wait.pause() {
            return ready().unwrap_or(Err(DriverError::Timeout(what)));
        }
    }
}
