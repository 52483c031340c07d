//! A minimal test-side NVMe host: raw queue manipulation over coherent
//! memory, enough to drive the controller model in tests and benches.
//! (The production driver is built on dma-ring; this one exists to test
//! the device model against the spec.)

#![allow(dead_code)]

use dma_coherence::barrier;
use dma_core::{
    Coherent, DeviceConstraints, DmaAddr, DmaAlloc, DmaBuf, DmaMap, Error, ErrorKind, FromDevice,
    StreamingMapping,
};
use dma_sim::nvme::{
    opcode, NvmeConfig, NvmeController, NvmeRegisters, CC, CQE_SIZE, CSTS, SQE_SIZE,
};
use dma_sim::{Device, Mmio, NonCoherentPlatform, Sim, SimConfig};
use tock_registers::interfaces::{Readable, Writeable};

/// A parsed completion entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cqe {
    pub dw0: u32,
    pub sqhd: u16,
    pub sqid: u16,
    pub cid: u16,
    pub status: u16,
}

/// One submission/completion queue pair.
pub struct QueuePair<P: DmaAlloc> {
    pub qid: u16,
    pub sq: Coherent<[u8], P>,
    pub cq: Coherent<[u8], P>,
    pub size: u16,
    tail: u16,
    head: u16,
    phase: bool,
    next_cid: u16,
    outstanding: Vec<u16>,
}

impl<P: DmaAlloc> QueuePair<P> {
    pub fn new(platform: P, qid: u16, size: u16) -> Self
    where
        P: Clone,
    {
        Self {
            qid,
            sq: Coherent::zeroed_slice(platform.clone(), usize::from(size) * SQE_SIZE).unwrap(),
            cq: Coherent::zeroed_slice(platform, usize::from(size) * CQE_SIZE).unwrap(),
            size,
            tail: 0,
            head: 0,
            phase: true,
            next_cid: 1,
            outstanding: Vec::new(),
        }
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}

/// Builds a submission entry at the spec's offsets (NVMe 2.0 Figure 87).
pub fn sqe(
    op: u8,
    nsid: u32,
    prp1: u64,
    prp2: u64,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0] = op;
    b[4..8].copy_from_slice(&nsid.to_le_bytes());
    b[24..32].copy_from_slice(&prp1.to_le_bytes());
    b[32..40].copy_from_slice(&prp2.to_le_bytes());
    b[40..44].copy_from_slice(&cdw10.to_le_bytes());
    b[44..48].copy_from_slice(&cdw11.to_le_bytes());
    b[48..52].copy_from_slice(&cdw12.to_le_bytes());
    b
}

/// PRP1/PRP2 for a transfer of at most two pages at `dma`.
pub fn prps(dma: DmaAddr, len: usize) -> (u64, u64) {
    let first = 4096 - (dma.as_u64() % 4096) as usize;
    let prp2 = if len > first {
        (dma.as_u64() & !4095) + 4096
    } else {
        0
    };
    (dma.as_u64(), prp2)
}

pub struct NvmeHost<P: DmaAlloc + Clone> {
    pub regs: Mmio<NvmeRegisters>,
    pub admin: QueuePair<P>,
    pub io: Option<QueuePair<P>>,
    platform: P,
}

