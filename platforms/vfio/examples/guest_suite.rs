//! The suite `cargo xtask linux` runs inside a Linux guest with an
//! emulated NVMe controller bound to vfio-pci behind an emulated IOMMU.
//!
//! It prints the bare-metal suite's protocol (`TEST`/`DISK`/`DONE` lines,
//! `dma_qemu_virt::report`) and exits 0 only when every test passed. The
//! device comes from `DMA_VFIO_DEVICE` (the guest's /init sets it).
//!
//! Not for a real machine: it unbinds the device at the end and reads
//! the kernel log for IOMMU faults.

#[path = "guest/bad_input.rs"]
mod bad_input;
mod common;
#[path = "guest/tampering.rs"]
mod tampering;

use std::time::Duration;

use dma_core::{DmaAlloc, DmaAttrs, DmaBuf};
use dma_drivers::nvme::{prp_pools, NvmeBlockDriver, NvmeDriverConfig, NvmeIdentity, NSID};
use dma_drivers::Wait;
use dma_qemu_virt::report::fill_pattern;
use dma_vfio::{Interrupt, VfioPlatform};

type Outcome = Result<String, String>;

struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn test(&mut self, name: &str, outcome: Outcome) {
        match outcome {
            Ok(detail) => {
                self.passed += 1;
                println!("TEST {name} PASS {detail}");
            }
            Err(why) => {
                self.failed += 1;
                println!("TEST {name} FAIL {why}");
            }
        }
    }
}

fn e<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |err| format!("{what}: {err}")
}

/// First LBA of each test's area (512-byte blocks).
const LBA_PRP_LIST: u64 = 0;
const LBA_CHAINED: u64 = 1 << 12;
const LBA_WRAP: u64 = 1 << 14;
const LBA_FAULT: u64 = 3 << 13;
const LBA_CPU_WRITE: u64 = 1 << 15;

