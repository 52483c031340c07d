//! The memory a ring lives in, as both sides access it.
//!
//! Protocol code touches ring memory only through [`RingMemory`], in two
//! kinds of access:
//! - *data* (`read_*` / `write_*`): descriptor and completion fields, which
//!   one side writes before publishing them and the other reads after
//!   seeing them published;
//! - *flags* ([`load_flag`](RingMemory::load_flag) /
//!   [`store_flag`](RingMemory::store_flag)): the 16-bit words both sides
//!   race on (a phase tag word, a done-bit word, a virtio index or flags
//!   word, an event index).
//!
//! On hardware both are plain single-copy-atomic accesses. Under
//! `--cfg dma_loom`, [`LoomMemory`] backs data with `loom::cell::UnsafeCell`
//! (so reading a field the other side has not published is reported as a
//! race) and flags with loom atomics, so the models check the barriers and
//! not merely the values.
//!
//! All multi-byte fields are little-endian, as NVMe, virtio and the NIC
//! formats require; on little-endian CPUs the conversions vanish.

use core::ptr::NonNull;

use dma_core::{Coherent, DmaAddr, DmaAlloc};

/// Memory shared with a device, addressed by byte offset.
///
/// # Safety
///
/// Implementations promise that every offset below [`len`](Self::len)
/// addresses memory valid for the accesses below for the value's lifetime,
/// that the device reaches byte 0 at [`dma_addr`](Self::dma_addr), that no
/// Rust reference to the memory is formed, and that flag accesses are
/// single-copy atomic 16-bit accesses.
///
/// Callers of the `unsafe` methods promise that `offset` is aligned to the
/// access width and `offset + width <= len()`.
pub unsafe trait RingMemory {
    /// Size in bytes.
    fn len(&self) -> usize;

    /// Whether the region is empty (it never is for a working ring).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the device sees byte 0.
    fn dma_addr(&self) -> DmaAddr;

    /// Reads a data `u16`.
    ///
    /// # Safety
    ///
    /// `offset` is 2-aligned and `offset + 2 <= len()`.
    unsafe fn read_u16(&self, offset: usize) -> u16;
    /// Reads a data `u32`.
    ///
    /// # Safety
    ///
    /// `offset` is 4-aligned and `offset + 4 <= len()`.
    unsafe fn read_u32(&self, offset: usize) -> u32;
    /// Reads a data `u64`.
    ///
    /// # Safety
    ///
    /// `offset` is 8-aligned and `offset + 8 <= len()`.
    unsafe fn read_u64(&self, offset: usize) -> u64;
    /// Writes a data `u16`.
    ///
    /// # Safety
    ///
    /// As for [`read_u16`](Self::read_u16).
    unsafe fn write_u16(&self, offset: usize, value: u16);
    /// Writes a data `u32`.
    ///
    /// # Safety
    ///
    /// As for [`read_u32`](Self::read_u32).
    unsafe fn write_u32(&self, offset: usize, value: u32);
    /// Writes a data `u64`.
    ///
    /// # Safety
    ///
    /// As for [`read_u64`](Self::read_u64).
    unsafe fn write_u64(&self, offset: usize, value: u64);
    /// Loads a flag word.
    ///
    /// # Safety
    ///
    /// As for [`read_u16`](Self::read_u16).
    unsafe fn load_flag(&self, offset: usize) -> u16;
    /// Stores a flag word.
    ///
    /// # Safety
    ///
    /// As for [`read_u16`](Self::read_u16).
    unsafe fn store_flag(&self, offset: usize, value: u16);

    /// Hints that data at `offset` will be written soon: on Arm64, and on
    /// x86-64 CPUs whose CPUID has PRFCHW, a prefetch for writing (other
    /// x86-64 CPUs prefetch for reading), so the cache line a device read last
    /// is fetched before the stores that need it queue up behind each
    /// other. Changes nothing the program or the device can observe; any
    /// offset is allowed (one outside the memory is a wasted hint). The
    /// default does nothing.
    #[inline(always)]
    fn prefetch_for_write(&self, offset: usize) {
        let _ = offset;
    }

    /// Hints that data at `offset` will be read soon (a prefetch on
    /// x86-64 and Arm64), so a line the device has written is fetched
    /// while the entries before it are handled. As
    /// [`prefetch_for_write`](Self::prefetch_for_write), it changes
    /// nothing observable, takes any offset, and does nothing by default.
    #[inline(always)]
    fn prefetch_for_read(&self, offset: usize) {
        let _ = offset;
    }

