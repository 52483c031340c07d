//! The virtio-blk runs (`dma_qemu_virt::virtio_blk_suite` through
//! `dma-drivers`' `VirtioBlk` on its virtio-pci transport), each with a
//! split and with a packed queue:
//!
//! - drive v0 at 00:02.0 (`packed=on`, no `iommu_platform`): the direct
//!   backend gives physical addresses, and the device, with
//!   `ACCESS_PLATFORM` not negotiated, bypasses the SMMU although its
//!   StreamID 16 is left aborting there;
//! - drive v1 at 00:03.0 (`packed=on,iommu_platform=on`): `ACCESS_PLATFORM`
//!   negotiated, and every address the device uses is an IOVA of
//!   `dma-iommu`'s tables, walked by the SMMU for StreamID 24.

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use dma_coherence::arch::aarch64::Aarch64Maintenance;
use dma_core::{DeviceConstraints, DmaAlloc, DmaMap};
use dma_direct::DirectPlatform;
use dma_drivers::virtio::transport::QueueLayout;
use dma_iommu::{Asid, DeviceId, DomainConfig, IommuHardware, IommuPlatform, Strict};
use dma_qemu_virt::memmap::{VIRTIO_BLK_DEVICE_ID, VIRTIO_VENDOR_ID};
use dma_qemu_virt::report::Reporter;
use dma_qemu_virt::timer::TimerWait;
use dma_qemu_virt::virtio_blk_suite::{self, BlkRun, AREA};

use crate::board::{Board, PciDevice};
use crate::console::Console;

/// How long one wait for the device may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The slot of drive v0's device (xtask's `VIRTIO_BLK`, `addr=02.0`).
const DIRECT_SLOT: u8 = 2;
/// The slot of drive v1's device (`addr=03.0`, `iommu_platform=on`).
const SMMU_SLOT: u8 = 3;

/// A run on `drive` with `layout` (indirect tables or not), in area
/// `area` of the disk.
const fn blk_run(
    prefix: &'static str,
    drive: &'static str,
    (layout, indirect): (QueueLayout, bool),
    translates: bool,
    area: u64,
    seed: u32,
) -> BlkRun {
    BlkRun {
        prefix,
        drive,
        layout,
        indirect,
        translates,
        access_platform: translates,
        base: area * AREA,
        seed,
    }
}

// Each layout runs once with descriptor chains and once with indirect
// tables, and so does each device.
const DIRECT_RUNS: [BlkRun; 2] = [
    blk_run(
        "vblk_direct_split",
        "v0",
        (QueueLayout::Split, false),
        false,
        0,
        0x600,
    ),
    blk_run(
        "vblk_direct_packed_indirect",
        "v0",
        (QueueLayout::Packed, true),
        false,
        1,
        0x610,
    ),
];
const SMMU_RUNS: [BlkRun; 2] = [
    blk_run(
        "vblk_smmu_split_indirect",
        "v1",
        (QueueLayout::Split, true),
        true,
        0,
        0x620,
    ),
    blk_run(
        "vblk_smmu_packed",
        "v1",
        (QueueLayout::Packed, false),
        true,
        1,
        0x630,
    ),
];

/// The device in `slot`, BAR4 (the virtio structures) assigned.
fn find(board: &Board, slot: u8, name: &str, r: &mut Reporter<Console>) -> Option<PciDevice> {
    let dev = board.pci_device(
        "a virtio-blk-pci (1af4:1042) in its slot",
        |f| {
            f.vendor == VIRTIO_VENDOR_ID && f.device == VIRTIO_BLK_DEVICE_ID && f.bdf.device == slot
        },
        &[4],
    );
    let ok = r.outcome(
        name,
        dev.as_ref().map_err(|e| format!("{e}")).map(|d| {
            let bar = d.bars[4].map_or((0, 0), |b| (b.addr, b.size));
            format!(
                "00:{:02x}.0 BAR4 {:#x} size {:#x}, StreamID {}",
                slot,
                bar.0,
                bar.1,
                d.stream_id()
            )
        }),
    );
    dev.ok().filter(|_| ok)
}

/// Runs each of `runs` on drive `dev` over `platform`, each on a fresh
/// transport (a run resets the device when it ends).
fn run_each<P>(
    r: &mut Reporter<Console>,
    board: &Board,
    dev: &PciDevice,
    platform: &P,
    runs: &[BlkRun],
) where
    P: DmaMap + DmaAlloc,
{
    for run in runs {
        match board.virtio_transport(dev) {
            Ok(transport) => {
                let wait = TimerWait::new(&board.clock, TIMEOUT);
                virtio_blk_suite::run(r, transport, platform, wait, run);
            }
            Err(e) => {
                r.outcome::<&str, _>(&format!("{}.start", run.prefix), Err(format!("{e}")));
            }
        }
    }
}

/// Runs both drives' checks.
pub fn run(r: &mut Reporter<Console>, board: &Board) {
    let Ok(constraints) = DeviceConstraints::builder().addr_bits(64).build() else {
        r.outcome::<&str, _>("vblk.constraints", Err("refused"));
        return;
    };
    if let Some(dev) = find(board, DIRECT_SLOT, "vblk.direct_found", r) {
        let platform = DirectPlatform::arm_noncoherent(board.memory, constraints);
        run_each(r, board, &dev, &platform, &DIRECT_RUNS);
    }
    if let Some(dev) = find(board, SMMU_SLOT, "vblk.smmu_found", r) {
        let sid = dev.stream_id();
        let platform = IommuPlatform::new(
            board.memory,
            Aarch64Maintenance::el1(),
            &board.smmu,
            Strict,
            constraints,
            DomainConfig::new(DeviceId(sid), Asid(2)),
        );
        let ok = r.outcome(
            "vblk.smmu_attach",
            platform.as_ref().map_err(|e| format!("{e:?}")).map(|p| {
                let c = p.context();
                format!(
                    "STE {sid} -> CD: TTB0 {} IAS {} ASID {}",
                    c.root, c.ias_bits, c.asid.0
                )
            }),
        );
        let Ok(platform) = platform else { return };
        if !ok {
            return;
        }
        run_each(r, board, &dev, &platform, &SMMU_RUNS);
        drop(platform);
        let fault = board.smmu.take_fault(DeviceId(sid));
        r.outcome(
            "vblk.smmu_detach",
            match fault {
                None => Ok(String::from("STE aborts again, no SMMU fault recorded")),
                Some(f) => Err(format!("fault {f}")),
            },
        );
    }
}
