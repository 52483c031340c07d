//! aarch64: data cache maintenance by VA to the point of coherency.
//!
//! References are to the Arm Architecture Reference Manual for A-profile
//! (DDI 0487), "Data cache maintenance instructions" (D7.5.9, "DC CVAC",
//! "DC IVAC", "DC CIVAC") and CTR_EL0 (D23.2).
//!
//! - Clean: `dc cvac` on every line, then `dsb sy`.
//! - Invalidate: `dc ivac` on every line (or `dc civac` at EL0, see
//!   below), between `dmb sy` and `dsb sy`.
//! - Clean+invalidate: `dc civac` on every line, between `dmb sy` and
//!   `dsb sy`.
//!
//! A DC instruction to a line is ordered after the same CPU's earlier
//! loads and stores to that line, but not after accesses to other
//! addresses: the leading `dmb sy` on the for-CPU operations orders the
//! completion-flag read that told the driver the device is done before the
//! lines are dropped, so no line can be refetched with pre-DMA data in
//! between. DC operations complete only at a DSB, and the device is outside
//! the inner-shareable domain, so the DSB is the full-system `dsb sy` (Linux
//! arm64's `dcache_by_line_op` ends the same way).
//!
//! # Exception levels
//!
//! `dc ivac` is permitted only at EL1 and above: at EL0 it is UNDEFINED and
//! Linux delivers SIGILL. `dc cvac` and `dc civac` are allowed at EL0 when
//! the kernel sets SCTLR_EL1.UCI, as Linux does. [`Aarch64Maintenance`]
//! therefore has an EL1 form ([`el1`](Aarch64Maintenance::el1), `dc ivac`)
//! and an EL0 form ([`el0`](Aarch64Maintenance::el0)) whose invalidate is
//! `dc civac`: writing a line back before dropping it is a correct
//! invalidate for a buffer whose lines the caller owns and cleaned before
//! the device wrote (the sync plan always cleans for the device), because
//! such lines are clean and there is nothing to write back.
//! [`probe`](Aarch64Maintenance::probe) picks EL1 on `target_os = "none"`
//! and EL0 everywhere else.

use core::arch::asm;

use crate::{cache_lines, CacheMaintenance};

/// The exception level code runs at, which decides how an invalidate is
/// done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExceptionLevel {
    /// User space: `dc ivac` traps, invalidate uses `dc civac`.
    El0,
    /// A kernel, hypervisor or bare-metal program: `dc ivac` is available.
    El1,
}

/// aarch64 data cache maintenance to the point of coherency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aarch64Maintenance {
    line: usize,
    level: ExceptionLevel,
}

impl Aarch64Maintenance {
    /// Reads the smallest data cache line size from CTR_EL0 and picks the
    /// exception level from the target: EL1 on bare metal
    /// (`target_os = "none"`), EL0 under an operating system.
    pub fn probe() -> Self {
        if cfg!(target_os = "none") {
            Self::el1()
        } else {
            Self::el0()
        }
    }

    /// For code at EL1 or above: invalidate is `dc ivac`.
    pub fn el1() -> Self {
        Self::with_level(ExceptionLevel::El1)
    }

    /// For user space (EL0): invalidate is `dc civac`, because `dc ivac` is
    /// UNDEFINED at EL0.
    pub fn el0() -> Self {
        Self::with_level(ExceptionLevel::El0)
    }

    fn with_level(level: ExceptionLevel) -> Self {
        Self {
            line: dminline_bytes(read_ctr_el0()),
            level,
        }
    }

    /// The exception level this maintenance was made for.
    pub fn level(&self) -> ExceptionLevel {
        self.level
    }
}

/// CTR_EL0, the Cache Type Register. Readable at EL0 when SCTLR_EL1.UCT is
/// set (Linux sets it, or traps and emulates the read).
fn read_ctr_el0() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects and touches no memory.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    ctr
}

/// CTR_EL0.DminLine (bits [19:16]) is log2 of the number of 4-byte words in
/// the smallest data cache line of the caches this PE controls.
pub(crate) const fn dminline_bytes(ctr: u64) -> usize {
    4 << ((ctr >> 16) & 0xf)
}

macro_rules! dc_loop {
    ($op:literal, $va:expr, $len:expr, $line:expr) => {
        for addr in cache_lines($va, $len, $line) {
            // Without `nomem` the compiler assumes memory may change and keeps
            // accesses on their side of the instruction.
            // SAFETY: the caller promises the range is mapped (a DC to an unmapped
            // VA faults) and, for an invalidate, owns the lines that may revert.
            unsafe { asm!(concat!("dc ", $op, ", {}"), in(reg) addr, options(nostack, preserves_flags)) };
        }
    };
}

#[inline(always)]
fn dmb_sy() {
    // SAFETY: a barrier touches no memory or registers; without `nomem` it
    // is also a compiler barrier.
    unsafe { asm!("dmb sy", options(nostack, preserves_flags)) };
}

#[inline(always)]
fn dsb_sy() {
    // SAFETY: as for dmb_sy.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

// SAFETY: clean, invalidate and clean+invalidate use the DC operation to
// the point of coherency that the Arm ARM defines for each (or, at EL0,
// clean+invalidate for invalidate, which the trait allows) over every line
// the range touches, and wait for completion with `dsb sy`; the leading
// `dmb sy` orders the for-CPU operations after earlier accesses. The line
// size is CTR_EL0.DminLine, the smallest line (a power of two).
unsafe impl CacheMaintenance for Aarch64Maintenance {
    #[inline(always)]
    fn is_coherent(&self) -> bool {
        false
    }

    #[inline(always)]
    fn line_size(&self) -> usize {
        self.line
    }

    #[inline]
    unsafe fn clean(&self, va: usize, len: usize) {
        dc_loop!("cvac", va, len, self.line);
        dsb_sy();
    }

    #[inline]
    unsafe fn invalidate(&self, va: usize, len: usize) {
        dmb_sy();
        match self.level {
            ExceptionLevel::El1 => dc_loop!("ivac", va, len, self.line),
            ExceptionLevel::El0 => dc_loop!("civac", va, len, self.line),
        }
        dsb_sy();
    }

    #[inline]
    unsafe fn clean_invalidate(&self, va: usize, len: usize) {
        dmb_sy();
        dc_loop!("civac", va, len, self.line);
        dsb_sy();
    }
}
