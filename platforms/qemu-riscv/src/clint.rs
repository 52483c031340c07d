//! The CLINT's `mtime` counter as the board's clock: every wait in the
//! image is measured on it, never in loop iterations.

use core::ptr::NonNull;

use dma_qemu_virt::timer::Clock;

/// `mtime`, read from its memory-mapped register.
#[derive(Clone, Copy, Debug)]
pub struct ClintTimer {
    mtime: NonNull<u64>,
    frequency: u64,
}

impl ClintTimer {
    /// The counter at `mtime`, ticking `frequency` times a second.
    ///
    /// # Safety
    ///
    /// `mtime` is an 8-byte aligned `mtime` register (or memory laid out
    /// like one) for the value's lifetime.
    pub const unsafe fn new(mtime: NonNull<u64>, frequency: u64) -> Self {
        Self { mtime, frequency }
    }

    /// QEMU `virt`'s CLINT at [`CLINT_BASE`](crate::memmap::CLINT_BASE).
    ///
    /// # Safety
    ///
    /// Only on that board, in M-mode (physical addresses).
    pub unsafe fn qemu_virt() -> Self {
        use crate::memmap::{CLINT_BASE, MTIME_OFFSET, TIMEBASE_HZ};
        let mtime = NonNull::new((CLINT_BASE + MTIME_OFFSET) as *mut u64)
            .expect("the CLINT is not at address 0");
        // SAFETY: the caller runs on QEMU's `virt` in M-mode, where mtime
        // lives there.
        unsafe { Self::new(mtime, TIMEBASE_HZ) }
    }
}

impl Clock for ClintTimer {
    fn now(&self) -> u64 {
        // SAFETY: `new`'s contract; one aligned 64-bit load of the
        // register (RV64 reads mtime whole).
        unsafe { self.mtime.as_ptr().read_volatile() }
    }

    fn frequency(&self) -> u64 {
        self.frequency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_register() {
        let mut reg = 41u64;
        // SAFETY: `reg` outlives the timer and is an aligned u64.
        let t = unsafe { ClintTimer::new(NonNull::from(&mut reg), 10_000_000) };
        assert_eq!(t.now(), 41);
        assert_eq!(t.frequency(), 10_000_000);
    }
}
