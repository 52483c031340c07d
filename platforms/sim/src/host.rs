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
//!
//! The cache model's bulk work on 4 KiB pages (its snapshot of a region
//! being mapped, and its "did the CPU write since" compares) reads whole
//! 32-byte units (AVX2, where the CPU has it and the address is 32-byte
//! aligned) or 16-byte units (16-byte aligned) with volatile vector loads
//! ([`vector`]), the way `dma-core`'s own volatile copies reach
//! DMA memory: only ever memory of live streaming mappings and cached
//! allocations, which the driver's syncs hand between the two sides.

use core::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

/// Turns a host address (the machine's physical map gives it for a sim
/// physical address) back into a pointer, with the provenance the driver
/// exposed when it translated the buffer.
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
    let words = base.wrapping_add(head).cast::<u64>();
    // Eight words per step: the loop's own work is the cost on 4 KiB pages.
    let mut blocks = dst[head..head + body].chunks_exact_mut(64);
    let mut k = 0;
    for block in &mut blocks {
        for (j, chunk) in block.chunks_exact_mut(8).enumerate() {
            // SAFETY: 8-aligned (head brought the address there), inside
            // the caller's live range; any initialised u64 is valid.
            let v = unsafe { load_u64(words.wrapping_add(k + j)) };
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        k += 8;
    }
    for (j, chunk) in blocks.into_remainder().chunks_exact_mut(8).enumerate() {
        // SAFETY: 8-aligned (head brought the address there), inside the
        // caller's live range; any initialised u64 is valid.
        let v = unsafe { load_u64(words.wrapping_add(k + j)) };
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
    let words = base.wrapping_add(head).cast::<u64>();
    let mut blocks = src[head..head + body].chunks_exact(64);
    let mut k = 0;
    for block in &mut blocks {
        for (j, chunk) in block.chunks_exact(8).enumerate() {
            // SAFETY: 8-aligned, inside the caller's live range.
            unsafe { AtomicU64::from_ptr(words.wrapping_add(k + j)) }
                .store(ne_word(chunk), Ordering::Relaxed);
        }
        k += 8;
    }
    for (j, chunk) in blocks.remainder().chunks_exact(8).enumerate() {
        // SAFETY: 8-aligned (head brought the address there), inside the
        // caller's live range.
        unsafe { AtomicU64::from_ptr(words.wrapping_add(k + j)) }
            .store(ne_word(chunk), Ordering::Relaxed);
    }
    for (i, s) in src.iter().enumerate().skip(head + body) {
        // SAFETY: one byte inside the caller's live range.
        unsafe { AtomicU8::from_ptr(base.wrapping_add(i)) }.store(*s, Ordering::Relaxed);
    }
}

/// One relaxed byte load.
///
/// # Safety
///
/// `p` is inside a live range the sim may access.
#[inline(always)]
unsafe fn load_u8(p: *mut u8) -> u8 {
    // SAFETY: the caller's promise.
    unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed)
}

/// One relaxed aligned word load.
///
/// # Safety
///
/// `p` is 8-aligned and its 8 bytes are inside a live range the sim may
/// access (any initialised u64 is valid).
#[inline(always)]
unsafe fn load_u64(p: *mut u64) -> u64 {
    // SAFETY: the caller's promise.
    unsafe { AtomicU64::from_ptr(p) }.load(Ordering::Relaxed)
}

/// The first 8 bytes of `b` as a native-endian word.
#[inline(always)]
fn ne_word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_ne_bytes(w)
}

/// Where the host bytes at `src` first differ from `expected`: the offset
/// of the first differing byte, or of the aligned word holding it. `None`
/// when they are equal. The bytes are compared in place, not copied out
/// (the cache model's dirty and "written since synced" checks).
///
/// # Safety
///
/// As for [`read`], for `[src, src + expected.len())`.
#[inline]
pub(crate) unsafe fn first_difference(src: u64, expected: &[u8]) -> Option<usize> {
    // The vector scan passes the equal blocks it can; the word scan finds
    // the difference, if any, in the rest.
    // SAFETY: the caller's promise.
    let skip = unsafe { vector::equal_prefix(src, expected) };
    if skip == expected.len() {
        // All equal (the usual answer): no word scan to set up.
        fence(Ordering::Acquire);
        return None;
    }
    // SAFETY: the caller's promise, for the rest of the range.
    unsafe { words_first_difference(src + skip as u64, &expected[skip..]) }.map(|d| d + skip)
}

