//! Entry from QEMU and the trap vector.
//!
//! With `-bios none` QEMU starts every hart at `_start` in M-mode with no
//! address translation. The assembly parks all harts but hart 0, sets the
//! stack, turns the FPU on (`mstatus.FS` = Initial, Privileged ISA
//! "Machine Status Register": with FS = Off any F/D instruction traps, and
//! Rust code for `riscv64gc` may use them), zeroes .bss, points `mtvec` at
//! the trap entry (direct mode), and calls `image_main`.

use core::fmt::Write;

use dma_qemu_riscv::test_device::exit;
use dma_qemu_virt::report::ExitCode;

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    csrr    t0, mhartid
    bnez    t0, 9f
    la      sp, __stack_top
    li      t0, 0x2000
    csrs    mstatus, t0
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  la      t0, trap_entry
    csrw    mtvec, t0
    call    image_main
9:  wfi
    j       9b

    .section .text.trap, "ax"
    .balign 4
trap_entry:
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    call    trap_report
    j       .
"#
);

/// Names of the synchronous exception causes (Privileged ISA, "Machine
/// Cause Register", exception codes 0..=15).
const CAUSES: [&str; 16] = [
    "instruction address misaligned",
    "instruction access fault",
    "illegal instruction",
    "breakpoint",
    "load address misaligned",
    "load access fault",
    "store/AMO address misaligned",
    "store/AMO access fault",
    "environment call from U-mode",
    "environment call from S-mode",
    "reserved",
    "environment call from M-mode",
    "instruction page fault",
    "load page fault",
    "reserved",
    "store/AMO page fault",
];

/// Reports an unexpected trap and ends the run: the image enables no
/// interrupts and expects no exceptions, so any trap is a failure.
#[no_mangle]
extern "C" fn trap_report(mcause: u64, mepc: u64, mtval: u64) -> ! {
    let interrupt = mcause >> 63 != 0;
    let code = mcause & !(1 << 63);
    let name = match CAUSES.get(code as usize) {
        Some(name) if !interrupt => name,
        _ if interrupt => "interrupt",
        _ => "unknown",
    };
    let _ = writeln!(
        crate::console::emergency(),
        "EXCEPTION {name}: mcause {mcause:#x} mepc {mepc:#x} mtval {mtval:#x}"
    );
    exit(ExitCode::Exception)
}

/// `misa` (Privileged ISA, "Machine ISA Register"): readable only in
/// M-mode, so reading it at all shows the image runs there.
pub fn misa() -> u64 {
    let misa: u64;
    // SAFETY: reading misa has no side effects (in M-mode; elsewhere it
    // traps, and the trap handler reports that).
    unsafe { core::arch::asm!("csrr {}, misa", out(reg) misa, options(nomem, nostack)) };
    misa
}

/// `mhartid`, this hart's number.
pub fn hart_id() -> u64 {
    let id: u64;
    // SAFETY: reading mhartid has no side effects.
    unsafe { core::arch::asm!("csrr {}, mhartid", out(reg) id, options(nomem, nostack)) };
    id
}

/// Runs one `cbo.clean` (Zicbom) on the block holding `addr` under a
/// temporary trap vector that skips it; returns the trap's `mcause` if it
/// trapped (a hart without Zicbom raises an illegal-instruction exception,
/// cause 2), `None` if it ran.
pub fn probe_cbo_clean(addr: usize) -> Option<u64> {
    let cause: u64;
    // The temporary vector (4-byte aligned, direct mode) only records mcause, steps mepc over the
    // 4-byte instruction and returns with `mret` to M-mode (MPP = M after a trap from M-mode;
    // interrupts stay off, MIE = MPIE = 0); the old mtvec is restored before the block ends.
    // SAFETY: `cbo.clean` writes back a cache block (no change to memory contents) or traps into
    // that vector, which returns here; every register written is an operand.
    unsafe {
        core::arch::asm!(
            "la {vec}, 3f",
            "csrrw {saved}, mtvec, {vec}",
            "li {cause}, 0",
            ".option push",
            ".option arch, +zicbom",
            "cbo.clean ({addr})",
            ".option pop",
            "j 4f",
            ".balign 4",
            "3:",
            "csrr {cause}, mcause",
            "csrr {vec}, mepc",
            "addi {vec}, {vec}, 4",
            "csrw mepc, {vec}",
            "mret",
            "4:",
            "csrw mtvec, {saved}",
            addr = in(reg) addr,
            vec = out(reg) _,
            saved = out(reg) _,
            cause = out(reg) cause,
            options(nostack),
        );
    }
    (cause != 0).then_some(cause)
}
