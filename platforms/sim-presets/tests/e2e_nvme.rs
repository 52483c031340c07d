//! End to end: the reference NVMe block driver (dma-ring's queue pair,
//! dma-sg's PRP encoding and pools) against the simulated NVMe controller
//! on all three presets, with dma-check on, asserting that neither the
//! checker nor the coherency detector reports anything.

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaBuf, DmaMap};
use dma_drivers::nvme::spec::io_opcode;
use dma_drivers::nvme::{prp_pools, IoOp, NvmeBlockDriver, NvmeDriverConfig, NSID};
use dma_drivers::DriverError;
use dma_ring::nvme::NvmeCommand;
use dma_sim::nvme::{status, NvmeConfig, NvmeController};
use dma_sim::{DeviceId, FaultKind, Injection, Sim};
use dma_sim_presets::{Preset, PresetRun, Stepping};

const BLOCK: usize = 512;

/// 8 MiB of 512-byte blocks, 4 MiB transfers (so PRP lists chain).
fn disk() -> NvmeConfig {
    NvmeConfig {
        blocks: 16 * 1024,
        mdts: 10,
        ..NvmeConfig::default()
    }
}

/// A buffer `len` bytes long starting `offset` bytes into a fresh
/// page-aligned allocation whose other bytes hold `canary`: the slice, and
/// the bytes before and after it (to check nothing outside was written).
type Carved = (&'static mut [u8], &'static mut [u8], &'static mut [u8]);

fn carve(offset: usize, len: usize, canary: u8) -> Carved {
    let pages = (offset + len).div_ceil(4096);
    let mut page = DmaBuf::new(pages * 4096, 4096).unwrap();
    page.fill(canary);
    let all: &'static mut [u8] = &mut Box::leak(Box::new(page))[..];
    let (before, rest) = all.split_at_mut(offset);
    let (slice, after) = rest.split_at_mut(len);
    (slice, before, after)
}

fn pattern(lba: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 ^ lba.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x2545_f491) >> 13) as u8)
        .collect()
}

type Driver<'a, P, B> = NvmeBlockDriver<'a, &'a Checked<P>, Stepping<NvmeController>, B>;

/// PRP1 alone, PRP1 with an offset, PRP2 as a page, PRP2 after an offset,
/// short lists in 256-byte blocks, a list in a page, and a list chained
/// over two pages: each written, checked on the disk byte for byte against
/// a model of the whole disk, and read back into a canaried buffer.
struct DataPaths;

impl PresetRun for DataPaths {
    type Output = (u64, u64);

    fn device_name(&self) -> &str {
        "nvme0"
    }

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> (u64, u64) {
        let ctrl = NvmeController::new(sim.bus(dev), disk()).unwrap();
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let pools = prp_pools(p).unwrap();
        let config = NvmeDriverConfig::default();
        let mut drv: Driver<'_, P, &'static mut [u8]> =
            NvmeBlockDriver::start(&regs, p, &pools, Stepping::new(ctrl), config).unwrap();
        let id = drv.identity().clone();
        assert_eq!(
            (id.vendor, id.block_size, id.blocks),
            (0x1b36, 512, 16 * 1024)
        );
        assert_eq!(id.mdts, 10);
        assert_eq!(id.max_transfer(), 4 << 20);
        assert!(id.model.starts_with("dma-sim"), "{:?}", id.model);

        let mut model = vec![0u8; 16 * 1024 * BLOCK];
        // (offset into the page, bytes, first LBA, PRP list blocks used)
        let cases: [(usize, usize, u64, u64); 9] = [
            (0, 512, 0, 0),
            (0x800, 512, 1, 0),
            (0, 4096, 8, 0),
            (0, 8192, 16, 0),
            (0x200, 4096, 40, 0),
            (0x400, 12 * 1024, 64, 1),
            (0, 128 * 1024, 128, 1),
            (0xc00, 256 * 1024, 512, 1),
            (0, 3 << 20, 2048, 2),
        ];
        for (offset, len, lba, lists) in cases {
            let data = pattern(lba, len);
            let (out, ..) = carve(offset, len, 0);
            out.copy_from_slice(&data);
            let before = drv.stats().prp_lists;
            let out = drv.write(lba, out).unwrap();
            assert_eq!(
                drv.stats().prp_lists - before,
                lists,
                "{len} bytes at +{offset:#x}"
            );
            assert_eq!(&out[..], &data[..]);
            let at = lba as usize * BLOCK;
            model[at..at + len].copy_from_slice(&data);
            assert!(
                drv.wait_ref().device().disk() == &model[..],
                "write of {len} bytes at +{offset:#x}: the disk holds exactly the data"
            );

            let (into, before, after) = carve(offset, len, 0xcc);
            let back = drv.read(lba, into).unwrap();
            assert!(back[..] == data[..], "read of {len} bytes at +{offset:#x}");
            assert!(before.iter().chain(after.iter()).all(|&b| b == 0xcc));
        }
        drv.flush().unwrap();
        let stats = drv.stats();
        assert_eq!((stats.writes, stats.reads, stats.flushes), (9, 9, 1));
        drv.shutdown().unwrap();
        (stats.bytes_written, stats.bytes_read)
    }
}

