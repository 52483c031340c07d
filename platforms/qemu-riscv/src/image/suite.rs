//! The in-image tests, in order: M-mode and the clock, the board's PCI
//! bring-up (each step needs the earlier ones, so a failed one ends the
//! run), then the shared NVMe checks (`dma_qemu_virt::nvme_suite`) through
//! `dma-drivers`' block driver on `dma-direct`'s hardware-coherent policy.

use alloc::format;
use alloc::string::String;
use core::ptr::NonNull;
use core::time::Duration;

use dma_coherence::HardwareCoherent;
use dma_core::DeviceConstraints;
use dma_direct::{BusOffset, DirectPlatform};
use dma_drivers::nvme::Controller;
use dma_qemu_riscv::clint::ClintTimer;
use dma_qemu_riscv::memmap::{
    ECAM_BASE, ECAM_BUSES, PCI_MMIO32_BASE, PCI_MMIO32_SIZE, POOL_BASE, POOL_PAGES, RAM_BASE,
    RAM_SIZE,
};
use dma_qemu_virt::memmap::{NVME_DEVICE_ID, NVME_VENDOR_ID};
use dma_qemu_virt::memory::{BoardMemory, LinearMap};
use dma_qemu_virt::nvme_suite::{self, SuiteConfig};
use dma_qemu_virt::pci::{self, Ecam, MmioWindow};
use dma_qemu_virt::report::{ExitCode, Reporter};
use dma_qemu_virt::timer::{Clock, TimerWait};
use dma_qemu_virt::BoardError;

use crate::console::Console;

/// The board's DMA memory: RAM under the identity (M-mode has no
/// translation), pages from the one cached pool.
// SAFETY: RAM is [RAM_BASE, RAM_BASE + RAM_SIZE) at the same CPU and physical addresses (no
// translation in M-mode); the pool lies inside it (memmap's assertions), above the image and heap,
// below the device tree, and is used by nothing else; this is the only BoardMemory.
static MEMORY: BoardMemory = unsafe {
    BoardMemory::cached_only(
        LinearMap {
            cpu: RAM_BASE as usize,
            phys: RAM_BASE,
            len: RAM_SIZE,
        },
        POOL_BASE,
        POOL_PAGES,
    )
};

/// Where the checks write: from block 0, seeds 0x101..
const SUITE: SuiteConfig = SuiteConfig::qemu("nvme", 0, 0x100);
/// How long one wait for the controller may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs everything and returns the exit code.
pub fn run() -> ExitCode {
    let mut r = Reporter::new(Console);
    if !r.outcome("boot.m_mode", m_mode()) {
        return r.done();
    }
    // SAFETY: this is QEMU's `virt` in M-mode.
    let clock = unsafe { ClintTimer::qemu_virt() };
    let start = clock.now();

    let Some(ctrl) = bring_up(&mut r) else {
        r.done();
        return ExitCode::BootFailed;
    };
    let elapsed = clock.now().wrapping_sub(start);
    r.outcome(
        "timer.mtime",
        if elapsed > 0 {
            Ok(format!(
                "{} Hz, {elapsed} ticks over the PCI bring-up",
                clock.frequency()
            ))
        } else {
            Err("mtime did not advance")
        },
    );
    zicbom(&mut r);
    let constraints = match DeviceConstraints::builder()
        .addr_bits(64)
        .alignment(4)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            r.outcome::<&str, _>("direct.platform", Err(format!("{e}")));
            return r.done();
        }
    };
    let platform = DirectPlatform::new(&MEMORY, HardwareCoherent, BusOffset::IDENTITY, constraints);
    r.outcome::<_, String>(
        "direct.platform",
        Ok(String::from(
            "hardware-coherent: identity bus addresses, no cache maintenance",
        )),
    );
    nvme_suite::run(
        &mut r,
        &ctrl,
        &platform,
        TimerWait::new(&clock, TIMEOUT),
        &SUITE,
    );
    let (pool, _) = MEMORY.used_pages();
    r.outcome(
        "memory.returned",
        if pool == 0 {
            Ok(String::from("every DMA page back in the pool"))
        } else {
            Err(format!("{pool} DMA pages still out"))
        },
    );
    r.done()
}

