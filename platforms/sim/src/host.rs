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
    let n = dst.len();
    let head = ((8 - (src % 8) as usize) % 8).min(n);
    let body = (n - head) / 8 * 8;
    for (i, d) in dst[..head].iter_mut().enumerate() {
        // SAFETY: one byte inside the caller's live range.
        *d = unsafe { AtomicU8::from_ptr(base.wrapping_add(i)) }.load(Ordering::Relaxed);
    }
    for (k, chunk) in dst[head..head + body].chunks_exact_mut(8).enumerate() {
        let p = base.wrapping_add(head + 8 * k).cast::<u64>();
        // SAFETY: `p` is 8-aligned (head brought it there) and the 8 bytes
        // lie inside the caller's live range; any initialised u64 is valid.
        let v = unsafe { AtomicU64::from_ptr(p) }.load(Ordering::Relaxed);
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, d) in dst.iter_mut().enumerate().skip(head + body) {
        // SAFETY: one byte inside the caller's live range.
        *d = unsafe { AtomicU8::from_ptr(base.wrapping_add(i)) }.load(Ordering::Relaxed);
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
    let n = src.len();
    let head = ((8 - (dst % 8) as usize) % 8).min(n);
    let body = (n - head) / 8 * 8;
    for (i, s) in src[..head].iter().enumerate() {
        // SAFETY: one byte inside the caller's live range.
        unsafe { AtomicU8::from_ptr(base.wrapping_add(i)) }.store(*s, Ordering::Relaxed);
    }
    for (k, chunk) in src[head..head + body].chunks_exact(8).enumerate() {
        let p = base.wrapping_add(head + 8 * k).cast::<u64>();
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        // SAFETY: 8-aligned, inside the caller's live range.
        unsafe { AtomicU64::from_ptr(p) }.store(u64::from_ne_bytes(w), Ordering::Relaxed);
    }
    for (i, s) in src.iter().enumerate().skip(head + body) {
        // SAFETY: one byte inside the caller's live range.
        unsafe { AtomicU8::from_ptr(base.wrapping_add(i)) }.store(*s, Ordering::Relaxed);
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
