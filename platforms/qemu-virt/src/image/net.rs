//! The two NICs on one QEMU hub (`cargo xtask qemu` builds the command
//! line: a virtio-net at 00:04.0 and an e1000e at 00:05.0, nothing else on
//! the hub), driven by `dma-drivers`' drivers over the direct backend:
//! the e1000e (StreamID 40, put in SMMU bypass) first alone in MAC
//! loopback, then frames of several sizes sent each way between it and
//! the virtio-net (`dma_qemu_virt::net_suite`). The virtio-net does not
//! offer `ACCESS_PLATFORM`, so its DMA bypasses the SMMU while its
//! StreamID 32 is left aborting there.

use alloc::format;
use alloc::string::String;
use core::time::Duration;

use dma_core::{DeviceConstraints, DmaAlloc, DmaMap};
use dma_direct::DirectPlatform;
use dma_drivers::nic::spec::{receive_address, NicRegisters, RAL0};
use dma_drivers::nic::{NicDriver, NicDriverConfig};
use dma_drivers::virtio::transport::pci::PciTransport;
use dma_drivers::virtio::transport::{MmioWindow as RegisterWindow, QueueLayout, VirtioOptions};
use dma_drivers::virtio::{VirtioNet, VirtioNetConfig};
use dma_qemu_virt::memmap::{
    E1000E_DEVICE_ID, E1000E_VENDOR_ID, VIRTIO_NET_DEVICE_ID, VIRTIO_VENDOR_ID,
};
use dma_qemu_virt::net_suite::{self, NicPort, VirtioPort, SIZES};
use dma_qemu_virt::report::Reporter;
use dma_qemu_virt::timer::{GenericTimer, TimerWait};
use dma_qemu_virt::{BoardError, Result};

use crate::board::{Board, PciDevice};
use crate::console::Console;

/// The e1000e's `mac=` on the command line.
pub const E1000E_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
/// The virtio-net's `mac=` on the command line.
pub const VIRTIO_NET_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];

/// How long one wait for a NIC may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Rings of 16 descriptors: every size in [`SIZES`] fits one 2 KiB buffer.
const E1000E_RINGS: NicDriverConfig = NicDriverConfig {
    rx_entries: 16,
    tx_entries: 16,
    rx_buffer_size: 2048,
    loopback: false,
};

fn text(e: impl core::fmt::Display) -> String {
    format!("{e}")
}

/// Finds a device, assigns its BARs and puts its stream in SMMU bypass
/// (the direct backend gives it physical addresses).
fn bypassed(
    board: &Board,
    (vendor, device): (u16, u16),
    what: &'static str,
    bars: &[u8],
) -> Result<PciDevice> {
    let dev = board.pci_device(what, |f| f.vendor == vendor && f.device == device, bars)?;
    board
        .smmu
        .lock()
        .set_bypass(dev.stream_id(), &board.clock)?;
    Ok(dev)
}

/// The e1000e's registers at its BAR0, and the MAC it was given at reset.
fn e1000e_registers(dev: &PciDevice) -> Result<(&'static NicRegisters, [u8; 6])> {
    let bar = dev.bars[0].ok_or(BoardError::NotFound("the e1000e's BAR0"))?;
    if bar.size < (RAL0 + 8) as u64 || bar.addr == 0 {
        return Err(BoardError::NotFound("an e1000e BAR0 holding RAL0/RAH0"));
    }
    let base = bar.addr as usize;
    // SAFETY: BAR0 was just assigned in the 32-bit window, which the
    // identity map maps Device-nGnRE, with memory decoding on; RAL0 and
    // RAH0 lie inside it (checked above) and are 4-aligned registers.
    let (ral, rah) = unsafe {
        (
            ((base + RAL0) as *const u32).read_volatile(),
            ((base + RAL0 + 4) as *const u32).read_volatile(),
        )
    };
    let mac = receive_address(ral, rah).ok_or(BoardError::NotFound("a valid RAH0 (AV set)"))?;
    // SAFETY: BAR0 is Device-nGnRE in the identity map and at least
    // RAL0 + 8 bytes (checked), which covers the 0x381c-byte block; its
    // cells are volatile, and only the driver started below uses them.
    let regs = unsafe { &*(base as *const NicRegisters) };
    Ok((regs, mac))
}

