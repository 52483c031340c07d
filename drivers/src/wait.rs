//! How a driver lets time pass: polling, or sleeping until an interrupt.

use crate::DriverError;

/// How a driver lets time pass while it waits for its device.
///
/// A polled driver waits by polling; what happens between two polls is the
/// environment's business: a simulator steps its device model, a board
/// reads its timer, a user-space driver blocks on an interrupt eventfd.
/// A wait that gives up becomes a [`DriverError::Timeout`](crate::DriverError::Timeout),
/// never a hang.
///
/// A waiter that is woken by an interrupt says so with
/// [`interrupt_vector`](Self::interrupt_vector): a driver then has the
/// device signal that vector for its I/O completions and waits for them
/// in [`sleep`](Self::sleep) instead of polling in between. The defaults
/// describe a polled waiter, so one that only implements
/// [`pause`](Self::pause) keeps drivers polling.
pub trait Wait {
    /// A new wait begins (reset any budget or deadline).
    fn begin(&mut self) {}

    /// The driver polled and found nothing new. Let the device make
    /// progress, and return whether to keep waiting: `false` means the
    /// device took too long, and the driver reports a timeout.
    fn pause(&mut self) -> bool;

    /// The interrupt vector (an MSI-X table entry) whose delivery ends a
    /// [`sleep`](Self::sleep), or `None` (the default) for a waiter that
    /// only polls. A driver asks the device to signal this vector for the
    /// completions it waits for, so the vector must be routed to this
    /// waiter (and be one the device has).
    fn interrupt_vector(&self) -> Option<u16> {
        None
    }

    /// Blocks until the interrupt of [`interrupt_vector`](Self::interrupt_vector)
    /// is delivered, or the wait's budget runs out. Interrupts delivered
    /// since the last sleep count: a sleep after one returns at once, so
    /// an interrupt that arrives before the sleep is never lost.
    ///
    /// The default (a polled waiter) pauses once and reports
    /// [`Wake::Early`], or [`Wake::GaveUp`] when the pause gives up.
    fn sleep(&mut self) -> Wake {
        if self.pause() {
            Wake::Early
        } else {
            Wake::GaveUp
        }
    }
}

/// How a [`Wait::sleep`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The interrupt was delivered (at least once since the last sleep).
    Interrupt,
    /// Woken without the interrupt (a signal, a tick); look, then sleep
    /// again.
    Early,
    /// The wait's budget ran out: the driver looks once more, then reports
    /// a timeout.
    GaveUp,
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
