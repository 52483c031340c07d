//! The driver against a fake SMMU that lives in the test clock: every tick
//! it does what the hardware would (acknowledge CR0, consume commands),
//! single-threaded and deterministic.

extern crate std;
use core::cell::{Cell, RefCell};
use std::boxed::Box;
use std::vec::Vec;

use dma_core::HostMemory;
use dma_iommu::pgtable::vmsav8::{Format, Stage};

use super::*;

/// QEMU 7.2's ID registers: S1P, TTF AArch64, COHACC, ASID16, TTENDIAN
/// little; SIDSIZE 16, EVENTQS 19, CMDQS 19; OAS 44 bits, all granules.
const IDR0: u32 = 1 << 1 | 0b10 << 2 | 1 << 4 | 1 << 12 | 0b10 << 21;
const IDR1: u32 = 16 | 19 << 16 | 19 << 21;
const IDR5: u32 = 4 | 0b111 << 4;

struct FakeSmmu {
    regs: *mut u32,
    ticks: Cell<u64>,
    /// Whether CR0ACK follows CR0.
    acks: bool,
    /// Commands consumed, in order.
    seen: RefCell<Vec<Command>>,
    /// An opcode the fake rejects with CERROR_ILL.
    reject: Option<u8>,
}

impl FakeSmmu {
    fn reg(&self, offset: usize) -> u32 {
        // SAFETY: the frame is 128 KiB, alive for the test; offsets are in it.
        unsafe { self.regs.add(offset / 4).read_volatile() }
    }
    fn set(&self, offset: usize, value: u32) {
        // SAFETY: as in `reg`.
        unsafe { self.regs.add(offset / 4).write_volatile(value) }
    }

    fn step(&self) {
        if self.acks {
            self.set(0x24, self.reg(0x20));
        }
        if self.reg(0x60) & 1 != self.reg(0x64) & 1 {
            return; // stopped on a command error until acknowledged
        }
        let base = u64::from(self.reg(0x90)) | u64::from(self.reg(0x94)) << 32;
        let log2 = (base & 0x1f) as u32;
        let queue = (base & 0x000f_ffff_ffff_ffe0) as *const u64;
        loop {
            let prod = QueueIndex::new(log2, self.reg(0x98));
            let cons = QueueIndex::new(log2, self.reg(0x9c));
            if prod.is_empty(cons) || self.reg(0x20) & 1 << 3 == 0 {
                return;
            }
            // SAFETY: the driver pointed CMDQ_BASE at its own live queue.
            let cmd = unsafe {
                let e = queue.add(cons.index() as usize * 2);
                Command([e.read_volatile(), e.add(1).read_volatile()])
            };
            if Some(cmd.opcode()) == self.reject {
                self.set(0x9c, cons.raw() | 1 << 24);
                self.set(0x60, self.reg(0x60) ^ 1);
                return;
            }
            self.seen.borrow_mut().push(cmd);
            self.set(0x9c, cons.next().raw());
        }
    }
}

impl Clock for FakeSmmu {
    fn now(&self) -> u64 {
        self.step();
        self.ticks.set(self.ticks.get() + 1);
        self.ticks.get()
    }
    fn frequency(&self) -> u64 {
        1000
    }
}

struct Frame(Box<[u32]>);

impl Frame {
    fn new(idr0: u32) -> Self {
        let mut f = std::vec![0u32; 0x2_0000 / 4].into_boxed_slice();
        f[0] = idr0;
        f[1] = IDR1;
        f[5] = IDR5;
        Self(f)
    }
    fn fake(&mut self, acks: bool, reject: Option<u8>) -> FakeSmmu {
        FakeSmmu {
            regs: self.0.as_mut_ptr(),
            ticks: Cell::new(0),
            acks,
            seen: RefCell::new(Vec::new()),
            reject,
        }
    }
    fn base(&mut self) -> NonNull<u8> {
        NonNull::new(self.0.as_mut_ptr().cast()).unwrap()
    }
}

/// Host memory is cached only, so the tests use write-back tables (the
/// fake reports COHACC).
fn config() -> SmmuConfig {
    SmmuConfig {
        memory: WalkAttrs::WriteBack,
        ..SmmuConfig::default()
    }
}

fn smmu(frame: &mut Frame, clock: &FakeSmmu) -> Result<Smmu<HostMemory>> {
    let base = frame.base();
    // SAFETY: the frame is a 128 KiB block that outlives the driver.
    unsafe { Smmu::new(base, HostMemory, config(), clock) }
}

