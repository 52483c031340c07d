//! The reference NVMe block driver on the non-coherent (Arm-like) preset
//! with the checking layer on: bring-up, Identify, a batch of writes at
//! queue depth, reads back, a flush, shutdown, and what it all cost.
//!
//! `cargo run --release -p dma-sim-presets --example nvme_block`

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaBuf};
use dma_drivers::nvme::{prp_pools, NvmeBlockDriver, NvmeDriverConfig};
use dma_sim::nvme::{NvmeConfig, NvmeController};
use dma_sim::{Sim, SimConfig};
use dma_sim_presets::Stepping;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::new(SimConfig::non_coherent().seed(1))?;
    let dev = sim.add_device("nvme0");
    // Any DmaMap + DmaAlloc platform works; here the sim's Arm-like one,
    // inside dma-check.
    let platform = Checked::new(sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED));
    let ctrl = NvmeController::new(sim.bus(dev), NvmeConfig::default())?;
    let regs = ctrl.registers();
    let regs = dma_sim_presets::nvme_controller(&regs).unwrap();
    let pools = prp_pools(&platform)?;
    let mut disk = NvmeBlockDriver::start(
        &regs,
        &platform,
        &pools,
        Stepping::new(ctrl),
        NvmeDriverConfig::default(),
    )?;
    let id = disk.identity().clone();
    println!(
        "{} (vendor {:#06x}): {} blocks of {} bytes, at most {} KiB per command",
        id.model,
        id.vendor,
        id.blocks,
        id.block_size,
        id.max_transfer() / 1024
    );

    // A batch of 16 KiB writes (PRP1 + a PRP list), one doorbell.
    let mut cids = Vec::new();
    for i in 0..16u64 {
        let mut buf = DmaBuf::for_device(&platform, 16 * 1024)?;
        buf.fill(i as u8);
        cids.push(disk.queue_write(i * 32, buf)?);
    }
    disk.submit();
    while disk.in_flight() > 0 {
        let done = disk.wait()?;
        done.result?;
    }
    disk.flush()?;

    for i in 0..16u64 {
        let back = disk.read(i * 32, DmaBuf::for_device(&platform, 16 * 1024)?)?;
        assert!(back.iter().all(|&b| b == i as u8));
    }
    let stats = disk.stats();
    disk.shutdown()?;

    let sim_stats = sim.stats();
    println!(
        "{} commands ({} admin), {} KiB written, {} KiB read, {} PRP list blocks",
        stats.commands,
        stats.admin_commands,
        stats.bytes_written / 1024,
        stats.bytes_read / 1024,
        stats.prp_lists
    );
    println!(
        "cache lines cleaned {}, invalidated {}; checker reports {}, detector reports {}",
        sim_stats.lines_cleaned,
        sim_stats.lines_invalidated,
        platform.reports().len(),
        sim.reports().len()
    );
    Ok(())
}