#[test]
fn prp1_prp2_and_chained_lists_move_exactly_the_right_bytes_on_every_preset() {
    for preset in Preset::ALL {
        let out = preset
            .run(11, DeviceConstraints::UNCONSTRAINED, DataPaths)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert!(out.faults.is_empty(), "{preset}: {:?}", out.faults);
        let total =
            512 + 512 + 4096 + 8192 + 4096 + (12 << 10) + (128 << 10) + (256 << 10) + (3 << 20);
        assert_eq!(out.output, (total, total), "{preset}");
        if preset == Preset::Iommu {
            assert!(out.stats.iommu_walks > 0);
        }
    }
}

/// Small queues (SQ 5, CQ 3) and batches as deep as they allow, for 300
/// commands: both queues wrap dozens of times and the phase tag flips
/// each time.
struct Wraps;

impl PresetRun for Wraps {
    type Output = u64;

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> u64 {
        let ctrl = NvmeController::new(sim.bus(dev), disk()).unwrap();
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let pools = prp_pools(p).unwrap();
        let config = NvmeDriverConfig {
            admin_entries: 2,
            io_sq_entries: 5,
            io_cq_entries: 3,
        };
        let mut drv: Driver<'_, P, DmaBuf> =
            NvmeBlockDriver::start(&regs, p, &pools, Stepping::new(ctrl), config).unwrap();
        let blocks = |i: u64| 1 + (i % 8) as usize;
        let mut issued = 0u64;
        let mut done = 0u64;
        while done < 300 {
            while issued < 300 && drv.can_queue() {
                let mut buf = DmaBuf::for_device(p, blocks(issued) * BLOCK).unwrap();
                let data = pattern(issued, buf.len());
                buf.copy_from_slice(&data);
                drv.queue_write(issued * 8, buf).unwrap();
                issued += 1;
            }
            drv.submit();
            let c = drv.wait().unwrap();
            assert_eq!(c.op, IoOp::Write);
            c.result.unwrap();
            done += 1;
        }
        // Read everything back, also in batches.
        let (mut issued, mut done) = (0u64, 0u64);
        let mut seen = std::collections::BTreeSet::new();
        while done < 300 {
            while issued < 300 && drv.can_queue() {
                let buf = DmaBuf::for_device(p, blocks(issued) * BLOCK).unwrap();
                drv.queue_read(issued * 8, buf).unwrap();
                issued += 1;
            }
            drv.submit();
            let c = drv.wait().unwrap();
            c.result.unwrap();
            let data = c.buffer.unwrap();
            let i = (0..300u64)
                .find(|i| !seen.contains(i) && data[..] == pattern(*i, blocks(*i) * BLOCK)[..])
                .expect("read data matches one of the writes");
            seen.insert(i);
            done += 1;
        }
        assert_eq!(seen.len(), 300);
        drv.stats().commands
    }
}

