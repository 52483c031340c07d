//! `cargo xtask linux`: the VFIO suite in a Linux guest, on x86_64 (q35,
//! intel-iommu) and aarch64 (virt, SMMUv3, GICv3), under QEMU TCG.
//!
//! For each architecture: build `dma-vfio`'s examples as static binaries,
//! fetch Debian's current stock kernel (resolved through the
//! `linux-image-*` metapackage) and busybox-static with `apt-get download`
//! into a cache under the target directory, pack an initramfs with the
//! kernel's VFIO modules, boot it with an emulated NVMe controller, let
//! its `/init` bind the controller to vfio-pci and run the examples and
//! the suite, then parse the console (the bare-metal suite's protocol,
//! `qemu::parse`) and check the disk image for what the guest wrote.
//!
//! Pass or fail leaves the guest in its exit status: on x86_64 through
//! the `isa-debug-exit` port, on aarch64 (no such port) through the
//! `GUEST EXIT` line /init prints before powering off.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::qemu::{self, DiskCheck, Exit, QemuSummary};
use crate::runner::on_path;

/// One guest architecture.
pub struct Arch {
    /// Name in the summary.
    pub name: &'static str,
    /// Rust target of the guest binaries.
    target: &'static str,
    /// Debian architecture.
    deb_arch: &'static str,
    /// The emulator.
    pub qemu: &'static str,
    /// Debian package of the emulator.
    pub qemu_package: &'static str,
    /// Machine and CPU arguments.
    machine: &'static [&'static str],
    /// Kernel command line.
    cmdline: &'static str,
    /// Modules in load order (file stems).
    modules: &'static [&'static str],
}

/// The two guests.
pub const ARCHES: [Arch; 2] = [
    Arch {
        name: "x86_64",
        target: "x86_64-unknown-linux-gnu",
        deb_arch: "amd64",
        qemu: "qemu-system-x86_64",
        qemu_package: "qemu-system-x86",
        machine: &[
            "-accel",
            "tcg",
            "-M",
            "q35,kernel-irqchip=split",
            "-device",
            "intel-iommu,intremap=on",
            "-cpu",
            "max",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ],
        // no_timer_check: under TCG on a loaded host the kernel's check
        // that the timer interrupt works through the remapped IO-APIC can
        // miss its window and panic the boot.
        cmdline: "console=ttyS0 quiet panic=-1 no_timer_check",
        modules: &[
            "irqbypass",
            "vfio_virqfd",
            "vfio",
            "vfio_iommu_type1",
            "vfio-pci-core",
            "vfio-pci",
        ],
    },
    Arch {
        name: "aarch64",
        target: "aarch64-unknown-linux-gnu",
        deb_arch: "arm64",
        qemu: "qemu-system-aarch64",
        qemu_package: "qemu-system-arm",
        machine: &[
            "-M",
            "virt,iommu=smmuv3,gic-version=3",
            "-cpu",
            "cortex-a57",
        ],
        cmdline: "console=ttyAMA0 quiet panic=-1",
        modules: &[
            "vfio_virqfd",
            "vfio",
            "vfio_iommu_type1",
            "vfio-pci-core",
            "vfio-pci",
        ],
    },
];

/// The guest binaries (examples of `dma-vfio`).
const BINARIES: [&str; 4] = ["guest_suite", "identify", "rw_verify", "randread"];
/// The kernel's own NVMe driver and what it needs, in load order, loaded
/// after the suite for the speed comparison; those a kernel builds in are
/// absent from its package and skipped.
const NVME_MODULES: [&str; 9] = [
    "crct10dif_common",
    "crct10dif_generic",
    "crc-t10dif",
    "crc64",
    "crc64_rocksoft_generic",
    "crc64-rocksoft",
    "t10-pi",
    "nvme-core",
    "nvme",
];
/// Reads per side of the speed comparison.
const BENCH_READS: u32 = 2000;
/// The emulated controller's serial number, which the guest suite expects
/// Identify to report (`DMA_VFIO_SERIAL`).
const NVME_SERIAL: &str = "dma-vfio-0001";
/// Fresh sparse disk image.
const DISK_BYTES: u64 = 64 << 20;
/// Byte written to the debug-exit port on pass and on failure; QEMU exits
/// with `2n + 1`.
const EXIT_PASS: u8 = 0x10;
/// See [`EXIT_PASS`].
const EXIT_FAIL: u8 = 0x11;
/// Wall-clock limit for one guest.
const WALL_TIMEOUT: Duration = Duration::from_secs(150);

