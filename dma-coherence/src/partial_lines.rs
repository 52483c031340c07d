//! The partial-cache-line policy: a buffer the device writes must own its
//! cache lines whole on a non-coherent CPU, or it is refused.
//!
//! Cache maintenance works on whole lines. When a buffer the device writes
//! shares its first or last line with other data (a neighbouring struct
//! field, the next heap object), no sync can be right:
//!
//! - invalidating the shared line at sync-for-CPU time throws away whatever
//!   the CPU wrote to the neighbour since the line was last cleaned;
//! - cleaning and invalidating it instead (Linux's `dcache_inval_poc` does
//!   this for the edge lines) writes the CPU's copy of the line back first,
//!   and that copy still holds the buffer's bytes from before the device
//!   wrote: stale data lands over the device's.
//!
//! Either way somebody's data is lost, and which depends on timing. So on a
//! non-coherent cache policy a mapping the device writes (`FromDevice`,
//! `Bidirectional`) must start and end on a line boundary;
//! [`require_whole_lines`] refuses anything else with
//! [`ErrorKind::Misaligned`]. Buffers the device only reads are not
//! affected: cleaning a shared line merely writes the neighbour's bytes
//! back early.
//!
//! Callers get such buffers from `DmaBuf::for_device` (aligned to
//! `DmaMap::dma_alignment`, the line size) with a length that is a multiple
//! of the line size; a buffer they cannot realign is the bounce backend's
//! job.

use dma_core::{DmaDirection, Error, ErrorKind, Result};

use crate::CacheMaintenance;

/// Checks the partial-cache-line policy for a mapping of `len` bytes at
/// `addr` (a physical or virtual address: lines are smaller than pages, so
/// both have the same offset within a line).
///
/// # Errors
///
/// [`Misaligned`](ErrorKind::Misaligned) when the cache is not coherent,
/// the device writes in direction `dir`, and the range does not start and
/// end on a [`line_size`](CacheMaintenance::line_size) boundary. The
/// message names the line size; the error carries the address and length.
#[inline(always)]
pub fn require_whole_lines<C: CacheMaintenance + ?Sized>(
    cache: &C,
    addr: u64,
    len: usize,
    dir: DmaDirection,
) -> Result<()> {
    if cache.is_coherent() || !dir.device_writes() {
        return Ok(());
    }
    let line = cache.line_size() as u64;
    let mask = line - 1;
    let end = addr.wrapping_add(len as u64);
    if addr & mask == 0 && end & mask == 0 {
        return Ok(());
    }
    Err(
        Error::new(ErrorKind::Misaligned, partial_line_message(line))
            .at(addr)
            .len(len as u64),
    )
}

/// The refusal message, naming the line size where it is a common one
/// (messages are static, so each size has its own).
const fn partial_line_message(line: u64) -> &'static str {
    macro_rules! msg {
        ($n:literal) => {
            concat!(
                "a buffer the device writes must start and end on a ",
                $n,
                "-byte cache-line boundary on this non-coherent platform \
                 (allocate it with DmaBuf::for_device, or bounce it)"
            )
        };
    }
    match line {
        16 => msg!("16"),
        32 => msg!("32"),
        64 => msg!("64"),
        128 => msg!("128"),
        256 => msg!("256"),
        _ => msg!("DmaMap::dma_alignment()"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HardwareCoherent;

    struct Lines(usize);

    // SAFETY: test double for the policy check only; the operations are
    // never called (the assertions below would not reach them).
    unsafe impl CacheMaintenance for Lines {
        fn is_coherent(&self) -> bool {
            false
        }
        fn line_size(&self) -> usize {
            self.0
        }
        unsafe fn clean(&self, _: usize, _: usize) {
            unreachable!("the policy check maintains nothing")
        }
        unsafe fn invalidate(&self, _: usize, _: usize) {
            unreachable!("the policy check maintains nothing")
        }
        unsafe fn clean_invalidate(&self, _: usize, _: usize) {
            unreachable!("the policy check maintains nothing")
        }
    }

    #[test]
    fn device_writes_need_whole_lines() {
        use DmaDirection::*;
        let c = Lines(64);
        for dir in [FromDevice, Bidirectional] {
            assert_eq!(require_whole_lines(&c, 0x1000, 128, dir), Ok(()));
            for (addr, len) in [(0x1008, 120), (0x1000, 100), (0x1020, 64)] {
                let e = require_whole_lines(&c, addr, len, dir).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Misaligned);
                assert_eq!((e.addr(), e.length()), (Some(addr), Some(len as u64)));
                assert!(e.message().contains("64-byte cache-line"), "{e}");
            }
        }
        assert_eq!(require_whole_lines(&c, 0x1003, 5, ToDevice), Ok(()));
        assert_eq!(
            require_whole_lines(&HardwareCoherent, 0x1003, 5, FromDevice),
            Ok(())
        );
    }

    #[test]
    fn uncommon_line_sizes_point_at_dma_alignment() {
        let e = require_whole_lines(&Lines(512), 8, 512, DmaDirection::FromDevice).unwrap_err();
        assert!(e.message().contains("DmaMap::dma_alignment()"));
        let e = require_whole_lines(&Lines(32), 0, 16, DmaDirection::FromDevice).unwrap_err();
        assert!(e.message().contains("32-byte"));
    }
}