#[test]
fn queues_wrap_many_times_with_batched_doorbells_on_every_preset() {
    for preset in Preset::ALL {
        let out = preset
            .run(5, DeviceConstraints::UNCONSTRAINED, Wraps)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert_eq!(out.output, 600);
    }
}

/// Every fault the controller can be made to commit surfaces to the driver
/// as a typed error, the buffer comes back, the driver recovers where it
/// must, and nothing outside a mapping is written.
struct Faults;

impl PresetRun for Faults {
    type Output = ();

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) {
        let ctrl = NvmeController::new(sim.bus(dev), disk()).unwrap();
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let pools = prp_pools(p).unwrap();
        let mut drv: Driver<'_, P, DmaBuf> = NvmeBlockDriver::start(
            &regs,
            p,
            &pools,
            Stepping::new(ctrl),
            NvmeDriverConfig::default(),
        )
        .unwrap();
        let filled = |byte: u8| {
            let mut b = DmaBuf::for_device(p, 4096).unwrap();
            b.fill(byte);
            b
        };
        drv.write(0, filled(0x11)).unwrap();

        // An error completion: the status reaches the caller, with the buffer.
        drv.wait_mut().device_mut().inject(Injection::Error);
        let r = drv.write(0, filled(0x22)).unwrap_err();
        assert_eq!(
            r.error,
            DriverError::Nvme {
                opcode: 0x01,
                code_type: 0,
                code: status::INTERNAL_ERROR as u8
            }
        );
        assert!(r.buffer.unwrap().iter().all(|&b| b == 0x22));
        assert!(drv.wait_ref().device().disk()[..4096]
            .iter()
            .all(|&b| b == 0x11));

        // A refused DMA (the data transfer of a Read faults: the SQ entry
        // fetch is let through): a data transfer error, and the buffer was
        // not written.
        sim.inject_faults_after(dev, 1, 1);
        let r = drv.read(0, filled(0xcc)).unwrap_err();
        assert_eq!(
            r.error,
            DriverError::Nvme {
                opcode: 0x02,
                code_type: 0,
                code: status::DATA_TRANSFER_ERROR as u8
            }
        );
        assert!(r.buffer.unwrap().iter().all(|&b| b == 0xcc));
        let faults = sim.take_faults();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].kind, FaultKind::Injected);

        // The same on a Write: the disk keeps its old data.
        sim.inject_faults_after(dev, 1, 1);
        let r = drv.write(0, filled(0x33)).unwrap_err();
        assert!(matches!(r.error, DriverError::Nvme { code: 4, .. }));
        assert!(drv.wait_ref().device().disk()[..4096]
            .iter()
            .all(|&b| b == 0x11));
        assert_eq!(sim.take_faults().len(), 1);

        // A late completion is simply late.
        drv.wait_mut()
            .device_mut()
            .inject(Injection::DelayCompletion { steps: 30 });
        let back = drv.read(0, filled(0)).unwrap();
        assert!(back.iter().all(|&b| b == 0x11));

        // A lost completion times out; recovery resets the controller and
        // hands the buffer back.
        drv.wait_mut()
            .device_mut()
            .inject(Injection::DropCompletion);
        let r = drv.write(8, filled(0x44)).unwrap_err();
        assert_eq!(r.error, DriverError::Timeout("an I/O completion"));
        assert_eq!(drv.in_flight(), 1);
        let returned = drv.recover().unwrap();
        assert_eq!(returned.len(), 1);
        assert!(returned[0].iter().all(|&b| b == 0x44));
        assert_eq!(drv.in_flight(), 0);

        // Garbage in a completion entry: refused by the ring, the queue is
        // broken until recovery, and the buffer comes back once.
        drv.wait_mut()
            .device_mut()
            .inject(Injection::GarbageCompletion);
        let r = drv.read(0, filled(0)).unwrap_err();
        assert!(
            matches!(r.error, DriverError::Ring(e) if e.kind().is_device_fault()),
            "{:?}",
            r.error
        );
        let again = drv.queue_read(0, filled(0)).unwrap_err();
        assert!(matches!(again.error, DriverError::Ring(_)));
        assert!(
            again.buffer.is_some(),
            "a refused request's buffer comes back"
        );
        let returned = drv.recover().unwrap();
        assert_eq!(returned.len(), 1);

        // Bad requests are typed errors, with the buffer back.
        let r = drv.write(16_383, filled(0)).unwrap_err();
        assert!(matches!(r.error, DriverError::InvalidArgument(_)));
        assert!(r.buffer.is_some());
        let r = drv
            .write(0, DmaBuf::for_device(p, 100).unwrap())
            .unwrap_err();
        assert!(matches!(r.error, DriverError::InvalidArgument(_)));

        // And it still works.
        drv.write(8, filled(0x55)).unwrap();
        let back = drv.read(8, filled(0)).unwrap();
        assert!(back.iter().all(|&b| b == 0x55));
        assert_eq!(drv.stats().recoveries, 2);
        drv.shutdown().unwrap();
    }
}

