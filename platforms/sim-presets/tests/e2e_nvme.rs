//! End to end: the reference NVMe block driver (dma-ring's queue pair,
//! dma-sg's PRP and SGL encoding and pools) against the simulated NVMe
//! controller on all three presets, with dma-check on, asserting that
//! neither the checker nor the coherency detector reports anything.

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaAlloc, DmaBuf, DmaBuffer, DmaMap, ErrorKind};
use dma_drivers::nvme::spec::io_opcode;
use dma_drivers::nvme::{prp_pools, IoOp, NvmeBlockDriver, NvmeDriverConfig, SglUse, NSID};
use dma_drivers::DriverError;
use dma_drivers::Wait;
use dma_ring::nvme::NvmeCommand;
use dma_sg::nvme::NvmePools;
use dma_sim::nvme::{status, NvmeConfig, NvmeController};
use dma_sim::{DeviceId, FaultKind, Injection, Sim};
use dma_sim_presets::{Preset, PresetRun, Spin, Stepping};

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

/// What the driver's start gave, over the preset's checked platform.
type Started<'a, P, W, B> = Result<NvmeBlockDriver<'a, &'a Checked<P>, W, B>, DriverError>;

/// Builds a controller from `nvme` on `dev`, starts the driver with
/// `config` on it, waiting with what `wait` makes of the controller and
/// with PRP/SGL memory from `pools`, and hands the outcome to `body`.
fn start_with<P: DmaMap + DmaAlloc, W: Wait, B: DmaBuffer, T>(
    sim: &Sim,
    dev: DeviceId,
    p: &Checked<P>,
    pools: &NvmePools<&Checked<P>>,
    (nvme, config): (NvmeConfig, NvmeDriverConfig),
    wait: impl FnOnce(NvmeController) -> W,
    body: impl for<'a> FnOnce(Started<'a, P, W, B>) -> T,
) -> T {
    let ctrl = NvmeController::new(sim.bus(dev), nvme).unwrap();
    let regs = ctrl.registers();
    let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
    body(NvmeBlockDriver::start(&regs, p, pools, wait(ctrl), config))
}

/// [`start_with`] a waiter that steps the controller, for a driver that
/// must start.
fn with_driver_pools<P: DmaMap + DmaAlloc, B: DmaBuffer, T>(
    sim: &Sim,
    dev: DeviceId,
    p: &Checked<P>,
    pools: &NvmePools<&Checked<P>>,
    setup: (NvmeConfig, NvmeDriverConfig),
    body: impl for<'a> FnOnce(Driver<'a, P, B>) -> T,
) -> T {
    start_with(sim, dev, p, pools, setup, Stepping::new, |started| {
        body(started.unwrap())
    })
}

/// [`with_driver_pools`] with the driver's default pools.
fn with_driver<P: DmaMap + DmaAlloc, B: DmaBuffer, T>(
    sim: &Sim,
    dev: DeviceId,
    p: &Checked<P>,
    setup: (NvmeConfig, NvmeDriverConfig),
    body: impl for<'a> FnOnce(Driver<'a, P, B>) -> T,
) -> T {
    with_driver_pools(sim, dev, p, &prp_pools(p).unwrap(), setup, body)
}

/// SGLs whenever the controller takes them.
fn sgl_always() -> NvmeDriverConfig {
    NvmeDriverConfig {
        sgl: SglUse::Always,
        ..NvmeDriverConfig::default()
    }
}

/// A device whose segments never cross a 4 KiB boundary: a buffer of n
/// pages is n device segments on every preset (an IOMMU's one IOVA range
/// included), so SGLs chain segments.
fn page_segments() -> DeviceConstraints {
    DeviceConstraints::builder().boundary(4096).build().unwrap()
}

/// The shapes [`DataPaths`] moves: (offset into the page, bytes, first
/// LBA, PRP list blocks used, SGL segment blocks used with 4 KiB device
/// segments). The sim's physical map keeps only a buffer's offset in its
/// cache line, so 4 KiB at +0x200 is one device page.
///
/// With PRPs: PRP1 alone, PRP1 with an offset, PRP2 as a page, PRP2
/// after an offset, short lists in 256-byte blocks, a list in a page, and
/// a list chained over two pages. With SGLs over page segments: a Data
/// Block in SGL1, a Last Segment of up to 16 descriptors in a 256-byte
/// block, one in a page, and 768 descriptors chained through Segment
/// descriptors over three pages and a 256-byte block.
const SHAPES: [(usize, usize, u64, u64, u64); 9] = [
    (0, 512, 0, 0, 0),
    (0x800, 512, 1, 0, 0),
    (0, 4096, 8, 0, 0),
    (0, 8192, 16, 0, 1),
    (0x200, 4096, 40, 0, 0),
    (0x400, 12 * 1024, 64, 1, 1),
    (0, 128 * 1024, 128, 1, 1),
    (0xc00, 256 * 1024, 512, 1, 1),
    (0, 3 << 20, 2048, 2, 4),
];

