//! The checker must be silent and transparent for correct use: every safe
//! type of dma-core, sg tables and concurrent users, with no report and no
//! record left behind.

use std::sync::Arc;

use dma_check::{Checked, Config, Mode};
use dma_core::{
    Bidirectional, Coherent, DeviceConstraints, DmaAttrs, DmaBuf, DmaDirection, DmaMap, DmaPool,
    FromDevice, HostMemory, PhysAddr, SgEntry, StreamingMapping, ToDevice,
};
use dma_direct::DirectPlatform;

fn platform() -> Checked<DirectPlatform<HostMemory, dma_coherence::HardwareCoherent>> {
    // Panic mode: any false positive fails the test where it happens.
    Checked::with_config(
        DirectPlatform::x86_coherent(HostMemory, DeviceConstraints::UNCONSTRAINED),
        Config::new().mode(Mode::Panic).cache_line(64),
    )
}

#[test]
fn safe_types_produce_no_reports() {
    let p = platform();
    let mut tx = StreamingMapping::<_, ToDevice, _>::map(&p, vec![1u8; 1500]).unwrap();
    tx.write(0, &[2; 16]).unwrap();
    tx.sync_for_device();
    tx.sync_range_for_device(100, 50).unwrap();
    // Buffers the device writes own their cache lines (DmaBuf::for_device
    // follows the checker's 64-byte line); a Vec could share one with its
    // heap neighbour, which the checker would rightly report.
    let rx = DmaBuf::for_device(&p, 2048).unwrap();
    let mut rx = StreamingMapping::<_, FromDevice, _>::map(&p, rx).unwrap();
    rx.sync_range_for_cpu(0, 64).unwrap();
    rx.sync_for_cpu();
    let bi = DmaBuf::for_device(&p, 512).unwrap();
    let mut bi = StreamingMapping::<_, Bidirectional, _>::map(&p, bi).unwrap();
    bi.sync_for_device();
    bi.sync_for_cpu();
    assert_eq!(p.live_mappings().len(), 3);
    tx.unmap().unwrap();
    rx.unmap().unwrap();
    drop(bi); // unmapped by Drop

    let mut ring = Coherent::<[u64], _>::zeroed_slice(&p, 512).unwrap();
    ring.write(7, 42).unwrap();
    let pool = DmaPool::new(&p, 64, 64, Some(4096), 32).unwrap();
    let blocks: Vec<_> = (0..8).map(|_| pool.alloc().unwrap()).collect();
    drop(blocks);
    drop(pool);
    drop(ring);

    assert!(p.reports().is_empty());
    assert!(p.live_mappings().is_empty());
    assert_eq!(p.release(), 0);
}

#[test]
fn sg_tables_synced_by_entry_and_as_a_whole() {
    let p = platform();
    let bufs: Vec<DmaBuf> = (0..4)
        .map(|_| DmaBuf::for_device(&p, 4096).unwrap())
        .collect();
    let mut sg: Vec<SgEntry> = bufs
        .iter()
        .map(|b| SgEntry::new(PhysAddr::new(b.as_ptr() as u64), b.len()))
        .collect();
    let dir = DmaDirection::FromDevice;
    // SAFETY: the buffers outlive the mapping and the coherent direct
    // platform does not touch them.
    unsafe {
        p.map_sg(&mut sg, dir, DmaAttrs::empty()).unwrap();
        p.sync_for_cpu(&sg[2].as_raw(dir, DmaAttrs::empty()), 128, 256);
        p.sync_sg_for_cpu(&sg, dir, DmaAttrs::empty());
        p.unmap_sg(&sg, dir, DmaAttrs::empty()).unwrap();
    }
    assert!(p.reports().is_empty());
    assert!(p.live_mappings().is_empty());
}

#[test]
fn the_checker_advertises_its_cache_line() {
    let p = platform();
    assert_eq!(p.inner().dma_alignment(), 1);
    assert_eq!(p.dma_alignment(), 64);
    let buf = DmaBuf::for_device(&p, 100).unwrap();
    assert_eq!(buf.as_ptr() as usize % 64, 0);
}

#[test]
fn the_same_buffer_mapped_twice_for_the_device_to_read() {
    // Linux allows it, and so does the checker: readers share lines safely.
    let p = platform();
    let buf = vec![0u8; 256];
    let phys = PhysAddr::new(buf.as_ptr() as u64);
    let dir = DmaDirection::ToDevice;
    // SAFETY: `buf` outlives both mappings, which are unmapped before it is
    // dropped; both let the device only read it, and no device is attached.
    unsafe {
        let a = p.map(phys, 256, dir, DmaAttrs::empty()).unwrap();
        let b = p.map(phys, 128, dir, DmaAttrs::empty()).unwrap();
        assert_eq!(a, b, "direct mapping: same device address");
        let raw = |len| dma_core::RawMapping {
            phys,
            dma: a,
            len,
            dir,
            attrs: DmaAttrs::empty(),
        };
        // Each unmap finds its own record by length.
        p.unmap(&raw(128)).unwrap();
        p.unmap(&raw(256)).unwrap();
    }
    assert!(p.reports().is_empty());
}

#[test]
fn concurrent_users_share_one_checker() {
    let p = Arc::new(platform());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                for i in 0..500 {
                    let buf = DmaBuf::for_device(&*p, 64 + i).unwrap();
                    let mut m = StreamingMapping::<_, FromDevice, _>::map(&*p, buf).unwrap();
                    m.sync_for_cpu();
                    m.unmap().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(p.reports().is_empty());
    assert!(p.live_mappings().is_empty());
}