#[test]
fn injected_faults_surface_to_the_driver_on_every_preset() {
    for preset in Preset::ALL {
        let out = preset
            .run(3, DeviceConstraints::UNCONSTRAINED, Faults)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert!(out.faults.is_empty(), "{preset}: {:?}", out.faults);
    }
}

/// The controller on its own thread, the driver spinning: the same driver
/// code, concurrent device.
struct Threaded;

impl PresetRun for Threaded {
    type Output = ();

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) {
        let ctrl = NvmeController::new(sim.bus(dev), disk()).unwrap();
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let thread = dma_sim::DeviceThread::spawn(ctrl);
        let pools = prp_pools(p).unwrap();
        let mut drv: NvmeBlockDriver<'_, _, _, DmaBuf> = NvmeBlockDriver::start(
            &regs,
            p,
            &pools,
            dma_sim_presets::Spin::new(50_000_000),
            NvmeDriverConfig::default(),
        )
        .unwrap();
        // 48 commands in flight at once (the queue holds 63), one doorbell.
        for i in 0..48u64 {
            let mut buf = DmaBuf::for_device(p, 8192).unwrap();
            buf.fill(i as u8);
            drv.queue_write(i * 16, buf).unwrap();
        }
        drv.submit();
        while drv.in_flight() > 0 {
            drv.wait().unwrap().result.unwrap();
        }
        for i in 0..48u64 {
            let back = drv
                .read(i * 16, DmaBuf::for_device(p, 8192).unwrap())
                .unwrap();
            assert!(back.iter().all(|&b| b == i as u8));
        }
        drv.shutdown().unwrap();
        thread.stop();
    }
}

#[test]
fn the_driver_runs_against_a_controller_on_its_own_thread() {
    for preset in Preset::ALL {
        let out = preset
            .run(4, DeviceConstraints::UNCONSTRAINED, Threaded)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
    }
}

/// Bring-up refuses what it cannot work with, with typed errors.
struct BadStarts;

impl PresetRun for BadStarts {
    type Output = ();

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) {
        let pools = prp_pools(p).unwrap();
        let too_small = NvmeDriverConfig {
            admin_entries: 1,
            ..NvmeDriverConfig::default()
        };
        let ctrl = NvmeController::new(sim.bus(dev), disk()).unwrap();
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let err = NvmeBlockDriver::<_, _, DmaBuf>::start(
            &regs,
            p,
            &pools,
            Stepping::new(ctrl),
            too_small,
        )
        .err()
        .unwrap();
        assert!(matches!(err, DriverError::InvalidArgument(_)), "{err}");

        // Pools of another page size.
        let big = dma_sg::nvme::NvmePools::new(p, 8192, 1, 1).unwrap();
        let ctrl = NvmeController::new(sim.bus(dev), disk()).unwrap();
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let err = NvmeBlockDriver::<_, _, DmaBuf>::start(
            &regs,
            p,
            &big,
            Stepping::new(ctrl),
            NvmeDriverConfig::default(),
        )
        .err()
        .unwrap();
        assert!(matches!(err, DriverError::InvalidArgument(_)), "{err}");

        // A controller that never comes ready (it is never stepped).
        let ctrl = NvmeController::new(sim.bus(dev), disk()).unwrap();
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let err = NvmeBlockDriver::<_, _, DmaBuf>::start(
            &regs,
            p,
            &pools,
            dma_sim_presets::Spin::new(1000),
            NvmeDriverConfig::default(),
        )
        .err()
        .unwrap();
        assert_eq!(err, DriverError::Timeout("NVMe CSTS.RDY = 1"));
        drop(ctrl);
    }
}