/// Copies `dst.len()` bytes from host address `src` into `dst`, as [`read`]
/// does, for the cache model's bulk snapshots.
///
/// # Safety
///
/// As for [`read`].
pub(crate) unsafe fn read_bulk(src: u64, dst: &mut [u8]) {
    // SAFETY: the caller's promise.
    let done = unsafe { vector::copy_prefix(src, dst) };
    // SAFETY: the caller's promise, for the rest of the range.
    unsafe { read(src + done as u64, &mut dst[done..]) };
}

/// Copies `src` to host address `dst`, as [`write()`] does, for the cache
/// model's reloads (an invalidate: the caller owns the lines).
///
/// # Safety
///
/// As for [`write()`].
pub(crate) unsafe fn write_bulk(dst: u64, src: &[u8]) {
    fence(Ordering::Release);
    // SAFETY: the caller's promise.
    let done = unsafe { vector::store_prefix(dst, src) };
    // SAFETY: the caller's promise, for the rest of the range.
    unsafe { write(dst + done as u64, &src[done..]) };
}

/// [`first_difference`] one word at a time.
///
/// # Safety
///
/// As for [`read`], for `[src, src + expected.len())`.
unsafe fn words_first_difference(src: u64, expected: &[u8]) -> Option<usize> {
    let base = ptr(src);
    let head = ((8 - (src % 8) as usize) % 8).min(expected.len());
    let (head_bytes, rest) = expected.split_at(head);
    let (body, tail) = rest.split_at(rest.len() / 8 * 8);
    let words = base.wrapping_add(head).cast::<u64>();
    let found = 'scan: {
        for (i, e) in head_bytes.iter().enumerate() {
            // SAFETY: a head byte inside the caller's live range.
            if unsafe { load_u8(base.wrapping_add(i)) } != *e {
                break 'scan Some(i);
            }
        }
        // Four words per branch: the common answer is "equal", read in full
        // (more words per block spill registers: atomic loads stay in order).
        let mut blocks = body.chunks_exact(32);
        let mut k = 0;
        for b in &mut blocks {
            // SAFETY: 8-aligned words (the head brought the address there)
            // inside the caller's live range.
            let diff = unsafe {
                (load_u64(words.wrapping_add(k)) ^ ne_word(&b[..8]))
                    | (load_u64(words.wrapping_add(k + 1)) ^ ne_word(&b[8..16]))
                    | (load_u64(words.wrapping_add(k + 2)) ^ ne_word(&b[16..24]))
                    | (load_u64(words.wrapping_add(k + 3)) ^ ne_word(&b[24..32]))
            };
            if diff != 0 {
                break;
            }
            k += 4;
        }
        // The block that differed (if any), then the last words, one by one.
        while 8 * k < body.len() {
            // SAFETY: an 8-aligned word inside the caller's live range (8 * k
            // < body.len()).
            if unsafe { load_u64(words.wrapping_add(k)) } != ne_word(&body[8 * k..]) {
                break 'scan Some(head + 8 * k);
            }
            k += 1;
        }
        let tail_at = head + body.len();
        for (i, e) in tail.iter().enumerate() {
            // SAFETY: a tail byte inside the caller's live range.
            if unsafe { load_u8(base.wrapping_add(tail_at + i)) } != *e {
                break 'scan Some(tail_at + i);
            }
        }
        None
    };
    fence(Ordering::Acquire);
    found
}

/// Whether the host bytes at `src` equal `expected` (see
/// [`first_difference`]).
///
/// # Safety
///
/// As for [`read`], for `[src, src + expected.len())`.
#[inline]
pub(crate) unsafe fn equals(src: u64, expected: &[u8]) -> bool {
    // SAFETY: the caller's promise.
    unsafe { first_difference(src, expected) }.is_none()
}