#[test]
fn init_programs_bases_and_invalidates_everything() {
    let mut frame = Frame::new(IDR0);
    let clock = frame.fake(true, None);
    let s = smmu(&mut frame, &clock).unwrap();
    let f = &frame.0;
    assert_eq!(f[0x20 / 4], 0b1100, "CMDQEN and EVENTQEN, not SMMUEN");
    assert_eq!(f[0x88 / 4], 8, "linear stream table of 256 entries");
    assert_eq!(f[0x90 / 4] & 0x1f, 8, "256 commands");
    assert_eq!(f[0xa0 / 4] & 0x1f, 10, "1024 events");
    assert_eq!(
        f[0x28 / 4],
        0b11_01_01_11_01_01,
        "CR1: write-back, inner shareable"
    );
    let seen: Vec<u8> = clock.seen.borrow().iter().map(Command::opcode).collect();
    assert_eq!(seen, [0x04, 0x10, 0x46]);
    assert_eq!(s.ste_phys(1) - s.ste_phys(0), 64);
    assert!(!s.is_enabled());
}

#[test]
fn attach_writes_cd_and_ste_then_invalidates() {
    let mut frame = Frame::new(IDR0);
    let clock = frame.fake(true, None);
    let mut s = smmu(&mut frame, &clock).unwrap();
    clock.seen.borrow_mut().clear();
    let cfg = Stage1Config {
        ttb0: 0x4400_0000,
        format: Format::STAGE1_4K_48,
        mair: crate::mmu::MAIR,
        asid: 1,
        walk: WalkAttrs::WriteBack,
    };
    s.attach_stage1(8, &cfg, &clock).unwrap();
    let seen: Vec<Command> = clock.seen.borrow().clone();
    // Break (V = 0) and abort, CD + TLB invalidation, break and stage 1:
    // each change invalidated and synchronised.
    let ste = [Command::cfgi_ste(8), Command::sync()];
    let cd = [
        Command::cfgi_cd(8),
        Command::tlbi_nh_asid(1),
        Command::sync(),
    ];
    assert_eq!(seen, [&ste[..], &ste, &cd, &ste, &ste].concat());
    // SAFETY: the STE is 64 bytes inside the driver's live host table.
    let ste0 = unsafe {
        (s.strtab.cpu.as_ptr() as *const u64)
            .add(8 * 8)
            .read_volatile()
    };
    let cd_phys = s.cds.phys.as_u64() + 8 * 64;
    assert_eq!(ste0, cd_phys | 0b1011, "V, Config = stage 1, S1ContextPtr");
    // SAFETY: the CD slot is inside the driver's live host CD array.
    let cd = unsafe {
        (s.cds.cpu.as_ptr() as *const ContextDescriptor)
            .add(8)
            .read_volatile()
    };
    assert_eq!(
        cd,
        ContextDescriptor::stage1(&cfg, 4).unwrap(),
        "IPS = IDR5.OAS (44 bits)"
    );

    s.enable(&clock).unwrap();
    assert!(s.is_enabled());
    s.invalidate_va(1, 0x1234_5000, &clock).unwrap();
    assert_eq!(
        clock.seen.borrow()[seen.len()],
        Command::tlbi_nh_va(1, 0x1234_5000)
    );
    s.set_bypass(8, &clock).unwrap();
    s.shutdown(&clock).unwrap();
    assert_eq!(frame.0[0x20 / 4], 0);
}

#[test]
fn command_queue_wraps() {
    let mut frame = Frame::new(IDR0);
    let clock = frame.fake(true, None);
    let mut s = smmu(&mut frame, &clock).unwrap();
    for i in 0..300u16 {
        s.invalidate_asid(i, &clock).unwrap();
    }
    // 3 init commands + 300 * (TLBI + SYNC) passed a 256-entry queue.
    assert_eq!(clock.seen.borrow().len(), 603);
    assert_eq!(clock.seen.borrow()[601], Command::tlbi_nh_asid(299));
}

#[test]
fn pushed_batches_complete_at_the_sync() {
    let mut frame = Frame::new(IDR0);
    let clock = frame.fake(true, None);
    let mut s = smmu(&mut frame, &clock).unwrap();
    // More commands than the queue holds: push publishes when it fills.
    let batch: Vec<Command> = (0..600u64)
        .map(|p| Command::tlbi_nh_va(2, p << 12))
        .collect();
    s.push(&batch, &clock).unwrap();
    s.sync(&clock).unwrap();
    let seen = clock.seen.borrow();
    assert_eq!(seen.len(), 3 + 600 + 1);
    assert_eq!(seen[3 + 599], Command::tlbi_nh_va(2, 599 << 12));
    assert_eq!(seen.last(), Some(&Command::sync()));
}

