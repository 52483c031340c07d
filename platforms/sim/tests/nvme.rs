//! The NVMe-like controller driven by a raw test-side host.

mod support;

use dma_core::{
    Coherent, DeviceConstraints, DmaBuf, DmaMap, ErrorKind, FromDevice, StreamingMapping, ToDevice,
};
use dma_sim::nvme::{opcode, status, NvmeConfig, NvmeController, CSTS};
use dma_sim::{
    Device, DeviceThread, FaultKind, Injection, NonCoherentPlatform, ReportKind, Sim, SimConfig,
};
use support::nvme_host::{prps, sqe, NvmeHost, Rig};
use tock_registers::interfaces::Readable;

const ANY: DeviceConstraints = DeviceConstraints::UNCONSTRAINED;

fn rig(seed: u64, io_size: u16) -> Rig {
    Rig::new(seed, NvmeConfig::default(), io_size)
}

impl Rig {
    fn write(&mut self, lba: u32, data: &[u8]) -> u16 {
        let mut m = StreamingMapping::<_, ToDevice, _>::map(&self.p, data.to_vec()).unwrap();
        m.sync_for_device();
        let (p1, p2) = prps(m.dma_addr(), data.len());
        let nlb = (data.len() / 512 - 1) as u32;
        let c = self.host.run(
            &mut self.ctrl,
            true,
            sqe(opcode::WRITE, 1, p1, p2, lba, 0, nlb),
        );
        drop(m.unmap().unwrap());
        c.status
    }

    fn read(&mut self, lba: u32, len: usize) -> (u16, Vec<u8>) {
        let buf = DmaBuf::for_device(&self.p, len).unwrap();
        let mut m = StreamingMapping::<_, FromDevice, _>::map(&self.p, buf).unwrap();
        let (p1, p2) = prps(m.dma_addr(), len);
        let nlb = (len / 512 - 1) as u32;
        let c = self.host.run(
            &mut self.ctrl,
            true,
            sqe(opcode::READ, 1, p1, p2, lba, 0, nlb),
        );
        m.sync_for_cpu();
        (c.status, m.unmap().unwrap().to_vec())
    }
}

#[test]
fn identify_reports_the_spec_fields() {
    let mut r = rig(1, 16);
    let (status, id) = r.host.identify(&mut r.ctrl, 1, 0);
    assert_eq!(status, status::SUCCESS);
    assert_eq!(&id[24..40], b"dma-sim NVMe-ish");
    assert_eq!(id[512], 0x66);
    assert_eq!(id[513], 0x44);
    assert_eq!(u32::from_le_bytes(id[516..520].try_into().unwrap()), 1);

    let (status, ns) = r.host.identify(&mut r.ctrl, 0, 1);
    assert_eq!(status, status::SUCCESS);
    assert_eq!(u64::from_le_bytes(ns[0..8].try_into().unwrap()), 2048);
    assert_eq!(ns[130], 9, "LBADS = log2(512)");
    assert_eq!(r.host.regs.vs.get(), 0x0002_0000);
    assert!(r.sim.reports().is_empty());
}

#[test]
fn write_then_read_round_trips_with_syncs() {
    for seed in 0..20 {
        let mut r = rig(seed, 16);
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + seed as u32) as u8).collect();
        assert_eq!(r.write(10, &data), 0);
        assert_eq!(&r.ctrl.disk()[10 * 512..10 * 512 + 4096], &data[..]);
        let (st, back) = r.read(10, 4096);
        assert_eq!(st, 0);
        assert_eq!(&back[..], &data[..4096]);
        assert!(r.sim.reports().is_empty(), "{:?}", r.sim.reports());
        assert!(r.sim.faults().is_empty());
    }
}

