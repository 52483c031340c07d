//! Identify an NVMe controller bound to vfio-pci: model, serial number,
//! vendor, how many namespaces it supports, namespace 1's size and LBA
//! format.
//!
//! ```text
//! cargo run --release -p dma-vfio --example identify -- 0000:01:00.0
//! ```
//!
//! Bind the device to vfio-pci first and give it back afterwards as the
//! `dma-vfio` crate documentation shows. Identify only reads; the
//! controller is reset (disabled and re-enabled) by the driver.

mod common;

use std::time::Duration;

use dma_drivers::nvme::{prp_pools, NvmeBlockDriver, NvmeDriverConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(address) = std::env::args().nth(1) else {
        eprintln!("usage: identify <pci-address, e.g. 0000:01:00.0>");
        std::process::exit(2);
    };
    let nvme = common::Nvme::open(&address)?;
    let pools = prp_pools(&nvme.platform)?;
    let wait = common::IrqWait::new(&nvme.irq, Duration::from_secs(5));
    let ctrl = nvme.controller()?;
    let disk = NvmeBlockDriver::<_, _>::start(
        &ctrl,
        &nvme.platform,
        &pools,
        wait,
        NvmeDriverConfig::default(),
    )?;
    let id = disk.identity().clone();
    println!("device      {address}");
    println!("model       {}", id.model);
    println!("serial      {}", id.serial);
    println!("vendor      {:#06x}", id.vendor);
    println!(
        "namespaces  {} (NN: the largest namespace id)",
        id.namespaces
    );
    println!(
        "namespace 1 {} blocks of {} bytes ({} MiB)",
        id.blocks,
        id.block_size,
        (id.blocks * u64::from(id.block_size)) >> 20
    );
    println!(
        "LBA format  {} bytes per block, no metadata in use",
        id.block_size
    );
    println!("max transfer {} KiB per command", id.max_transfer() >> 10);
    disk.shutdown()?;
    Ok(())
}
