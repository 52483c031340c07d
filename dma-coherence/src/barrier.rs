//! Barriers named for what they order.
//!
//! A driver and a device share memory without locks, so the order in which
//! each side's accesses become visible is the whole protocol. Each function
//! here orders one pair of accesses and maps to the cheapest instruction
//! that does it on each architecture:
//!
//! | barrier | orders | aarch64 | riscv64 | x86_64 | Linux |
//! | --- | --- | --- | --- | --- | --- |
//! | [`publish_descriptors`] | DMA-memory writes before a later DMA-memory flag write | `dmb oshst` | `fence w,w` | compiler | `dma_wmb` |
//! | [`before_doorbell`] | DMA-memory writes before a later MMIO write | `dmb oshst` | `fence w,o` | compiler | `__iowmb` in `writel` |
//! | [`after_completion_flag`] | a flag read before later reads of the entry | `dmb oshld` | `fence r,r` | compiler | `dma_rmb` |
//! | [`dma_full`] | all earlier accesses before all later ones | `dmb osh` | `fence iorw,iorw` | `mfence` | `dma_mb` / `mb` |
//! | [`mmio_write_barrier`] | earlier writes, MMIO included, complete before anything later | `dsb st` | `fence ow,iorw` | `mfence` | `wmb`, made strong enough for loads |
//! | [`write_combine_flush`] | write-combining buffers drained before later writes | `dsb st` | `fence ow,ow` | `sfence` | `wmb` |
//!
//! Why each mapping is enough:
//!
//! - **aarch64** (Arm ARM DDI 0487, chapter B2, "The AArch64 Application
//!   Level Memory Model", memory barriers): a device is in the outer-shareable domain, so
//!   `dmb osh*` orders what it observes; `oshst` orders stores with
//!   stores, `oshld` loads with later loads and stores. Ordering Normal
//!   memory writes before a Device-memory write needs only `dmb oshst`
//!   (Linux's arm64 `writel` relies on the same). Waiting until an MMIO
//!   write has actually completed, or draining Normal-NC (write-combining)
//!   writes, needs a `dsb`, which also holds back every later instruction.
//! - **riscv64** (Unprivileged ISA, "Memory Ordering Instructions"): FENCE
//!   names what it orders: `r`/`w` for main memory, `i`/`o` for device
//!   input/output. Svpbmt's write-combining (NC) memory is main memory, so
//!   `w` covers it. A completion flag in DMA memory is a main-memory read
//!   (`r`); a flag read from a device register is device input (`i`), so use
//!   [`dma_full`] after such a read.
//! - **x86_64** (Intel SDM Vol. 3A, "Memory Ordering" in the chapter on
//!   multiple-processor management): TSO never
//!   reorders stores with stores or loads with loads, and an uncached MMIO
//!   store is ordered after earlier write-back stores, so the first three
//!   need only stop the compiler. A store followed by a load can be
//!   reordered, which takes `mfence`; write-combining stores are weakly
//!   ordered, which takes `sfence`.
//!
//! Other targets (thumbv7em: `dmb` is system-wide there) use
//! `core::sync::atomic::fence(SeqCst)`, and so does Miri, which cannot run
//! inline assembly: under `cfg(miri)` every barrier is that fence, so Miri
//! runs the ring code (its data-race checker sees a fence at least as strong
//! as each barrier). Under `--cfg dma_loom` every barrier
//! is the loom fence of matching strength, so models check the protocol.

#[cfg(dma_loom)]
use loom::sync::atomic::{fence, Ordering};