/// Volatile vector loads of host memory: 32-byte units (AVX2) where the
/// CPU has them and the address is 32-byte aligned, else 16-byte units
/// (SSE2 is part of x86_64). The wider units halve the instructions of the
/// cache model's 4 KiB passes, which dominate a simulated command.
#[cfg(all(target_arch = "x86_64", not(miri)))]
mod vector {
    use core::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_storeu_si128,
    };

    /// Whether the 32-byte paths may run: the CPU has AVX2 and `addr` is
    /// 32-byte aligned (a volatile load of a 32-byte unit needs that).
    #[inline(always)]
    fn wide(addr: u64) -> bool {
        addr % 32 == 0 && std::arch::is_x86_feature_detected!("avx2")
    }

    /// The length of the longest prefix of whole 64-byte blocks of host
    /// bytes at `src` equal to `expected` (0 unless `src` is 16-aligned).
    ///
    /// # Safety
    ///
    /// As for [`read`](super::read), for `[src, src + expected.len())`.
    #[inline]
    pub(super) unsafe fn equal_prefix(src: u64, expected: &[u8]) -> usize {
        if wide(src) {
            // SAFETY: the caller's promise; `wide` checked AVX2 and the
            // 32-byte alignment `avx2::equal_prefix` needs.
            return unsafe { avx2::equal_prefix(src, expected) };
        }
        if src % 16 != 0 {
            return 0;
        }
        let host = super::ptr(src).cast::<__m128i>();
        let want = expected.as_ptr().cast::<__m128i>();
        let mut done = 0;
        while done + 64 <= expected.len() {
            let at = done / 16;
            // SAFETY: four 16-aligned units inside the caller's live range,
            // read volatile (no reference formed, never elided), and the
            // same four units of `expected` (unaligned loads).
            let same = unsafe {
                let unit = |i: usize| {
                    _mm_cmpeq_epi8(
                        host.wrapping_add(at + i).read_volatile(),
                        _mm_loadu_si128(want.add(at + i)),
                    )
                };
                let (a, b, c, d) = (unit(0), unit(1), unit(2), unit(3));
                _mm_movemask_epi8(_mm_and_si128(_mm_and_si128(a, b), _mm_and_si128(c, d)))
            };
            if same != 0xffff {
                break;
            }
            done += 64;
        }
        done
    }

    /// Copies the longest prefix of whole 16-byte units of `dst` from host
    /// address `src` (0 unless `src` is 16-aligned); returns its length.
    ///
    /// # Safety
    ///
    /// As for [`read`](super::read).
    pub(super) unsafe fn copy_prefix(src: u64, dst: &mut [u8]) -> usize {
        let mut done = 0;
        if wide(src) {
            // SAFETY: the caller's promise; `wide` checked AVX2 and the
            // 32-byte alignment `avx2::copy_prefix` needs.
            done = unsafe { avx2::copy_prefix(src, dst) };
        } else if src % 16 != 0 {
            return 0;
        }
        let host = super::ptr(src + done as u64).cast::<__m128i>();
        let out = dst[done..].as_mut_ptr().cast::<__m128i>();
        let units = (dst.len() - done) / 16;
        for i in 0..units {
            // SAFETY: a 16-aligned unit inside the caller's live range, read
            // volatile, stored unaligned into `dst`, which holds it.
            unsafe { _mm_storeu_si128(out.add(i), host.wrapping_add(i).read_volatile()) };
        }
        done + units * 16
    }

    /// Stores the longest prefix of whole 16-byte units of `src` at host
    /// address `dst` (0 unless `dst` is 16-aligned); returns its length.
    ///
    /// # Safety
    ///
    /// As for [`write`](super::write).
    pub(super) unsafe fn store_prefix(dst: u64, src: &[u8]) -> usize {
        let mut done = 0;
        if wide(dst) {
            // SAFETY: the caller's promise; `wide` checked AVX2 and the
            // 32-byte alignment `avx2::store_prefix` needs.
            done = unsafe { avx2::store_prefix(dst, src) };
        } else if dst % 16 != 0 {
            return 0;
        }
        let host = super::ptr(dst + done as u64).cast::<__m128i>();
        let from = src[done..].as_ptr().cast::<__m128i>();
        let units = (src.len() - done) / 16;
        for i in 0..units {
            // SAFETY: a 16-aligned unit inside the caller's live range,
            // written volatile; the unit of `src` read unaligned.
            unsafe {
                host.wrapping_add(i)
                    .write_volatile(_mm_loadu_si128(from.add(i)))
            };
        }
        done + units * 16
    }

    /// The 32-byte versions, compiled for AVX2 and called only when the CPU
    /// has it.
    mod avx2 {
        use core::arch::x86_64::{
            __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8,
            _mm256_storeu_si256,
        };

        /// As [`super::equal_prefix`], in 32-byte units.
        ///
        /// # Safety
        ///
        /// As for [`read`](crate::host::read), for
        /// `[src, src + expected.len())`; `src` is 32-byte aligned and the
        /// CPU has AVX2.
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn equal_prefix(src: u64, expected: &[u8]) -> usize {
            let host = crate::host::ptr(src).cast::<__m256i>();
            let want = expected.as_ptr().cast::<__m256i>();
            // One 32-byte unit compared: all ones where equal.
            macro_rules! unit {
                ($i:expr) => {
                    _mm256_cmpeq_epi8(
                        host.wrapping_add($i).read_volatile(),
                        _mm256_loadu_si256(want.add($i)),
                    )
                };
            }
            let mut done = 0;
            // Eight units per branch (the usual answer is "equal", read in
            // full): the loop's own compare, mask and branch are paid once
            // per 256 bytes instead of once per 64.
            while done + 256 <= expected.len() {
                let at = done / 32;
                // SAFETY: eight 32-aligned units inside the caller's live
                // range, read volatile (no reference formed, never elided),
                // and the same eight units of `expected` (unaligned loads).
                let same = unsafe {
                    let lo = _mm256_and_si256(
                        _mm256_and_si256(unit!(at), unit!(at + 1)),
                        _mm256_and_si256(unit!(at + 2), unit!(at + 3)),
                    );
                    let hi = _mm256_and_si256(
                        _mm256_and_si256(unit!(at + 4), unit!(at + 5)),
                        _mm256_and_si256(unit!(at + 6), unit!(at + 7)),
                    );
                    _mm256_movemask_epi8(_mm256_and_si256(lo, hi))
                };
                if same != -1 {
                    break;
                }
                done += 256;
            }
            // The 256 bytes that differed (if any) and the rest, 64 at a
            // time, so the answer is the same whole 64-byte blocks.
            while done + 64 <= expected.len() {
                let at = done / 32;
                // SAFETY: two 32-aligned units inside the caller's live
                // range, read volatile (no reference formed, never elided),
                // and the same two units of `expected` (unaligned loads).
                let same = unsafe {
                    let a = _mm256_cmpeq_epi8(
                        host.wrapping_add(at).read_volatile(),
                        _mm256_loadu_si256(want.add(at)),
                    );
                    let b = _mm256_cmpeq_epi8(
                        host.wrapping_add(at + 1).read_volatile(),
                        _mm256_loadu_si256(want.add(at + 1)),
                    );
                    _mm256_movemask_epi8(_mm256_and_si256(a, b))
                };
                if same != -1 {
                    break;
                }
                done += 64;
            }
            done
        }

        /// Copies the longest prefix of whole 32-byte units of `dst` from
        /// host address `src`; returns its length.
        ///
        /// # Safety
        ///
        /// As for [`read`](crate::host::read); `src` is 32-byte aligned
        /// and the CPU has AVX2.
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn copy_prefix(src: u64, dst: &mut [u8]) -> usize {
            let host = crate::host::ptr(src).cast::<__m256i>();
            let out = dst.as_mut_ptr().cast::<__m256i>();
            let units = dst.len() / 32;
            for i in 0..units {
                // SAFETY: a 32-aligned unit inside the caller's live range,
                // read volatile, stored unaligned into `dst`, which holds it.
                unsafe { _mm256_storeu_si256(out.add(i), host.wrapping_add(i).read_volatile()) };
            }
            units * 32
        }

        /// Stores the longest prefix of whole 32-byte units of `src` at
        /// host address `dst`; returns its length.
        ///
        /// # Safety
        ///
        /// As for [`write`](crate::host::write); `dst` is 32-byte aligned
        /// and the CPU has AVX2.
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn store_prefix(dst: u64, src: &[u8]) -> usize {
            let host = crate::host::ptr(dst).cast::<__m256i>();
            let from = src.as_ptr().cast::<__m256i>();
            let units = src.len() / 32;
            for i in 0..units {
                // SAFETY: a 32-aligned unit inside the caller's live range,
                // written volatile; the unit of `src` read unaligned.
                unsafe {
                    host.wrapping_add(i)
                        .write_volatile(_mm256_loadu_si256(from.add(i)))
                };
            }
            units * 32
        }
    }
}

