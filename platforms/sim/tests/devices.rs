//! The DMA engine and the NIC, driven through raw rings.

use dma_core::{Coherent, DeviceConstraints, DmaBuf, FromDevice, StreamingMapping, ToDevice};
use dma_sim::dma_engine::{DmaEngine, SgDescriptor, SgFlags, CTRL_EN};
use dma_sim::nic::{rx_errors, rx_status, tx_cmd, tx_status, Nic, NicConfig, CTL_EN};
use dma_sim::{run_until_idle, Device, FaultKind, Injection, ReportKind, Sim, SimConfig};
use tock_registers::interfaces::{Readable, Writeable};

const ANY: DeviceConstraints = DeviceConstraints::UNCONSTRAINED;

fn sg(addr: u64, len: u32, flags: SgFlags) -> SgDescriptor {
    SgDescriptor {
        addr,
        len,
        flags: flags.bits(),
    }
}

#[test]
fn the_engine_copies_scatter_to_gather_and_reports_done() {
    let sim = Sim::new(SimConfig::non_coherent().seed(2)).unwrap();
    let dev = sim.add_device("dma");
    let p = sim.non_coherent_platform(dev, ANY);
    let mut eng = DmaEngine::new(sim.bus(dev));
    let regs = eng.registers();
    let mut ring = Coherent::<[[u8; 16]], _>::zeroed_slice(&p, 8).unwrap();
    regs.ring_base.set(ring.dma_addr().as_u64());
    regs.ring_size.set(8);
    regs.ctrl.set(CTRL_EN);
    let mut a = StreamingMapping::<_, ToDevice, _>::map(&p, vec![1u8; 100]).unwrap();
    let mut b = StreamingMapping::<_, ToDevice, _>::map(&p, vec![2u8; 28]).unwrap();
    a.sync_for_device();
    b.sync_for_device();
    let dst = StreamingMapping::<_, FromDevice, _>::map(&p, DmaBuf::for_device(&p, 128).unwrap())
        .unwrap();
    ring.write(
        0,
        sg(a.dma_addr().as_u64(), 100, SgFlags::empty()).to_bytes(),
    )
    .unwrap();
    ring.write(
        1,
        sg(b.dma_addr().as_u64(), 28, SgFlags::empty()).to_bytes(),
    )
    .unwrap();
    ring.write(
        2,
        sg(dst.dma_addr().as_u64(), 128, SgFlags::DEST | SgFlags::FINAL).to_bytes(),
    )
    .unwrap();
    regs.tail.set(2);
    assert_eq!(run_until_idle(&mut eng, 10), 0, "an incomplete job waits");
    regs.tail.set(3);
    assert_eq!(run_until_idle(&mut eng, 10), 1);
    let done = SgDescriptor::from_bytes(&ring.read(2).unwrap());
    assert!(SgFlags::from_bits_retain(done.flags).contains(SgFlags::DONE | SgFlags::FINAL));
    assert_eq!(regs.head.get(), 3);
    assert_eq!(regs.completed.get(), 1);
    let out = dst.unmap().unwrap();
    assert_eq!(&out[..100], &[1; 100][..]);
    assert_eq!(&out[100..], &[2; 28][..]);

    // Mismatched totals, an injected error, and a refused access all set ERROR.
    let dst =
        StreamingMapping::<_, FromDevice, _>::map(&p, DmaBuf::for_device(&p, 64).unwrap()).unwrap();
    let jobs = [
        [
            sg(a.dma_addr().as_u64(), 10, SgFlags::empty()),
            sg(dst.dma_addr().as_u64(), 20, SgFlags::DEST | SgFlags::FINAL),
        ],
        [
            sg(a.dma_addr().as_u64(), 10, SgFlags::empty()),
            sg(dst.dma_addr().as_u64(), 10, SgFlags::DEST | SgFlags::FINAL),
        ],
        [
            sg(a.dma_addr().as_u64(), 10, SgFlags::empty()),
            sg(0x10, 10, SgFlags::DEST | SgFlags::FINAL),
        ],
    ];
    eng.inject(Injection::DelayCompletion { steps: 0 }); // job 0 completes through the delay queue
    let mut idx = 3u32;
    for (j, job) in jobs.iter().enumerate() {
        if j == 1 {
            eng.inject(Injection::Error);
        }
        for e in job {
            ring.write(idx as usize % 8, e.to_bytes()).unwrap();
            idx += 1;
        }
        regs.tail.set(idx % 8);
        run_until_idle(&mut eng, 10);
        let fin = SgDescriptor::from_bytes(&ring.read((idx as usize - 1) % 8).unwrap());
        assert!(
            SgFlags::from_bits_retain(fin.flags).contains(SgFlags::DONE | SgFlags::ERROR),
            "job {j}"
        );
    }
    assert_eq!(eng.stats().failed, 3);
    assert_eq!(sim.take_faults()[0].kind, FaultKind::NotMapped);
    // The refused access (job 2's destination) is the one report.
    let r = sim.take_reports();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].kind, ReportKind::DeviceFault);
    drop(dst);
    // A lost completion: the job runs, DONE never appears.
    eng.inject(Injection::DropCompletion);
    ring.write(
        idx as usize % 8,
        sg(a.dma_addr().as_u64(), 4, SgFlags::empty()).to_bytes(),
    )
    .unwrap();
    let d2 =
        StreamingMapping::<_, FromDevice, _>::map(&p, DmaBuf::for_device(&p, 64).unwrap()).unwrap();
    ring.write(
        (idx as usize + 1) % 8,
        sg(d2.dma_addr().as_u64(), 4, SgFlags::DEST | SgFlags::FINAL).to_bytes(),
    )
    .unwrap();
    idx += 2;
    regs.tail.set(idx % 8);
    run_until_idle(&mut eng, 10);
    let fin = SgDescriptor::from_bytes(&ring.read((idx as usize - 1) % 8).unwrap());
    assert!(!SgFlags::from_bits_retain(fin.flags).contains(SgFlags::DONE));
    assert_eq!(eng.stats().jobs, 2);
    drop((a, b, d2));
    assert!(sim.reports().is_empty());
}