/// Writes pattern(seed) at `lba`, reads it back, compares, and claims it.
fn write_read<W: dma_drivers::Wait>(
    disk: &mut NvmeBlockDriver<'_, &VfioPlatform, W>,
    platform: &VfioPlatform,
    lba: u64,
    len: usize,
    seed: u32,
) -> Outcome {
    let mut out = DmaBuf::for_device(platform, len).map_err(e("buffer"))?;
    fill_pattern(seed, 0, &mut out);
    let out = disk
        .write(lba, out)
        .map_err(|r| format!("write: {}", r.error))?;
    disk.flush().map_err(e("flush"))?;
    let back = DmaBuf::for_device(platform, len).map_err(e("buffer"))?;
    let back = disk
        .read(lba, back)
        .map_err(|r| format!("read: {}", r.error))?;
    if back[..] != out[..] {
        return Err(format!("{len} bytes at LBA {lba} read back differently"));
    }
    println!("DISK {lba} {} {seed:#x}", len / 512);
    Ok(format!("{len} bytes at LBA {lba}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(bad_input::CHILD) {
        bad_input::child_main(&args[1..]);
    }
    let address = std::env::var("DMA_VFIO_DEVICE").unwrap_or_default();
    let mut r = Report {
        passed: 0,
        failed: 0,
    };

    r.test("bad_address", bad_input::bad_address(&address));
    r.test("not_bound", bad_input::not_bound(&address));
    r.test("iova_hole", bad_input::iova_hole(&address));
    r.test("group_busy", bad_input::group_busy(&address));
    r.test("unprivileged", bad_input::unprivileged(&address));
    r.test("memlock", bad_input::memlock(&address));
    match common::Nvme::open(&address) {
        Err(err) => r.test("bring_up", Err(err.to_string())),
        Ok(nvme) => {
            r.test(
                "bring_up",
                Ok(format!(
                    "{} regions, {} irq indexes, IOVA window {:x?}",
                    nvme.device.counts().0,
                    nvme.device.counts().1,
                    nvme.platform.iova_window()
                )),
            );
            suite(&mut r, &nvme);
            let live = nvme.platform.live_mappings();
            drop(nvme);
            r.test(
                "shutdown",
                if live == 0 {
                    Ok("no mapping left".into())
                } else {
                    Err(format!("{live} mappings left"))
                },
            );
            r.test(
                "unbind",
                std::fs::write("/sys/bus/pci/drivers/vfio-pci/unbind", &address)
                    .map(|_| "unbound".into())
                    .map_err(e("unbind")),
            );
        }
    }
    println!("DONE {} {} 0", r.passed, r.failed);
    std::process::exit(if r.failed == 0 { 0 } else { 1 });
}

fn suite(r: &mut Report, nvme: &common::Nvme) {
    let platform = &nvme.platform;
    let ctrl = match nvme.controller() {
        Ok(c) => c,
        Err(err) => return r.test("identify", Err(format!("controller: {err}"))),
    };
    let pools = match prp_pools(platform) {
        Ok(p) => p,
        Err(err) => return r.test("identify", Err(format!("PRP pools: {err}"))),
    };

    // Interrupt-driven: the admin queue's completions arrive on MSI-X 0,
    // the I/O queue's on MSI-X 1, which wakes the driver's waits.
    let wait = common::IrqWait::interrupt_driven(&nvme.irq, &nvme.io_irq, IRQ_WAIT);
    let mut disk = match NvmeBlockDriver::<_, _>::start(
        &ctrl,
        platform,
        &pools,
        wait,
        NvmeDriverConfig::default(),
    ) {
        Ok(d) => d,
        Err(err) => return r.test("identify", Err(err.to_string())),
    };
    let id = disk.identity().clone();
    r.test("identify", identify(&id));
    r.test("interrupt", interrupt(&mut disk, &nvme.io_irq, platform));
    r.test(
        "prp_list",
        write_read(&mut disk, platform, LBA_PRP_LIST, 64 << 10, 0x11),
    );
    // More than 512 pages: the PRP list chains into a second list page.
    let chained = (2 << 20) + (8 << 10);
    r.test(
        "prp_chained",
        if id.max_transfer() < chained {
            Err(format!("MDTS allows only {} bytes", id.max_transfer()))
        } else {
            write_read(&mut disk, platform, LBA_CHAINED, chained, 0x22)
        },
    );
    r.test("interrupt_session", interrupt_session(&disk));
    if let Err(err) = disk.shutdown() {
        r.test("driver_shutdown", Err(err.to_string()));
    }

    // Polled: a queue of 8 entries wraps many times over 40 commands.
    let config = NvmeDriverConfig {
        admin_entries: 8,
        io_sq_entries: 8,
        io_cq_entries: 8,
        ..NvmeDriverConfig::default()
    };
    match NvmeBlockDriver::<_, _>::start(
        &ctrl,
        platform,
        &pools,
        common::Polled::new(Duration::from_secs(10)),
        config,
    ) {
        Err(err) => r.test("queue_wrap", Err(err.to_string())),
        Ok(mut disk) => {
            let wrap = (0..20).try_for_each(|i| {
                write_read(
                    &mut disk,
                    platform,
                    LBA_WRAP + 8 * i,
                    4096,
                    0x100 + i as u32,
                )
                .map(drop)
            });
            r.test(
                "queue_wrap",
                wrap.map(|_| "40 I/O commands through 8-entry queues".into()),
            );
            r.test(
                "driver_shutdown",
                disk.shutdown()
                    .map(|_| "controller disabled".into())
                    .map_err(e("shutdown")),
            );
        }
    }

    r.test("iommu_fault", tampering::fault(nvme, &ctrl, LBA_FAULT));
    r.test(
        "cpu_write_after_map",
        tampering::cpu_write_after_map(nvme, &ctrl, LBA_CPU_WRITE),
    );
    r.test("hugepages", hugepages(platform));
}

/// The interrupt-driven driver of the suite.
type IrqDisk<'a> = NvmeBlockDriver<'a, &'a VfioPlatform, common::IrqWait<'a>>;

/// How long an interrupt-driven wait sleeps before it gives up (then it
/// looks once more and counts a lost interrupt).
const IRQ_WAIT: Duration = Duration::from_secs(5);

/// Identify Controller and Namespace, decoded: the serial number is what
/// QEMU was given (`DMA_VFIO_SERIAL`, set by /init), and namespace 1 is
/// within NN.
fn identify(id: &NvmeIdentity) -> Outcome {
    let serial = std::env::var("DMA_VFIO_SERIAL").unwrap_or_default();
    if !id.model.starts_with("QEMU NVMe") {
        return Err(format!("model {:?}", id.model));
    }
    if serial.is_empty() || id.serial != serial {
        return Err(format!("serial {:?}, QEMU was given {serial:?}", id.serial));
    }
    if id.namespaces < NSID {
        return Err(format!("NN {} leaves out namespace {NSID}", id.namespaces));
    }
    Ok(format!(
        "{:?}, serial {:?}, {} namespaces, namespace 1: {} blocks of {}",
        id.model, id.serial, id.namespaces, id.blocks, id.block_size
    ))
}

/// One read whose completion an interrupt delivers: with nothing in
/// flight the I/O queue is empty (this look proves it) and no interrupt is
/// pending on vector 1, so the driver's wait sleeps in the eventfd first,
/// and only this read's completion can wake it; the driver must make no
/// look before that wake and find the entry with its first look after it.
fn interrupt(disk: &mut IrqDisk<'_>, io_irq: &Interrupt, platform: &VfioPlatform) -> Outcome {
    let vector = disk.wait_ref().interrupt_vector();
    if vector != Some(io_irq.vector() as u16) {
        return Err(format!("the driver's interrupt vector is {vector:?}"));
    }
    if disk.poll().map_err(e("poll"))?.is_some() {
        return Err("a completion with nothing in flight".into());
    }
    let stale = io_irq.take().map_err(e("eventfd"))?;
    if stale != 0 {
        return Err(format!("{stale} I/O interrupts with no I/O issued"));
    }
    let before = disk.stats();
    let (slept, fired) = (disk.wait_ref().slept, disk.wait_ref().io_fired);
    let buf = DmaBuf::for_device(platform, 4096).map_err(e("buffer"))?;
    disk.read(LBA_PRP_LIST, buf)
        .map_err(|r| format!("read: {}", r.error))?;
    let after = disk.stats();
    let slept = disk.wait_ref().slept - slept;
    let fired = disk.wait_ref().io_fired - fired;
    let wakes = after.interrupt_wakes - before.interrupt_wakes;
    let looked_first = after.empty_polls - before.empty_polls;
    let by_interrupt = after.interrupt_completions - before.interrupt_completions;
    let lost = after.lost_interrupts - before.lost_interrupts;
    if by_interrupt != 1 || lost != 0 || wakes == 0 || fired == 0 || looked_first != 0 {
        return Err(format!(
            "{by_interrupt} completions found after an interrupt, {lost} lost interrupts, \
             {wakes} wakes, {fired} MSI-X events, {slept:?} asleep, {looked_first} empty looks"
        ));
    }
    Ok(format!(
        "a read's completion came by MSI-X vector {}: the driver slept {slept:?} in the eventfd, \
         {wakes} interrupt wake(s) ({fired} event(s)), and its first look, after the wake, found the CQ entry",
        io_irq.vector()
    ))
}

/// Over the interrupt-driven session (the reads and writes above): no
/// wait gave up on its interrupt.
fn interrupt_session(disk: &IrqDisk<'_>) -> Outcome {
    let s = disk.stats();
    let admin = disk.wait_ref().fired;
    if s.lost_interrupts != 0 || s.interrupt_completions == 0 {
        return Err(format!(
            "{} lost interrupts, {} of {} completions after an interrupt",
            s.lost_interrupts, s.interrupt_completions, s.commands
        ));
    }
    Ok(format!(
        "{} of {} I/O completions found by the first look after an interrupt wake (any others by \
         the look before sleeping), 0 lost; {admin} admin interrupts woke bring-up waits",
        s.interrupt_completions, s.commands
    ))
}

/// A 2 MiB coherent allocation comes from the hugetlbfs pool when /init
/// reserved some, and is zeroed and mapped like any other.
fn hugepages(platform: &VfioPlatform) -> Outcome {
    let reserved =
        std::fs::read_to_string("/proc/sys/vm/nr_hugepages").map_err(e("nr_hugepages"))?;
    let region = platform
        .alloc_coherent(2 << 20, DmaAttrs::empty())
        .map_err(e("alloc"))?;
    let source = platform.page_source(&region);
    // SAFETY: the region is ours, 2 MiB, and no device has its address.
    let zeroed = unsafe { std::slice::from_raw_parts(region.cpu.as_ptr(), region.size) }
        .iter()
        .all(|&b| b == 0);
    // SAFETY: allocated above and not used afterwards.
    unsafe { platform.free_coherent(region, DmaAttrs::empty()) }.map_err(e("free"))?;
    let want = if reserved.trim() == "0" {
        dma_vfio::PageSource::Anonymous
    } else {
        dma_vfio::PageSource::Huge2M
    };
    match (source, zeroed) {
        (Some(s), true) if s == want => {
            Ok(format!("{s:?} ({} huge pages reserved)", reserved.trim()))
        }
        other => Err(format!("{other:?}, expected {want:?}")),
    }
}