/// Other targets: the word loops do all of it.
#[cfg(not(all(target_arch = "x86_64", not(miri))))]
mod vector {
    /// Nothing: see the x86_64 version.
    ///
    /// # Safety
    ///
    /// None needed; `unsafe` to match the x86_64 version.
    pub(super) unsafe fn equal_prefix(_src: u64, _expected: &[u8]) -> usize {
        0
    }

    /// Nothing: see the x86_64 version.
    ///
    /// # Safety
    ///
    /// None needed; `unsafe` to match the x86_64 version.
    pub(super) unsafe fn copy_prefix(_src: u64, _dst: &mut [u8]) -> usize {
        0
    }

    /// Nothing: see the x86_64 version.
    ///
    /// # Safety
    ///
    /// None needed; `unsafe` to match the x86_64 version.
    pub(super) unsafe fn store_prefix(_dst: u64, _src: &[u8]) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_alignment() {
        // 16-aligned, so offset 0 takes the vector paths.
        let mut words = vec![0u128; 19];
        let buf = words.as_mut_ptr().cast::<u8>();
        let base = buf.expose_provenance() as u64;
        // Offsets 0 and 16 are 16-aligned: their 64-byte blocks take the
        // vector paths, the others the word loops.
        for off in 0..17u64 {
            let data: Vec<u8> = (0..23 + 29 * ((off as usize + 4) % 9))
                .map(|i| i as u8 ^ off as u8)
                .collect();
            // SAFETY: inside `buf`, which this test owns.
            unsafe { write(base + off, &data) };
            let mut bulk = vec![0u8; data.len()];
            // SAFETY: `base + off` and this length lie inside `buf` (19 x 16 bytes), which this test owns and nothing else touches.
            unsafe { read_bulk(base + off, &mut bulk) };
            assert_eq!(bulk, data);
            let flipped: Vec<u8> = data.iter().map(|b| !b).collect();
            let mut before = vec![0u8; 19 * 16];
            // SAFETY: all 19 x 16 bytes of `buf`, which this test owns.
            unsafe { read(base, &mut before) };
            // SAFETY: `base + off` and this length lie inside `buf` (19 x 16 bytes), which this test owns and nothing else touches.
            unsafe { write_bulk(base + off, &flipped) };
            let mut after = vec![0u8; 19 * 16];
            // SAFETY: all 19 x 16 bytes of `buf`, which this test owns.
            unsafe { read(base, &mut after) };
            let range = off as usize..off as usize + data.len();
            assert_eq!(after[range.clone()], flipped[..]);
            assert_eq!(
                after[..range.start],
                before[..range.start],
                "nothing before"
            );
            assert_eq!(after[range.end..], before[range.end..], "nothing after");
            // SAFETY: `base + off` and this length lie inside `buf` (19 x 16 bytes), which this test owns and nothing else touches.
            unsafe { write(base + off, &data) };
            let mut back = vec![0u8; data.len()];
            // SAFETY: `base + off` and this length lie inside `buf` (19 x 16 bytes), which this test owns and nothing else touches.
            unsafe { read(base + off, &mut back) };
            assert_eq!(back, data);
            // SAFETY: `base + off` and this length lie inside `buf` (19 x 16 bytes), which this test owns and nothing else touches.
            assert!(unsafe { equals(base + off, &data) });
            for flip in 0..data.len() {
                let mut other = data.clone();
                other[flip] ^= 1;
                // SAFETY: `base + off` and this length lie inside `buf` (19 x 16 bytes), which this test owns and nothing else touches.
                let at = unsafe { first_difference(base + off, &other) }.unwrap();
                assert!(at <= flip && flip - at < 8, "{at} for {flip}");
                assert!(at == flip || (base + off + at as u64) % 8 == 0);
            }
        }
    }

