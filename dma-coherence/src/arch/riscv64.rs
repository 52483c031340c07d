//! riscv64 with the Zicbom extension: cache-block management instructions.
//!
//! References are to the RISC-V Unprivileged ISA, "Cache-Management
//! Operation (CMO) Extensions" (the ratified CMO spec v1.0.1), sections
//! "Cache-Block Management Instructions" and "Memory Ordering".
//!
//! - Clean: `cbo.clean` on every block, then `fence w, iorw`.
//! - Invalidate: `fence rw, w`, `cbo.inval` on every block, `fence w, iorw`.
//! - Clean+invalidate: the same with `cbo.flush`.
//!
//! The CMO spec makes the invalidate, clean and flush operations behave as
//! stores in preserved program order (so they follow the same hart's
//! earlier loads and stores to the same block, and a later load of an
//! overlapping address follows them) and classifies them as W for FENCE
//! predecessor and successor sets. Hence the trailing `fence w, iorw`
//! orders the operations before every later access, the doorbell's I/O
//! write included, and the leading `fence rw, w` orders an earlier
//! completion-flag read, at any address, before the blocks are dropped.
//!
//! There is no architectural register holding the block size: it comes
//! from the platform (the device tree's `riscv,cbom-block-size`, or the
//! SoC manual), so it is a constructor argument.
//!
//! The instructions are emitted as words from the `arch::cbo` module (`.4byte`,
//! base address in `a0`) instead of mnemonics, so the encodings a hart
//! runs are the ones that module's host tests check against the CMO
//! specification, and the crate builds for targets whose baseline
//! (`riscv64gc`) lacks the extension. Only running them needs it (and,
//! below M-mode, the `menvcfg`/`senvcfg` enables).

use core::arch::asm;

use dma_core::Result;

use super::cbo;
use crate::{cache_lines, CacheMaintenance};

/// riscv64 Zicbom cache-block maintenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZicbomMaintenance {
    block: usize,
}

impl ZicbomMaintenance {
    /// Maintenance for a platform whose Zicbom cache block is `block_size`
    /// bytes.
    ///
    /// # Errors
    ///
    /// [`InvalidConstraints`](dma_core::ErrorKind::InvalidConstraints) unless
    /// `block_size` is a power of two between 16 and 4096 (a block never
    /// spans pages).
    ///
    /// # Safety
    ///
    /// The hart implements Zicbom, the instructions are enabled at the
    /// privilege level the code runs at, and `block_size` is the platform's
    /// real cache-block size (a larger value would skip blocks).
    pub unsafe fn new(block_size: usize) -> Result<Self> {
        Ok(Self {
            block: super::check_block_size(block_size)?,
        })
    }
}

macro_rules! cbo_loop {
    ($word:expr, $va:expr, $len:expr, $block:expr) => {
        for addr in cache_lines($va, $len, $block) {
            // No `nomem`: memory may change as far as the compiler knows.
            // SAFETY: the constructor's caller promised Zicbom is enabled; the method's caller that
            // the range is mapped and (invalidate) owned. The word is a `cbo.*` on the block whose
            // address is in a0 (checked by `super::cbo`'s tests), touching no register.
            unsafe {
                asm!(
                    ".4byte {word}",
                    word = const $word,
                    in("a0") addr,
                    options(nostack, preserves_flags),
                )
            };
        }
    };
}

#[inline(always)]
fn fence_before_drop() {
    // SAFETY: a fence touches no memory or registers.
    unsafe { asm!("fence rw, w", options(nostack, preserves_flags)) };
}

#[inline(always)]
fn fence_after() {
    // SAFETY: a fence touches no memory or registers.
    unsafe { asm!("fence w, iorw", options(nostack, preserves_flags)) };
}

// SAFETY: each operation is the CMO instruction the spec defines for it,
// over every block the range touches, fenced as the CMO memory-ordering
// rules require (see the module docs); the block size is the platform's
// (promised by the constructor's caller) and a power of two.
unsafe impl CacheMaintenance for ZicbomMaintenance {
    #[inline(always)]
    fn is_coherent(&self) -> bool {
        false
    }

    #[inline(always)]
    fn line_size(&self) -> usize {
        self.block
    }

    #[inline]
    unsafe fn clean(&self, va: usize, len: usize) {
        cbo_loop!(cbo::CLEAN_A0, va, len, self.block);
        fence_after();
    }

    #[inline]
    unsafe fn invalidate(&self, va: usize, len: usize) {
        fence_before_drop();
        cbo_loop!(cbo::INVAL_A0, va, len, self.block);
        fence_after();
    }

    #[inline]
    unsafe fn clean_invalidate(&self, va: usize, len: usize) {
        fence_before_drop();
        cbo_loop!(cbo::FLUSH_A0, va, len, self.block);
        fence_after();
    }
}