    /// Writes consecutive data `u64`s from `offset` (a whole descriptor,
    /// say), in any order and access width: nothing may read them before
    /// the flag or doorbell that publishes them.
    ///
    /// # Safety
    ///
    /// `offset` is 8-aligned and `offset + 8 * words.len() <= len()`.
    #[inline]
    unsafe fn write_u64s(&self, offset: usize, words: &[u64]) {
        for (i, &word) in words.iter().enumerate() {
            // SAFETY: inside the range the caller promised, 8-aligned.
            unsafe { self.write_u64(offset + 8 * i, word) };
        }
    }
}

/// Checks that `mem` holds `needed` bytes and the device sees it aligned to
/// `align`.
pub(crate) fn check_memory<M: RingMemory + ?Sized>(
    mem: &M,
    needed: usize,
    align: u64,
) -> crate::Result<()> {
    use crate::{RingError, RingErrorKind};
    if mem.len() < needed {
        return Err(RingError::with(RingErrorKind::BadMemory, needed as u64));
    }
    if !mem.dma_addr().is_aligned(align) {
        return Err(RingError::with(
            RingErrorKind::BadMemory,
            mem.dma_addr().as_u64(),
        ));
    }
    Ok(())
}

/// Volatile and atomic accesses through a raw pointer.
///
/// # Safety (for every function)
///
/// `base + offset` is valid for the access and aligned to its width.
mod raw {
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicU16, Ordering};

    macro_rules! data {
        ($read:ident, $write:ident, $t:ty) => {
            #[inline(always)]
            pub(super) unsafe fn $read(base: NonNull<u8>, offset: usize) -> $t {
                // SAFETY: the caller promises the access is in bounds and aligned.
                <$t>::from_le(unsafe { base.as_ptr().add(offset).cast::<$t>().read_volatile() })
            }
            #[inline(always)]
            pub(super) unsafe fn $write(base: NonNull<u8>, offset: usize, value: $t) {
                // SAFETY: the caller promises the access is in bounds and aligned.
                unsafe {
                    base.as_ptr()
                        .add(offset)
                        .cast::<$t>()
                        .write_volatile(value.to_le())
                }
            }
        };
    }
    data!(read_u16, write_u16, u16);
    data!(read_u32, write_u32, u32);
    data!(read_u64, write_u64, u64);

    // Flags are atomics with acquire/release on top of the explicit DMA
    // barriers: against a device that costs nothing on x86 (plain moves)
    // and little elsewhere, and it keeps a CPU-thread device model (the sim,
    // the tests, the bench) free of data races in Rust's memory model.
    #[inline(always)]
    pub(super) unsafe fn load_flag(base: NonNull<u8>, offset: usize) -> u16 {
        // SAFETY: in bounds and 2-aligned (caller); the word is only ever
        // accessed atomically by the CPU, the device's accesses are DMA.
        let atomic = unsafe { AtomicU16::from_ptr(base.as_ptr().add(offset).cast()) };
        u16::from_le(atomic.load(Ordering::Acquire))
    }
    #[inline(always)]
    pub(super) unsafe fn store_flag(base: NonNull<u8>, offset: usize, value: u16) {
        // SAFETY: as in `load_flag`.
        let atomic = unsafe { AtomicU16::from_ptr(base.as_ptr().add(offset).cast()) };
        atomic.store(value.to_le(), Ordering::Release);
    }

    /// A prefetch-for-write hint for the line holding `base + offset`.
    #[inline(always)]
    pub(super) fn prefetch_for_write(base: NonNull<u8>, offset: usize) {
        let at = base.as_ptr().wrapping_add(offset);
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if prefetchw_available() {
            // SAFETY: CPUID says this CPU has `prefetchw` (PRFCHW); a hint,
            // it never faults and changes no register, flag or memory.
            unsafe {
                core::arch::asm!("prefetchw [{}]", in(reg) at, options(nostack, preserves_flags, readonly));
            }
        } else {
            // SAFETY: `prefetcht0` (SSE, in every x86-64 CPU) is a hint: it
            // never faults and changes no register, flag or memory.
            unsafe {
                core::arch::asm!("prefetcht0 [{}]", in(reg) at, options(nostack, preserves_flags, readonly));
            }
        }
        #[cfg(all(target_arch = "aarch64", not(miri)))]
        // SAFETY: `prfm` is a hint: it never faults, whatever the address,
        // and changes no register, flag or memory contents.
        unsafe {
            core::arch::asm!("prfm pstl1keep, [{}]", in(reg) at, options(nostack, preserves_flags, readonly));
        }
        let _ = at;
    }

    /// Whether this CPU has `prefetchw` (CPUID 8000_0001h ECX bit 8,
    /// PRFCHW). x86-64's baseline lacks it, so it is asked once and the
    /// answer kept; a CPU without it gets `prefetcht0` instead of an
    /// invalid-opcode fault.
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[inline(always)]
    pub(super) fn prefetchw_available() -> bool {
        use core::sync::atomic::AtomicU8;
        static KNOWN: AtomicU8 = AtomicU8::new(0);
        match KNOWN.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let has = detect_prefetchw();
                KNOWN.store(if has { 1 } else { 2 }, Ordering::Relaxed);
                has
            }
        }
    }

    #[cfg(all(target_arch = "x86_64", not(miri)))]
    #[cold]
    fn detect_prefetchw() -> bool {
        use core::arch::x86_64::__cpuid;
        // CPUID faults inside an SGX enclave.
        if cfg!(target_env = "sgx") {
            return false;
        }
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86-64 CPU and only reads
        // identification registers; leaf 8000_0001h is asked only after
        // leaf 8000_0000h says it exists.
        unsafe {
            __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
        }
    }

    /// A prefetch-for-read hint for the line holding `base + offset`.
    #[inline(always)]
    pub(super) fn prefetch_for_read(base: NonNull<u8>, offset: usize) {
        let at = base.as_ptr().wrapping_add(offset);
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        // SAFETY: `prefetcht0` is a hint: it never faults, whatever the
        // address, and changes no register, flag or memory contents.
        unsafe {
            core::arch::asm!("prefetcht0 [{}]", in(reg) at, options(nostack, preserves_flags, readonly));
        }
        #[cfg(all(target_arch = "aarch64", not(miri)))]
        // SAFETY: `prfm` is a hint: it never faults, whatever the address,
        // and changes no register, flag or memory contents.
        unsafe {
            core::arch::asm!("prfm pldl1keep, [{}]", in(reg) at, options(nostack, preserves_flags, readonly));
        }
        let _ = at;
    }

    /// Consecutive `u64`s from `base + offset`, which is 8-aligned and
    /// valid for them. A writer waiting for the cache line of a device that
    /// read it last holds each store in the store buffer until the line
    /// arrives; 16-byte stores where aligned (SSE2, baseline on x86-64)
    /// halve the entries a descriptor takes there, so more lines are
    /// fetched at once.
    #[inline(always)]
    pub(super) unsafe fn write_u64s(base: NonNull<u8>, offset: usize, words: &[u64]) {
        // SAFETY: the caller promises the range is valid and 8-aligned.
        let ptr = unsafe { base.as_ptr().add(offset) };
        #[cfg(target_arch = "x86_64")]
        if ptr as usize % 16 == 0 {
            use core::arch::x86_64::__m128i;
            let pairs = words.chunks_exact(2);
            let rest = pairs.remainder();
            let mut at = ptr;
            for pair in pairs {
                // SAFETY: reads our own two words as 16 bytes (any bits
                // are a valid __m128i); little-endian, so in memory order.
                let v = unsafe { pair.as_ptr().cast::<__m128i>().read_unaligned() };
                // SAFETY: 16-aligned (checked above, then in steps of 16)
                // and inside the caller's range.
                unsafe {
                    at.cast::<__m128i>().write_volatile(v);
                    at = at.add(16);
                }
            }
            if let Some(&last) = rest.first() {
                // SAFETY: the last 8 bytes of the caller's range, aligned.
                unsafe { at.cast::<u64>().write_volatile(last) };
            }
            return;
        }
        for (i, &word) in words.iter().enumerate() {
            // SAFETY: inside the caller's range, 8-aligned.
            unsafe { ptr.add(8 * i).cast::<u64>().write_volatile(word.to_le()) };
        }
    }
}

