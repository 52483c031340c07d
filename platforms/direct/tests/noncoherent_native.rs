//! The non-coherent direct platform with the machine's real maintenance:
//! `arm_noncoherent` on aarch64 (under qemu-user in `cargo xtask test`, so
//! EL0: `dc cvac` and `dc civac`), `noncoherent` with `X86Maintenance` on
//! x86_64. A test process has no device, so the CPU plays it through the
//! mapping's volatile copies; what is checked is that every sync runs the
//! real instructions over real buffers without changing a byte, that the
//! whole-line rule applies, and how coherent allocations are asked for.

// Miri cannot run inline assembly or CPUID.
#![cfg(all(any(target_arch = "aarch64", target_arch = "x86_64"), not(miri)))]

use std::cell::Cell;
use std::ptr::NonNull;

use dma_coherence::CacheMaintenance;
use dma_core::{
    Bidirectional, Cacheability, Coherent, DeviceConstraints, DmaAlloc, DmaAttrs, DmaBuf, DmaMap,
    ErrorKind, FromDevice, HostMemory, Pages, PhysAddr, PhysMemory, StreamingMapping, ToDevice,
};
use dma_direct::DirectPlatform;

#[cfg(target_arch = "aarch64")]
fn platform<M: PhysMemory>(memory: M) -> DirectPlatform<M, impl CacheMaintenance> {
    DirectPlatform::arm_noncoherent(memory, DeviceConstraints::UNCONSTRAINED)
}

#[cfg(target_arch = "x86_64")]
fn platform<M: PhysMemory>(memory: M) -> DirectPlatform<M, impl CacheMaintenance> {
    let cache = dma_coherence::arch::x86_64::X86Maintenance::probe().unwrap();
    DirectPlatform::noncoherent(memory, cache, DeviceConstraints::UNCONSTRAINED)
}

#[test]
fn receive_and_transmit_round_trips_keep_the_data() {
    let p = platform(HostMemory);
    let line = p.dma_alignment();
    assert!(line.is_power_of_two() && line >= 16, "line {line}");

    // A whole number of lines: DmaBuf pads its allocation, but only the
    // length asked for is mapped, and a ragged end is refused (below).
    let buf = DmaBuf::for_device(&p, 2048).unwrap();
    assert_eq!(buf.as_ptr() as usize % line, 0);
    let mut rx = StreamingMapping::<_, FromDevice, _>::map(&p, buf).unwrap();
    // The "device" writes the frame; the driver syncs and reads it.
    let frame: Vec<u8> = (0..2048).map(|i| (i % 251) as u8).collect();
    let device = rx.dma_addr().as_u64() as usize as *mut u8;
    for (i, &b) in frame.iter().enumerate() {
        // SAFETY: the test plays the device, which owns the live 2048-byte
        // mapping; on host memory its DMA address is the CPU address.
        unsafe { device.add(i).write_volatile(b) };
    }
    rx.sync_for_cpu();
    rx.sync_range_for_cpu(14, 20).unwrap();
    let mut head = [0u8; 14];
    rx.read(0, &mut head).unwrap();
    assert_eq!(&head[..], &frame[..14]);
    let back = rx.unmap().unwrap();
    assert_eq!(&back[..], &frame[..]);

    let mut both = StreamingMapping::<_, Bidirectional, _>::map(&p, back).unwrap();
    both.write(100, &[9; 64]).unwrap();
    both.sync_for_device();
    both.sync_for_cpu();
    let back = both.unmap().unwrap();
    assert_eq!(&back[100..164], &[9; 64]);

    // A transmit buffer may start anywhere.
    let tx = StreamingMapping::<_, ToDevice, _>::map(&p, vec![0x5au8; 77]).unwrap();
    assert_eq!(tx.unmap().unwrap(), vec![0x5au8; 77]);
}

#[test]
fn a_receive_buffer_off_a_line_boundary_is_refused_and_returned() {
    let p = platform(HostMemory);
    let line = p.dma_alignment();
    let whole: &'static mut [u8] = Box::leak(
        DmaBuf::new(4 * line, line)
            .unwrap()
            .to_vec()
            .into_boxed_slice(),
    );
    let base = whole.as_ptr() as usize;
    let phys = PhysAddr::new(base as u64);
    let skew = (line - base % line) % line + 8; // 8 bytes past a line start
                                                // SAFETY: inside the leaked buffer; the map fails, so nothing is mapped.
    let e = unsafe {
        p.map(
            phys.checked_add(skew as u64).unwrap(),
            line,
            dma_core::DmaDirection::FromDevice,
            DmaAttrs::empty(),
        )
    }
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misaligned);
    let tail: &'static mut [u8] = &mut whole[skew..skew + line];
    let e = StreamingMapping::<_, FromDevice, _>::map(&p, tail).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Misaligned);
    assert_eq!(e.buffer.len(), line, "the buffer comes back");

    // DmaBuf::for_device starts on a line and owns the padding up to the
    // next one, so a length that is not a whole number of lines still maps:
    // the mapping covers the padded length.
    let short = DmaBuf::for_device(&p, line + 1).unwrap();
    let m = StreamingMapping::<_, FromDevice, _>::map(&p, short).unwrap();
    assert_eq!(m.len(), 2 * line, "mapped through the end of the last line");
    assert_eq!(
        m.unmap().unwrap().len(),
        line + 1,
        "the buffer keeps its own length"
    );
}

/// The hosted environment, recording what cacheability was asked for.
#[derive(Default)]
struct Recording {
    asked: Cell<Option<Cacheability>>,
}

// SAFETY: forwards to HostMemory, which upholds the contract.
unsafe impl PhysMemory for &Recording {
    fn page_size(&self) -> usize {
        HostMemory.page_size()
    }
    fn alloc_pages(&self, count: usize, c: Cacheability, max_phys: u64) -> dma_core::Result<Pages> {
        self.asked.set(Some(c));
        HostMemory.alloc_pages(count, c, max_phys)
    }
    unsafe fn free_pages(&self, pages: Pages) {
        // SAFETY: the caller's promise is passed on unchanged.
        unsafe { HostMemory.free_pages(pages) }
    }
    fn virt_to_phys(&self, cpu: NonNull<u8>, len: usize) -> dma_core::Result<PhysAddr> {
        HostMemory.virt_to_phys(cpu, len)
    }
    fn phys_to_virt(&self, phys: PhysAddr, len: usize) -> dma_core::Result<NonNull<u8>> {
        HostMemory.phys_to_virt(phys, len)
    }
}

#[test]
fn coherent_allocations_are_asked_for_uncached_and_refused_when_impossible() {
    let env = Recording::default();
    let p = platform(&env);
    // A hosted process cannot map memory uncached, so the allocation fails
    // rather than hand out cached memory the device would not see.
    let e = Coherent::<u64, _>::zeroed(&p).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(env.asked.get(), Some(Cacheability::Uncached));
    let e = p.alloc_coherent(64, DmaAttrs::WRITE_COMBINE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(env.asked.get(), Some(Cacheability::WriteCombine));
}