#[test]
fn chained_prp_lists_are_followed() {
    let mut r = rig(3, 16);
    let len = 64 * 1024;
    // Sixteen data pages anywhere, and a PRP list placed 16 bytes before a
    // page end, so it holds one entry and a chain pointer per page.
    let pages: Vec<Coherent<[u8], _>> = (0..16)
        .map(|_| Coherent::zeroed_slice(r.p.clone(), 4096).unwrap())
        .collect();
    let mut lists: Vec<Coherent<[u64], _>> = (0..16)
        .map(|_| Coherent::zeroed_slice(r.p.clone(), 512).unwrap())
        .collect();
    for (i, d) in r.ctrl.disk_mut()[..len].iter_mut().enumerate() {
        *d = (i / 4096) as u8 + 1;
    }
    // Page 0 goes in PRP1; pages 1..16 go in the chain of lists. A last
    // slot chains only when more entries remain than fit: the final list
    // holds the last two pages (NVMe 2.0 §4.3.1.2).
    for l in 0..13 {
        lists[l]
            .write(510, pages[l + 1].dma_addr().as_u64())
            .unwrap();
        let next = lists[l + 1].dma_addr_of(510).unwrap().as_u64();
        lists[l].write(511, next).unwrap();
    }
    lists[13].write(510, pages[14].dma_addr().as_u64()).unwrap();
    lists[13].write(511, pages[15].dma_addr().as_u64()).unwrap();
    let prp2 = lists[0].dma_addr_of(510).unwrap().as_u64();
    let c = r.host.run(
        &mut r.ctrl,
        true,
        sqe(
            opcode::READ,
            1,
            pages[0].dma_addr().as_u64(),
            prp2,
            0,
            0,
            (len / 512 - 1) as u32,
        ),
    );
    assert_eq!(c.status, 0);
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.read(0).unwrap(), i as u8 + 1);
        assert_eq!(p.read(4095).unwrap(), i as u8 + 1);
    }
    // A misaligned data entry in a list is refused.
    lists[0]
        .write(510, pages[1].dma_addr().as_u64() + 8)
        .unwrap();
    let c = r.host.run(
        &mut r.ctrl,
        true,
        sqe(
            opcode::READ,
            1,
            pages[0].dma_addr().as_u64(),
            prp2,
            0,
            0,
            (len / 512 - 1) as u32,
        ),
    );
    assert_eq!(c.status, status::PRP_OFFSET_INVALID);
}

#[test]
fn completions_carry_phase_and_sq_head_across_wraps() {
    let mut r = rig(4, 4);
    for i in 0..11u16 {
        let c = r
            .host
            .run(&mut r.ctrl, true, sqe(opcode::FLUSH, 1, 0, 0, 0, 0, 0));
        assert_eq!(c.status, 0);
        assert_eq!(c.sqhd, (i + 1) % 4);
        assert_eq!(c.sqid, 1);
    }
    assert_eq!(r.ctrl.stats().flushes, 11);
}

#[test]
fn errors_complete_with_spec_status_codes() {
    let mut r = rig(5, 16);
    let io = |r: &mut Rig, e| r.host.run(&mut r.ctrl, true, e).status;
    assert_eq!(
        io(&mut r, sqe(opcode::READ, 1, 0x1000, 0, 2047, 0, 1)),
        status::LBA_OUT_OF_RANGE
    );
    assert_eq!(
        io(&mut r, sqe(0x7f, 1, 0, 0, 0, 0, 0)),
        status::INVALID_OPCODE
    );
    assert_eq!(
        io(&mut r, sqe(opcode::FLUSH, 2, 0, 0, 0, 0, 0)),
        status::INVALID_NAMESPACE
    );
    assert_eq!(
        io(&mut r, sqe(opcode::READ, 1, 0x1002, 0, 0, 0, 0)),
        status::PRP_OFFSET_INVALID
    );
    assert_eq!(
        io(&mut r, sqe(opcode::READ, 1, 0x1000, 0, 0, 0, 1000)),
        status::INVALID_FIELD,
        "beyond MDTS"
    );
    let admin = |r: &mut Rig, e| r.host.run(&mut r.ctrl, false, e).status;
    assert_eq!(
        admin(&mut r, sqe(opcode::CREATE_IO_CQ, 0, 0x1000, 0, 1, 1, 0)),
        status::INVALID_QID,
        "exists"
    );
    assert_eq!(
        admin(&mut r, sqe(opcode::CREATE_IO_CQ, 0, 0x1000, 0, 99, 1, 0)),
        status::INVALID_QID
    );
    assert_eq!(
        admin(
            &mut r,
            sqe(opcode::CREATE_IO_CQ, 0, 0x1000, 0, 5000 << 16 | 2, 1, 0)
        ),
        status::INVALID_QUEUE_SIZE
    );
    assert_eq!(
        admin(
            &mut r,
            sqe(opcode::CREATE_IO_CQ, 0, 0x1000, 0, 3 << 16 | 2, 0, 0)
        ),
        status::INVALID_FIELD
    );
    assert_eq!(
        admin(
            &mut r,
            sqe(opcode::CREATE_IO_CQ, 0, 0x1010, 0, 3 << 16 | 2, 1, 0)
        ),
        status::PRP_OFFSET_INVALID
    );
    assert_eq!(
        admin(
            &mut r,
            sqe(
                opcode::CREATE_IO_SQ,
                0,
                0x1000,
                0,
                3 << 16 | 2,
                3 << 16 | 1,
                0
            )
        ),
        status::CQ_INVALID
    );
    assert_eq!(
        admin(&mut r, sqe(opcode::DELETE_IO_CQ, 0, 0, 0, 1, 0, 0)),
        status::INVALID_QUEUE_DELETION
    );
    assert_eq!(
        admin(&mut r, sqe(opcode::IDENTIFY, 0, 0x1000, 0, 0x55, 0, 0)),
        status::INVALID_FIELD
    );
    assert_eq!(
        admin(&mut r, sqe(opcode::DELETE_IO_SQ, 0, 0, 0, 1, 0, 0)),
        0
    );
    assert_eq!(
        admin(&mut r, sqe(opcode::DELETE_IO_CQ, 0, 0, 0, 1, 0, 0)),
        0
    );
    assert_eq!(
        admin(&mut r, sqe(opcode::DELETE_IO_SQ, 0, 0, 0, 1, 0, 0)),
        status::INVALID_QID
    );
    let c = r.host.run(
        &mut r.ctrl,
        false,
        sqe(opcode::SET_FEATURES, 0, 0, 0, 0x07, 0, 0),
    );
    assert_eq!((c.status, c.dw0), (0, 3 << 16 | 3));
    assert!(r.ctrl.stats().errors >= 13);
}