#[test]
fn command_errors_are_reported_and_recovered() {
    let mut frame = Frame::new(IDR0);
    let clock = frame.fake(true, None);
    let mut s = smmu(&mut frame, &clock).unwrap();
    let reject = frame.fake(true, Some(0x11));
    assert_eq!(
        s.invalidate_asid(5, &reject),
        Err(BoardError::SmmuCommand {
            code: 1,
            opcode: 0x11
        })
    );
    assert_eq!(s.global_errors(), 0, "error acknowledged");
    // The rejected command became a SYNC; the queue drains and works on.
    s.invalidate_all(&reject).unwrap();
    let tail: Vec<u8> = reject.seen.borrow().iter().map(Command::opcode).collect();
    assert_eq!(tail, [0x46, 0x46, 0x10, 0x46]);
}

#[test]
fn missing_acknowledgement_times_out() {
    let mut frame = Frame::new(IDR0);
    let clock = frame.fake(false, None);
    assert!(matches!(
        smmu(&mut frame, &clock),
        Err(BoardError::Timeout("SMMU CR0ACK"))
    ));
}

#[test]
fn unsupported_smmus_and_bad_arguments_are_refused() {
    for (idr0, what) in [
        (IDR0 & !(1 << 1), "stage-1 translation"),
        (IDR0 & !(0b11 << 2), "AArch64 translation tables"),
        (IDR0 & !(1 << 4), "coherent table access (COHACC)"),
    ] {
        let mut frame = Frame::new(idr0);
        let clock = frame.fake(true, None);
        assert_eq!(
            smmu(&mut frame, &clock).err(),
            Some(BoardError::Unsupported(what))
        );
    }
    let mut frame = Frame::new(IDR0);
    let clock = frame.fake(true, None);
    let mut s = smmu(&mut frame, &clock).unwrap();
    assert!(matches!(
        s.set_bypass(256, &clock),
        Err(BoardError::InvalidArgument(_))
    ));
    let bad = Stage1Config {
        ttb0: 0x1001,
        format: Format::STAGE1_4K_48,
        mair: 0,
        asid: 0,
        walk: WalkAttrs::WriteBack,
    };
    assert!(matches!(
        s.attach_stage1(8, &bad, &clock),
        Err(BoardError::InvalidArgument(_))
    ));
    let f = SmmuFeatures::decode(IDR0, IDR1, IDR5);
    assert_eq!((f.sid_bits, f.oas, f.ips()), (16, 4, 4));
    assert!([Granule::K4, Granule::K16, Granule::K64]
        .iter()
        .all(|&g| f.supports(g)));
}

/// SMMU_IDR5 bits 4, 5, 6 say which granules the SMMU walks; a context in
/// any other is refused before the CD or STE changes, and the driver needs
/// no particular granule for its own tables.
#[test]
fn granules_the_smmu_lacks_are_refused_at_attach() {
    for (missing, granule, what) in [
        (4, Granule::K4, "the 4 KiB granule (SMMU_IDR5.GRAN4K = 0)"),
        (
            5,
            Granule::K16,
            "the 16 KiB granule (SMMU_IDR5.GRAN16K = 0)",
        ),
        (
            6,
            Granule::K64,
            "the 64 KiB granule (SMMU_IDR5.GRAN64K = 0)",
        ),
    ] {
        let mut frame = Frame::new(IDR0);
        frame.0[5] = IDR5 & !(1 << missing);
        let clock = frame.fake(true, None);
        let mut s = smmu(&mut frame, &clock).unwrap();
        assert!(!s.features().supports(granule));
        clock.seen.borrow_mut().clear();
        let cfg = |granule| Stage1Config {
            ttb0: 0x4400_0000,
            format: Format::new(granule, 48, Stage::One).unwrap(),
            mair: 0,
            asid: 1,
            walk: WalkAttrs::WriteBack,
        };
        assert_eq!(
            s.attach_stage1(8, &cfg(granule), &clock),
            Err(BoardError::Unsupported(what))
        );
        assert!(clock.seen.borrow().is_empty(), "nothing was changed");
        assert_eq!(s.read_ste_word0(8), Ste::abort().0[0]);
        let other = [Granule::K4, Granule::K16, Granule::K64]
            .into_iter()
            .find(|&g| g != granule)
            .unwrap();
        s.attach_stage1(8, &cfg(other), &clock).unwrap();
    }
}