struct NicRig {
    sim: Sim,
    nic: Nic,
    rx_ring: Coherent<[[u8; 16]], dma_sim::NonCoherentPlatform>,
    tx_ring: Coherent<[[u8; 16]], dma_sim::NonCoherentPlatform>,
    p: dma_sim::NonCoherentPlatform,
}

fn nic_rig(config: NicConfig) -> NicRig {
    let sim = Sim::new(SimConfig::non_coherent().seed(9)).unwrap();
    let dev = sim.add_device("eth0");
    let p = sim.non_coherent_platform(dev, ANY);
    let nic = Nic::new(sim.bus(dev), config);
    let regs = nic.registers();
    let rx_ring = Coherent::<[[u8; 16]], _>::zeroed_slice(p.clone(), 8).unwrap();
    let tx_ring = Coherent::<[[u8; 16]], _>::zeroed_slice(p.clone(), 8).unwrap();
    regs.rdbal.set(rx_ring.dma_addr().as_u64() as u32);
    regs.rdbah.set((rx_ring.dma_addr().as_u64() >> 32) as u32);
    regs.rdlen.set(128);
    regs.tdbal.set(tx_ring.dma_addr().as_u64() as u32);
    regs.tdbah.set((tx_ring.dma_addr().as_u64() >> 32) as u32);
    regs.tdlen.set(128);
    regs.rctl.set(CTL_EN);
    regs.tctl.set(CTL_EN);
    NicRig {
        sim,
        nic,
        rx_ring,
        tx_ring,
        p,
    }
}

fn desc(addr: u64, len: u16, cmd: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..10].copy_from_slice(&len.to_le_bytes());
    d[11] = cmd;
    d
}

