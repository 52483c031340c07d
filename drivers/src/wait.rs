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
pub fn poll_until<T, W: Wait, F: FnMut() -> Option<Result<T, DriverError>>>(
    wait: &mut W,
    what: &'static str,
    ready: F,
) -> Result<T, DriverError> {
    poll_driver_until(
        &mut (wait, ready),
        |(wait, _)| &mut **wait,
        |(_, ready)| ready().transpose(),
        |_| DriverError::Timeout(what),
    )
}

/// [`poll_until`] for a driver whose poll and waiter are both its own:
/// `waiter` picks the waiter out of `driver`, `poll` looks once, and
/// `gave_up` names the failure after the last look (a timeout, or what the
/// device reports).
pub(crate) fn poll_driver_until<D, W: Wait, T>(
    driver: &mut D,
    waiter: impl Fn(&mut D) -> &mut W,
    mut poll: impl FnMut(&mut D) -> Result<Option<T>, DriverError>,
    gave_up: impl FnOnce(&D) -> DriverError,
) -> Result<T, DriverError> {
    waiter(driver).begin();
    loop {
        if let Some(answer) = poll(driver)? {
            return Ok(answer);
        }
        if !waiter(driver).pause() {
            return poll(driver)?.ok_or_else(|| gave_up(driver));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives up after `pauses` pauses; counts the waits begun.
    struct Budget {
        pauses: u32,
        begun: u32,
    }

    impl Wait for Budget {
        fn begin(&mut self) {
            self.begun += 1;
        }
        fn pause(&mut self) -> bool {
            self.pauses = self.pauses.saturating_sub(1);
            self.pauses > 0
        }
    }

    /// A device that is ready after `looks` polls.
    struct Driver {
        wait: Budget,
        looks: u32,
        ready_after: u32,
    }

    fn look(d: &mut Driver) -> Result<Option<u32>, DriverError> {
        d.looks += 1;
        Ok((d.looks > d.ready_after).then_some(d.looks))
    }

    fn driver(pauses: u32, ready_after: u32) -> Driver {
        Driver {
            wait: Budget { pauses, begun: 0 },
            looks: 0,
            ready_after,
        }
    }

    #[test]
    fn a_condition_met_during_the_last_pause_is_an_answer_not_a_timeout() {
        // Two pauses: looks 1 and 2 find nothing, the waiter gives up, and
        // the last look (3) finds the device ready.
        let mut d = driver(2, 2);
        let got = poll_driver_until(&mut d, |d| &mut d.wait, look, |_| DriverError::Timeout("x"));
        assert_eq!(got.unwrap(), 3);
        assert_eq!(d.wait.begun, 1);
    }

    #[test]
    fn a_waiter_that_gives_up_first_ends_in_the_drivers_own_error() {
        let mut d = driver(2, u32::MAX);
        let got = poll_driver_until(
            &mut d,
            |d| &mut d.wait,
            look,
            |d| {
                assert_eq!(d.looks, 3, "the error is named after the last look");
                DriverError::DeviceNeedsReset
            },
        );
        assert!(matches!(got, Err(DriverError::DeviceNeedsReset)));
    }

    #[test]
    fn poll_until_reports_a_timeout_and_passes_errors_through() {
        let mut wait = Budget {
            pauses: 1,
            begun: 0,
        };
        let got: Result<(), _> = poll_until(&mut wait, "the thing", || None);
        assert!(matches!(got, Err(DriverError::Timeout("the thing"))));
        let got: Result<(), _> = poll_until(&mut wait, "the thing", || {
            Some(Err(DriverError::ControllerFatal))
        });
        assert!(matches!(got, Err(DriverError::ControllerFatal)));
        assert_eq!(wait.begun, 2);
    }
}
