//! The in-image tests, in order: the board's bring-up (each step needs
//! the earlier ones, so a failed one ends the run), then the shared NVMe
//! checks (`dma_qemu_virt::nvme_suite`, through `dma-drivers`' block
//! driver, as the riscv64 image runs them) under the IOMMU backend, with
//! the fault-after-unmap test, once per translation granule the SMMU offers
//! (4, 16 and 64 KiB; a SKIP for one it lacks), and under the direct
//! backend, each on a freshly reset controller.

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use dma_coherence::arch::aarch64::Aarch64Maintenance;
use dma_coherence::CacheMaintenance;
use dma_core::{DeviceConstraints, DmaBuf, FromDevice, StreamingMapping};
use dma_direct::DirectPlatform;
use dma_drivers::nvme::spec::{io_opcode as opcode, read_write};
use dma_drivers::nvme::{prp_pools, IoOp, NvmeBlockDriver, NvmeDriverConfig, NSID};
use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage};
use dma_iommu::{
    Access, Asid, DeviceId, DomainConfig, FaultKind, IommuHardware, IommuPlatform, Strict,
};
use dma_qemu_virt::memory::BoardMemory;
use dma_qemu_virt::nvme_suite::{self, SuiteConfig};
use dma_qemu_virt::report::{ExitCode, Reporter};
use dma_qemu_virt::smmu::{ContextDescriptor, SmmuIommu};
use dma_qemu_virt::timer::{Clock, GenericTimer, TimerWait};
use dma_qemu_virt::Result;

use crate::board::Board;
use crate::console::Console;

/// How long one wait for the controller may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The device's limits: 64-bit addressing, dword-aligned data (PRP1's
/// rule, NVMe 2.0 §4.1.1).
fn constraints() -> Result<DeviceConstraints> {
    Ok(DeviceConstraints::builder()
        .addr_bits(64)
        .alignment(4)
        .build()?)
}

/// Runs everything and returns the exit code.
pub fn run() -> ExitCode {
    let mut r = Reporter::new(Console);
    let el = crate::boot::current_el();
    if !r.outcome(
        "boot.el1",
        if el == 1 {
            Ok("EL1")
        } else {
            Err(format!("EL{el}"))
        },
    ) {
        return ExitCode::BootFailed;
    }
    let board = Board::bring_up(|name, result| {
        r.outcome(name, result.map_err(|e| format!("{e}")));
    });
    let Ok(board) = board else {
        r.done();
        return ExitCode::BootFailed;
    };
    let freq = board.clock.frequency();
    r.outcome(
        "timer.frequency",
        if freq > 0 {
            Ok(format!("{freq} Hz"))
        } else {
            Err("CNTFRQ_EL0 = 0")
        },
    );
    let caps = board.nvme.capabilities();
    r.outcome::<_, String>(
        "nvme.cap_vs",
        Ok(format!(
            "BAR0 {:#x} version {}.{}.{} queue entries {} DSTRD {} MPSMIN {} timeout {:?}",
            board.nvme_bar.addr,
            caps.version.0,
            caps.version.1,
            caps.version.2,
            caps.max_queue_entries,
            caps.doorbell_stride,
            caps.min_page_size,
            caps.timeout
        )),
    );
    let f = board.smmu.lock().features();
    r.outcome::<_, String>(
        "smmu.features",
        Ok(format!(
            "SIDSIZE {} OAS {} CMDQS {} EVENTQS {} coherent {} granules 4K {} 16K {} 64K {}",
            f.sid_bits,
            f.oas,
            f.cmdq_log2_max,
            f.eventq_log2_max,
            f.coherent,
            f.granule_4k,
            f.granule_16k,
            f.granule_64k
        )),
    );

    let sid = board.nvme_stream_id();
    let board = &board;
    // The IOMMU backend first: a device told a wrong address there faults
    // in the SMMU; under the direct backend it writes wherever it was told,
    // possibly over this image, so a broken encoding is best met last.
    for run in IOMMU_RUNS {
        if f.supports(run.granule) {
            iommu(&mut r, board, sid, run);
        } else {
            r.skip(
                &format!("{}.all", run.name),
                "the SMMU lacks this granule (SMMU_IDR5); QEMU 7.2 offers 4, 16 and 64 KiB",
            );
        }
    }
    direct(&mut r, board, sid);
    crate::virtio_blk::run(&mut r, board);
    crate::net::run(&mut r, board);
    let off = board.smmu.lock().disable(&board.clock);
    r.outcome(
        "smmu.disable",
        off.map(|()| "SMMUEN = 0").map_err(|e| format!("{e}")),
    );
    r.done()
}