#[test]
fn events_are_read_in_order_and_overflow_is_acknowledged() {
    let mut frame = Frame::new(IDR0);
    let clock = frame.fake(true, None);
    let mut s = smmu(&mut frame, &clock).unwrap();
    assert_eq!(s.pop_event(), None);
    // The "SMMU" writes two records and moves PROD (page 1, 0xa8).
    let q = s.eventq.cpu.as_ptr().cast::<u64>();
    // SAFETY: the first two records of the driver's live event queue.
    unsafe {
        for (i, w) in [0x0000_0008_0000_0010u64, 1 << 35, 0x7000_0000, 0]
            .iter()
            .enumerate()
        {
            q.add(i).write_volatile(*w);
        }
        q.add(4).write_volatile(0x0000_0009_0000_0004);
    }
    frame.0[(0x1_0000 + 0xa8) / 4] = 2 | regs::EVENTQ_PROD_OVFLG;
    let e = s.pop_event().unwrap();
    assert_eq!(
        (e.kind, e.stream_id, e.address),
        (EventKind::Translation, 8, Some(0x7000_0000))
    );
    assert_eq!(s.pop_event().unwrap().kind, EventKind::BadSte);
    assert_eq!(s.pop_event(), None);
    assert_eq!(
        frame.0[(0x1_0000 + 0xac) / 4],
        2 | regs::EVENTQ_CONS_OVACKFLG
    );
    assert_eq!(s.event_overflows(), 1);
}

mod iommu_hardware {
    //! The `dma-iommu` adapter against the same fake.
    use dma_core::{DmaAddr, PhysAddr};
    use dma_iommu::{Access, Asid, DeviceId, DomainContext, FaultKind, IommuHardware, TableFormat};

    use super::*;
    use crate::smmu::domain::{fault_of, stage1_config, TLBI_VA_LIMIT_PAGES};

    fn ctx(walk_coherent: bool) -> DomainContext {
        DomainContext {
            device: DeviceId(8),
            asid: Asid(3),
            root: PhysAddr::new(0x4400_0000),
            ias_bits: 48,
            format: TableFormat::Vmsav8 {
                format: Format::STAGE1_4K_48,
                mair: 0x44_04ff,
            },
            walk_coherent,
        }
    }

    #[test]
    fn attach_points_the_stream_at_the_domain_tables_and_enables() {
        let mut frame = Frame::new(IDR0);
        let clock = frame.fake(true, None);
        let hw = SmmuIommu::new(smmu(&mut frame, &clock).unwrap(), &clock);
        clock.seen.borrow_mut().clear();
        hw.attach(&ctx(true)).unwrap();
        assert!(hw.lock().is_enabled());
        let seen = clock.seen.borrow().clone();
        assert!(seen.contains(&Command::cfgi_cd(8)));
        assert!(seen.contains(&Command::tlbi_nh_asid(3)));
        let cfg = stage1_config(&ctx(true), true).unwrap();
        assert_eq!(
            (cfg.ttb0, cfg.format, cfg.mair, cfg.asid, cfg.walk),
            (
                0x4400_0000,
                Format::STAGE1_4K_48,
                0x44_04ff,
                3,
                WalkAttrs::WriteBack
            )
        );
        assert_eq!(
            stage1_config(&ctx(false), true).unwrap().walk,
            WalkAttrs::NonCacheable,
            "tables cleaned to memory are walked non-cacheable"
        );
        hw.detach(&ctx(true));
        let tail: Vec<Command> = clock.seen.borrow()[seen.len()..].to_vec();
        assert_eq!(
            tail,
            [
                Command::cfgi_ste(8),
                Command::sync(),
                Command::cfgi_ste(8),
                Command::sync(),
                Command::tlbi_nh_asid(3),
                Command::sync()
            ]
        );
        hw.sync().unwrap();
    }

