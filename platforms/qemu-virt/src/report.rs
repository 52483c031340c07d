//! The image's reporting protocol: what it prints on the UART and the code
//! it exits with. `xtask/src/qemu.rs` parses exactly this; keep the two in
//! step.
//!
//! One line per event, fields separated by single spaces:
//!
//! ```text
//! TEST <name> PASS [detail]
//! TEST <name> FAIL <detail>
//! TEST <name> SKIP <reason>
//! DISK <lba> <blocks> <seed>       the guest wrote pattern(seed) there
//! DONE <passed> <failed> <skipped>
//! ```
//!
//! `DISK` lines name data the host checks in the disk image after QEMU
//! exits: `blocks` 512-byte blocks from `lba` hold [`pattern_byte`] of
//! `seed` (numbers are decimal, the seed hexadecimal with `0x`).
//!
//! The image ends with semihosting `SYS_EXIT`; QEMU exits with the
//! [`ExitCode`] it passes. Failure codes start at 10 so they never look like
//! QEMU's own failure status (1: bad options, or a 64-bit image on a
//! 32-bit CPU).

use alloc::format;
use alloc::string::String;
use core::fmt::{self, Write};

/// The status the image exits QEMU with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Every test passed.
    Pass = 0,
    /// At least one test failed.
    TestFailed = 10,
    /// The image panicked.
    Panic = 11,
    /// An unexpected CPU exception was taken.
    Exception = 12,
    /// Board bring-up failed before the tests could run.
    BootFailed = 13,
}

/// The byte at `offset` of the data pattern for `seed`: a cheap hash of the
/// pair (a splitmix-style mixer), so every block of a transfer differs and
/// a misplaced block is caught, not just a missing one.
pub const fn pattern_byte(seed: u32, offset: u64) -> u8 {
    let word = offset / 4;
    let mut x = (seed as u64) << 32 ^ word;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> ((offset % 4) * 8)) as u8
}

/// Data the host writes on each virtio-blk disk before QEMU starts, for
/// the guest to read and check: `pattern(seed)` over `blocks` 512-byte
/// blocks from `lba`, as `(lba, blocks, seed)` (`xtask/src/qemu.rs`'s
/// `PREPARED`).
pub const PREPARED: (u64, u64, u32) = (4096, 64, 0x5eed_0001);

/// Fills `buf` with the pattern for `seed`, starting at byte `offset` of it.
pub fn fill_pattern(seed: u32, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(seed, offset + i as u64);
    }
}

/// The first byte of `data` that is not pattern `seed` from `offset`, said
/// as `byte i is X, the pattern has Y` (`by` names who wrote the pattern).
pub fn pattern_mismatch(data: &[u8], seed: u32, offset: u64, by: &str) -> Option<String> {
    data.iter()
        .enumerate()
        .find(|&(i, &b)| b != pattern_byte(seed, offset + i as u64))
        .map(|(i, &b)| {
            format!(
                "byte {i} is {b:#04x}, {by} wrote {:#04x}",
                pattern_byte(seed, offset + i as u64)
            )
        })
}

