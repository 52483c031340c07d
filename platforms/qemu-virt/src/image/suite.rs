//! The in-image tests, in order: the board's bring-up (each step needs
//! the earlier ones, so a failed one ends the run), then the NVMe data
//! tests of `io` under the IOMMU backend (with the fault-after-unmap test)
//! and under the direct backend, each on a freshly reset controller.

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use dma_coherence::arch::aarch64::Aarch64Maintenance;
use dma_coherence::CacheMaintenance;
use dma_core::{DmaAlloc, DmaBuf, DmaMap, FromDevice, StreamingMapping};
use dma_direct::DirectPlatform;
use dma_drivers::nvme::spec::io_opcode as opcode;
use dma_iommu::{
    Access, Asid, DeviceId, DomainConfig, FaultKind, IommuHardware, IommuPlatform, Strict,
};
use dma_qemu_virt::driver::{read_write, NSID};
use dma_qemu_virt::memory::BoardMemory;
use dma_qemu_virt::report::{ExitCode, Reporter};
use dma_qemu_virt::smmu::SmmuIommu;
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
            "SIDSIZE {} OAS {} CMDQS {} EVENTQS {} coherent {}",
            f.sid_bits, f.oas, f.cmdq_log2_max, f.eventq_log2_max, f.coherent
        )),
    );

    let sid = board.nvme_stream_id();
    let board = &board;
    // The IOMMU backend first: a device told a wrong address there faults
    // in the SMMU; under the direct backend it writes wherever it was told,
    // possibly over this image, so a broken encoding is best met last.
    iommu(&mut r, board, sid);
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

/// The IOMMU backend: `dma-iommu`'s platform over the SMMU, whose stage-1
/// walks use `dma-iommu`'s VMSAv8-64 tables; every queue, list page and
/// buffer address the controller sees is an IOVA.
fn iommu(r: &mut Reporter<Console>, board: &Board, sid: u32) {
    let Ok(constraints) = io::constraints() else {
        return;
    };
    let platform = IommuPlatform::new(
        board.memory,
        Aarch64Maintenance::el1(),
        &board.smmu,
        Strict,
        constraints,
        DomainConfig::new(DeviceId(sid), Asid(1)),
    );
    let ok = r.outcome(
        "iommu.attach",
        platform
            .as_ref()
            .map(|p| {
                let c = p.context();
                format!(
                    "STE {sid} -> CD: TTB0 {} IAS {} ASID {} walk coherent {}",
                    c.root, c.ias_bits, c.asid.0, c.walk_coherent
                )
            })
            .map_err(|e| format!("{e:?}")),
    );
    let Ok(platform) = platform else { return };
    if !ok {
        return;
    }
    io::run(r, board, "iommu", &platform, IOMMU_DISK, |r, s| {
        fault_after_unmap(r, s, &platform, sid, IOMMU_DISK.base);
    });
    drop(platform);
    let fault = board.smmu.take_fault(DeviceId(sid));
    r.outcome(
        "iommu.detach",
        match fault {
            None => Ok(String::from(
                "STE aborts, ASID invalidated, no stray faults",
            )),
            Some(f) => Err(format!("stray fault {f}")),
        },
    );
}

/// Disk areas: 8 MiB apart, so each backend's data is checked on its own.
const DIRECT_DISK: io::DiskLayout = io::DiskLayout {
    base: 0,
    seed: 0x100,
};
const IOMMU_DISK: io::DiskLayout = io::DiskLayout {
    base: 16384,
    seed: 0x200,
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
/// still completes the command with success.
fn fault_after_unmap<P: DmaMap + DmaAlloc + Clone>(
    r: &mut Reporter<Console>,
    s: &mut io::Session<'_, P>,
    platform: &BoardIommu<'_>,
    sid: u32,
    lba: u64,
) {
    let outcome = (|| -> core::result::Result<String, String> {
        let e = |e: BoardError| format!("{e}");
        let mut stale = 0;
        while platform.take_fault().is_some() {
            stale += 1;
        }
        if stale != 0 {
            return Err(format!("{stale} faults before the test"));
        }
        let buf = DmaBuf::new(4096, 4096).map_err(|x| format!("{x:?}"))?;
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
            && f.iova.as_u64() & !0xfff == iova.as_u64() & !0xfff;
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
    r.outcome("iommu.fault_after_unmap", outcome);
}

fn board_overflows(platform: &BoardIommu<'_>) -> u32 {
    platform.hardware().lock().event_overflows()
}