/// Whether the hart has Zicbom, measured: QEMU 7.2 has none, so no cache
/// maintenance can run here and the line is a SKIP saying so. Any other
/// trap is a failure.
fn zicbom(r: &mut Reporter<Console>) {
    const NAME: &str = "cache.zicbom";
    const WHY: &str = "so no cache maintenance runs here; the hardware-coherent policy needs \
                       none, and dma-coherence's cbo encodings are checked on the host";
    let block = [0u64; 8];
    match crate::boot::probe_cbo_clean(block.as_ptr() as usize) {
        Some(ILLEGAL_INSTRUCTION) => r.skip(
            NAME,
            &format!(
                "QEMU 7.2 has no Zicbom: cbo.clean trapped as an illegal instruction \
                 (mcause 2), {WHY}"
            ),
        ),
        Some(cause) => {
            r.outcome::<&str, _>(
                NAME,
                Err(format!("cbo.clean trapped with mcause {cause:#x}")),
            );
        }
        None => r.skip(
            NAME,
            "cbo.clean ran (this hart has Zicbom), but this board runs the hardware-coherent \
             policy",
        ),
    }
}

/// mcause of an illegal-instruction exception.
const ILLEGAL_INSTRUCTION: u64 = 2;

/// misa must say RV64 with the extensions `riscv64gc` code uses; that it
/// can be read at all shows M-mode.
fn m_mode() -> Result<String, String> {
    let misa = crate::boot::misa();
    let letters: String = (0..26u8)
        .filter(|b| misa & (1 << b) != 0)
        .map(|b| char::from(b'a' + b))
        .collect();
    let mxl = misa >> 62;
    if mxl != 2 || !"imafdc".chars().all(|c| letters.contains(c)) {
        return Err(format!("misa {misa:#x}: MXL {mxl}, extensions {letters}"));
    }
    Ok(format!(
        "hart {}, misa {misa:#x} (RV64{letters})",
        crate::boot::hart_id()
    ))
}

/// Finds the NVMe controller, assigns its BAR0 in the 32-bit window, and
/// returns the (disabled) controller. Each step is reported.
fn bring_up(r: &mut Reporter<Console>) -> Option<Controller<'static>> {
    let ecam = NonNull::new(ECAM_BASE as *mut u8)?;
    // SAFETY: QEMU's ECAM covers ECAM_BUSES buses at ECAM_BASE (no
    // translation in M-mode), and only this code uses it.
    let mut cfg = unsafe { Ecam::new(ecam, ECAM_BUSES) };
    let found = pci::find(&mut cfg, |f| {
        f.vendor == NVME_VENDOR_ID && f.device == NVME_DEVICE_ID
    })
    .ok_or(BoardError::NotFound("NVMe 1b36:0010 on bus 0"));
    let shown = found
        .as_ref()
        .map(|f| format!("{:02x}:{:02x}.{}", f.bdf.bus, f.bdf.device, f.bdf.function));
    if !r.outcome("pci.nvme_found", shown) {
        return None;
    }
    let function = found.ok()?;

    let mut window = MmioWindow::new(PCI_MMIO32_BASE, PCI_MMIO32_SIZE);
    let bar = pci::assign_memory_bar(&mut cfg, function.bdf, 0, &mut window);
    let shown = bar.as_ref().map(|b| {
        format!(
            "{:#x} size {:#x} 64-bit {}",
            b.addr, b.size, b.kind.is_64bit
        )
    });
    if !r.outcome("pci.bar0_assigned", shown) {
        return None;
    }
    let bar = bar.ok()?;

    let base = NonNull::new(bar.addr as *mut u8)?;
    // SAFETY: BAR0 was just placed in the 32-bit window (CPU address = bus
    // address on `virt`), memory decoding is on, and only this driver
    // uses it, for the rest of the run.
    let ctrl = unsafe { Controller::new(base, bar.size as usize) };
    let shown = ctrl.as_ref().map(|c| {
        let caps = c.capabilities();
        format!(
            "version {}.{}.{}, queue entries {}, DSTRD {}, MPSMIN {}",
            caps.version.0,
            caps.version.1,
            caps.version.2,
            caps.max_queue_entries,
            caps.doorbell_stride,
            caps.min_page_size
        )
    });
    if !r.outcome("nvme.capabilities", shown) {
        return None;
    }
    ctrl.ok()
}
