//! 4 KiB random reads at queue depth 1, through this crate's user-space
//! path or through a kernel block device, for comparing the two on the
//! same controller (a benchmark; `cargo xtask linux` prints the ratio).
//!
//! ```text
//! randread vfio 0000:01:00.0 <count>     # our driver over VFIO (polled)
//! randread vfio-irq 0000:01:00.0 <count> # the same, interrupt-driven
//! randread block /dev/nvme0n1 <count>    # the kernel's nvme driver, O_DIRECT
//! ```
//!
//! Both read the same pseudo-random sequence of 4 KiB-aligned blocks in
//! the first 32 MiB. Reads only.

mod common;

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use dma_core::DmaBuf;
use dma_drivers::nvme::{prp_pools, NvmeBlockDriver, NvmeDriverConfig};
use dma_drivers::Wait;

/// Bytes per read.
const READ: usize = 4096;
/// The span read from.
const SPAN: u64 = 32 << 20;

/// The offsets, the same for both paths (xorshift64).
fn offsets(count: usize) -> impl Iterator<Item = u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..count).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % (SPAN / READ as u64)) * READ as u64
    })
}

fn report(mode: &str, count: usize, elapsed: Duration) {
    let iops = count as f64 / elapsed.as_secs_f64();
    println!(
        "BENCH {mode} {count} reads in {:.3} s: {iops:.0} IOPS",
        elapsed.as_secs_f64()
    );
}

/// `count` reads through our driver, waiting with `wait`.
fn ours(
    nvme: &common::Nvme,
    wait: impl Wait,
    mode: &str,
    count: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let pools = prp_pools(&nvme.platform)?;
    let ctrl = nvme.controller()?;
    let mut disk = NvmeBlockDriver::<_, _>::start(
        &ctrl,
        &nvme.platform,
        &pools,
        wait,
        NvmeDriverConfig::default(),
    )?;
    let block = u64::from(disk.identity().block_size);
    let mut buf = DmaBuf::for_device(&nvme.platform, READ)?;
    let start = Instant::now();
    for off in offsets(count) {
        buf = disk.read(off / block, buf).map_err(|r| r.error)?;
    }
    report(mode, count, start.elapsed());
    disk.shutdown()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(target)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: randread vfio|vfio-irq <pci-address> [count] | randread block <device> [count]"
        );
        std::process::exit(2);
    };
    let count: usize = args.get(2).map_or(Ok(2000), |s| s.parse())?;
    match mode.as_str() {
        "vfio" => {
            let nvme = common::Nvme::open(target)?;
            let wait = common::Polled::new(Duration::from_secs(5));
            ours(&nvme, wait, "vfio", count)?;
        }
        "vfio-irq" => {
            let nvme = common::Nvme::open(target)?;
            let wait =
                common::IrqWait::interrupt_driven(&nvme.irq, &nvme.io_irq, Duration::from_secs(5));
            ours(&nvme, wait, "vfio-irq", count)?;
        }
        "block" => {
            let dev = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(target)?;
            // O_DIRECT wants a block-aligned buffer: take an aligned window.
            let mut raw = vec![0u8; 2 * READ];
            let skip = raw.as_ptr().align_offset(READ);
            let buf = &mut raw[skip..skip + READ];
            let start = Instant::now();
            for off in offsets(count) {
                dev.read_exact_at(buf, off)?;
            }
            report("kernel", count, start.elapsed());
        }
        other => return Err(format!("unknown mode {other:?}: vfio or block").into()),
    }
    Ok(())
}