/// The direct backend: ARM non-coherent preset (every map and sync does
/// `dc` maintenance at EL1) over the board's memory, with the SMMU on and
/// the NVMe's stream in bypass.
fn direct(r: &mut Reporter<Console>, board: &Board, sid: u32) {
    let bypass = {
        let mut smmu = board.smmu.lock();
        smmu.enable(&board.clock)
            .and_then(|()| smmu.set_bypass(sid, &board.clock))
    };
    let ok = r.outcome(
        "direct.smmu_bypass",
        bypass
            .map(|()| format!("SMMUEN = 1, STE {sid} bypass"))
            .map_err(|e| format!("{e}")),
    );
    let constraints = match constraints() {
        Ok(c) => c,
        Err(e) => {
            r.outcome::<&str, _>("direct.constraints", Err(format!("{e}")));
            return;
        }
    };
    if !ok {
        return;
    }
    let platform = DirectPlatform::arm_noncoherent(board.memory, constraints);
    let line = platform.cache().line_size();
    r.outcome::<_, String>(
        "direct.platform",
        Ok(format!(
            "arm_noncoherent: {:?} maintenance, {line}-byte lines",
            platform.cache().level()
        )),
    );
    let wait = TimerWait::new(&board.clock, TIMEOUT);
    nvme_suite::run(r, &board.nvme, &platform, wait, &DIRECT_SUITE);
    let event = board.smmu.lock().pop_event();
    r.outcome(
        "direct.no_smmu_events",
        match event {
            None => Ok("event queue empty"),
            Some(e) => Err(format!("{e:?}")),
        },
    );
}

/// One run of the IOMMU tests: the tables' granule, and the shared
/// checks' name prefix and disk area.
#[derive(Clone, Copy)]
struct IommuRun {
    name: &'static str,
    granule: Granule,
    suite: SuiteConfig,
}

/// Blocks in each run's area of the disk: 8 MiB.
const AREA: u64 = 16384;

/// Every granule, each on its own 8 MiB of the disk (the direct backend's
/// is the first), so every run's data is checked on its own.
const IOMMU_RUNS: [IommuRun; 3] = [
    IommuRun {
        name: "iommu_4k",
        granule: Granule::K4,
        suite: SuiteConfig::qemu("iommu_4k", AREA, 0x200),
    },
    IommuRun {
        name: "iommu_16k",
        granule: Granule::K16,
        suite: SuiteConfig::qemu("iommu_16k", 2 * AREA, 0x300),
    },
    IommuRun {
        name: "iommu_64k",
        granule: Granule::K64,
        suite: SuiteConfig::qemu("iommu_64k", 3 * AREA, 0x400),
    },
];

// Each run's writes stay inside its own area.
const _: () = assert!(DIRECT_SUITE.area_blocks() <= AREA);

/// The IOMMU backend: `dma-iommu`'s platform over the SMMU, whose stage-1
/// walks use `dma-iommu`'s VMSAv8-64 tables of `run`'s granule (48-bit
/// IOVAs); every queue, list page and buffer address the controller sees is
/// an IOVA.
fn iommu(r: &mut Reporter<Console>, board: &Board, sid: u32, run: IommuRun) {
    let t = |test: &str| format!("{}.{test}", run.name);
    let Ok(constraints) = constraints() else {
        return;
    };
    let config = Format::new(run.granule, 48, Stage::One)
        .map(|format| DomainConfig::new(DeviceId(sid), Asid(1)).with_format(format));
    let platform = config.and_then(|config| {
        IommuPlatform::new(
            board.memory,
            Aarch64Maintenance::el1(),
            &board.smmu,
            Strict,
            constraints,
            config,
        )
    });
    let cd = board
        .smmu
        .lock()
        .context_descriptor(sid)
        .unwrap_or(ContextDescriptor::INVALID);
    let ok = r.outcome(
        &t("attach"),
        platform
            .as_ref()
            .map_err(|e| format!("{e:?}"))
            .and_then(|p| {
                let c = p.context();
                let summary = format!(
                    "STE {sid} -> CD: TTB0 {} IAS {} TG0 {:?} ASID {} walk coherent {}",
                    c.root,
                    c.ias_bits,
                    cd.granule(),
                    c.asid.0,
                    c.walk_coherent
                );
                // What the SMMU reads back must be what the tables are.
                if cd.is_valid()
                    && cd.granule() == Some(run.granule)
                    && cd.input_bits() == c.ias_bits
                {
                    Ok(summary)
                } else {
                    Err(format!("CD disagrees with the tables: {summary}"))
                }
            }),
    );
    let Ok(platform) = platform else { return };
    if !ok {
        return;
    }
    let wait = TimerWait::new(&board.clock, TIMEOUT);
    nvme_suite::run(r, &board.nvme, &platform, wait, &run.suite);
    r.outcome(
        &t("fault_after_unmap"),
        fault_after_unmap(board, &platform, sid, run),
    );
    drop(platform);
    let fault = board.smmu.take_fault(DeviceId(sid));
    r.outcome(
        &t("detach"),
        match fault {
            None => Ok(String::from(
                "STE aborts, ASID invalidated, no stray faults",
            )),
            Some(f) => Err(format!("stray fault {f}")),
        },
    );
}