    #[test]
    fn attach_refuses_what_the_smmu_cannot_walk() {
        assert_eq!(
            stage1_config(&ctx(true), false).err(),
            Some(BoardError::Unsupported("coherent table walks (COHACC)"))
        );
        let mut wide = ctx(false);
        wide.ias_bits = 300;
        assert_eq!(
            stage1_config(&wide, true).err(),
            Some(BoardError::InvalidArgument(
                "the context's input size must be its table format's"
            ))
        );
        let mut stage2 = ctx(false);
        stage2.format = TableFormat::Vmsav8 {
            format: Format::new(Granule::K4, 48, Stage::Two).unwrap(),
            mair: 0,
        };
        assert!(matches!(
            stage1_config(&stage2, true),
            Err(BoardError::Unsupported(why)) if why.starts_with("stage-2 tables")
        ));
        let mut frame = Frame::new(IDR0);
        let clock = frame.fake(true, None);
        let hw = SmmuIommu::new(smmu(&mut frame, &clock).unwrap(), &clock);
        let mut bad = ctx(false);
        bad.root = PhysAddr::new(0x4400_0800);
        let err = hw.attach(&bad).unwrap_err();
        assert_eq!(err.kind(), dma_core::ErrorKind::InvalidConstraints);
        bad.device = DeviceId(4096);
        assert!(hw.attach(&bad).is_err(), "StreamID beyond the table");
    }

    #[test]
    fn invalidations_are_per_page_or_per_asid_and_complete_at_sync() {
        let mut frame = Frame::new(IDR0);
        let clock = frame.fake(true, None);
        let hw = SmmuIommu::new(smmu(&mut frame, &clock).unwrap(), &clock);
        clock.seen.borrow_mut().clear();
        // Three pages touched by an unaligned range.
        hw.invalidate_range(Asid(3), DmaAddr::new(0x1_0800), 0x2000);
        hw.sync().unwrap();
        let long = (TLBI_VA_LIMIT_PAGES + 1) * 4096;
        hw.invalidate_range(Asid(3), DmaAddr::new(0x20_0000), long);
        hw.invalidate_all(Asid(4));
        hw.sync().unwrap();
        assert_eq!(
            *clock.seen.borrow(),
            [
                Command::tlbi_nh_va(3, 0x1_0000),
                Command::tlbi_nh_va(3, 0x1_1000),
                Command::tlbi_nh_va(3, 0x1_2000),
                Command::sync(),
                Command::tlbi_nh_asid(3),
                Command::tlbi_nh_asid(4),
                Command::sync(),
            ]
        );
    }

    /// A domain of 64 KiB pages is invalidated one 64 KiB leaf at a time,
    /// and its ASID-wide fallback counts 64 KiB pages; once detached, the
    /// ASID falls back to the 4 KiB step.
    #[test]
    fn invalidations_step_by_the_domains_granule() {
        let mut frame = Frame::new(IDR0);
        let clock = frame.fake(true, None);
        let hw = SmmuIommu::new(smmu(&mut frame, &clock).unwrap(), &clock);
        let mut k64 = ctx(true);
        k64.format = TableFormat::Vmsav8 {
            format: Format::new(Granule::K64, 48, Stage::One).unwrap(),
            mair: 0x44_04ff,
        };
        hw.attach(&k64).unwrap();
        // SAFETY: slot 8 of the driver's live host CD array.
        let cd = unsafe {
            (hw.lock().cds.cpu.as_ptr() as *const ContextDescriptor)
                .add(8)
                .read_volatile()
        };
        assert_eq!((cd.granule(), cd.input_bits()), (Some(Granule::K64), 48));
        clock.seen.borrow_mut().clear();
        // 4 KiB at the end of one 64 KiB page and 4 KiB into the next.
        hw.invalidate_range(Asid(3), DmaAddr::new(0x1_f000), 0x2000);
        hw.invalidate_range(Asid(3), DmaAddr::new(0x100_0000), TLBI_VA_LIMIT_PAGES << 16);
        hw.sync().unwrap();
        let mut want = std::vec![
            Command::tlbi_nh_va(3, 0x1_0000),
            Command::tlbi_nh_va(3, 0x2_0000)
        ];
        want.extend(
            (0..TLBI_VA_LIMIT_PAGES).map(|i| Command::tlbi_nh_va(3, 0x100_0000 + (i << 16))),
        );
        want.push(Command::sync());
        assert_eq!(*clock.seen.borrow(), want);
        hw.detach(&k64);
        clock.seen.borrow_mut().clear();
        hw.invalidate_range(Asid(3), DmaAddr::new(0x1_f000), 0x2000);
        hw.sync().unwrap();
        assert_eq!(
            *clock.seen.borrow(),
            [
                Command::tlbi_nh_va(3, 0x1_f000),
                Command::tlbi_nh_va(3, 0x2_0000),
                Command::sync()
            ]
        );
    }

