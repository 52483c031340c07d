//! Entry from QEMU and the exception vectors.
//!
//! QEMU enters `_start` at EL1 with the MMU off (Device memory everywhere,
//! so every access must be aligned). The assembly parks secondary CPUs,
//! sets the stack, enables FP/SIMD (CPACR_EL1.FPEN = 0b11, Arm ARM
//! D17.2.30: Rust code uses SIMD registers for copies and formatting),
//! zeroes .bss, installs the vectors, and calls `image_main`.

use core::fmt::Write;

use dma_qemu_virt::report::{exit, ExitCode};

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mrs     x9, mpidr_el1
    and     x9, x9, #0xff
    cbnz    x9, 9f
    adrp    x9, __stack_top
    add     x9, x9, :lo12:__stack_top
    mov     sp, x9
    mov     x9, #(0b11 << 20)
    msr     cpacr_el1, x9
    isb
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __bss_end
    add     x10, x10, :lo12:__bss_end
1:  cmp     x9, x10
    b.hs    2f
    str     xzr, [x9], #8
    b       1b
2:  adrp    x9, exception_vectors
    add     x9, x9, :lo12:exception_vectors
    msr     vbar_el1, x9
    isb
    bl      image_main
9:  wfe
    b       9b

    .macro vector kind
    .balign 0x80
    mov     x0, #\kind
    b       exception_common
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
exception_vectors:
    vector 0
    vector 1
    vector 2
    vector 3
    vector 4
    vector 5
    vector 6
    vector 7
    vector 8
    vector 9
    vector 10
    vector 11
    vector 12
    vector 13
    vector 14
    vector 15

exception_common:
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    mrs     x3, far_el1
    bl      exception_report
    b       .
"#
);

/// Names of the 16 vector slots (Arm ARM D1.10.2, Table D1-7).
const VECTOR_NAMES: [&str; 16] = [
    "sync, current EL, SP0",
    "irq, current EL, SP0",
    "fiq, current EL, SP0",
    "serror, current EL, SP0",
    "sync, current EL, SPx",
    "irq, current EL, SPx",
    "fiq, current EL, SPx",
    "serror, current EL, SPx",
    "sync, lower EL, AArch64",
    "irq, lower EL, AArch64",
    "fiq, lower EL, AArch64",
    "serror, lower EL, AArch64",
    "sync, lower EL, AArch32",
    "irq, lower EL, AArch32",
    "fiq, lower EL, AArch32",
    "serror, lower EL, AArch32",
];

/// Reports an unexpected exception and ends the run: the image takes no
/// interrupts and expects no faults, so any exception is a failure.
#[no_mangle]
extern "C" fn exception_report(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    let name = VECTOR_NAMES
        .get(kind as usize)
        .copied()
        .unwrap_or("unknown");
    let mut out = crate::console::emergency();
    let _ = writeln!(
        out,
        "EXCEPTION {name}: ESR_EL1 {esr:#x} (EC {:#x}) ELR_EL1 {elr:#x} FAR_EL1 {far:#x}",
        esr >> 26
    );
    exit(ExitCode::Exception)
}

/// The exception level the image runs at (`CurrentEL[3:2]`).
pub fn current_el() -> u64 {
    let el: u64;
    // SAFETY: reading CurrentEL has no side effects.
    unsafe { core::arch::asm!("mrs {}, CurrentEL", out(reg) el, options(nomem, nostack)) };
    (el >> 2) & 0b11
}
