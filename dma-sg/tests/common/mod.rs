//! Helpers shared by the integration tests: the platform, a device-side
//! memory reader, and canonical forms for comparing segment lists.
#![allow(dead_code)]

use dma_coherence::HardwareCoherent;
use dma_core::{DeviceConstraints, DmaAddr, HostMemory, Result};
use dma_direct::DirectPlatform;
use dma_sg::DmaSegment;

pub type Platform = DirectPlatform<HostMemory, HardwareCoherent>;

pub fn platform(c: DeviceConstraints) -> Platform {
    DirectPlatform::x86_coherent(HostMemory, c)
}

/// Reads a little-endian u64 at a device address, as the device would: on
/// the x86-coherent preset over host memory, device addresses are the
/// process's own addresses.
///
/// # Safety
///
/// `addr` is an 8-byte aligned address inside live DMA memory (a pool
/// block or coherent allocation the test holds).
pub unsafe fn device_read_u64(addr: DmaAddr) -> u64 {
    // SAFETY: the caller's promise; volatile because it is DMA memory.
    u64::from_le(unsafe { (addr.as_u64() as usize as *const u64).read_volatile() })
}

/// Reads `N` bytes at a device address (see [`device_read_u64`]).
///
/// # Safety
///
/// `addr..addr + N` lies inside live DMA memory the test holds.
pub unsafe fn device_read<const N: usize>(addr: DmaAddr) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: in bounds by the caller's promise.
        *b = unsafe { ((addr.as_u64() as usize + i) as *const u8).read_volatile() };
    }
    out
}

/// Merges contiguous neighbours: two lists describe the same bytes in the
/// same order exactly when their canonical forms are equal.
pub fn canonical(segs: impl IntoIterator<Item = DmaSegment>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for s in segs {
        match out.last_mut() {
            Some((a, l)) if *a + *l == s.addr.as_u64() => *l += s.len,
            _ => out.push((s.addr.as_u64(), s.len)),
        }
    }
    out
}

/// Collects what a walker visits.
pub fn collect_walk(
    walk: impl FnOnce(&mut dyn FnMut(DmaSegment) -> Result<()>) -> Result<()>,
) -> Result<Vec<DmaSegment>> {
    let mut v = Vec::new();
    walk(&mut |s| {
        v.push(s);
        Ok(())
    })?;
    Ok(v)
}

pub fn seg(addr: u64, len: u64) -> DmaSegment {
    DmaSegment::new(DmaAddr::new(addr), len)
}