    #[test]
    fn a_failed_invalidation_is_reported_by_the_next_sync() {
        let mut frame = Frame::new(IDR0);
        let clock = frame.fake(true, None);
        let s = smmu(&mut frame, &clock).unwrap();
        let reject = frame.fake(true, Some(0x12));
        let hw = SmmuIommu::new(s, &reject);
        hw.invalidate_range(Asid(1), DmaAddr::new(0x1000), 0x1000);
        let err = hw.sync().unwrap_err();
        assert_eq!(err.kind(), dma_core::ErrorKind::DeviceMisbehaved);
        assert_eq!(err.addr(), Some(0x12), "the rejected opcode");
        hw.invalidate_all(Asid(1));
        hw.sync().unwrap();
    }

    #[test]
    fn faults_come_from_the_event_queue_per_device() {
        let mut frame = Frame::new(IDR0);
        let clock = frame.fake(true, None);
        let hw = SmmuIommu::new(smmu(&mut frame, &clock).unwrap(), &clock);
        assert_eq!(hw.take_fault(DeviceId(8)), None);
        let q = hw.lock().eventq.cpu.as_ptr().cast::<u64>();
        let records: [[u64; 4]; 2] = [
            // F_TRANSLATION for StreamID 9 (another device), a read.
            [0x0000_0009_0000_0010, 1 << 35, 0x5000, 0],
            // F_PERMISSION for StreamID 8, a write.
            [0x0000_0008_0000_0013, 0, 0x7000_0040, 0],
        ];
        // SAFETY: the first two records of the driver's live event queue.
        unsafe {
            for (r, words) in records.iter().enumerate() {
                for (i, w) in words.iter().enumerate() {
                    q.add(r * 4 + i).write_volatile(*w);
                }
            }
        }
        frame.0[(0x1_0000 + 0xa8) / 4] = 2;
        let f = hw.take_fault(DeviceId(8)).unwrap();
        assert_eq!(
            (f.device, f.iova, f.access, f.kind),
            (
                DeviceId(8),
                DmaAddr::new(0x7000_0040),
                Access::Write,
                FaultKind::Permission { level: None }
            )
        );
        assert_eq!(hw.take_fault(DeviceId(8)), None);
        let other = hw.take_fault(DeviceId(9)).unwrap();
        assert_eq!(
            (other.access, other.kind),
            (Access::Read, FaultKind::Translation { level: None })
        );
        assert_eq!(hw.take_fault(DeviceId(9)), None, "kept once, taken once");
    }

    #[test]
    fn an_event_queue_overflow_is_reported_as_a_fault() {
        let mut frame = Frame::new(IDR0);
        let clock = frame.fake(true, None);
        let hw = SmmuIommu::new(smmu(&mut frame, &clock).unwrap(), &clock);
        let q = hw.lock().eventq.cpu.as_ptr().cast::<u64>();
        // SAFETY: the first record of the driver's live event queue.
        unsafe {
            for (i, w) in [0x0000_0008_0000_0010u64, 0, 0x6000, 0].iter().enumerate() {
                q.add(i).write_volatile(*w);
            }
        }
        // One record survived; the SMMU says it dropped others.
        frame.0[(0x1_0000 + 0xa8) / 4] = 1 | regs::EVENTQ_PROD_OVFLG;
        let kept = hw.take_fault(DeviceId(8)).unwrap();
        assert_eq!(kept.iova, DmaAddr::new(0x6000));
        let lost = hw.take_fault(DeviceId(8)).unwrap();
        assert_eq!((lost.device, lost.kind), (DeviceId(8), FaultKind::Overflow));
        assert_eq!(hw.take_fault(DeviceId(8)), None, "reported once");
    }

    #[test]
    fn configuration_events_become_walk_aborts() {
        let bad_ste = EventRecord([0x0000_0008_0000_0004, 0, 0, 0]).decode();
        let f = fault_of(&bad_ste);
        assert_eq!(
            (f.iova, f.kind),
            (DmaAddr::ZERO, FaultKind::WalkAbort { level: None })
        );
        let size = EventRecord([0x0000_0008_0000_0011, 1 << 35, 0x1_0000_0000, 0]).decode();
        assert_eq!(fault_of(&size).kind, FaultKind::AddressSize);
        let af = EventRecord([0x0000_0008_0000_0012, 0, 0x10, 0]).decode();
        assert_eq!(fault_of(&af).kind, FaultKind::AccessFlag { level: None });
    }
}