    /// 32-byte aligned host memory, so the AVX2 paths run (where the CPU
    /// has AVX2) for offsets that are multiples of 32.
    #[repr(C, align(32))]
    struct Aligned([u8; 512]);

    #[test]
    fn wide_units_find_every_difference() {
        let mut mem = Aligned([0; 512]);
        let base = (&raw mut mem.0).cast::<u8>().expose_provenance() as u64;
        assert_eq!(base % 32, 0);
        // Offsets 0, 32 and 96 take the 32-byte paths, 16 the 16-byte ones;
        // the lengths leave 16-byte, word and byte tails.
        for off in [0u64, 16, 32, 96] {
            for len in [64usize, 100, 128, 200, 256, 300] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + off as usize) as u8).collect();
                // SAFETY: `off + len <= 396` bytes inside `mem`, which this test owns.
                unsafe { write_bulk(base + off, &data) };
                let mut bulk = vec![0u8; len];
                // SAFETY: the same range inside `mem`, which this test owns.
                unsafe { read_bulk(base + off, &mut bulk) };
                assert_eq!(bulk, data, "off {off} len {len}");
                for flip in 0..len {
                    let mut other = data.clone();
                    other[flip] ^= 0x80;
                    // SAFETY: the same range inside `mem`, which this test owns.
                    let at = unsafe { first_difference(base + off, &other) }.unwrap();
                    // The word holding the difference, as the word scan reports it.
                    assert!(at <= flip && flip - at < 8, "{at} for {flip}, off {off}");
                    assert!(at == flip || (base + off + at as u64) % 8 == 0);
                }
                // SAFETY: the same range inside `mem`, which this test owns.
                assert!(unsafe { equals(base + off, &data) });
            }
        }
    }
}