/// Every shape of [`SHAPES`] written by PRPs or (`sgl`) SGLs, checked on
/// the disk byte for byte against a model of the whole disk, and read
/// back into a canaried buffer.
struct DataPaths {
    sgl: bool,
}

impl PresetRun for DataPaths {
    type Output = (u64, u64);

    fn device_name(&self) -> &str {
        "nvme0"
    }

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> (u64, u64) {
        let config = if self.sgl {
            sgl_always()
        } else {
            NvmeDriverConfig::default()
        };
        with_driver(sim, dev, p, (disk(), config), |drv| {
            data_paths(drv, self.sgl)
        })
    }
}

fn data_paths<P: DmaMap + DmaAlloc>(
    mut drv: Driver<'_, P, &'static mut [u8]>,
    sgl: bool,
) -> (u64, u64) {
    let id = drv.identity().clone();
    assert_eq!(
        (id.vendor, id.block_size, id.blocks),
        (0x1b36, 512, 16 * 1024)
    );
    assert_eq!(id.mdts, 10);
    assert_eq!(id.max_transfer(), 4 << 20);
    assert!(id.model.starts_with("dma-sim"), "{:?}", id.model);
    assert!(id.sgl().supported(), "SGLS {:#x}", id.sgls);

    let mut model = vec![0u8; 16 * 1024 * BLOCK];
    for (offset, len, lba, lists, segments) in SHAPES {
        let data = pattern(lba, len);
        let (out, ..) = carve(offset, len, 0);
        out.copy_from_slice(&data);
        let before = drv.stats();
        let out = drv.write(lba, out).unwrap();
        let after = drv.stats();
        let used = (
            after.prp_lists - before.prp_lists,
            after.sgl_commands - before.sgl_commands,
            after.sgl_segments - before.sgl_segments,
        );
        let want = if sgl { (0, 1, segments) } else { (lists, 0, 0) };
        assert_eq!(used, want, "{len} bytes at +{offset:#x}");
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
    assert_eq!(stats.sgl_commands, if sgl { 18 } else { 0 });
    drv.shutdown().unwrap();
    (stats.bytes_written, stats.bytes_read)
}

fn check_data_paths(sgl: bool, constraints: DeviceConstraints) {
    for preset in Preset::ALL {
        let out = preset.run(11, constraints, DataPaths { sgl }).unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert!(out.faults.is_empty(), "{preset}: {:?}", out.faults);
        let total: usize = SHAPES.iter().map(|s| s.1).sum();
        let total = total as u64;
        assert_eq!(out.output, (total, total), "{preset}");
        if preset == Preset::Iommu {
            assert!(out.stats.iommu_walks > 0);
        }
    }
}

#[test]
fn prp1_prp2_and_chained_lists_move_exactly_the_right_bytes_on_every_preset() {
    check_data_paths(false, DeviceConstraints::UNCONSTRAINED);
}

#[test]
fn sgl_data_blocks_and_chained_segments_move_exactly_the_right_bytes_on_every_preset() {
    check_data_paths(true, page_segments());
}

/// Small queues (SQ 5, CQ 3) and batches as deep as they allow, for 300
/// commands of 1 to 24 blocks: both queues wrap dozens of times and the
/// phase tag flips each time. Returns the commands, the SGL commands and
/// the SGL segment blocks.
struct Wraps {
    sgl: SglUse,
}

impl PresetRun for Wraps {
    type Output = (u64, u64, u64);

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> Self::Output {
        let config = NvmeDriverConfig {
            admin_entries: 2,
            io_sq_entries: 5,
            io_cq_entries: 3,
            sgl: self.sgl,
        };
        with_driver(sim, dev, p, (disk(), config), |drv| wraps(drv, p))
    }
}

fn wraps<P: DmaMap + DmaAlloc>(mut drv: Driver<'_, P, DmaBuf>, p: &Checked<P>) -> (u64, u64, u64) {
    let blocks = |i: u64| 1 + (i % 24) as usize;
    let mut issued = 0u64;
    let mut done = 0u64;
    while done < 300 {
        while issued < 300 && drv.can_queue() {
            let mut buf = DmaBuf::for_device(p, blocks(issued) * BLOCK).unwrap();
            let data = pattern(issued, buf.len());
            buf.copy_from_slice(&data);
            drv.queue_write(issued * 24, buf).unwrap();
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
            drv.queue_read(issued * 24, buf).unwrap();
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
    let stats = drv.stats();
    (stats.commands, stats.sgl_commands, stats.sgl_segments)
}

#[test]
fn queues_wrap_many_times_with_batched_doorbells_on_every_preset() {
    for preset in Preset::ALL {
        let wraps = Wraps { sgl: SglUse::Never };
        let out = preset
            .run(5, DeviceConstraints::UNCONSTRAINED, wraps)
            .unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert_eq!(out.output, (600, 0, 0));
    }
}

#[test]
fn queues_wrap_with_multi_segment_sgls_on_every_preset() {
    for preset in Preset::ALL {
        let wraps = Wraps {
            sgl: SglUse::Always,
        };
        let out = preset.run(6, page_segments(), wraps).unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
        assert!(out.faults.is_empty(), "{preset}: {:?}", out.faults);
        let (commands, sgls, segments) = out.output;
        assert_eq!((commands, sgls), (600, 600));
        // Up to 12 KiB line-aligned buffers over 4 KiB device segments:
        // most commands chain a Last Segment.
        assert!(segments > 300, "{preset}: {segments} SGL segment blocks");
    }
}

/// Every fault the controller can be made to commit surfaces to the driver
/// as a typed error, the buffer comes back, the driver recovers where it
/// must, and nothing outside a mapping is written.
struct Faults;

impl PresetRun for Faults {
    type Output = ();

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) {
        let setup = (disk(), NvmeDriverConfig::default());
        with_driver(sim, dev, p, setup, |drv| faults(drv, sim, dev, p))
    }
}

fn faults<P: DmaMap + DmaAlloc>(
    mut drv: Driver<'_, P, DmaBuf>,
    sim: &Sim,
    dev: DeviceId,
    p: &Checked<P>,
) {
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
        let pools = prp_pools(p).unwrap();
        let mut thread = None;
        let on_thread = |ctrl| {
            thread = Some(dma_sim::DeviceThread::spawn(ctrl));
            Spin::new(50_000_000)
        };
        let setup = (disk(), NvmeDriverConfig::default());
        start_with(sim, dev, p, &pools, setup, on_thread, |started| {
            threaded(started.unwrap(), p)
        });
        thread.unwrap().stop();
    }
}

fn threaded<P: DmaMap + DmaAlloc>(
    mut drv: NvmeBlockDriver<'_, &Checked<P>, Spin, DmaBuf>,
    p: &Checked<P>,
) {
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
        let refused = |pools: &NvmePools<&Checked<P>>, config| {
            let setup = (disk(), config);
            start_with::<_, _, DmaBuf, _>(sim, dev, p, pools, setup, Stepping::new, |started| {
                started.err().unwrap()
            })
        };
        let too_small = NvmeDriverConfig {
            admin_entries: 1,
            ..NvmeDriverConfig::default()
        };
        let err = refused(&pools, too_small);
        assert!(matches!(err, DriverError::InvalidArgument(_)), "{err}");

        // Pools of another page size.
        let big = NvmePools::new(p, 8192, 1, 1).unwrap();
        let err = refused(&big, NvmeDriverConfig::default());
        assert!(matches!(err, DriverError::InvalidArgument(_)), "{err}");

        // A controller that never comes ready (it is never stepped).
        let setup = (disk(), NvmeDriverConfig::default());
        let never = |_| Spin::new(1000);
        let err = start_with::<_, _, DmaBuf, _>(sim, dev, p, &pools, setup, never, |started| {
            started.err().unwrap()
        });
        assert_eq!(err, DriverError::Timeout("NVMe CSTS.RDY = 1"));
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
        let config = NvmeDriverConfig {
            admin_entries: 2,
            io_sq_entries: 3,
            io_cq_entries: 3,
            ..NvmeDriverConfig::default()
        };
        with_driver(sim, dev, p, (disk(), config), raw_commands::<P>)
    }
}