macro_rules! raw_ring_memory {
    () => {
        #[inline]
        unsafe fn read_u16(&self, offset: usize) -> u16 {
            // SAFETY: the caller promises bounds and alignment.
            unsafe { raw::read_u16(self.base(), offset) }
        }
        #[inline]
        unsafe fn read_u32(&self, offset: usize) -> u32 {
            // SAFETY: the caller promises bounds and alignment.
            unsafe { raw::read_u32(self.base(), offset) }
        }
        #[inline]
        unsafe fn read_u64(&self, offset: usize) -> u64 {
            // SAFETY: the caller promises bounds and alignment.
            unsafe { raw::read_u64(self.base(), offset) }
        }
        #[inline]
        unsafe fn write_u16(&self, offset: usize, value: u16) {
            // SAFETY: the caller promises bounds and alignment.
            unsafe { raw::write_u16(self.base(), offset, value) }
        }
        #[inline]
        unsafe fn write_u32(&self, offset: usize, value: u32) {
            // SAFETY: the caller promises bounds and alignment.
            unsafe { raw::write_u32(self.base(), offset, value) }
        }
        #[inline]
        unsafe fn write_u64(&self, offset: usize, value: u64) {
            // SAFETY: the caller promises bounds and alignment.
            unsafe { raw::write_u64(self.base(), offset, value) }
        }
        #[inline]
        unsafe fn load_flag(&self, offset: usize) -> u16 {
            // SAFETY: the caller promises bounds and alignment.
            unsafe { raw::load_flag(self.base(), offset) }
        }
        #[inline]
        unsafe fn store_flag(&self, offset: usize, value: u16) {
            // SAFETY: the caller promises bounds and alignment.
            unsafe { raw::store_flag(self.base(), offset, value) }
        }
        #[inline]
        unsafe fn write_u64s(&self, offset: usize, words: &[u64]) {
            // SAFETY: the caller promises bounds and alignment.
            unsafe { raw::write_u64s(self.base(), offset, words) }
        }
        #[inline(always)]
        fn prefetch_for_write(&self, offset: usize) {
            raw::prefetch_for_write(self.base(), offset)
        }
        #[inline(always)]
        fn prefetch_for_read(&self, offset: usize) {
            raw::prefetch_for_read(self.base(), offset)
        }
    };
}

