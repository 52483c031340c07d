//! The in-image tests, in order: the board's bring-up (each step needs
//! the earlier ones, so a failed one ends the run), then the NVMe data
//! tests of `io` under the IOMMU backend (with the fault-after-unmap test)
//! once per translation granule the SMMU offers (4, 16 and 64 KiB; a SKIP
//! for one it lacks), and under the direct backend, each on a freshly
//! reset controller.

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use dma_coherence::arch::aarch64::Aarch64Maintenance;
use dma_coherence::CacheMaintenance;
use dma_core::{DmaAlloc, DmaBuf, DmaMap, FromDevice, StreamingMapping};
use dma_direct::DirectPlatform;
use dma_drivers::nvme::spec::io_opcode as opcode;
use dma_iommu::pgtable::vmsav8::{Format, Granule, Stage};
use dma_iommu::{
    Access, Asid, DeviceId, DomainConfig, FaultKind, IommuHardware, IommuPlatform, Strict,
};
use dma_qemu_virt::driver::{read_write, NSID};
use dma_qemu_virt::memory::BoardMemory;
use dma_qemu_virt::report::{ExitCode, Reporter};
use dma_qemu_virt::smmu::{ContextDescriptor, SmmuIommu};
use dma_qemu_virt::timer::{Clock, GenericTimer};
use dma_qemu_virt::BoardError;

use crate::board::Board;
use crate::console::Console;
use crate::io;

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
    let constraints = match io::constraints() {
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
    io::run(r, board, "direct", &platform, DIRECT_DISK, |_, _| {});
    let event = board.smmu.lock().pop_event();
    r.outcome(
        "direct.no_smmu_events",
        match event {
            None => Ok("event queue empty"),
            Some(e) => Err(format!("{e:?}")),
        },
    );
}

/// One run of the IOMMU tests: the tables' granule, the name prefix of its
/// tests, and where on the disk it writes.
#[derive(Clone, Copy)]
struct IommuRun {
    name: &'static str,
    granule: Granule,
    disk: io::DiskLayout,
}

/// Every granule, each on its own 8 MiB of the disk (the direct backend's
/// is the first), so every run's data is checked on its own.
const IOMMU_RUNS: [IommuRun; 3] = [
    IommuRun {
        name: "iommu_4k",
        granule: Granule::K4,
        disk: io::DiskLayout {
            base: 16384,
            seed: 0x200,
        },
    },
    IommuRun {
        name: "iommu_16k",
        granule: Granule::K16,
        disk: io::DiskLayout {
            base: 2 * 16384,
            seed: 0x300,
        },
    },
    IommuRun {
        name: "iommu_64k",
        granule: Granule::K64,
        disk: io::DiskLayout {
            base: 3 * 16384,
            seed: 0x400,
        },
    },
];

/// The IOMMU backend: `dma-iommu`'s platform over the SMMU, whose stage-1
/// walks use `dma-iommu`'s VMSAv8-64 tables of `run`'s granule (48-bit
/// IOVAs); every queue, list page and buffer address the controller sees is
/// an IOVA.
fn iommu(r: &mut Reporter<Console>, board: &Board, sid: u32, run: IommuRun) {
    let t = |test: &str| format!("{}.{test}", run.name);
    let Ok(constraints) = io::constraints() else {
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
    io::run(r, board, run.name, &platform, run.disk, |r, s| {
        fault_after_unmap(r, s, &platform, sid, run);
    });
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

/// The direct backend's disk area (the IOMMU runs' follow it).
const DIRECT_DISK: io::DiskLayout = io::DiskLayout {
    base: 0,
    seed: 0x100,
};

type BoardIommu<'a> = IommuPlatform<
    &'static BoardMemory,
    Aarch64Maintenance,
    &'a SmmuIommu<&'static BoardMemory, GenericTimer>,
    Strict,
>;

/// Maps a buffer, unmaps it (the strict policy invalidates the IOTLB and
/// syncs), then has the controller write to the stale IOVA: the SMMU must
/// block every access and record F_TRANSLATION events, while QEMU's NVMe
/// still completes the command with success. The buffer is one granule, so
/// nothing else shares its page.
fn fault_after_unmap<P: DmaMap + DmaAlloc + Clone>(
    r: &mut Reporter<Console>,
    s: &mut io::Session<'_, P>,
    platform: &BoardIommu<'_>,
    sid: u32,
    run: IommuRun,
) {
    let lba = run.disk.base;
    let granule = run.granule.size() as usize;
    let outcome = (|| -> core::result::Result<String, String> {
        let e = |e: BoardError| format!("{e}");
        let mut stale = 0;
        while platform.take_fault().is_some() {
            stale += 1;
        }
        if stale != 0 {
            return Err(format!("{stale} faults before the test"));
        }
        let buf = DmaBuf::new(granule, granule).map_err(|x| format!("{x:?}"))?;
        let map = StreamingMapping::<_, FromDevice, _>::map(platform, buf)
            .map_err(|x| format!("{:?}", x.error))?;
        let iova = map.dma_addr();
        let buf = map.unmap().map_err(|x| format!("{x:?}"))?;
        if platform.iova_to_phys(iova).is_some() {
            return Err(format!("{iova} still translates after unmap"));
        }
        let mut cmd = read_write(opcode::READ, NSID, lba, 1).map_err(|x| e(x.into()))?;
        cmd.prp1 = iova.as_u64();
        s.driver
            .io()
            .map_err(e)?
            .submit(cmd, io::Io::Unowned)
            .map_err(|x| format!("{}", x.error))?;
        let done = s.driver.wait_io(Duration::from_secs(5)).map_err(e)?;
        let status = done.status;
        let first = platform.take_fault();
        let mut events = u32::from(first.is_some());
        while platform.take_fault().is_some() {
            events += 1;
        }
        let f = first.ok_or(format!("no SMMU event (NVMe status {:#x})", status.code()))?;
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
        if s.driver.controller().is_fatal() {
            return Err(String::from("CSTS.CFS after the blocked transfer"));
        }
        let overflows = board_overflows(platform);
        Ok(format!(
            "F_TRANSLATION sid {} {:?} at {} ({events} events, {overflows} overflows); \
             NVMe status success {} (QEMU completes blocked transfers)",
            f.device.0,
            f.access,
            f.iova,
            status.is_success()
        ))
    })();
    r.outcome(&format!("{}.fault_after_unmap", run.name), outcome);
}

fn board_overflows(platform: &BoardIommu<'_>) -> u32 {
    platform.hardware().lock().event_overflows()
}