/// Prints the protocol's lines and counts the outcomes.
pub struct Reporter<W: Write> {
    out: W,
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl<W: Write> Reporter<W> {
    /// A reporter printing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            passed: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Records the outcome of test `name`: `Ok(detail)` passes, `Err(detail)`
    /// fails. Names must not contain spaces.
    pub fn outcome<D: fmt::Display, E: fmt::Display>(
        &mut self,
        name: &str,
        outcome: Result<D, E>,
    ) -> bool {
        debug_assert!(!name.contains(' '), "test names have no spaces");
        let ok = outcome.is_ok();
        // A console that fails to print cannot be reported on; ignore it.
        let _ = match outcome {
            Ok(detail) => {
                self.passed += 1;
                writeln!(self.out, "TEST {name} PASS {detail}")
            }
            Err(detail) => {
                self.failed += 1;
                writeln!(self.out, "TEST {name} FAIL {detail}")
            }
        };
        ok
    }

    /// Records that test `name` could not run here, and why.
    pub fn skip(&mut self, name: &str, reason: &str) {
        self.skipped += 1;
        let _ = writeln!(self.out, "TEST {name} SKIP {reason}");
    }

    /// Announces data written to disk for the host to check.
    pub fn disk(&mut self, lba: u64, blocks: u64, seed: u32) {
        let _ = writeln!(self.out, "DISK {lba} {blocks} {seed:#x}");
    }

    /// Announces data written to the disk of QEMU drive `drive` (its
    /// `-drive id=`) for the host to check.
    pub fn disk_on(&mut self, drive: &str, lba: u64, blocks: u64, seed: u32) {
        debug_assert!(!drive.contains(' '), "drive ids have no spaces");
        let _ = writeln!(self.out, "DISK {lba} {blocks} {seed:#x} {drive}");
    }

    /// Prints the closing line and returns the exit code the counts call for.
    pub fn done(&mut self) -> ExitCode {
        let _ = writeln!(
            self.out,
            "DONE {} {} {}",
            self.passed, self.failed, self.skipped
        );
        if self.failed == 0 {
            ExitCode::Pass
        } else {
            ExitCode::TestFailed
        }
    }

    /// The output, for free-form lines (which the host ignores).
    pub fn out(&mut self) -> &mut W {
        &mut self.out
    }
}

/// Ends the program through Arm semihosting `SYS_EXIT` (operation 0x18)
/// with `ADP_Stopped_ApplicationExit` and `code`; QEMU run with
/// `-semihosting` exits with `code` as its own status (Arm semihosting
/// specification v2, §6.5 "SYS_EXIT"). Without semihosting the `hlt` traps
/// and the exception handler reports it.
#[cfg(target_arch = "aarch64")]
pub fn exit(code: ExitCode) -> ! {
    const SYS_EXIT: u64 = 0x18;
    const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x2_0026;
    let block = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
    // SAFETY: `hlt #0xf000` is the AArch64 semihosting trap; with SYS_EXIT
    // it reads the two-word parameter block at x1 (alive on this stack) and
    // does not return under QEMU. Should a debugger resume it, we park.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            in("x0") SYS_EXIT,
            in("x1") block.as_ptr(),
            options(nostack)
        );
    }
    loop {
        // SAFETY: waiting for an event has no effect on memory.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;

    use super::*;

    #[test]
    fn lines_follow_the_protocol() {
        let mut r = Reporter::new(String::new());
        assert!(r.outcome::<_, &str>("boot", Ok("el1")));
        assert!(!r.outcome::<&str, _>("nvme.ready", Err("CSTS.CFS")));
        r.skip("smmu.fault", "no smmu");
        r.disk(16, 8, 0xbeef);
        assert_eq!(r.done(), ExitCode::TestFailed);
        assert_eq!(
            r.out().as_str(),
            "TEST boot PASS el1\nTEST nvme.ready FAIL CSTS.CFS\n\
             TEST smmu.fault SKIP no smmu\nDISK 16 8 0xbeef\nDONE 1 1 1\n"
        );
    }

    #[test]
    fn all_passed_exits_zero() {
        let mut r = Reporter::new(String::new());
        r.outcome::<_, &str>("a", Ok(""));
        assert_eq!(r.done(), ExitCode::Pass);
    }

    /// xtask/src/qemu.rs's `prepared_data_matches_the_image` pins the same.
    #[test]
    fn prepared_data_is_pinned() {
        assert_eq!(PREPARED, (4096, 64, 0x5eed_0001));
    }

    /// The host checker in xtask/src/qemu.rs asserts the same values.
    #[test]
    fn pattern_is_pinned() {
        let mut b = [0u8; 8];
        fill_pattern(0x1234, 0, &mut b);
        assert_eq!(
            b,
            [
                pattern_byte(0x1234, 0),
                b[1],
                b[2],
                b[3],
                b[4],
                b[5],
                b[6],
                b[7]
            ]
        );
        assert_eq!(u32::from_le_bytes([b[0], b[1], b[2], b[3]]), PINNED_WORD0);
        assert_ne!(pattern_byte(1, 0), pattern_byte(2, 0));
        assert_ne!(pattern_byte(1, 512), pattern_byte(1, 0));
    }

    const PINNED_WORD0: u32 = 0xa80a_b087;
}