impl<P: DmaAlloc + Clone> NvmeHost<P> {
    /// Sets up the admin queue and enables the controller (NVMe 2.0 §3.5.1).
    pub fn init(platform: P, ctrl: &mut NvmeController, admin_size: u16) -> Self {
        let regs = ctrl.registers();
        let admin = QueuePair::new(platform.clone(), 0, admin_size);
        regs.aqa
            .set(u32::from(admin_size - 1) << 16 | u32::from(admin_size - 1));
        regs.asq.set(admin.sq.dma_addr().as_u64());
        regs.acq.set(admin.cq.dma_addr().as_u64());
        regs.cc
            .write(CC::EN::SET + CC::IOSQES.val(6) + CC::IOCQES.val(4));
        for _ in 0..10 {
            ctrl.step();
            if regs.csts.is_set(CSTS::RDY) {
                break;
            }
        }
        assert!(
            regs.csts.is_set(CSTS::RDY),
            "controller did not become ready"
        );
        Self {
            regs,
            admin,
            io: None,
            platform,
        }
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    fn queue(&mut self, io: bool) -> &mut QueuePair<P> {
        if io {
            self.io.as_mut().expect("I/O queues created")
        } else {
            &mut self.admin
        }
    }

    /// Writes an entry at the SQ tail and rings the doorbell; returns the CID.
    pub fn submit(&mut self, io: bool, mut entry: [u8; 64]) -> u16 {
        let regs = self.regs.clone();
        let q = self.queue(io);
        let cid = q.next_cid;
        q.next_cid = q.next_cid.wrapping_add(1).max(1);
        entry[2..4].copy_from_slice(&cid.to_le_bytes());
        q.sq.write_at(usize::from(q.tail) * SQE_SIZE, entry)
            .unwrap();
        q.tail = (q.tail + 1) % q.size;
        q.outstanding.push(cid);
        barrier::before_doorbell();
        regs.sq_tail_doorbell(q.qid).unwrap().set(u32::from(q.tail));
        cid
    }

    /// Takes one new completion, validating it as untrusted input.
    pub fn poll(&mut self, io: bool) -> Option<Result<Cqe, Error>> {
        let regs = self.regs.clone();
        let q = self.queue(io);
        let at = usize::from(q.head) * CQE_SIZE;
        let dw3: u32 = q.cq.read_at(at + 12).unwrap();
        if (dw3 >> 16) & 1 != u32::from(q.phase) {
            return None;
        }
        barrier::after_completion_flag();
        let dw0: u32 = q.cq.read_at(at).unwrap();
        let dw2: u32 = q.cq.read_at(at + 8).unwrap();
        let cqe = Cqe {
            dw0,
            sqhd: dw2 as u16,
            sqid: (dw2 >> 16) as u16,
            cid: dw3 as u16,
            status: (dw3 >> 17) as u16 & 0x7ff,
        };
        q.head = (q.head + 1) % q.size;
        if q.head == 0 {
            q.phase = !q.phase;
        }
        regs.cq_head_doorbell(q.qid).unwrap().set(u32::from(q.head));
        let Some(i) = q.outstanding.iter().position(|&c| c == cqe.cid) else {
            return Some(Err(Error::new(
                ErrorKind::DeviceMisbehaved,
                "completion for a command not outstanding",
            )));
        };
        if cqe.sqid != q.qid || cqe.sqhd >= q.size {
            return Some(Err(Error::new(
                ErrorKind::DeviceMisbehaved,
                "completion names another queue or an impossible head",
            )));
        }
        q.outstanding.swap_remove(i);
        Some(Ok(cqe))
    }

    /// Steps the controller until a completion arrives (at most `max` steps).
    pub fn wait(
        &mut self,
        ctrl: &mut impl Device,
        io: bool,
        max: usize,
    ) -> Option<Result<Cqe, Error>> {
        for _ in 0..max {
            if let Some(c) = self.poll(io) {
                return Some(c);
            }
            ctrl.step();
        }
        self.poll(io)
    }

    /// Submits and waits.
    pub fn run(&mut self, ctrl: &mut impl Device, io: bool, entry: [u8; 64]) -> Cqe {
        self.submit(io, entry);
        self.wait(ctrl, io, 1000)
            .expect("a completion")
            .expect("a valid completion")
    }

    /// Creates I/O queue pair 1 (CQ first, then SQ: NVMe 2.0 §3.5.1).
    pub fn create_io_queues(&mut self, ctrl: &mut impl Device, size: u16) {
        let q = QueuePair::new(self.platform.clone(), 1, size);
        let qsize = u32::from(size - 1) << 16;
        let c = self.run(
            ctrl,
            false,
            sqe(
                opcode::CREATE_IO_CQ,
                0,
                q.cq.dma_addr().as_u64(),
                0,
                qsize | 1,
                1,
                0,
            ),
        );
        assert_eq!(c.status, 0, "create CQ");
        let c = self.run(
            ctrl,
            false,
            sqe(
                opcode::CREATE_IO_SQ,
                0,
                q.sq.dma_addr().as_u64(),
                0,
                qsize | 1,
                1 << 16 | 1,
                0,
            ),
        );
        assert_eq!(c.status, 0, "create SQ");
        self.io = Some(q);
    }
}

impl<P: DmaAlloc + DmaMap + Clone> NvmeHost<P> {
    /// Identify (NVMe 2.0 §5.17) with CNS `cns` for namespace `nsid`, into a
    /// 4 KiB buffer: the completion status and the data the controller wrote.
    pub fn identify(&mut self, ctrl: &mut impl Device, cns: u32, nsid: u32) -> (u16, Vec<u8>) {
        let platform = self.platform.clone();
        let buf = DmaBuf::for_device(&platform, 4096).unwrap();
        let mut m = StreamingMapping::<_, FromDevice, _>::map(&platform, buf).unwrap();
        let (p1, p2) = prps(m.dma_addr(), 4096);
        let c = self.run(ctrl, false, sqe(opcode::IDENTIFY, nsid, p1, p2, cns, 0, 0));
        m.sync_for_cpu();
        (c.status, m.unmap().unwrap().to_vec())
    }
}

/// A seeded non-coherent sim with one NVMe controller, enabled by an
/// [`NvmeHost`] (8-entry admin queue) that created I/O queue pair 1.
pub struct Rig {
    pub sim: Sim,
    pub p: NonCoherentPlatform,
    pub ctrl: NvmeController,
    pub host: NvmeHost<NonCoherentPlatform>,
}

impl Rig {
    pub fn new(seed: u64, config: NvmeConfig, io_size: u16) -> Self {
        let sim = Sim::new(SimConfig::non_coherent().seed(seed)).unwrap();
        let dev = sim.add_device("nvme0");
        let p = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
        let mut ctrl = NvmeController::new(sim.bus(dev), config).unwrap();
        let mut host = NvmeHost::init(p.clone(), &mut ctrl, 8);
        host.create_io_queues(&mut ctrl, io_size);
        Rig { sim, p, ctrl, host }
    }
}
