//! The reference NIC driver behind the sim's IOMMU with the checking layer
//! on: frames from the wire into recycled RX buffers, frames out through
//! per-frame TX mappings, descriptor-done completions.
//!
//! `cargo run --release -p dma-sim-presets --example nic`

use dma_check::Checked;
use dma_core::{DeviceConstraints, DmaBuf};
use dma_drivers::nic::{NicDriver, NicDriverConfig};
use dma_sim::nic::{Nic, NicConfig};
use dma_sim::{Sim, SimConfig};
use dma_sim_presets::Stepping;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::new(SimConfig::non_coherent().seed(2))?;
    let dev = sim.add_device("eth0");
    let platform = Checked::new(sim.iommu_platform(dev, DeviceConstraints::UNCONSTRAINED)?);
    let nic = Nic::new(sim.bus(dev), NicConfig::default());
    let regs = nic.registers();
    let regs = dma_sim_presets::nic_registers(&regs);
    let mut eth: NicDriver<'_, _, _, DmaBuf> = NicDriver::start(
        regs,
        &platform,
        Stepping::new(nic),
        NicDriverConfig::default(),
    )?;

    // Frames arrive from the wire...
    for i in 0..100u8 {
        let frame = vec![i; 60 + usize::from(i) * 10];
        eth.wait_mut().device_mut().receive(&frame);
        let got = eth.wait_frame()?;
        assert_eq!(got, frame);
    }
    // ...and go out.
    for i in 0..100u8 {
        let mut frame = DmaBuf::for_device(&platform, 1514)?;
        frame.fill(i);
        eth.send(frame)?;
        eth.wait_sent()?.result?;
    }
    let wire = eth.wait_mut().device_mut().take_transmitted();
    let stats = eth.stats();
    drop(eth);

    let s = sim.stats();
    println!(
        "received {} frames ({} bytes), sent {} ({} bytes; {} on the wire)",
        stats.rx_frames,
        stats.rx_bytes,
        stats.tx_frames,
        stats.tx_bytes,
        wire.len()
    );
    println!(
        "IOMMU: {} streaming maps, {} table walks, {} IOTLB hits, {} faults",
        s.maps, s.iommu_walks, s.iotlb_hits, s.faults
    );
    println!(
        "checker reports {}, detector reports {}",
        platform.reports().len(),
        sim.reports().len()
    );
    Ok(())
}