fn raw_commands<P: DmaMap + DmaAlloc>(mut drv: Driver<'_, P, DmaBuf>) -> u64 {
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

/// Which data pointer the driver picks: SGLs only when the controller's
/// SGLS allows them and the policy asks, PRPs otherwise.
struct Choice {
    sgl: SglUse,
    controller_sgl: bool,
}

impl PresetRun for Choice {
    /// (SGL commands, PRP list blocks) after a 64 KiB transfer in 16
    /// page segments and one in a single 4 KiB segment.
    type Output = (u64, u64);

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) -> (u64, u64) {
        let nvme = NvmeConfig {
            sgl: self.controller_sgl,
            ..disk()
        };
        let config = NvmeDriverConfig {
            sgl: self.sgl,
            ..NvmeDriverConfig::default()
        };
        with_driver(
            sim,
            dev,
            p,
            (nvme, config),
            |mut drv: Driver<'_, P, DmaBuf>| {
                assert_eq!(drv.identity().sgl().supported(), self.controller_sgl);
                for (len, seed) in [(64 << 10, 0x31), (4096, 0x32)] {
                    let mut buf = DmaBuf::new(len, 4096).unwrap();
                    buf.fill(seed);
                    drv.write(0, buf).unwrap();
                    let back = drv.read(0, DmaBuf::new(len, 4096).unwrap()).unwrap();
                    assert!(back.iter().all(|&b| b == seed));
                }
                let stats = drv.stats();
                drv.shutdown().unwrap();
                (stats.sgl_commands, stats.prp_lists)
            },
        )
    }
}

