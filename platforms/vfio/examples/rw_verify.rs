//! Write a pattern over part of an NVMe namespace, read it back and verify
//! it, with a progress bar and the throughput of each pass.
//!
//! ```text
//! cargo run --release -p dma-vfio --example rw_verify -- 0000:01:00.0 --destroy-data [first-lba] [MiB]
//! ```
//!
//! **This overwrites the blocks it tests.** Use a scratch device bound to
//! vfio-pci (see the `dma-vfio` crate documentation for binding and
//! unbinding it safely); `--destroy-data` is required to run.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use dma_core::DmaBuf;
use dma_drivers::nvme::{prp_pools, NvmeBlockDriver, NvmeDriverConfig};
use dma_qemu_virt::report::fill_pattern;

/// Bytes per command.
const CHUNK: usize = 128 << 10;
/// The pattern's seed.
const SEED: u32 = 0x5eed;

fn progress(label: &str, done: usize, total: usize, start: Instant) {
    let width = 40;
    let filled = done * width / total.max(1);
    let mib_s = done as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64().max(1e-9);
    print!(
        "\r{label} [{}{}] {:3}% {mib_s:8.1} MiB/s",
        "#".repeat(filled),
        " ".repeat(width - filled),
        done * 100 / total.max(1)
    );
    let _ = std::io::stdout().flush();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args[1] != "--destroy-data" {
        eprintln!("usage: rw_verify <pci-address> --destroy-data [first-lba (default 0)] [MiB (default 16)]");
        std::process::exit(2);
    }
    let first: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let mib: usize = args.get(3).map_or(Ok(16), |s| s.parse())?;
    let total = mib << 20;

    let nvme = common::Nvme::open(&args[0])?;
    let pools = prp_pools(&nvme.platform)?;
    let wait = common::Polled::new(Duration::from_secs(5));
    let ctrl = nvme.controller()?;
    let mut disk = NvmeBlockDriver::<_, _>::start(
        &ctrl,
        &nvme.platform,
        &pools,
        wait,
        NvmeDriverConfig::default(),
    )?;
    let block = disk.identity().block_size as usize;
    let chunk = CHUNK.min(disk.identity().max_transfer());
    let blocks = (total / block) as u64;
    if first
        .checked_add(blocks)
        .is_none_or(|end| end > disk.identity().blocks)
    {
        return Err(format!(
            "{mib} MiB from LBA {first} runs past the namespace's {} blocks",
            disk.identity().blocks
        )
        .into());
    }
    println!(
        "{}: {} MiB from LBA {first}, {} KiB per command",
        disk.identity().model,
        mib,
        chunk >> 10
    );

    let start = Instant::now();
    let mut buf = DmaBuf::for_device(&nvme.platform, chunk)?;
    for off in (0..total).step_by(chunk) {
        let n = chunk.min(total - off);
        fill_pattern(SEED, off as u64, &mut buf[..n]);
        buf = disk
            .write(first + (off / block) as u64, buf)
            .map_err(|r| r.error)?;
        progress("write ", off + n, total, start);
    }
    disk.flush()?;
    println!();

    let start = Instant::now();
    let mut want = vec![0u8; chunk];
    for off in (0..total).step_by(chunk) {
        let n = chunk.min(total - off);
        buf = disk
            .read(first + (off / block) as u64, buf)
            .map_err(|r| r.error)?;
        fill_pattern(SEED, off as u64, &mut want[..n]);
        if buf[..n] != want[..n] {
            let bad = (0..n).find(|&i| buf[i] != want[i]).unwrap_or(0);
            println!();
            return Err(format!(
                "mismatch at byte {} (LBA {})",
                off + bad,
                first + ((off + bad) / block) as u64
            )
            .into());
        }
        progress("verify", off + n, total, start);
    }
    println!("\nverified {mib} MiB");
    disk.shutdown()?;
    Ok(())
}