trait Base {
    fn base(&self) -> NonNull<u8>;
}

impl<P: DmaAlloc> Base for Coherent<[u64], P> {
    #[inline(always)]
    fn base(&self) -> NonNull<u8> {
        self.as_ptr()
    }
}

// SAFETY: a `Coherent` allocation is valid for its size until dropped, is
// reached by the device at `dma_addr`, and is never handed out as a
// reference. Its `&mut self` rule for writes is kept by the rings, which
// write only from `&mut self` methods of their own. The u64 element type
// makes the base 8-aligned.
unsafe impl<P: DmaAlloc> RingMemory for Coherent<[u64], P> {
    #[inline]
    fn len(&self) -> usize {
        self.size()
    }
    fn dma_addr(&self) -> DmaAddr {
        Coherent::dma_addr(self)
    }
    raw_ring_memory!();
}

/// Ring memory by raw pointer: how a device model, a simulator or a test
/// sees memory that a ring owns (for example a second view of a
/// [`Coherent`] allocation, taken from its `as_ptr`).
#[derive(Clone, Copy, Debug)]
pub struct MemoryView {
    ptr: NonNull<u8>,
    len: usize,
    dma: DmaAddr,
}

// SAFETY: a view only does volatile data accesses and atomic flag
// accesses; the ring protocols order the data accesses between the sides.
unsafe impl Send for MemoryView {}
// SAFETY: `&MemoryView` gives only volatile data accesses and atomic
// flag accesses through a raw pointer; the ring protocols order the data
// accesses between threads, so sharing it is no data race.
unsafe impl Sync for MemoryView {}

impl MemoryView {
    /// A view of `len` bytes at `ptr`, which the device reaches at `dma`.
    ///
    /// # Safety
    ///
    /// `ptr` is 8-aligned and valid for volatile reads and writes of `len`
    /// bytes for as long as the view or a copy of it is used, and no
    /// reference to those bytes exists meanwhile.
    pub const unsafe fn new(ptr: NonNull<u8>, len: usize, dma: DmaAddr) -> Self {
        Self { ptr, len, dma }
    }

    /// A view of an allocation (the allocation must outlive the view's use).
    ///
    /// # Safety
    ///
    /// The view is used only while `mem` is alive.
    pub unsafe fn of<P: DmaAlloc>(mem: &Coherent<[u64], P>) -> Self {
        // SAFETY: a live Coherent is valid for its size; the caller bounds
        // the view's use by the allocation's life.
        unsafe { Self::new(mem.as_ptr(), mem.size(), mem.dma_addr()) }
    }
}

impl Base for MemoryView {
    #[inline(always)]
    fn base(&self) -> NonNull<u8> {
        self.ptr
    }
}

