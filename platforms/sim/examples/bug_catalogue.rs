//! Five bugs from the catalogue (docs/bug-catalogue.md) that the sim used
//! to miss, each caught on the non-coherent machine with its report.
//!
//! `cargo run -p dma-sim --example bug_catalogue` (part of `cargo xtask demo`).

use dma_core::{
    Bidirectional, DeviceConstraints, DmaAttrs, DmaBuf, FromDevice, Result, StreamingMapping,
    ToDevice,
};
use dma_sim::{Sim, SimConfig};

fn main() -> Result<()> {
    let sim = Sim::new(SimConfig::non_coherent().seed(7))?;
    let dev = sim.add_device("nic0");
    let bus = sim.bus(dev);
    let p = sim.non_coherent_platform(dev, DeviceConstraints::UNCONSTRAINED);
    let map_err = |e: dma_core::MapError<DmaBuf>| e.error;

    println!("(a) the CPU reads a receive buffer before sync_for_cpu:");
    let rx = StreamingMapping::<_, FromDevice, _>::map(&p, DmaBuf::for_device(&p, 4096)?)
        .map_err(map_err)?;
    bus.write(rx.dma_addr(), &[0xab; 64])?;
    let mut got = [0u8; 64];
    rx.read(0, &mut got)?;
    print_reports(&sim);
    drop(rx);
    sim.take_reports();

    println!("(b) a buffer the CPU filled, mapped with SKIP_CPU_SYNC and never cleaned:");
    let mut b = DmaBuf::for_device(&p, 4096)?;
    b[..7].copy_from_slice(b"command");
    let tx = StreamingMapping::<_, ToDevice, _>::map_with_attrs(&p, b, DmaAttrs::SKIP_CPU_SYNC)
        .map_err(map_err)?;
    let mut seen = [0u8; 7];
    bus.read(tx.dma_addr(), &mut seen)?;
    print_reports(&sim);
    tx.unmap()?;

    println!("(c, g) a receive buffer rewritten by the CPU and reposted without sync_for_device:");
    let mut rx = StreamingMapping::<_, Bidirectional, _>::map(&p, DmaBuf::for_device(&p, 4096)?)
        .map_err(map_err)?;
    bus.write(rx.dma_addr(), &[1; 256])?;
    rx.sync_for_cpu();
    rx.write(0, &[0; 16])?;
    bus.write(rx.dma_addr(), &[2; 256])?;
    print_reports(&sim);
    rx.sync_for_cpu();
    rx.unmap()?;
    sim.take_reports();

    println!("(d, e) the device writes a buffer after the driver unmapped it:");
    let rx = StreamingMapping::<_, FromDevice, _>::map(&p, DmaBuf::for_device(&p, 4096)?)
        .map_err(map_err)?;
    let dma = rx.dma_addr();
    rx.unmap()?;
    let _refused = bus.write(dma, &[3; 64]);
    print_reports(&sim);

    println!("(6) a platform configured coherent for a device that does not snoop:");
    let dt = sim.add_device("wrong-dma-coherent");
    let q = sim.coherent_platform(dt, DeviceConstraints::UNCONSTRAINED);
    let mut tx = StreamingMapping::<_, ToDevice, _>::map(&q, DmaBuf::for_device(&q, 4096)?)
        .map_err(map_err)?;
    tx.write(0, b"command")?;
    tx.sync_for_device();
    print_reports(&sim);
    tx.unmap()?;
    Ok(())
}

fn print_reports(sim: &Sim) {
    for r in sim.take_reports() {
        println!("    {r}");
    }
}
