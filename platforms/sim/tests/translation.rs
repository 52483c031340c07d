//! `SimMemory::phys_to_virt` answers from the physical map's last extent
//! without taking the machine lock: it must never answer for an extent the
//! map no longer holds.

use dma_core::{
    Cacheability, DeviceConstraints, DmaMap, ErrorKind, PhysAddr, PhysMemory, StreamingMapping,
    ToDevice,
};
use dma_sim::{Sim, SimConfig};

#[test]
fn a_freed_allocation_stops_translating_at_once() {
    let sim = Sim::new(SimConfig::non_coherent()).unwrap();
    let mem = sim.memory();
    let pages = mem.alloc_pages(2, Cacheability::Cached, u64::MAX).unwrap();
    let phys = pages.phys;
    // Translated just before the free: the extent the lock-free path holds.
    assert_eq!(mem.phys_to_virt(phys, 8192).unwrap(), pages.cpu);
    assert_eq!(
        mem.phys_to_virt(PhysAddr::new(phys.as_u64() + 4096), 16)
            .unwrap()
            .as_ptr(),
        pages.cpu.as_ptr().wrapping_add(4096)
    );
    // SAFETY: allocated above, freed once, not touched afterwards.
    unsafe { mem.free_pages(pages) };
    let e = mem.phys_to_virt(phys, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotContiguous);
}

#[test]
fn a_retired_buffer_s_old_address_stops_translating_once_it_is_placed_again() {
    let sim = Sim::new(SimConfig::non_coherent().seed(3)).unwrap();
    let dev = sim.add_device("d");
    let p = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
    let mem = sim.memory();
    let buf = vec![7u8; 256];
    let cpu = core::ptr::NonNull::new(buf.as_ptr().cast_mut()).unwrap();
    let old = p.virt_to_phys(cpu, 256).unwrap();
    // Mapped and unmapped: the buffer's extent retires.
    let m = StreamingMapping::<_, ToDevice, _>::map(&p, buf).unwrap();
    let buf = m.unmap().unwrap();
    assert_eq!(
        mem.phys_to_virt(old, 256).unwrap(),
        cpu,
        "a re-map may still use it"
    );
    // Translated again: placed afresh, and the old address is gone at
    // once (asked first, before any other lookup could replace what the
    // lock-free path holds).
    let new = mem.virt_to_phys(cpu, 256).unwrap();
    assert_ne!(new, old);
    let e = mem.phys_to_virt(old, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotContiguous);
    assert_eq!(mem.phys_to_virt(new, 256).unwrap(), cpu);
    drop(buf);
}