// SAFETY: `new`'s caller promised validity of the range; `dma` is what the
// caller said the device sees.
unsafe impl RingMemory for MemoryView {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }
    fn dma_addr(&self) -> DmaAddr {
        self.dma
    }
    raw_ring_memory!();
}

macro_rules! forward_memory {
    ($($ptr:ty),*) => { $(
        // SAFETY: forwards every call to the implementation behind the pointer.
        unsafe impl<M: RingMemory + ?Sized> RingMemory for $ptr {
            #[inline(always)]
            fn len(&self) -> usize { (**self).len() }
            #[inline(always)]
            fn dma_addr(&self) -> DmaAddr { (**self).dma_addr() }
            #[inline(always)]
            unsafe fn read_u16(&self, o: usize) -> u16 {
                // SAFETY: the caller's promise is passed on.
                unsafe { (**self).read_u16(o) }
            }
            #[inline(always)]
            unsafe fn read_u32(&self, o: usize) -> u32 {
                // SAFETY: the caller's promise is passed on.
                unsafe { (**self).read_u32(o) }
            }
            #[inline(always)]
            unsafe fn read_u64(&self, o: usize) -> u64 {
                // SAFETY: the caller's promise is passed on.
                unsafe { (**self).read_u64(o) }
            }
            #[inline(always)]
            unsafe fn write_u16(&self, o: usize, v: u16) {
                // SAFETY: the caller's promise is passed on.
                unsafe { (**self).write_u16(o, v) }
            }
            #[inline(always)]
            unsafe fn write_u32(&self, o: usize, v: u32) {
                // SAFETY: the caller's promise is passed on.
                unsafe { (**self).write_u32(o, v) }
            }
            #[inline(always)]
            unsafe fn write_u64(&self, o: usize, v: u64) {
                // SAFETY: the caller's promise is passed on.
                unsafe { (**self).write_u64(o, v) }
            }
            #[inline(always)]
            unsafe fn load_flag(&self, o: usize) -> u16 {
                // SAFETY: the caller's promise is passed on.
                unsafe { (**self).load_flag(o) }
            }
            #[inline(always)]
            unsafe fn store_flag(&self, o: usize, v: u16) {
                // SAFETY: the caller's promise is passed on.
                unsafe { (**self).store_flag(o, v) }
            }
            #[inline(always)]
            unsafe fn write_u64s(&self, o: usize, w: &[u64]) {
                // SAFETY: the caller's promise is passed on.
                unsafe { (**self).write_u64s(o, w) }
            }
            #[inline(always)]
            fn prefetch_for_write(&self, o: usize) { (**self).prefetch_for_write(o) }
            #[inline(always)]
            fn prefetch_for_read(&self, o: usize) { (**self).prefetch_for_read(o) }
        }
    )* };
}

forward_memory!(&M);
#[cfg(feature = "alloc")]
forward_memory!(alloc::sync::Arc<M>);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn write_u64s_lands_every_word_at_any_8_aligned_offset() {
        let mut backing = vec![0u64; 16];
        let ptr = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: 8-aligned, 128 bytes, used only while `backing` lives and
        // not referenced meanwhile.
        let mem = unsafe { MemoryView::new(ptr, 128, DmaAddr::new(0)) };
        let words = [1, 2, 3, 4, 5, 6, 7];
        for offset in [0, 8, 16, 40] {
            // SAFETY: 8-aligned, offset + 56 <= 128.
            unsafe { mem.write_u64s(offset, &words) };
            // SAFETY: 8-aligned, offset + 56 <= 128, written just above.
            let back: [u64; 7] = core::array::from_fn(|i| unsafe { mem.read_u64(offset + 8 * i) });
            assert_eq!(back, words, "at offset {offset}");
            // SAFETY: 8-aligned, offset + 56 <= 128, inside `backing`.
            unsafe { mem.write_u64s(offset, &[0; 7]) };
        }
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
    #[test]
    fn prefetchw_is_used_only_where_cpuid_has_it() {
        // Linux names the same CPUID bit (8000_0001h ECX 8) `3dnowprefetch`
        // in /proc/cpuinfo. Ask twice: the kept answer must match too.
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap();
        let has = flags.split_whitespace().any(|f| f == "3dnowprefetch");
        assert_eq!(raw::prefetchw_available(), has);
        assert_eq!(raw::prefetchw_available(), has);
    }

    #[test]
    fn a_prefetch_at_any_offset_changes_nothing() {
        let mut backing: std::vec::Vec<u64> = (1..=16).collect();
        let ptr = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: 8-aligned, 128 bytes, used only while `backing` lives and
        // not referenced meanwhile.
        let mem = unsafe { MemoryView::new(ptr, 128, DmaAddr::new(0)) };
        // Inside, at the end, past it, and far outside: a hint never faults.
        for offset in [0, 64, 127, 128, 4096, usize::MAX] {
            mem.prefetch_for_write(offset);
            mem.prefetch_for_read(offset);
            // And through the forwarding implementation for `&M`.
            RingMemory::prefetch_for_write(&&mem, offset);
            RingMemory::prefetch_for_read(&&mem, offset);
        }
        // SAFETY: 8-aligned, inside the 128 bytes.
        let back: [u64; 16] = core::array::from_fn(|i| unsafe { mem.read_u64(8 * i) });
        assert_eq!(back, core::array::from_fn(|i| i as u64 + 1));
    }
}