#[test]
fn nic_transmits_loops_back_and_writes_descriptors_done() {
    let mut r = nic_rig(NicConfig {
        loopback: true,
        rx_buffer_size: 1024,
        ..NicConfig::default()
    });
    let regs = r.nic.registers();
    let rx: Vec<_> = (0..3)
        .map(|_| {
            StreamingMapping::<_, FromDevice, _>::map(&r.p, DmaBuf::for_device(&r.p, 1024).unwrap())
                .unwrap()
        })
        .collect();
    for (i, m) in rx.iter().enumerate() {
        r.rx_ring
            .write(i, desc(m.dma_addr().as_u64(), 0, 0))
            .unwrap();
    }
    regs.rdt.set(3);
    let frame: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
    let mut head = StreamingMapping::<_, ToDevice, _>::map(&r.p, frame[..14].to_vec()).unwrap();
    let mut body = StreamingMapping::<_, ToDevice, _>::map(&r.p, frame[14..].to_vec()).unwrap();
    head.sync_for_device();
    body.sync_for_device();
    r.tx_ring
        .write(0, desc(head.dma_addr().as_u64(), 14, 0))
        .unwrap();
    r.tx_ring
        .write(
            1,
            desc(body.dma_addr().as_u64(), 1486, tx_cmd::EOP | tx_cmd::RS),
        )
        .unwrap();
    regs.tdt.set(2);
    run_until_idle(&mut r.nic, 20);
    assert_eq!(regs.tdh.get(), 2);
    assert_eq!(
        r.tx_ring.read(1).unwrap()[12] & tx_status::DD,
        tx_status::DD
    );
    // The 1500-byte frame spilled over two 1024-byte buffers.
    let d0 = r.rx_ring.read(0).unwrap();
    let d1 = r.rx_ring.read(1).unwrap();
    assert_eq!(u16::from_le_bytes([d0[8], d0[9]]), 1024);
    assert_eq!(d0[12], rx_status::DD);
    assert_eq!(u16::from_le_bytes([d1[8], d1[9]]), 476);
    assert_eq!(d1[12], rx_status::DD | rx_status::EOP);
    let mut got = Vec::new();
    for mut m in rx.into_iter().take(2) {
        m.sync_for_cpu();
        got.extend_from_slice(&m.unmap().unwrap());
    }
    assert_eq!(&got[..1500], &frame[..]);
    assert_eq!(r.nic.stats().tx_frames, 1);
    assert_eq!(r.nic.stats().rx_frames, 1);
    drop((head, body));
    assert!(r.sim.reports().is_empty());
}

#[test]
fn nic_faults_and_injections_surface_in_descriptors() {
    let mut r = nic_rig(NicConfig::default());
    let regs = r.nic.registers();
    let bufs: Vec<_> = (0..6)
        .map(|_| {
            StreamingMapping::<_, FromDevice, _>::map(&r.p, DmaBuf::for_device(&r.p, 2048).unwrap())
                .unwrap()
        })
        .collect();
    for (i, m) in bufs.iter().enumerate() {
        r.rx_ring
            .write(i, desc(m.dma_addr().as_u64(), 0, 0))
            .unwrap();
    }
    // Descriptor 5 points nowhere: the write is refused, the descriptor
    // reports an error, and no memory changes.
    r.rx_ring.write(5, desc(0x2000, 0, 0)).unwrap();
    regs.rdt.set(6);
    r.nic.inject(Injection::Error);
    r.nic.receive(b"error frame");
    r.nic.inject(Injection::DropCompletion);
    r.nic.receive(b"lost completion");
    r.nic.inject(Injection::DelayCompletion { steps: 3 });
    r.nic.receive(b"late completion");
    r.nic.inject(Injection::GarbageCompletion);
    r.nic.receive(b"garbage");
    r.nic.receive(b"fine");
    r.nic.receive(b"to nowhere");
    assert_eq!(run_until_idle(&mut r.nic, 50), 7);
    let d = |i: usize| r.rx_ring.read(i).unwrap();
    assert_eq!(d(0)[13] & rx_errors::CE, rx_errors::CE);
    assert_eq!(d(1)[12], 0, "lost: DD never set");
    assert_eq!(
        d(2)[12],
        rx_status::DD | rx_status::EOP,
        "late, but arrived"
    );
    assert_eq!(
        d(3)[12] & rx_status::DD,
        rx_status::DD,
        "garbage looks done"
    );
    assert_eq!(u16::from_le_bytes([d(4)[8], d(4)[9]]), 4);
    assert_eq!(d(5)[13] & rx_errors::CE, rx_errors::CE);
    assert_eq!(r.sim.take_faults()[0].kind, FaultKind::NotMapped);
    // No ring room: frames are dropped, not written anywhere.
    r.nic.receive(b"no room");
    r.nic.step();
    assert_eq!(r.nic.stats().rx_dropped, 1);
    drop(bufs);
}
