//! QEMU's `sifive_test` device (`sifive,test0` at
//! [`TEST_DEVICE_BASE`](crate::memmap::TEST_DEVICE_BASE)): a 32-bit store
//! of `0x5555` ends QEMU with status 0; `0x3333 | code << 16` ends it with
//! status `code`. This is the riscv64 counterpart of the aarch64 image's
//! semihosting exit, so the runner maps the same codes.

use dma_qemu_virt::report::ExitCode;

/// The finisher's "pass" command: QEMU exits with status 0.
pub const FINISHER_PASS: u32 = 0x5555;
/// The finisher's "fail" command; the status goes in bits 31:16.
pub const FINISHER_FAIL: u32 = 0x3333;

/// The word that ends QEMU with `code` as its exit status.
pub const fn finisher_value(code: ExitCode) -> u32 {
    match code as u32 {
        0 => FINISHER_PASS,
        status => status << 16 | FINISHER_FAIL,
    }
}

/// Ends the program: QEMU exits with `code`. Should the store not stop
/// the machine (no finisher there), the hart parks.
#[cfg(target_arch = "riscv64")]
pub fn exit(code: ExitCode) -> ! {
    let finisher = crate::memmap::TEST_DEVICE_BASE as *mut u32;
    // SAFETY: on QEMU's riscv64 `virt` the finisher's register is at
    // TEST_DEVICE_BASE (no address translation in M-mode); a store there
    // touches no memory.
    unsafe { finisher.write_volatile(finisher_value(code)) };
    loop {
        // SAFETY: waiting for an interrupt has no effect on memory.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_become_finisher_commands() {
        assert_eq!(finisher_value(ExitCode::Pass), 0x0000_5555);
        assert_eq!(finisher_value(ExitCode::TestFailed), 0x000a_3333);
        assert_eq!(finisher_value(ExitCode::Panic), 0x000b_3333);
        assert_eq!(finisher_value(ExitCode::Exception), 0x000c_3333);
        assert_eq!(finisher_value(ExitCode::BootFailed), 0x000d_3333);
    }
}
