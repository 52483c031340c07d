//! embedded-dma buffers through `dma_core::embedded::EmbeddedMapping`, on
//! the direct backend with a recording (non-coherent) cache policy: the
//! same syncs as a `StreamingMapping`, the buffer back on every failure,
//! and a forgotten mapping leaking rather than freeing.

use dma_coherence::{CacheOp, RecordingCache};
use dma_core::embedded::EmbeddedMapping;
use dma_core::{
    Bidirectional, DeviceConstraints, DmaMap, ErrorKind, FromDevice, HostMemory, ToDevice,
};
use dma_direct::{BusOffset, DirectPlatform};

const LINE: usize = 64;

/// A line-aligned buffer, as a device-written buffer on a non-coherent
/// platform must be.
#[repr(C, align(64))]
struct Lines([u8; 256]);

fn leaked() -> &'static mut [u8; 256] {
    &mut Box::leak(Box::new(Lines([0; 256]))).0
}

fn platform(cache: &RecordingCache) -> DirectPlatform<HostMemory, &RecordingCache> {
    DirectPlatform::new(
        HostMemory,
        cache,
        BusOffset::IDENTITY,
        DeviceConstraints::UNCONSTRAINED,
    )
}

/// The device's side of a transfer: a write straight into the mapped bytes.
fn device_writes(m: &EmbeddedMapping<&'static mut [u8; 256], FromDevice, impl DmaMap>, byte: u8) {
    let at = m.raw().phys.as_u64() as usize as *mut u8;
    // SAFETY: HostMemory is identity-translated, so `phys` is the buffer's
    // address; the mapping is live and nothing else touches it meanwhile.
    unsafe { core::ptr::write_bytes(at, byte, m.len()) };
}

#[test]
fn a_static_array_is_received_into_and_given_back() {
    let cache = RecordingCache::new(LINE);
    let p = platform(&cache);
    let buf = leaked();
    let addr = buf.as_ptr() as usize;
    let mut rx = EmbeddedMapping::<_, FromDevice, _>::map(&p, buf).unwrap();
    assert_eq!((rx.len(), rx.dma_addr().as_u64() as usize), (256, addr));
    device_writes(&rx, 0x5a);
    cache.clear();
    rx.sync_for_cpu();
    let ops: Vec<_> = cache.recorded().map(|r| (r.op, r.va, r.len)).collect();
    assert_eq!(ops, [(CacheOp::Invalidate, addr, 256)]);
    let mut got = [0u8; 4];
    rx.read(100, &mut got).unwrap();
    assert_eq!(got, [0x5a; 4]);
    let back: &'static mut [u8; 256] = rx.unmap().unwrap();
    assert_eq!(back.as_ptr() as usize, addr);
    assert!(back.iter().all(|&b| b == 0x5a));
}

#[test]
fn words_are_mapped_as_bytes_and_cleaned_for_the_device() {
    let cache = RecordingCache::new(LINE);
    let p = platform(&cache);
    let words: &'static mut [u32] = Box::leak(vec![0x1122_3344u32; 32].into_boxed_slice());
    let addr = words.as_ptr() as usize;
    let mut tx = EmbeddedMapping::<_, ToDevice, _>::map(&p, words).unwrap();
    assert_eq!(tx.len(), 128);
    tx.write(0, &[0xff; 4]).unwrap();
    cache.clear();
    tx.sync_for_device();
    let ops: Vec<_> = cache.recorded().map(|r| (r.op, r.va, r.len)).collect();
    assert_eq!(ops, [(CacheOp::Clean, addr, 128)]);
    let back = tx.unmap().unwrap();
    assert_eq!((back[0], back[1]), (0xffff_ffff, 0x1122_3344));
}

#[test]
fn a_buffer_sharing_cache_lines_is_refused_and_returned() {
    let cache = RecordingCache::new(LINE);
    let p = platform(&cache);
    // 16 bytes into a line-aligned block: its first line is shared.
    let block = leaked();
    let (_, tail) = block.split_at_mut(16);
    let err = EmbeddedMapping::<_, Bidirectional, _>::map(&p, tail).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Misaligned);
    assert_eq!(err.buffer.len(), 240, "the buffer comes back untouched");
    assert_eq!(cache.recorded().count(), 0, "a refusal maintains nothing");
}

#[test]
fn an_empty_buffer_is_a_typed_error_with_the_buffer_back() {
    let cache = RecordingCache::new(LINE);
    let p = platform(&cache);
    let empty: &'static mut [u8] = &mut [];
    let err = EmbeddedMapping::<_, ToDevice, _>::map(&p, empty).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ZeroSize);
    assert!(err.buffer.is_empty());
}

#[test]
fn dropping_unmaps_with_the_sync_for_the_cpu() {
    let cache = RecordingCache::new(LINE);
    let p = platform(&cache);
    let rx = EmbeddedMapping::<_, FromDevice, _>::map(&p, leaked()).unwrap();
    cache.clear();
    drop(rx);
    let ops: Vec<_> = cache.recorded().map(|r| r.op).collect();
    assert_eq!(
        ops,
        [CacheOp::Invalidate],
        "unmap gives the bytes to the CPU"
    );
}

#[test]
fn a_forgotten_mapping_leaks_its_buffer() {
    let cache = RecordingCache::new(LINE);
    let p = platform(&cache);
    let rx = EmbeddedMapping::<_, FromDevice, _>::map(&p, leaked()).unwrap();
    cache.clear();
    core::mem::forget(rx);
    assert_eq!(cache.recorded().count(), 0, "no unmap, no sync, no free");
}

/// A buffer type whose `write_buffer` breaks embedded-dma's contract by
/// returning null: a typed error, and the handle back.
struct NullBuffer;

// SAFETY: deliberately wrong only in returning null, which the mapping must
// refuse; nothing is ever read or written through it.
unsafe impl embedded_dma::ReadBuffer for NullBuffer {
    type Word = u8;
    unsafe fn read_buffer(&self) -> (*const u8, usize) {
        (core::ptr::null(), 64)
    }
}

// SAFETY: as the `ReadBuffer` impl: null is refused before any access.
unsafe impl embedded_dma::WriteBuffer for NullBuffer {
    type Word = u8;
    unsafe fn write_buffer(&mut self) -> (*mut u8, usize) {
        (core::ptr::null_mut(), 64)
    }
}

#[test]
fn a_null_buffer_is_a_typed_error_with_the_buffer_back() {
    let cache = RecordingCache::new(LINE);
    let p = platform(&cache);
    let err = EmbeddedMapping::<_, ToDevice, _>::map(&p, NullBuffer).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable);
    assert!(err.to_string().contains("null"), "{err}");
    let NullBuffer = err.buffer;
}