#[test]
fn dma_faults_surface_and_write_nothing_outside_the_mapping() {
    let mut r = rig(6, 16);
    r.ctrl.disk_mut()[..8192].fill(0xdd);
    // Injected IOMMU/bus fault on the data transfer.
    let buf = DmaBuf::for_device(&r.p, 4096).unwrap();
    let mut m = StreamingMapping::<_, FromDevice, _>::map(&r.p, buf).unwrap();
    let (p1, p2) = prps(m.dma_addr(), 4096);
    r.host.submit(true, sqe(opcode::READ, 1, p1, p2, 0, 0, 7));
    r.sim.inject_faults_after(r.p.device(), 1, 1); // the fetch passes, the data faults
    let c = r.host.wait(&mut r.ctrl, true, 100).unwrap().unwrap();
    assert_eq!(c.status, status::DATA_TRANSFER_ERROR);
    m.sync_for_cpu();
    assert!(
        m.unmap().unwrap().iter().all(|&b| b == 0),
        "nothing was written"
    );
    assert_eq!(r.sim.take_faults()[0].kind, FaultKind::Injected);

    // A fault on the command fetch itself: the controller cannot know the
    // CID, and the driver's validation refuses the completion.
    r.host.submit(true, sqe(opcode::FLUSH, 1, 0, 0, 0, 0, 0));
    r.sim.inject_faults(r.p.device(), 1);
    let e = r.host.wait(&mut r.ctrl, true, 100).unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeviceMisbehaved);
    r.sim.take_faults();

    // A driver bug: an 8 KiB read into a 4 KiB mapping. The second page is
    // refused (bus error) and the neighbouring memory is untouched.
    let guard = DmaBuf::for_device(&r.p, 3 * 4096).unwrap();
    // The guard's physical address (the sim's layout, not the host's); the
    // page mapped is its second, so neighbours lie on both sides.
    let base =
        r.p.virt_to_phys(std::ptr::NonNull::from(&guard[0]), guard.len())
            .unwrap()
            .as_u64();
    let page = ((base + 4095) & !4095) + 4096;
    let small = unsafe_free_slice_mapping(&r.p, page);
    let c = r.host.run(
        &mut r.ctrl,
        true,
        sqe(opcode::READ, 1, page, page + 4096, 0, 0, 15),
    );
    assert_eq!(c.status, status::DATA_TRANSFER_ERROR);
    let f = r.sim.take_faults();
    assert_eq!(f[0].kind, FaultKind::NotMapped);
    assert_eq!(f[0].addr.as_u64(), page + 4096);
    drop(small);
    let off = (page - base) as usize;
    assert!(
        guard[off..off + 4096].iter().all(|&b| b == 0xdd),
        "the mapped page got its data"
    );
    assert!(
        guard[..off]
            .iter()
            .chain(&guard[off + 4096..])
            .all(|&b| b == 0),
        "no byte outside the mapping changed"
    );
}

/// Maps one page inside a larger buffer the test keeps (through the raw
/// platform API, as a ring would), unmapping it when dropped.
fn unsafe_free_slice_mapping(p: &NonCoherentPlatform, page: u64) -> impl Drop + '_ {
    use dma_core::{DmaAttrs, DmaDirection, DmaMap, PhysAddr, RawMapping};
    struct Unmap<'a>(&'a NonCoherentPlatform, RawMapping);
    impl Drop for Unmap<'_> {
        fn drop(&mut self) {
            // SAFETY: mapped below, the device is done, unmapped once.
            unsafe { self.0.unmap(&self.1) }.unwrap();
        }
    }
    let phys = PhysAddr::new(page);
    // SAFETY: the page lies inside a buffer the caller keeps alive and does
    // not touch until the mapping is dropped.
    let dma = unsafe { p.map(phys, 4096, DmaDirection::FromDevice, DmaAttrs::empty()) }.unwrap();
    Unmap(
        p,
        RawMapping {
            phys,
            dma,
            len: 4096,
            dir: DmaDirection::FromDevice,
            attrs: DmaAttrs::empty(),
        },
    )
}