impl Arch {
    /// Rust target of the guest binaries.
    pub fn target(&self) -> &'static str {
        self.target
    }
}

/// What a fresh machine lacks for `arch`, as the packages to install;
/// empty when everything is there.
pub fn missing(arch: &Arch) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !on_path(arch.qemu) {
        missing.push(arch.qemu_package);
    }
    for (tool, package) in [
        ("busybox", "busybox-static"),
        ("apt-get", "apt"),
        ("dpkg-deb", "dpkg"),
        ("gzip", "gzip"),
    ] {
        if !on_path(tool) {
            missing.push(package);
        }
    }
    if arch.deb_arch == "arm64" && !on_path("aarch64-linux-gnu-gcc") {
        missing.push("gcc-aarch64-linux-gnu");
    }
    missing
}

/// Builds, boots and checks the guest for `arch`.
pub fn run(root: &Path, arch: &Arch) -> Result<QemuSummary, String> {
    let work = qemu::target_dir(root).join("linux").join(arch.name);
    let cache = qemu::target_dir(root)
        .join("linux-cache")
        .join(arch.deb_arch);
    fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    fs::create_dir_all(&cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    let bins = build(root, arch)?;
    let kernel = fetch_kernel(&cache, arch)?;
    let initrd = initramfs(&work, &cache, &kernel, arch, &bins)?;
    let disk = work.join("disk.img");
    let file = fs::File::create(&disk).map_err(|e| format!("creating {}: {e}", disk.display()))?;
    file.set_len(DISK_BYTES)
        .map_err(|e| format!("sizing {}: {e}", disk.display()))?;

    let mut args: Vec<String> = arch.machine.iter().map(|a| a.to_string()).collect();
    let drive = format!("file={},if=none,id=d0,format=raw", disk.display());
    args.extend(
        [
            "-m",
            "512M",
            "-nographic",
            "-no-reboot",
            "-net",
            "none",
            "-kernel",
            &kernel.image.display().to_string(),
            "-initrd",
            &initrd.display().to_string(),
            "-append",
            arch.cmdline,
            "-drive",
            &drive,
            "-device",
            // `mdts=10` allows 4 MiB per command, so the suite can chain
            // PRP lists.
            &format!("nvme,serial={NVME_SERIAL},drive=d0,mdts=10"),
        ]
        .map(String::from),
    );
    println!("==> linux guest: {} {}", arch.qemu, args.join(" "));
    let (output, exit, wall, stderr) = qemu::run_captured(arch.qemu, &args, WALL_TIMEOUT)?;
    let mut summary = qemu::parse(&output);
    summary.wall = wall;
    summary.exit = guest_exit(arch, exit, &output);
    summary.notes.extend(
        stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("qemu: {l}")),
    );
    for example in ["identify", "rw_verify"] {
        if !output.contains(&format!("EXAMPLE {example} status 0")) {
            summary.notes.push(format!("example {example} failed"));
            summary.exit = Exit::Code(10);
        }
    }
    match (iops(&output, "vfio"), iops(&output, "vfio-irq"), iops(&output, "kernel")) {
        (Some(ours), Some(irq), Some(kernel)) => println!(
            "==> {}: 4 KiB random reads, QD1: ours {ours:.0} IOPS polled, {irq:.0} IOPS interrupt-driven, \
             kernel nvme {kernel:.0} IOPS, ratio {:.2} (interrupt-driven {:.2})",
            arch.name,
            ours / kernel,
            irq / kernel
        ),
        _ => summary.notes.push("no speed comparison (BENCH lines missing)".into()),
    }
    let image = fs::read(&disk).map_err(|e| format!("reading {}: {e}", disk.display()))?;
    summary.disk = summary
        .disk
        .iter()
        .map(|c| DiskCheck {
            claim: c.claim,
            result: qemu::check_claim(&image, c.claim),
        })
        .collect();
    Ok(summary)
}

