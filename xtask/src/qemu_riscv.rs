//! The riscv64 half of `cargo xtask qemu`: the `dma-qemu-riscv` image on
//! QEMU's riscv64 `virt` machine in M-mode (`-bios none`), against the same
//! NVMe controller model as the aarch64 suite.
//!
//! The image prints the same protocol and exits through the `sifive_test`
//! finisher with the same codes as the aarch64 image's semihosting exit, so
//! parsing, the verdict and the disk check are [`qemu`](crate::qemu)'s.

use std::path::Path;
use std::time::Duration;

use crate::qemu::{self, QemuSummary};

/// The emulator (Debian package `qemu-system-misc`).
pub const QEMU: &str = "qemu-system-riscv64";
/// The Debian package that has [`QEMU`].
pub const PACKAGE: &str = "qemu-system-misc";
/// The image's target.
pub const TARGET: &str = "riscv64gc-unknown-none-elf";
/// The image's package (and binary) name.
const IMAGE: &str = "dma-qemu-riscv";
/// Wall-clock limit for one QEMU run; a run takes well under a second.
const WALL_TIMEOUT: Duration = Duration::from_secs(60);

/// True when qemu-system-riscv64 is on `PATH`.
pub fn installed() -> bool {
    qemu::on_path(QEMU)
}

/// The emulator's arguments before `-kernel`: `virt` has no IOMMU on
/// riscv64, `-bios none` starts the image itself in M-mode (QEMU's default
/// OpenSBI would sit at 0x8000_0000, where the image is linked), and
/// `-net none` keeps the NVMe at 00:01.0 as on aarch64.
const ARGS: [&str; 15] = [
    "-M",
    "virt",
    "-cpu",
    "rv64",
    "-m",
    "128M",
    "-bios",
    "none",
    "-nographic",
    "-monitor",
    "none",
    "-serial",
    "stdio",
    "-net",
    "none",
];

/// Builds the image, runs it under qemu-system-riscv64 on a fresh disk
/// image and checks the results. `root` is the workspace root.
///
/// # Errors
///
/// When the suite could not run at all (as [`qemu::run`]).
pub fn run(root: &Path) -> Result<QemuSummary, String> {
    if !installed() {
        return Err(format!("{QEMU} not installed (apt-get install {PACKAGE})"));
    }
    let elf = qemu::build(root, IMAGE, TARGET)?;
    let disk = qemu::target_dir(root).join("qemu-riscv").join("disk.img");
    qemu::fresh_disk(&disk)?;
    let drive = format!("file={},if=none,id=d0,format=raw", disk.display());
    let mut args: Vec<String> = ARGS.iter().map(|a| a.to_string()).collect();
    args.extend(["-kernel".into(), elf.display().to_string()]);
    args.extend([
        "-drive".into(),
        drive,
        "-device".into(),
        qemu::NVME_DEVICE.into(),
    ]);
    println!("==> qemu: {QEMU} {}", args.join(" "));
    let (output, exit, wall, stderr) = qemu::run_captured(QEMU, &args, WALL_TIMEOUT)?;
    qemu::summarize(&output, exit, wall, &stderr, &[("d0", &disk)])
}