/// Runs the NIC checks; each failure is reported and ends them.
pub fn run(r: &mut Reporter<Console>, board: &Board) {
    let Ok(constraints) = DeviceConstraints::builder().addr_bits(64).build() else {
        r.outcome::<&str, _>("net.constraints", Err("refused"));
        return;
    };
    let platform = DirectPlatform::arm_noncoherent(board.memory, constraints);

    let e1000e = bypassed(
        board,
        (E1000E_VENDOR_ID, E1000E_DEVICE_ID),
        "e1000e 8086:10d3 on bus 0",
        &[0],
    )
    .and_then(|dev| e1000e_registers(&dev).map(|(regs, mac)| (dev, regs, mac)));
    let ok = r.outcome(
        "net.e1000e_found",
        e1000e.as_ref().map_err(text).and_then(|(dev, _, mac)| {
            let bdf = dev.function.bdf;
            let detail = format!(
                "{:02x}:{:02x}.{} BAR0 {:#x} size {:#x}, StreamID {} bypass, MAC {mac:02x?}",
                bdf.bus,
                bdf.device,
                bdf.function,
                dev.bars[0].map_or(0, |b| b.addr),
                dev.bars[0].map_or(0, |b| b.size),
                dev.stream_id()
            );
            if *mac == E1000E_MAC {
                Ok(detail)
            } else {
                Err(format!("{detail}: not the command line's mac="))
            }
        }),
    );
    let Ok((_, regs, _)) = e1000e else { return };
    if !ok {
        return;
    }
    // First alone, in MAC loopback: both rings work with no peer.
    let looped = NicDriverConfig {
        loopback: true,
        ..E1000E_RINGS
    };
    let Some(mut port) = e1000e_port(
        r,
        "net.e1000e_loopback_start",
        board,
        regs,
        &platform,
        looped,
    ) else {
        return;
    };
    net_suite::loopback(r, "net", &mut port, E1000E_MAC, &SIZES);
    drop(port);

    // Then the pair: the virtio-net, and the e1000e out of loopback.
    let Some(mut virtio) = virtio_net_port(r, board, &platform) else {
        return;
    };
    let Some(mut e1000e) = e1000e_port(r, "net.e1000e_start", board, regs, &platform, E1000E_RINGS)
    else {
        return;
    };
    net_suite::one_way(
        r,
        "net",
        (&mut virtio, VIRTIO_NET_MAC),
        (&mut e1000e, E1000E_MAC),
        &SIZES,
    );
    net_suite::one_way(
        r,
        "net",
        (&mut e1000e, E1000E_MAC),
        (&mut virtio, VIRTIO_NET_MAC),
        &SIZES,
    );
    let stats = virtio.driver.stats();
    r.outcome(
        "net.virtio_net_shutdown",
        virtio
            .driver
            .shutdown()
            .map_err(text)
            .and_then(|left| match left.len() {
                0 => Ok(format!(
                    "reset, no frame left behind; {} sent, {} received",
                    stats.tx_frames, stats.rx_frames
                )),
                n => Err(format!("{n} frames were still with the device")),
            }),
    );
}

/// Finds the virtio-net (BAR4 assigned; no `ACCESS_PLATFORM`, so its DMA
/// bypasses the SMMU and the direct backend serves it) and starts
/// `dma-drivers`' driver on it with split queues.
fn virtio_net_port<'a, P>(
    r: &mut Reporter<Console>,
    board: &'a Board,
    platform: P,
) -> Option<VirtioPort<PciTransport<RegisterWindow<'static>>, P, TimerWait<'a, GenericTimer>>>
where
    P: DmaMap + DmaAlloc + Clone,
{
    let dev = board.pci_device(
        "virtio-net-pci 1af4:1041 on bus 0",
        |f| f.vendor == VIRTIO_VENDOR_ID && f.device == VIRTIO_NET_DEVICE_ID,
        &[4],
    );
    let found = r.outcome(
        "net.virtio_net_found",
        dev.as_ref().map_err(text).map(|d| {
            let bdf = d.function.bdf;
            format!(
                "{:02x}:{:02x}.{} BAR4 {:#x}, StreamID {}",
                bdf.bus,
                bdf.device,
                bdf.function,
                d.bars[4].map_or(0, |b| b.addr),
                d.stream_id()
            )
        }),
    );
    let dev = dev.ok().filter(|_| found)?;
    let config = VirtioNetConfig {
        options: VirtioOptions {
            layout: QueueLayout::Split,
            event_idx: true,
            indirect: true,
            platform_translates: false,
            queue_size: 64,
        },
        rx_buffer_size: 2048,
    };
    let wait = TimerWait::new(&board.clock, TIMEOUT);
    let driver = board
        .virtio_transport(&dev)
        .and_then(|t| VirtioNet::start(t, platform.clone(), wait, config));
    let started = r.outcome(
        "net.virtio_net_start",
        driver.as_ref().map_err(text).and_then(|d| {
            let detail = format!(
                "features {:#x}, MAC {:02x?}, link up {:?}",
                d.features().bits(),
                d.mac(),
                d.link_up()
            );
            if d.mac() == Some(VIRTIO_NET_MAC) && d.link_up() == Ok(true) {
                Ok(detail)
            } else {
                Err(format!(
                    "{detail}: wanted the command line's mac= and link up"
                ))
            }
        }),
    );
    let driver = driver.ok().filter(|_| started)?;
    Some(VirtioPort {
        name: "virtio_net",
        driver,
        platform,
    })
}

/// Starts `dma-drivers`' NIC driver on the e1000e with `config`, reported
/// as `name`.
fn e1000e_port<'a, P>(
    r: &mut Reporter<Console>,
    name: &str,
    board: &'a Board,
    regs: &'a NicRegisters,
    platform: P,
    config: NicDriverConfig,
) -> Option<NicPort<'a, P, TimerWait<'a, GenericTimer>>>
where
    P: DmaMap + DmaAlloc + Clone,
{
    let wait = TimerWait::new(&board.clock, TIMEOUT);
    let driver = NicDriver::start(regs, platform.clone(), wait, config);
    let detail = format!(
        "legacy rings of {}/{} descriptors, {}-byte RX buffers, loopback {}",
        config.rx_entries, config.tx_entries, config.rx_buffer_size, config.loopback
    );
    let ok = r.outcome(name, driver.as_ref().map(|_| detail).map_err(text));
    let driver = driver.ok().filter(|_| ok)?;
    Some(NicPort {
        name: "e1000e",
        driver,
        platform,
    })
}
