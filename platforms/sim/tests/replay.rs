//! A seed replays exactly: the same reports, word for word, and the same
//! addresses, wherever the host heap puts the buffers (issue 12, item 5).

use dma_core::{
    Coherent, DeviceConstraints, DmaAlloc, DmaBuf, DmaMap, FromDevice, StreamingMapping, ToDevice,
};
use dma_sim::{DeviceId, Sim, SimConfig};

const ANY: DeviceConstraints = DeviceConstraints::UNCONSTRAINED;

/// How the host heap looks when a run starts.
#[derive(Clone, Copy)]
enum Heap {
    /// As the test harness left it.
    AsIs,
    /// Hundreds of odd-sized blocks held, every third one freed again, and
    /// the run's buffers allocated in reverse order.
    Cluttered,
}

/// Everything a run shows: every report as printed, every fault, every
/// address the driver was given.
fn run(seed: u64, iommu: bool, heap: Heap) -> Vec<String> {
    let mut clutter: Vec<Vec<u8>> = Vec::new();
    if let Heap::Cluttered = heap {
        clutter = (0..600)
            .map(|i| vec![i as u8; 24 + 173 * (i % 29)])
            .collect();
        let mut i = 0;
        clutter.retain(|_| {
            i += 1;
            i % 3 != 0
        });
    }
    let sim = Sim::new(SimConfig::non_coherent().seed(seed)).unwrap();
    let dev = sim.add_device("nic0");
    let mut seen = Vec::new();
    if iommu {
        let p = sim.iommu_platform(dev, ANY).unwrap();
        body(&sim, dev, &p, heap, &mut seen);
    } else {
        let p = sim.non_coherent_platform(dev, ANY);
        body(&sim, dev, &p, heap, &mut seen);
    }
    seen.extend(sim.reports().iter().map(|r| r.to_string()));
    seen.extend(sim.faults().iter().map(|f| format!("{f:?}")));
    drop(clutter);
    seen
}

/// A driver with four bugs: a missing clean, a read before `sync_for_cpu`,
/// an overrun and a use after unmap; plus a coherent ring.
fn body<P: DmaMap + DmaAlloc>(sim: &Sim, dev: DeviceId, p: &P, heap: Heap, seen: &mut Vec<String>) {
    let sizes = [256, 4096, 1000];
    let mut bufs: Vec<DmaBuf> = match heap {
        Heap::AsIs => sizes
            .iter()
            .map(|&n| DmaBuf::for_device(p, n).unwrap())
            .collect(),
        Heap::Cluttered => {
            let mut b: Vec<DmaBuf> = sizes
                .iter()
                .rev()
                .map(|&n| DmaBuf::for_device(p, n).unwrap())
                .collect();
            b.reverse();
            b
        }
    };
    let bus = sim.bus(dev);
    let ring = Coherent::<[u64], _>::zeroed_slice(p, 32).unwrap();
    seen.push(format!("ring at {:#x}", ring.dma_addr().as_u64()));

    let mut tx = StreamingMapping::<_, ToDevice, _>::map(p, bufs.remove(0)).unwrap();
    tx.write(0, b"hello").unwrap();
    let mut got = [0u8; 5];
    bus.read(tx.dma_addr(), &mut got).unwrap(); // never synced for the device
    seen.push(format!("tx at {:#x}", tx.dma_addr().as_u64()));

    let rx = StreamingMapping::<_, FromDevice, _>::map(p, bufs.remove(0)).unwrap();
    bus.write(rx.dma_addr(), &[0x5a; 512]).unwrap();
    let mut head = [0u8; 8];
    rx.read(0, &mut head).unwrap(); // before sync_for_cpu
    let past = rx.dma_addr().checked_add(rx.len() as u64).unwrap();
    let _ = bus.write(past, &[0; 16]); // overrun
    seen.push(format!("rx at {:#x}", rx.dma_addr().as_u64()));

    let spare = StreamingMapping::<_, FromDevice, _>::map(p, bufs.remove(0)).unwrap();
    seen.push(format!("spare at {:#x}", spare.dma_addr().as_u64()));
    let stale = tx.dma_addr();
    drop(tx.unmap().unwrap());
    let _ = bus.read_u64(stale); // use after unmap
    drop(rx.unmap().unwrap());
    drop(spare.unmap().unwrap());
    drop(ring);
}

#[test]
fn a_seed_replays_with_the_same_reports_and_addresses_whatever_the_heap() {
    for iommu in [false, true] {
        for seed in [0, 7, 12_345] {
            let first = run(seed, iommu, Heap::AsIs);
            let again = run(seed, iommu, Heap::Cluttered);
            assert_eq!(first, again, "seed {seed}, iommu {iommu}");
            assert!(
                first.len() > 8,
                "the run reports its bugs, faults included: {first:#?}"
            );
        }
    }
}

#[test]
fn the_seed_moves_the_layout() {
    let a = run(1, false, Heap::AsIs);
    let b = run(2, false, Heap::AsIs);
    let addrs = |v: &[String]| -> Vec<String> {
        v.iter().filter(|s| s.contains(" at 0x")).cloned().collect()
    };
    assert_ne!(addrs(&a), addrs(&b));
}
