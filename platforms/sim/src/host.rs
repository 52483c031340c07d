//! Device-side access to host memory: the bytes a CPU pointer reaches.
//!
//! On the coherent preset, for uncached allocations, and when the cache
//! model writes lines back or reloads them, the sim reads and writes the
//! driver's own memory while the driver may be polling it from another
//! thread. No reference is ever formed: every access goes through a raw
//! pointer with relaxed atomic loads and stores (whole aligned words where
//! the address allows, bytes at the edges), which is how a DMA master
//! touches memory. A release fence before a write and an acquire fence
//! after a read order one bus access against the next, so a completion
//! flag written in a later access is never seen before the entry written
//! in an earlier one.

use core::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

/// Turns a sim physical address (which is a host address: the sim's
/// memory is identity-mapped) back into a pointer, with the provenance the
/// driver exposed when it translated the buffer.
#[inline(always)]
pub(crate) fn ptr(addr: u64) -> *mut u8 {
    core::ptr::with_exposed_provenance_mut(addr as usize)
}

/// Copies `dst.len()` bytes from host address `src` into `dst`.
///
/// # Safety
///
/// `[src, src + dst.len())` is live host memory that the sim may access:
/// part of a mapping or allocation currently registered for a device, or
/// a range the CPU passed to cache maintenance and owns.
pub(crate) unsafe fn read(src: u64, dst: &mut [u8]) {
    let base = ptr(src);
    let mut i = 0;
    let n = dst.len();
    while i < n {
        let p = base.wrapping_add(i);
        if (p as usize) % 8 == 0 && n - i >= 8 {
            // SAFETY: `p` is 8-aligned and the 8 bytes lie inside the live
            // range the caller vouched for; an atomic view of plain memory
            // is valid for any initialised u64.
            let v = unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.load(Ordering::Relaxed);
            dst[i..i + 8].copy_from_slice(&v.to_ne_bytes());
            i += 8;
        } else {
            // SAFETY: one byte inside the caller's live range.
            dst[i] = unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed);
            i += 1;
        }
    }
    fence(Ordering::Acquire);
}

/// Copies `src` to host address `dst`.
///
/// # Safety
///
/// As for [`read`], for `[dst, dst + src.len())`.
pub(crate) unsafe fn write(dst: u64, src: &[u8]) {
    fence(Ordering::Release);
    let base = ptr(dst);
    let mut i = 0;
    let n = src.len();
    while i < n {
        let p = base.wrapping_add(i);
        if (p as usize) % 8 == 0 && n - i >= 8 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&src[i..i + 8]);
            // SAFETY: 8-aligned, inside the caller's live range.
            unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
            i += 8;
        } else {
            // SAFETY: one byte inside the caller's live range.
            unsafe { AtomicU8::from_ptr(p) }.store(src[i], Ordering::Relaxed);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_alignment() {
        let mut buf = vec![0u8; 64];
        let base = buf.as_mut_ptr().expose_provenance() as u64;
        for off in 0..9u64 {
            let data: Vec<u8> = (0..23).map(|i| i as u8 ^ off as u8).collect();
            // SAFETY: inside `buf`, which this test owns.
            unsafe { write(base + off, &data) };
            let mut back = vec![0u8; 23];
            // SAFETY: as above.
            unsafe { read(base + off, &mut back) };
            assert_eq!(back, data);
        }
    }
}