#[test]
fn lost_late_garbage_and_error_completions_reach_the_driver() {
    let mut r = rig(7, 16);
    let flush = sqe(opcode::FLUSH, 1, 0, 0, 0, 0, 0);
    // Error.
    r.ctrl.inject(Injection::Error);
    assert_eq!(
        r.host.run(&mut r.ctrl, true, flush).status,
        status::INTERNAL_ERROR
    );
    // Lost: nothing arrives; the command stays outstanding.
    r.ctrl.inject(Injection::DropCompletion);
    r.host.submit(true, flush);
    assert!(r.host.wait(&mut r.ctrl, true, 50).is_none());
    assert_eq!(r.host.io.as_ref().unwrap().outstanding(), 1);
    // Late: arrives after the delay.
    r.ctrl.inject(Injection::DelayCompletion { steps: 20 });
    let cid = r.host.submit(true, flush);
    assert!(r.host.wait(&mut r.ctrl, true, 5).is_none());
    let c = r.host.wait(&mut r.ctrl, true, 50).unwrap().unwrap();
    assert_eq!(c.cid, cid);
    // Garbage: the driver's validation catches it.
    r.ctrl.inject(Injection::GarbageCompletion);
    r.host.submit(true, flush);
    let e = r.host.wait(&mut r.ctrl, true, 50).unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeviceMisbehaved);
}

#[test]
fn a_missing_sync_before_a_write_command_is_caught() {
    for seed in 0..100 {
        let mut r = rig(seed, 16);
        let mut m = StreamingMapping::<_, ToDevice, _>::map(&r.p, vec![0u8; 4096]).unwrap();
        m.write(0, &[0x42; 4096]).unwrap(); // and no sync_for_device
        let (p1, p2) = prps(m.dma_addr(), 4096);
        let c = r
            .host
            .run(&mut r.ctrl, true, sqe(opcode::WRITE, 1, p1, p2, 0, 0, 7));
        assert_eq!(c.status, 0);
        drop(m);
        let reports = r.sim.take_reports();
        assert!(
            reports.iter().any(
                |x| x.kind == ReportKind::DeviceReadUncleaned && x.device == Some(r.p.device())
            ),
            "seed {seed}: {reports:?}"
        );
    }
}

#[test]
fn a_bad_admin_queue_setup_is_fatal() {
    let sim = Sim::new(SimConfig::coherent()).unwrap();
    let dev = sim.add_device("nvme");
    let mut ctrl = NvmeController::new(sim.bus(dev), NvmeConfig::default()).unwrap();
    let regs = ctrl.registers();
    use tock_registers::interfaces::Writeable;
    regs.asq.set(0x1234); // not page aligned
    regs.cc.set(1);
    ctrl.step();
    assert!(regs.csts.is_set(CSTS::CFS));
    assert!(!regs.csts.is_set(CSTS::RDY));
    for bad in [
        NvmeConfig {
            block_size: 1000,
            ..NvmeConfig::default()
        },
        NvmeConfig {
            io_queues: 0,
            ..NvmeConfig::default()
        },
        NvmeConfig {
            doorbell_stride: 2,
            io_queues: 100,
            ..NvmeConfig::default()
        },
    ] {
        assert_eq!(
            NvmeController::new(sim.bus(dev), bad).unwrap_err().kind(),
            ErrorKind::InvalidConstraints
        );
    }
}

#[test]
fn the_controller_runs_on_its_own_thread() {
    let sim = Sim::new(SimConfig::non_coherent().seed(8)).unwrap();
    let dev = sim.add_device("nvme0");
    let p = sim.non_coherent_platform(dev, ANY);
    let cfg = NvmeConfig {
        doorbell_stride: 1,
        ..NvmeConfig::default()
    };
    let mut ctrl = NvmeController::new(sim.bus(dev), cfg).unwrap();
    let mut host = NvmeHost::init(p.clone(), &mut ctrl, 8);
    host.create_io_queues(&mut ctrl, 32);
    let thread = DeviceThread::spawn(ctrl);
    for i in 0..64u32 {
        let mut m = StreamingMapping::<_, ToDevice, _>::map(&p, vec![i as u8; 512]).unwrap();
        m.sync_for_device();
        host.submit(
            true,
            sqe(opcode::WRITE, 1, m.dma_addr().as_u64(), 0, i, 0, 0),
        );
        let c = loop {
            if let Some(c) = host.poll(true) {
                break c.unwrap();
            }
            std::thread::yield_now();
        };
        assert_eq!(c.status, 0);
        drop(m.unmap().unwrap());
    }
    let ctrl = thread.stop();
    assert_eq!(ctrl.stats().writes, 64);
    assert_eq!(ctrl.disk()[63 * 512], 63);
    assert!(sim.reports().is_empty());
}