#[test]
fn bring_up_errors_are_typed() {
    let out = Preset::NonCoherent
        .run(1, DeviceConstraints::UNCONSTRAINED, BadStarts)
        .unwrap();
    assert!(out.clean(), "{:?} {:?}", out.checker, out.reports);
}

/// Commands the caller builds whole (`queue_raw`) run under a command
/// identifier of the driver's and come back as `IoOp::Raw` with no buffer:
/// a Flush succeeds, an opcode the controller does not know fails with its
/// NVMe status, and a full queue refuses one without queueing it.
struct RawCommands;

impl PresetRun for RawCommands {
    type Output = u64;

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> u64 {
        let ctrl = NvmeController::new(sim.bus(dev), disk()).unwrap();
        let regs = ctrl.registers();
        let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
        let pools = prp_pools(p).unwrap();
        let config = NvmeDriverConfig {
            admin_entries: 2,
            io_sq_entries: 3,
            io_cq_entries: 3,
        };
        let mut drv: Driver<'_, P, DmaBuf> =
            NvmeBlockDriver::start(&regs, p, &pools, Stepping::new(ctrl), config).unwrap();
        let command = |opcode: u8| {
            let mut cmd = NvmeCommand::new(opcode);
            cmd.nsid = NSID;
            cmd
        };

        // SAFETY: a Flush has no data pointer (PRP1 and PRP2 are 0): the
        // controller accesses no memory for it.
        let cid = unsafe { drv.queue_raw(command(io_opcode::FLUSH)) }.unwrap();
        drv.submit();
        let c = drv.wait().unwrap();
        assert_eq!((c.cid, c.op, c.len), (cid, IoOp::Raw(io_opcode::FLUSH), 0));
        c.result.unwrap();
        assert!(c.buffer.is_none());

        // SAFETY: no data pointer, and the opcode is one the controller
        // rejects before it could transfer anything.
        unsafe { drv.queue_raw(command(0x7e)) }.unwrap();
        drv.submit();
        let c = drv.wait().unwrap();
        assert_eq!(c.op, IoOp::Raw(0x7e));
        assert!(
            matches!(c.result, Err(DriverError::Nvme { opcode: 0x7e, code, .. }) if code == status::INVALID_OPCODE as u8),
            "{:?}",
            c.result
        );

        // A 3-entry SQ holds two commands; the third is refused, unqueued.
        for _ in 0..2 {
            // SAFETY: Flushes, as above.
            unsafe { drv.queue_raw(command(io_opcode::FLUSH)) }.unwrap();
        }
        // SAFETY: a Flush has no data pointer (PRP1 and PRP2 are 0), so the
        // controller reaches no memory for it.
        let full = unsafe { drv.queue_raw(command(io_opcode::FLUSH)) };
        assert!(matches!(full, Err(DriverError::Ring(_))), "{full:?}");
        assert_eq!(drv.in_flight(), 2);
        drv.submit();
        for _ in 0..2 {
            drv.wait().unwrap().result.unwrap();
        }
        let stats = drv.stats();
        assert_eq!((stats.flushes, stats.errors), (0, 1));
        drv.shutdown().unwrap();
        stats.commands
    }
}

#[test]
fn raw_commands_complete_fail_and_are_refused_on_every_preset() {
    for preset in Preset::ALL {
        let out = preset
            .run(8, DeviceConstraints::UNCONSTRAINED, RawCommands)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert!(out.faults.is_empty(), "{preset}: {:?}", out.faults);
        assert_eq!(out.output, 4, "{preset}");
    }
}
