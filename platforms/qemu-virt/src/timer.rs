//! Timeouts measured on a clock, never in loop iterations (a loop count
//! means nothing under TCG, where instructions take no fixed time).
//!
//! `GenericTimer` (aarch64 only) is the Arm generic timer's virtual count (`CNTVCT_EL0`
//! at `CNTFRQ_EL0` Hz, Arm ARM D11); tests on the host use their own
//! [`Clock`].

use core::time::Duration;

use dma_drivers::{poll_until, Wait};

use crate::Result;

/// A monotonic tick counter.
pub trait Clock {
    /// The current count.
    fn now(&self) -> u64;
    /// Ticks per second.
    fn frequency(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> u64 {
        (**self).now()
    }
    fn frequency(&self) -> u64 {
        (**self).frequency()
    }
}

/// A point in time on a clock after which a wait gives up.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    end: u64,
}

impl Deadline {
    /// The deadline `timeout` from now.
    pub fn after(clock: &impl Clock, timeout: Duration) -> Self {
        let ticks = (timeout.as_nanos() * u128::from(clock.frequency())) / 1_000_000_000;
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        Self {
            end: clock.now().saturating_add(ticks),
        }
    }

    /// True once the clock has passed the deadline.
    pub fn passed(&self, clock: &impl Clock) -> bool {
        clock.now() >= self.end
    }
}

/// The reference drivers' [`Wait`] on a clock: a wait gives up once
/// `timeout` has passed since it began.
#[derive(Clone, Copy, Debug)]
pub struct TimerWait<'c, K: Clock> {
    clock: &'c K,
    timeout: Duration,
    deadline: Deadline,
}

impl<'c, K: Clock> TimerWait<'c, K> {
    /// Waits of at most `timeout` each, measured on `clock`.
    pub fn new(clock: &'c K, timeout: Duration) -> Self {
        Self {
            clock,
            timeout,
            deadline: Deadline::after(clock, timeout),
        }
    }
}

impl<K: Clock> Wait for TimerWait<'_, K> {
    fn begin(&mut self) {
        self.deadline = Deadline::after(self.clock, self.timeout);
    }

    fn pause(&mut self) -> bool {
        core::hint::spin_loop();
        !self.deadline.passed(self.clock)
    }
}

/// Polls `poll` until it returns `Some`, or fails with
/// [`BoardError::Timeout`](crate::BoardError::Timeout) naming `what` once `timeout` has passed. The
/// condition is checked once more after the deadline, so a slow clock never
/// turns a met condition into a timeout.
///
/// # Errors
///
/// [`BoardError::Timeout`](crate::BoardError::Timeout) naming `what`.
pub fn wait_for<T>(
    clock: &impl Clock,
    timeout: Duration,
    what: &'static str,
    mut poll: impl FnMut() -> Option<T>,
) -> Result<T> {
    let mut wait = TimerWait::new(clock, timeout);
    Ok(poll_until(&mut wait, what, || poll().map(Ok))?)
}

/// The Arm generic timer's virtual counter.
#[cfg(target_arch = "aarch64")]
#[derive(Clone, Copy, Debug, Default)]
pub struct GenericTimer;

#[cfg(target_arch = "aarch64")]
impl Clock for GenericTimer {
    fn now(&self) -> u64 {
        let count: u64;
        // SAFETY: reading CNTVCT_EL0 has no side effects; the ISB keeps the
        // read from being performed ahead of earlier instructions (Arm ARM
        // D11.2.2), so a deadline is never measured early.
        unsafe {
            core::arch::asm!("isb", "mrs {}, cntvct_el0", out(reg) count, options(nomem, nostack))
        };
        count
    }

    fn frequency(&self) -> u64 {
        let freq: u64;
        // SAFETY: reading CNTFRQ_EL0 has no side effects.
        unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack)) };
        freq
    }
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;

    use crate::BoardError;

    use super::*;

    /// A clock that advances one tick per reading, at 1 kHz.
    struct Ticking(Cell<u64>);

    impl Clock for Ticking {
        fn now(&self) -> u64 {
            let t = self.0.get();
            self.0.set(t + 1);
            t
        }
        fn frequency(&self) -> u64 {
            1000
        }
    }

    #[test]
    fn met_condition_returns_its_value() {
        let clock = Ticking(Cell::new(0));
        let mut polls = 0;
        let got = wait_for(&clock, Duration::from_millis(100), "x", || {
            polls += 1;
            (polls == 3).then_some(polls)
        });
        assert_eq!(got, Ok(3));
    }

    #[test]
    fn unmet_condition_times_out_by_the_clock() {
        let clock = Ticking(Cell::new(0));
        let got: Result<()> = wait_for(&clock, Duration::from_millis(10), "RDY", || None);
        assert_eq!(got, Err(BoardError::Timeout("RDY")));
        // 10 ms at 1 kHz is 10 ticks; each loop reads the clock once.
        assert!(clock.0.get() >= 10 && clock.0.get() < 14);
    }

    #[test]
    fn huge_timeouts_saturate() {
        let clock = Ticking(Cell::new(5));
        let d = Deadline::after(&clock, Duration::from_secs(u64::MAX));
        assert!(!d.passed(&clock));
    }
}