/// The IOPS of the `randread` example's `BENCH <mode>` line.
fn iops(output: &str, mode: &str) -> Option<f64> {
    output
        .lines()
        .find(|l| l.starts_with(&format!("BENCH {mode} ")))?
        .rsplit(' ')
        .nth(1)?
        .parse::<f64>()
        .ok()
}

/// The guest's verdict as the bare-metal suite's exit codes (0 pass, 10
/// fail): from the debug-exit port on x86_64, from /init's last line on
/// aarch64.
fn guest_exit(arch: &Arch, exit: Exit, output: &str) -> Exit {
    let said_pass = output.lines().any(|l| l.trim_end() == "GUEST EXIT 0");
    match (arch.name, exit) {
        ("x86_64", Exit::Code(c)) if c == 2 * i32::from(EXIT_PASS) + 1 => Exit::Code(0),
        ("x86_64", Exit::Code(c)) if c == 2 * i32::from(EXIT_FAIL) + 1 => Exit::Code(10),
        ("aarch64", Exit::Code(0)) if said_pass => Exit::Code(0),
        ("aarch64", Exit::Code(0)) => Exit::Code(10),
        (_, other) => other,
    }
}

/// Builds the examples as static binaries for the guest.
fn build(root: &Path, arch: &Arch) -> Result<Vec<PathBuf>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Its own target directory: the static flags would otherwise rebuild
    // the host's dependencies on every switch.
    let target_dir = qemu::target_dir(root).join("linux-build");
    println!(
        "\n==> guest binaries: cargo build --release -p dma-vfio --examples --target {}",
        arch.target
    );
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "dma-vfio",
            "--examples",
            "--target",
            arch.target,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env(
            "RUSTFLAGS",
            "-C target-feature=+crt-static -C strip=debuginfo",
        )
        .current_dir(root)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the guest binaries failed ({status})"));
    }
    Ok(BINARIES
        .iter()
        .map(|b| {
            target_dir
                .join(arch.target)
                .join("release/examples")
                .join(b)
        })
        .collect())
}

/// The kernel image and the unpacked package tree.
struct Kernel {
    image: PathBuf,
    tree: PathBuf,
}