#[cfg(dma_loom)]
pub use self::loom_memory::LoomMemory;

#[cfg(dma_loom)]
mod loom_memory {
    extern crate std;
    use std::vec::Vec;

    use super::RingMemory;
    use crate::sync::{AtomicU16, Ordering, UnsafeCell};
    use dma_core::DmaAddr;

    /// Ring memory loom can see: every 16-bit granule is a
    /// `loom::cell::UnsafeCell` for data accesses (loom reports a read or
    /// write not ordered after the other side's conflicting access) and a
    /// loom atomic for flag accesses, which are relaxed so that only the
    /// protocol's own barriers order anything.
    #[derive(Debug)]
    pub struct LoomMemory {
        data: Vec<UnsafeCell<u16>>,
        flags: Vec<AtomicU16>,
        dma: DmaAddr,
    }

    // SAFETY: shared between the driver and device threads is the point:
    // every data access goes through loom's cells, which report accesses
    // the protocol does not order, and flags are loom atomics.
    unsafe impl Sync for LoomMemory {}
    // SAFETY: the cells and atomics hold plain integers and loom tracks
    // every access to them, from whichever thread owns the memory.
    unsafe impl Send for LoomMemory {}

    impl LoomMemory {
        /// `len` zeroed bytes (rounded up to a granule) that the device is
        /// said to see at `dma`. Create it inside the loom model.
        pub fn new(len: usize, dma: DmaAddr) -> Self {
            let granules = len.div_ceil(2);
            Self {
                data: (0..granules).map(|_| UnsafeCell::new(0)).collect(),
                flags: (0..granules).map(|_| AtomicU16::new(0)).collect(),
                dma,
            }
        }

        fn read(&self, offset: usize, granules: usize) -> u64 {
            let mut v = 0u64;
            for i in 0..granules {
                // SAFETY: loom checks this access against the other side's
                // writes; the closure reads a plain u16 it owns.
                let g = self.data[offset / 2 + i].with(|p| unsafe { *p });
                v |= u64::from(g) << (16 * i);
            }
            v
        }

        fn write(&self, offset: usize, granules: usize, value: u64) {
            for i in 0..granules {
                // SAFETY: loom checks this access against the other side's
                // accesses; the closure writes a plain u16 it owns.
                self.data[offset / 2 + i].with_mut(|p| unsafe { *p = (value >> (16 * i)) as u16 });
            }
        }
    }

    // SAFETY: a model of memory, not memory: every access is bounds-checked
    // by the vectors, nothing is ever referenced from outside.
    unsafe impl RingMemory for LoomMemory {
        fn len(&self) -> usize {
            self.data.len() * 2
        }
        fn dma_addr(&self) -> DmaAddr {
            self.dma
        }
        unsafe fn read_u16(&self, o: usize) -> u16 {
            self.read(o, 1) as u16
        }
        unsafe fn read_u32(&self, o: usize) -> u32 {
            self.read(o, 2) as u32
        }
        unsafe fn read_u64(&self, o: usize) -> u64 {
            self.read(o, 4)
        }
        unsafe fn write_u16(&self, o: usize, v: u16) {
            self.write(o, 1, v.into())
        }
        unsafe fn write_u32(&self, o: usize, v: u32) {
            self.write(o, 2, v.into())
        }
        unsafe fn write_u64(&self, o: usize, v: u64) {
            self.write(o, 4, v)
        }
        unsafe fn load_flag(&self, o: usize) -> u16 {
            self.flags[o / 2].load(Ordering::Relaxed)
        }
        unsafe fn store_flag(&self, o: usize, v: u16) {
            self.flags[o / 2].store(v, Ordering::Relaxed)
        }
    }
}