#[test]
fn sgls_are_used_only_when_the_controller_takes_them_and_the_policy_asks() {
    // (policy, controller SGLs) -> (SGL commands, PRP list blocks): the
    // 64 KiB transfer needs one PRP list per command, the 4 KiB one none.
    let cases = [
        (SglUse::Never, true, (0, 2)),
        (SglUse::Always, true, (4, 0)),
        (SglUse::Always, false, (0, 2)),
        // 64 KiB in 16 segments averages 4 KiB: SGL at a 4 KiB threshold,
        // PRPs at 8 KiB; 4 KiB in one segment is SGL only at 4 KiB.
        (SglUse::AverageSegmentAtLeast(4096), true, (4, 0)),
        (SglUse::AverageSegmentAtLeast(8192), true, (0, 2)),
        (SglUse::AverageSegmentAtLeast(8192), false, (0, 2)),
    ];
    for (sgl, controller_sgl, want) in cases {
        let choice = Choice {
            sgl,
            controller_sgl,
        };
        let out = Preset::NonCoherent.run(9, page_segments(), choice).unwrap();
        assert!(out.clean(), "{:?} {:?}", out.checker, out.reports);
        assert_eq!(
            out.output, want,
            "{sgl:?}, controller SGLs {controller_sgl}"
        );
    }
}

/// SGL segments come from the same pools as PRP lists: when they run out,
/// the request is refused with `PoolExhausted` and its buffer back
/// untouched, nothing reaches the controller, and once the command in
/// flight completes its segment serves the next request.
struct SegmentsExhausted;

/// 17 pages: 17 descriptors, more than a 256-byte block holds, so the
/// SGL segment takes a memory page.
const SEVENTEEN_PAGES: usize = 17 * 4096;

impl PresetRun for SegmentsExhausted {
    type Output = ();

    fn run<P: DmaMap + DmaAlloc>(self, sim: &Sim, dev: DeviceId, p: &Checked<P>) {
        let pools = NvmePools::new(p, 4096, 1, 1).unwrap();
        let setup = (disk(), sgl_always());
        with_driver_pools(sim, dev, p, &pools, setup, |drv| exhausted(drv, &pools));
    }
}

fn exhausted<P: DmaMap + DmaAlloc>(mut drv: Driver<'_, P, DmaBuf>, pools: &NvmePools<&Checked<P>>) {
    let filled = |byte: u8| {
        let mut b = DmaBuf::new(SEVENTEEN_PAGES, 4096).unwrap();
        b.fill(byte);
        b
    };
    drv.queue_write(0, filled(1)).unwrap();
    assert_eq!(pools.available().0, 0, "the one page holds the SGL segment");
    let commands = drv.stats().commands;
    let r = drv.queue_write(256, filled(2)).unwrap_err();
    assert!(
        matches!(r.error, DriverError::Dma(e) if e.kind() == ErrorKind::PoolExhausted),
        "{:?}",
        r.error
    );
    assert!(r.buffer.unwrap().iter().all(|&b| b == 2));
    assert_eq!(drv.in_flight(), 1);
    drv.submit();
    drv.wait().unwrap().result.unwrap();
    assert_eq!(drv.stats().commands, commands + 1);
    assert_eq!(pools.available().0, 1, "the completion gave the page back");
    drv.write(256, filled(2)).unwrap();
    let disk = drv.wait_ref().device().disk();
    for (lba, byte) in [(0, 1), (256, 2)] {
        let at = lba * BLOCK;
        let written = &disk[at..at + SEVENTEEN_PAGES];
        assert!(written.iter().all(|&b| b == byte), "lba {lba}");
    }
    let stats = drv.stats();
    assert_eq!((stats.sgl_commands, stats.sgl_segments), (2, 2));
    drv.shutdown().unwrap();
}

#[test]
fn exhausted_sgl_segment_pools_refuse_with_the_buffer_back_on_every_preset() {
    for preset in Preset::ALL {
        let out = preset.run(10, page_segments(), SegmentsExhausted).unwrap();
        assert!(out.clean(), "{preset}: {:?} {:?}", out.checker, out.reports);
    }
}