macro_rules! barrier {
    ($(#[$doc:meta])* $name:ident, loom: $loom:ident, aarch64: $a64:literal, riscv64: $rv:literal, x86_64: $x86:tt) => {
        $(#[$doc])*
        #[inline(always)]
        pub fn $name() {
            #[cfg(dma_loom)]
            fence(Ordering::$loom);
            #[cfg(not(dma_loom))]
            imp::$name();
        }
    };
}

#[cfg(not(dma_loom))]
mod imp {
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    macro_rules! asm_barrier {
        ($name:ident, $insn:literal) => {
            #[inline(always)]
            pub(super) fn $name() {
                // SAFETY: a barrier instruction touches no memory or registers;
                // leaving out `nomem` makes it a compiler barrier too.
                unsafe { core::arch::asm!($insn, options(nostack, preserves_flags)) }
            }
        };
    }
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    asm_barrier!(publish_descriptors, "dmb oshst");
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    asm_barrier!(before_doorbell, "dmb oshst");
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    asm_barrier!(after_completion_flag, "dmb oshld");
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    asm_barrier!(dma_full, "dmb osh");
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    asm_barrier!(mmio_write_barrier, "dsb st");
    #[cfg(all(target_arch = "aarch64", not(miri)))]
    asm_barrier!(write_combine_flush, "dsb st");

    #[cfg(all(target_arch = "riscv64", not(miri)))]
    macro_rules! asm_barrier {
        ($name:ident, $insn:literal) => {
            #[inline(always)]
            pub(super) fn $name() {
                // SAFETY: a fence instruction touches no memory or registers;
                // leaving out `nomem` makes it a compiler barrier too.
                unsafe { core::arch::asm!($insn, options(nostack, preserves_flags)) }
            }
        };
    }
    #[cfg(all(target_arch = "riscv64", not(miri)))]
    asm_barrier!(publish_descriptors, "fence w,w");
    #[cfg(all(target_arch = "riscv64", not(miri)))]
    asm_barrier!(before_doorbell, "fence w,o");
    #[cfg(all(target_arch = "riscv64", not(miri)))]
    asm_barrier!(after_completion_flag, "fence r,r");
    #[cfg(all(target_arch = "riscv64", not(miri)))]
    asm_barrier!(dma_full, "fence iorw,iorw");
    #[cfg(all(target_arch = "riscv64", not(miri)))]
    asm_barrier!(mmio_write_barrier, "fence ow,iorw");
    #[cfg(all(target_arch = "riscv64", not(miri)))]
    asm_barrier!(write_combine_flush, "fence ow,ow");

    #[cfg(all(target_arch = "x86_64", not(miri)))]
    mod x86 {
        use core::sync::atomic::{compiler_fence, Ordering};

        #[inline(always)]
        pub(crate) fn publish_descriptors() {
            compiler_fence(Ordering::SeqCst);
        }
        #[inline(always)]
        pub(crate) fn before_doorbell() {
            compiler_fence(Ordering::SeqCst);
        }
        #[inline(always)]
        pub(crate) fn after_completion_flag() {
            compiler_fence(Ordering::SeqCst);
        }
        #[inline(always)]
        pub(crate) fn dma_full() {
            // SAFETY: mfence only orders memory accesses.
            unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) }
        }
        #[inline(always)]
        pub(crate) fn mmio_write_barrier() {
            // SAFETY: mfence only orders memory accesses.
            unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) }
        }
        #[inline(always)]
        pub(crate) fn write_combine_flush() {
            // SAFETY: sfence only orders stores.
            unsafe { core::arch::asm!("sfence", options(nostack, preserves_flags)) }
        }
    }
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    pub(super) use x86::*;

    #[cfg(any(
        miri,
        not(any(
            target_arch = "aarch64",
            target_arch = "riscv64",
            target_arch = "x86_64"
        ))
    ))]
    mod other {
        use core::sync::atomic::{fence, Ordering};

        #[inline(always)]
        pub(crate) fn publish_descriptors() {
            fence(Ordering::SeqCst);
        }
        #[inline(always)]
        pub(crate) fn before_doorbell() {
            fence(Ordering::SeqCst);
        }
        #[inline(always)]
        pub(crate) fn after_completion_flag() {
            fence(Ordering::SeqCst);
        }
        #[inline(always)]
        pub(crate) fn dma_full() {
            fence(Ordering::SeqCst);
        }
        #[inline(always)]
        pub(crate) fn mmio_write_barrier() {
            fence(Ordering::SeqCst);
        }
        #[inline(always)]
        pub(crate) fn write_combine_flush() {
            fence(Ordering::SeqCst);
        }
    }
    #[cfg(any(
        miri,
        not(any(
            target_arch = "aarch64",
            target_arch = "riscv64",
            target_arch = "x86_64"
        ))
    ))]
    pub(super) use other::*;
}

barrier!(
    /// Orders the CPU's earlier writes to DMA memory (descriptor fields)
    /// before a later write to DMA memory that tells the device to look
    /// (a virtio available index, a packed-ring AVAIL flag, a NIC owner bit).
    publish_descriptors, loom: Release, aarch64: "dmb oshst", riscv64: "fence w,w", x86_64: compiler
);
barrier!(
    /// Orders the CPU's earlier writes to DMA memory before a later MMIO
    /// write: call it between writing submission entries and ringing the
    /// doorbell.
    before_doorbell, loom: Release, aarch64: "dmb oshst", riscv64: "fence w,o", x86_64: compiler
);
barrier!(
    /// Orders a read of a completion flag in DMA memory (phase tag,
    /// descriptor-done bit, used index) before the reads of the entry's
    /// other fields, so none of them is a value from before the device
    /// wrote the entry. A `sync_for_cpu` of a streaming buffer after it needs
    /// nothing more: the cache maintenance orders itself after earlier reads.
    after_completion_flag, loom: Acquire, aarch64: "dmb oshld", riscv64: "fence r,r", x86_64: compiler
);
barrier!(
    /// Orders every earlier memory access before every later one, stores
    /// before loads included (virtio's event-index check needs this).
    dma_full, loom: SeqCst, aarch64: "dmb osh", riscv64: "fence iorw,iorw", x86_64: mfence
);
barrier!(
    /// Makes earlier writes, MMIO writes included, complete before anything
    /// that follows, reads included: a register write has reached the
    /// device before, say, the CPU starts polling memory for its effect.
    mmio_write_barrier, loom: SeqCst, aarch64: "dsb st", riscv64: "fence ow,iorw", x86_64: mfence
);
barrier!(
    /// Drains write-combining buffers: call it after filling write-combining
    /// memory (`DmaAttrs::WRITE_COMBINE`) and before telling the device.
    write_combine_flush, loom: Release, aarch64: "dsb st", riscv64: "fence ow,ow", x86_64: sfence
);
