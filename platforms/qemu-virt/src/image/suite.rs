//! The in-image tests, in order: each later one needs the earlier ones'
//! state, so a failed bring-up step ends the run.

use alloc::format;
use alloc::string::String;

use dma_api::{Cacheability, PhysMemory};
use dma_qemu_virt::memmap::NVME_VENDOR_ID;
use dma_qemu_virt::report::{ExitCode, Reporter};
use dma_qemu_virt::smmu::{Event, EventKind};
use dma_qemu_virt::timer::Clock;

use crate::board::Board;
use crate::console::Console;
use crate::probe::{AdminProbe, ProbeTables};

/// A device address the probe tables leave unmapped (RAM's gigabyte is the
/// only mapping): the third gigabyte.
const UNMAPPED_IOVA: u64 = 0x8000_0000;

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
    let Ok(mut board) = board else {
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
    let f = board.smmu.features();
    r.outcome::<_, String>(
        "smmu.features",
        Ok(format!(
            "SIDSIZE {} OAS {} CMDQS {} EVENTQS {} coherent {}",
            f.sid_bits, f.oas, f.cmdq_log2_max, f.eventq_log2_max, f.coherent
        )),
    );

    let probe = AdminProbe::enable(&mut board);
    let ok = r.outcome(
        "nvme.ready",
        probe
            .as_ref()
            .map(|_| "CSTS.RDY = 1")
            .map_err(|e| format!("{e}")),
    );
    let Ok(mut probe) = probe else {
        return r.done();
    };
    if ok {
        identify_tests(&mut r, &mut board, &mut probe);
    }
    let finished = probe.finish(&mut board);
    r.outcome(
        "nvme.disable",
        finished
            .map(|()| "CSTS.RDY = 0")
            .map_err(|e| format!("{e}")),
    );
    r.done()
}

/// Identify with the SMMU bypassing, translating, and faulting.
fn identify_tests(r: &mut Reporter<Console>, board: &mut Board, probe: &mut AdminProbe) {
    let sid = board.nvme_stream_id();
    let Ok(data) = board
        .memory
        .alloc_pages(1, Cacheability::Uncached, u64::MAX)
    else {
        r.outcome::<&str, _>("nvme.identify", Err("no page for the data"));
        return;
    };
    let vid = || {
        // SAFETY: the first two bytes of the page allocated above, which the
        // controller wrote before completing; read volatile.
        unsafe { data.cpu.as_ptr().cast::<u16>().read_volatile() }
    };
    let clear = || {
        // SAFETY: the page is ours; no command is outstanding.
        unsafe { data.cpu.as_ptr().write_bytes(0, 4096) }
    };

    // 1. SMMU on, the NVMe's stream in bypass.
    let bypass = board
        .smmu
        .enable(&board.clock)
        .and_then(|()| board.smmu.set_bypass(sid, &board.clock))
        .and_then(|()| probe.identify_controller(board, data.phys.as_u64()));
    r.outcome(
        "nvme.identify_smmu_bypass",
        match bypass {
            Ok(c) if c.status == 0 && vid() == NVME_VENDOR_ID => Ok(format!("VID {:#06x}", vid())),
            Ok(c) => Err(format!("status {:#x} VID {:#06x}", c.status, vid())),
            Err(e) => Err(format!("{e}")),
        },
    );

    // 2. Stage-1 translation through an identity block over RAM.
    clear();
    let tables = ProbeTables::new(board);
    let translated = tables.as_ref().map_err(|e| *e).and_then(|t| {
        board.smmu.attach_stage1(sid, &t.stage1(1), &board.clock)?;
        probe.identify_controller(board, data.phys.as_u64())
    });
    let event = board.smmu.pop_event();
    r.outcome(
        "nvme.identify_smmu_stage1",
        match (translated, event) {
            (Ok(c), None) if c.status == 0 && vid() == NVME_VENDOR_ID => {
                Ok(format!("VID {:#06x} through STE/CD/table", vid()))
            }
            (Ok(c), event) => Err(format!(
                "status {:#x} VID {:#06x} event {event:?}",
                c.status,
                vid()
            )),
            (Err(e), event) => Err(format!("{e}, event {event:?}")),
        },
    );

    // 3. The data pointer outside the mapping: the SMMU must fault it.
    let faulted = probe.identify_controller(board, UNMAPPED_IOVA);
    let mut first: Option<Event> = None;
    let mut events = 0u32;
    while let Some(e) = board.smmu.pop_event() {
        first.get_or_insert(e);
        events += 1;
    }
    r.outcome(
        "smmu.translation_fault",
        match (faulted, first) {
            (Ok(c), Some(e))
                if e.kind == EventKind::Translation
                    && e.stream_id == sid
                    && e.address.is_some_and(|a| a & !0xfff == UNMAPPED_IOVA) =>
            {
                Ok(format!(
                    "F_TRANSLATION sid {} addr {:#x} write {}; {events} events, {} overflows; NVMe status {:#x}",
                    e.stream_id,
                    e.address.unwrap_or(0),
                    e.read == Some(false),
                    board.smmu.event_overflows(),
                    c.status
                ))
            }
            (Ok(c), e) => Err(format!("status {:#x}, first event {e:?}", c.status)),
            (Err(err), e) => Err(format!("{err}, first event {e:?}")),
        },
    );
    r.outcome(
        "nvme.alive_after_fault",
        if board.nvme.is_fatal() {
            Err("CSTS.CFS")
        } else {
            Ok("CSTS.CFS = 0")
        },
    );
    let off = board
        .smmu
        .set_bypass(sid, &board.clock)
        .and_then(|()| board.smmu.disable(&board.clock));
    r.outcome(
        "smmu.disable",
        off.map(|()| "SMMUEN = 0").map_err(|e| format!("{e}")),
    );
}
