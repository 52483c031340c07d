//! x86_64: cache line flushes for the devices that do not snoop.
//!
//! PCIe devices snoop the CPU caches, so an ordinary x86 DMA platform uses
//! [`HardwareCoherent`](crate::HardwareCoherent). This maintenance is for
//! what does not snoop: no-snoop PCIe transactions, some integrated
//! accelerators, memory shared with a non-coherent agent.
//!
//! References are to the Intel SDM, Vol. 2A ("CLFLUSH", "CLFLUSHOPT",
//! "CLWB", "CPUID") and Vol. 2B ("MFENCE", "SFENCE").
//!
//! - Clean: `clwb` on every line where CPUID reports it (the line may stay
//!   cached), else `clflushopt`, else `clflush`; then `sfence`, which orders
//!   the write-backs before later stores such as the doorbell write (CLWB
//!   and CLFLUSHOPT are ordered only by fences and locked instructions, not
//!   by stores to other lines).
//! - Invalidate and clean+invalidate: x86 has no invalidate that keeps dirty
//!   data out of memory short of `invd` (privileged, whole cache), so both
//!   are `clflushopt` (or `clflush`) between two `mfence`s: the first orders
//!   the earlier completion-flag read before the flushes, the second makes
//!   them globally visible before later loads read the device's data.
//!
//! Each of the three instructions is ordered with the same CPU's older
//! stores to the line it names, so the data just written is included.

use core::arch::asm;
use core::arch::x86_64::{__cpuid_count, CpuidResult};

use dma_core::{Error, ErrorKind, Result};

use crate::{cache_lines, CacheMaintenance};

/// How a line is flushed (written back and invalidated).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushInsn {
    /// `clflush`: present on every x86_64, ordered with every store.
    Clflush,
    /// `clflushopt`: weakly ordered, so flushes of many lines overlap.
    Clflushopt,
}

/// x86_64 cache maintenance by `clflush` / `clflushopt` / `clwb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X86Maintenance {
    line: usize,
    flush: FlushInsn,
    clwb: bool,
}

/// CPUID.01H:EDX bit 19: CLFLUSH is supported.
const CPUID1_EDX_CLFSH: u32 = 1 << 19;
/// CPUID.(EAX=07H,ECX=0):EBX bit 23: CLFLUSHOPT.
const CPUID7_EBX_CLFLUSHOPT: u32 = 1 << 23;
/// CPUID.(EAX=07H,ECX=0):EBX bit 24: CLWB.
const CPUID7_EBX_CLWB: u32 = 1 << 24;

/// CPUID leaf `leaf`, sub-leaf `sub_leaf`. The intrinsic is safe since Rust
/// 1.87 and `unsafe` before, on the MSRV: the block is needed there and
/// redundant here.
#[allow(unused_unsafe)]
fn cpuid(leaf: u32, sub_leaf: u32) -> CpuidResult {
    // SAFETY: CPUID exists on every x86_64 CPU and only reads identification
    // registers; it has no memory effects.
    unsafe { __cpuid_count(leaf, sub_leaf) }
}

impl X86Maintenance {
    /// Asks CPUID for the CLFLUSH line size (CPUID.01H:EBX bits 15:8, in
    /// 8-byte units) and for CLFLUSHOPT and CLWB.
    ///
    /// # Errors
    ///
    /// [`Unsupported`](ErrorKind::Unsupported) when CPUID reports no CLFLUSH
    /// or a line size that is not a power of two (some hypervisors report
    /// zero).
    pub fn probe() -> Result<Self> {
        let leaf1 = cpuid(1, 0);
        let max_leaf = cpuid(0, 0).eax;
        let leaf7_ebx = if max_leaf >= 7 { cpuid(7, 0).ebx } else { 0 };
        Self::from_cpuid(leaf1.ebx, leaf1.edx, leaf7_ebx)
    }