/// The direct backend's checks, on the first area of the disk (the IOMMU
/// runs' follow it).
const DIRECT_SUITE: SuiteConfig = SuiteConfig::qemu("direct", 0, 0x100);

type BoardIommu<'a> = IommuPlatform<
    &'static BoardMemory,
    Aarch64Maintenance,
    &'a SmmuIommu<&'static BoardMemory, GenericTimer>,
    Strict,
>;

/// Maps a buffer, unmaps it (the strict policy invalidates the IOTLB and
/// syncs), then has the controller write to the stale IOVA through a
/// freshly started block driver: the SMMU must block every access and
/// record F_TRANSLATION events, while QEMU's NVMe still completes the
/// command with success. The buffer is one granule, so nothing else shares
/// its page.
fn fault_after_unmap(
    board: &Board,
    platform: &BoardIommu<'_>,
    sid: u32,
    run: IommuRun,
) -> core::result::Result<String, String> {
    let lba = run.suite.base_lba;
    let granule = run.granule.size() as usize;
    let e = |what: &'static str| move |x: dma_drivers::DriverError| format!("{what}: {x}");
    let mut stale = 0;
    while platform.take_fault().is_some() {
        stale += 1;
    }
    if stale != 0 {
        return Err(format!("{stale} faults before the test"));
    }
    // The driver first: everything it maps is mapped before the stale
    // IOVA exists, so the allocator cannot hand that IOVA out again.
    let pools = prp_pools(platform).map_err(|x| format!("PRP pools: {x}"))?;
    let wait = TimerWait::new(&board.clock, TIMEOUT);
    let config = NvmeDriverConfig::default();
    let mut disk = NvmeBlockDriver::<_, _>::start(&board.nvme, platform, &pools, wait, config)
        .map_err(e("bring-up"))?;
    let buf = DmaBuf::new(granule, granule).map_err(|x| format!("{x:?}"))?;
    let map = StreamingMapping::<_, FromDevice, _>::map(platform, buf)
        .map_err(|x| format!("{:?}", x.error))?;
    let iova = map.dma_addr();
    let buf = map.unmap().map_err(|x| format!("{x:?}"))?;
    if platform.iova_to_phys(iova).is_some() {
        return Err(format!("{iova} still translates after unmap"));
    }
    let mut cmd = read_write(opcode::READ, NSID, lba, 1).map_err(e("command"))?;
    cmd.prp1 = iova.as_u64();
    // Nothing is mapped between the check above and the command's
    // completion (the driver was started before).
    // SAFETY: PRP1, the one data pointer of a one-block read (PRP2 is 0), is an IOVA that translates
    // to nothing, so the SMMU blocks every access the controller makes and no memory is written.
    unsafe { disk.queue_raw(cmd) }.map_err(e("queue"))?;
    disk.submit();
    let done = disk.wait().map_err(e("wait"))?;
    let success = done.result.is_ok();
    let fatal = board.nvme.is_fatal();
    disk.shutdown().map_err(e("shutdown"))?;
    if done.op != IoOp::Raw(opcode::READ) {
        return Err(format!("the completion is for {:?}", done.op));
    }
    let first = platform.take_fault();
    let mut events = u32::from(first.is_some());
    while platform.take_fault().is_some() {
        events += 1;
    }
    let f = first.ok_or(format!("no SMMU event (NVMe result {:?})", done.result))?;
    let expected = f.kind == FaultKind::Translation { level: None }
        && f.device == DeviceId(sid)
        && f.access == Access::Write
        && f.iova.as_u64() & !(granule as u64 - 1) == iova.as_u64();
    if !expected {
        return Err(format!("unexpected fault {f} for IOVA {iova}"));
    }
    if buf.iter().any(|&b| b != 0) {
        return Err(String::from("the blocked data reached the unmapped buffer"));
    }
    if fatal {
        return Err(String::from("CSTS.CFS after the blocked transfer"));
    }
    let overflows = board_overflows(platform);
    Ok(format!(
        "F_TRANSLATION sid {} {:?} at {} ({events} events, {overflows} overflows); \
         NVMe status success {success} (QEMU completes blocked transfers)",
        f.device.0, f.access, f.iova
    ))
}

fn board_overflows(platform: &BoardIommu<'_>) -> u32 {
    platform.hardware().lock().event_overflows()
}