fn sh(what: &str, command: &str, dir: &Path) -> Result<String, String> {
    let out = Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Marks a complete unpack of the kernel package (renamed when the set of
/// files taken from it changes).
const UNPACKED: &str = "unpacked-2";

/// Resolves `linux-image-<arch>` to its current ABI package, downloads it
/// (once) and unpacks the kernel and the VFIO modules.
fn fetch_kernel(cache: &Path, arch: &Arch) -> Result<Kernel, String> {
    let meta = format!("linux-image-{0}:{0}", arch.deb_arch);
    let deps = sh(
        "apt-cache depends",
        &format!("apt-cache depends {meta}"),
        cache,
    )
    .map_err(|e| {
        format!("{e} (for arm64 first: dpkg --add-architecture arm64 && apt-get update)")
    })?;
    let package = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(|p| p.split(':').next().unwrap_or(p).to_string())
        .ok_or_else(|| format!("apt-cache depends {meta} names no linux-image package"))?;
    let tree = cache.join(&package);
    if !tree.join(UNPACKED).exists() {
        let deb_glob = format!("{package}_*_{}.deb", arch.deb_arch);
        sh(
            "apt-get download",
            &format!(
                "ls {deb_glob} >/dev/null 2>&1 || apt-get download -q {package}:{}",
                arch.deb_arch
            ),
            cache,
        )?;
        fs::create_dir_all(&tree).map_err(|e| format!("creating {}: {e}", tree.display()))?;
        // irqbypass.ko exists on amd64 only (arm64 builds it in or not at all).
        let irqbypass = if arch.modules.contains(&"irqbypass") {
            "'./lib/modules/*/kernel/virt/lib/irqbypass.ko'"
        } else {
            ""
        };
        sh(
            "unpacking the kernel",
            &format!(
                "dpkg-deb --fsys-tarfile {deb_glob} | tar -x -C {package} --wildcards './boot/vmlinuz-*' \
                 './lib/modules/*/kernel/drivers/vfio/*' {irqbypass} \
                 './lib/modules/*/kernel/drivers/nvme/host/nvme*.ko' './lib/modules/*/kernel/block/*' \
                 './lib/modules/*/kernel/lib/*' './lib/modules/*/kernel/crypto/*' && touch {package}/{UNPACKED}"
            ),
            cache,
        )?;
    }
    let image = fs::read_dir(tree.join("boot"))
        .map_err(|e| format!("reading the kernel package: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("{package} has no /boot/vmlinuz-*"))?;
    let image = if arch.deb_arch == "amd64" {
        vmlinux(&image).unwrap_or(image)
    } else {
        image
    };
    Ok(Kernel { image, tree })
}

/// The uncompressed ELF inside an x86 bzImage, which QEMU boots through
/// its PVH note: TCG then skips the kernel's own XZ decompression (about
/// 4 s). `None` (boot the bzImage) when `xz` is absent or it fails.
fn vmlinux(bzimage: &Path) -> Option<PathBuf> {
    const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
    let out = bzimage.with_file_name("vmlinux");
    if out.exists() {
        return Some(out);
    }
    let data = fs::read(bzimage).ok()?;
    let at = data.windows(XZ_MAGIC.len()).position(|w| w == XZ_MAGIC)?;
    let dir = bzimage.parent()?;
    let name = bzimage.file_name()?.to_string_lossy().into_owned();
    sh(
        "unpacking vmlinux",
        &format!(
            "tail -c +{} {name} | xz -dc --single-stream > vmlinux.part && mv vmlinux.part vmlinux",
            at + 1
        ),
        dir,
    )
    .ok()?;
    Some(out)
}

/// The guest's busybox: the host's for x86_64, busybox-static:arm64
/// downloaded and unpacked for aarch64.
fn busybox(cache: &Path, arch: &Arch) -> Result<PathBuf, String> {
    if arch.deb_arch == "amd64" {
        let out = sh("which busybox", "command -v busybox", cache)?;
        return Ok(PathBuf::from(out.trim()));
    }
    let bin = cache.join("busybox/bin/busybox");
    if !bin.exists() {
        sh(
            "busybox-static download",
            &format!(
                "rm -f busybox-static_*.deb; apt-get download -q busybox-static:{0} && mkdir -p busybox && \
                 dpkg-deb --fsys-tarfile busybox-static_*_{0}.deb | tar -x -C busybox ./bin/busybox",
                arch.deb_arch
            ),
            cache,
        )?;
    }
    Ok(bin)
}

/// The guest's /init: mount, load the VFIO modules, bind the NVMe
/// controller to vfio-pci, run the examples and the suite, report, power
/// off.
fn init_script(arch: &Arch) -> String {
    let exit = if arch.name == "x86_64" {
        format!(
            "printf \"\\\\$(printf %o $((rc == 0 ? {EXIT_PASS} : {EXIT_FAIL})))\" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
BDF=
for d in /sys/bus/pci/devices/*; do
  if [ "$(cat $d/vendor)" = 0x1b36 ] && [ "$(cat $d/device)" = 0x0010 ]; then BDF=${{d##*/}}; fi
done
echo vfio-pci > /sys/bus/pci/devices/$BDF/driver_override
echo $BDF > /sys/bus/pci/drivers_probe
export DMA_VFIO_DEVICE=$BDF DMA_VFIO_SERIAL={serial}
echo 2 > /proc/sys/vm/nr_hugepages
echo "NVMe at $BDF, IOMMU group $(basename $(readlink /sys/bus/pci/devices/$BDF/iommu_group))"
/bin/identify $BDF; echo "EXAMPLE identify status $?"
/bin/rw_verify $BDF --destroy-data 65536 4; s=$?; echo "EXAMPLE rw_verify status $s"
[ $s = 0 ] && echo "DISK 65536 8192 0x5eed"
/bin/randread vfio $BDF {reads}
/bin/randread vfio-irq $BDF {reads}
/bin/guest_suite; rc=$?
grep -i vfio /proc/interrupts
echo "GUEST EXIT $rc"
for m in {nvme_modules}; do [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko; done
echo > /sys/bus/pci/devices/$BDF/driver_override
echo $BDF > /sys/bus/pci/drivers_probe
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/nvme0n1 ] && break; sleep 1; done
/bin/randread block /dev/nvme0n1 {reads}
{exit}poweroff -f
"#,
        modules = arch.modules.join(" "),
        reads = BENCH_READS,
        serial = NVME_SERIAL,
        nvme_modules = NVME_MODULES.join(" "),
    )
}

/// Packs the initramfs.
fn initramfs(
    work: &Path,
    cache: &Path,
    kernel: &Kernel,
    arch: &Arch,
    bins: &[PathBuf],
) -> Result<PathBuf, String> {
    let root = work.join("initramfs");
    let _ = fs::remove_dir_all(&root);
    for dir in ["bin", "dev", "proc", "sys", "tmp", "lib/modules"] {
        fs::create_dir_all(root.join(dir)).map_err(|e| format!("creating {dir}: {e}"))?;
    }
    let copy = |from: &Path, to: PathBuf| {
        fs::copy(from, &to)
            .map(drop)
            .map_err(|e| format!("copying {}: {e}", from.display()))
    };
    copy(&busybox(cache, arch)?, root.join("bin/busybox"))?;
    for bin in bins {
        copy(
            bin,
            root.join("bin").join(bin.file_name().unwrap_or_default()),
        )?;
    }
    let found = sh(
        "finding the modules",
        "find lib/modules -name '*.ko'",
        &kernel.tree,
    )?;
    let module = |m: &str| found.lines().find(|l| l.ends_with(&format!("/{m}.ko")));
    for m in arch.modules {
        let path = module(m).ok_or_else(|| format!("the kernel package has no {m}.ko"))?;
        copy(
            &kernel.tree.join(path),
            root.join(format!("lib/modules/{m}.ko")),
        )?;
    }
    for m in NVME_MODULES {
        if let Some(path) = module(m) {
            copy(
                &kernel.tree.join(path),
                root.join(format!("lib/modules/{m}.ko")),
            )?;
        }
    }
    let init = root.join("init");
    fs::write(&init, init_script(arch)).map_err(|e| format!("writing /init: {e}"))?;
    sh("chmod /init", "chmod 755 init bin/*", &root)?;
    let initrd = work.join("initrd.gz");
    sh(
        "packing the initramfs",
        &format!(
            "find . | busybox cpio -o -H newc -R 0:0 2>/dev/null | gzip -1 > {}",
            initrd.display()
        ),
        &root,
    )?;
    Ok(initrd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_are_told_apart_by_mode() {
        let out = "BENCH vfio-irq 2000 reads in 0.700 s: 2857 IOPS\n\
                   BENCH vfio 2000 reads in 0.500 s: 4000 IOPS\n\
                   BENCH kernel 2000 reads in 1.000 s: 2000 IOPS\n";
        assert_eq!(iops(out, "vfio"), Some(4000.0));
        assert_eq!(iops(out, "vfio-irq"), Some(2857.0));
        assert_eq!(iops(out, "kernel"), Some(2000.0));
        assert_eq!(iops("BENCH kernel failed", "kernel"), None);
        assert_eq!(iops(out, "block"), None);
    }
}