    /// Decodes the CPUID words `probe` reads.
    pub(crate) fn from_cpuid(leaf1_ebx: u32, leaf1_edx: u32, leaf7_ebx: u32) -> Result<Self> {
        if leaf1_edx & CPUID1_EDX_CLFSH == 0 {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "CPUID reports no CLFLUSH instruction",
            ));
        }
        let line = ((leaf1_ebx >> 8) & 0xff) as usize * 8;
        if !line.is_power_of_two() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "CPUID reports a CLFLUSH line size that is not a power of two",
            )
            .len(line as u64));
        }
        let flush = if leaf7_ebx & CPUID7_EBX_CLFLUSHOPT != 0 {
            FlushInsn::Clflushopt
        } else {
            FlushInsn::Clflush
        };
        Ok(Self {
            line,
            flush,
            clwb: leaf7_ebx & CPUID7_EBX_CLWB != 0,
        })
    }

    /// The same maintenance using only `clflush`, which every x86_64 has
    /// (for comparison, and for testing that path on newer CPUs).
    pub fn clflush_only(self) -> Self {
        Self {
            flush: FlushInsn::Clflush,
            clwb: false,
            ..self
        }
    }

    /// How lines are flushed.
    pub fn flush_insn(&self) -> FlushInsn {
        self.flush
    }

    /// Whether clean uses `clwb`.
    pub fn uses_clwb(&self) -> bool {
        self.clwb
    }

    #[inline(always)]
    fn flush_lines(&self, va: usize, len: usize) {
        match self.flush {
            FlushInsn::Clflushopt => {
                for addr in cache_lines(va, len, self.line) {
                    // SAFETY: the caller of the trait method promises the range
                    // is mapped and, for an invalidate, owns its lines; probe
                    // saw CLFLUSHOPT in CPUID. No `nomem`: memory may change.
                    unsafe {
                        asm!("clflushopt [{}]", in(reg) addr, options(nostack, preserves_flags))
                    };
                }
            }
            FlushInsn::Clflush => {
                for addr in cache_lines(va, len, self.line) {
                    // SAFETY: the caller of the trait method promises the range is mapped
                    // and, for an invalidate, owns its lines; probe saw CLFLUSH in CPUID
                    // (only then is `FlushInsn::Clflush` chosen). No `nomem`.
                    unsafe {
                        asm!("clflush [{}]", in(reg) addr, options(nostack, preserves_flags))
                    };
                }
            }
        }
    }
}

#[inline(always)]
fn mfence() {
    // SAFETY: a fence touches no memory or registers.
    unsafe { asm!("mfence", options(nostack, preserves_flags)) };
}

#[inline(always)]
fn sfence() {
    // SAFETY: a fence touches no memory or registers.
    unsafe { asm!("sfence", options(nostack, preserves_flags)) };
}

// SAFETY: clean writes every touched line back (clwb, clflushopt or clflush,
// each ordered after older stores to its line) and `sfence` orders them
// before later stores; invalidate and clean+invalidate flush every touched
// line between `mfence`s, which order the flushes with every earlier and
// later load and store. Flushing writes dirty data back, which the trait
// allows for invalidate. The line size is CPUID's CLFLUSH line size.
unsafe impl CacheMaintenance for X86Maintenance {
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
        if self.clwb {
            for addr in cache_lines(va, len, self.line) {
                // SAFETY: the caller promises the range is mapped; probe saw
                // CLWB in CPUID; a write-back leaves the bytes as they are.
                unsafe { asm!("clwb [{}]", in(reg) addr, options(nostack, preserves_flags)) };
            }
        } else {
            self.flush_lines(va, len);
        }
        sfence();
    }

    #[inline]
    unsafe fn invalidate(&self, va: usize, len: usize) {
        mfence();
        self.flush_lines(va, len);
        mfence();
    }

    #[inline]
    unsafe fn clean_invalidate(&self, va: usize, len: usize) {
        mfence();
        self.flush_lines(va, len);
        mfence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_words_decode() {
        let m = X86Maintenance::from_cpuid(8 << 8, CPUID1_EDX_CLFSH, CPUID7_EBX_CLWB).unwrap();
        assert_eq!(m.line_size(), 64);
        assert_eq!(m.flush_insn(), FlushInsn::Clflush);
        assert!(m.uses_clwb());
        let m =
            X86Maintenance::from_cpuid(16 << 8, CPUID1_EDX_CLFSH, CPUID7_EBX_CLFLUSHOPT).unwrap();
        assert_eq!(m.line_size(), 128);
        assert_eq!(m.flush_insn(), FlushInsn::Clflushopt);
        assert!(!m.uses_clwb());
    }

    #[test]
    fn cpuid_without_clflush_or_with_a_bad_line_is_refused() {
        let e = X86Maintenance::from_cpuid(8 << 8, 0, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = X86Maintenance::from_cpuid(0, CPUID1_EDX_CLFSH, 0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = X86Maintenance::from_cpuid(3 << 8, CPUID1_EDX_CLFSH, 0).unwrap_err();
        assert_eq!((e.kind(), e.length()), (ErrorKind::Unsupported, Some(24)));
    }
}
