//! `cargo xtask qemu`: the real-device suite on QEMU's aarch64 `virt`
//! machine, against QEMU's NVMe controller and SMMUv3.
//!
//! [`run`] builds the `dma-qemu-virt` image for `aarch64-unknown-none`,
//! creates a fresh 32 MiB (sparse) disk image, boots the image under
//! qemu-system-aarch64 with a wall-clock timeout, parses the lines the
//! image prints, maps QEMU's exit status (the image's semihosting exit
//! code), and checks the disk image for the data the guest says it wrote.
//!
//! The protocol is defined in `platforms/qemu-virt/src/report.rs`; this
//! file mirrors it (the exit codes and the data pattern are pinned by tests
//! on both sides):
//!
//! ```text
//! TEST <name> PASS|FAIL|SKIP [detail]
//! DISK <lba> <blocks> <seed> [<drive>]   host checks pattern(seed) there,
//!                                         on drive d0 (the NVMe) unless named
//! DONE <passed> <failed> <skipped>
//! ```

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The emulator.
pub const QEMU: &str = "qemu-system-aarch64";
/// The image's target.
const TARGET: &str = "aarch64-unknown-none";
/// The image's package (and binary) name.
const IMAGE: &str = "dma-qemu-virt";
/// Size of the fresh disk image: four 8 MiB areas, one per backend run
/// (direct, and the IOMMU on the 4, 16 and 64 KiB granules; see
/// `platforms/qemu-virt/src/image/suite.rs`). The file is sparse.
pub const DISK_BYTES: u64 = 32 << 20;
/// The NVMe controller: `-net none` keeps it at 00:01.0 (StreamID 8);
/// `mdts=10` raises QEMU's default MDTS of 7 (512 KiB per command) to
/// 4 MiB, so one command can need a chain of PRP list pages (more than
/// 512 entries), which the suite tests.
pub const NVME_DEVICE: &str = "nvme,serial=x,drive=d0,mdts=10";
/// Two NICs on one QEMU hub and nothing else on it: a modern virtio-net
/// at 00:04.0 (StreamID 32) and an e1000e at 00:05.0 (StreamID 40). Only
/// `hubport` netdevs: no user-mode networking, tap or socket, so no frame
/// leaves QEMU ([`nic_pair_is_closed`] checks it).
pub const NIC_PAIR: [&str; 8] = [
    "-netdev",
    "hubport,id=a,hubid=0",
    "-netdev",
    "hubport,id=b,hubid=0",
    "-device",
    "virtio-net-pci,netdev=a,mac=52:54:00:00:00:01,disable-legacy=on,addr=04.0",
    "-device",
    "e1000e,netdev=b,mac=52:54:00:00:00:02,addr=05.0",
];

/// Checks that a QEMU command line connects nothing to the host network:
/// `-net` only as `none`, no `-nic`, and every `-netdev` a `hubport`
/// (QEMU's hub is internal; `user`, `tap`, `socket`, `stream`, `dgram`,
/// `vde`, `bridge` and `l2tpv3` reach outside).
///
/// # Errors
///
/// Names the argument that could reach the host.
pub fn nic_pair_is_closed(args: &[String]) -> Result<(), String> {
    let mut words = args.iter().map(String::as_str);
    while let Some(word) = words.next() {
        match word {
            "-net" => match words.next() {
                Some("none") => {}
                other => return Err(format!("-net {other:?}: only `-net none` is allowed")),
            },
            "-nic" => return Err("-nic creates a host-side netdev".into()),
            "-netdev" => match words.next() {
                Some(spec) if spec.starts_with("hubport,") => {}
                other => {
                    return Err(format!(
                        "-netdev {other:?}: only hubports, so no frame leaves QEMU"
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// The NVMe namespace's block size (QEMU's default 512-byte LBAs).
const BLOCK: u64 = 512;
/// Wall-clock limit for one QEMU run; a run takes well under a second.
const WALL_TIMEOUT: Duration = Duration::from_secs(60);

/// True when qemu-system-aarch64 is on `PATH`.
pub fn installed() -> bool {
    on_path(QEMU)
}

/// True when `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// How a test line ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `PASS`.
    Pass,
    /// `FAIL`.
    Fail,
    /// `SKIP`.
    Skip,
}

/// One `TEST` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestLine {
    /// The test's name.
    pub name: String,
    /// Its outcome.
    pub status: Status,
    /// What the image said about it.
    pub detail: String,
}

/// The drives a `DISK` line may name, by their QEMU `-drive id=`: the NVMe
/// namespace (the default), and the virtio-blk disks (see [`VIRTIO_BLK`]).
pub const DRIVES: [&str; 3] = ["d0", "v0", "v1"];

/// One `DISK` line: the guest wrote `pattern(seed)` over `blocks` blocks
/// from `lba` of `drive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskClaim {
    /// The drive (one of [`DRIVES`]).
    pub drive: &'static str,
    /// First logical block.
    pub lba: u64,
    /// Number of 512-byte blocks.
    pub blocks: u64,
    /// Pattern seed.
    pub seed: u32,
}

/// A claim checked against the disk image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskCheck {
    /// What the guest claimed.
    pub claim: DiskClaim,
    /// `Ok` when every byte matched; else the first mismatch.
    pub result: Result<(), String>,
}

/// How QEMU ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// QEMU exited with this status (the image's semihosting exit code, or
    /// QEMU's own failure status).
    Code(i32),
    /// Killed by a signal.
    Signal,
    /// Still running at the wall-clock limit, and killed.
    TimedOut,
}

impl Exit {
    /// What the status means, per the image's `report::ExitCode`.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Code(0) => "all tests passed",
            Exit::Code(10) => "a test failed",
            Exit::Code(11) => "the image panicked",
            Exit::Code(12) => "unexpected CPU exception",
            Exit::Code(13) => "board bring-up failed",
            Exit::Code(1) => "QEMU failed (bad options, or the image never ran)",
            Exit::Code(_) => "unknown exit status",
            Exit::Signal => "QEMU killed by a signal",
            Exit::TimedOut => "timed out (killed)",
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}: {}", self.meaning()),
            _ => f.write_str(self.meaning()),
        }
    }
}

/// Everything one run produced.
#[derive(Clone, Debug)]
pub struct QemuSummary {
    /// The `TEST` lines, in order.
    pub tests: Vec<TestLine>,
    /// The `DISK` claims, checked.
    pub disk: Vec<DiskCheck>,
    /// The counts of the `DONE` line, if the image got that far.
    pub done: Option<(u32, u32, u32)>,
    /// How QEMU ended.
    pub exit: Exit,
    /// Wall time of the QEMU run.
    pub wall: Duration,
    /// Lines the protocol does not cover (banners, `PANIC`, `EXCEPTION`),
    /// and QEMU's standard error.
    pub notes: Vec<String>,
}

impl QemuSummary {
    /// Why the run failed; empty when it passed: QEMU exited 0, the image
    /// reached `DONE` with counts matching its lines, no test failed, and
    /// every disk claim checked out.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.exit != Exit::Code(0) {
            problems.push(self.exit.to_string());
        }
        for t in self.tests.iter().filter(|t| t.status == Status::Fail) {
            problems.push(format!("{} failed: {}", t.name, t.detail));
        }
        for d in &self.disk {
            if let Err(e) = &d.result {
                problems.push(format!("disk {} lba {}: {e}", d.claim.drive, d.claim.lba));
            }
        }
        let count = |s| self.tests.iter().filter(|t| t.status == s).count() as u32;
        let counted = (
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Skip),
        );
        match self.done {
            None => problems.push("the image never printed DONE".into()),
            Some(done) if done != counted => problems.push(format!(
                "DONE says {done:?} but the lines say {counted:?} (pass, fail, skip)"
            )),
            Some(_) => {}
        }
        if self.tests.is_empty() {
            problems.push("no tests ran".into());
        }
        problems
    }

    /// True when the run passed (see [`problems`](Self::problems)).
    pub fn passed(&self) -> bool {
        self.problems().is_empty()
    }

    /// Prints the per-test table, the disk checks and the verdict.
    pub fn print(&self) {
        println!(
            "\nQEMU suite ({:.2} s, {})",
            self.wall.as_secs_f64(),
            self.exit
        );
        let width = self.tests.iter().map(|t| t.name.len()).max().unwrap_or(0);
        for t in &self.tests {
            let tag = match t.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
            };
            println!("  {tag}  {:width$}  {}", t.name, t.detail);
        }
        for d in &self.disk {
            let c = d.claim;
            let verdict = match &d.result {
                Ok(()) => "matches".to_string(),
                Err(e) => format!("MISMATCH {e}"),
            };
            println!(
                "  DISK  {} lba {} x {} seed {:#x}: {verdict}",
                c.drive, c.lba, c.blocks, c.seed
            );
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
        let problems = self.problems();
        for p in &problems {
            println!("  problem: {p}");
        }
        let count = |s| self.tests.iter().filter(|t| t.status == s).count();
        println!(
            "qemu: {} passed, {} failed, {} skipped",
            count(Status::Pass),
            count(Status::Fail) + usize::from(!problems.is_empty() && count(Status::Fail) == 0),
            count(Status::Skip)
        );
    }
}

/// Builds the image, runs it under QEMU on a fresh disk image and checks
/// the results. `root` is the workspace root.
///
/// # Errors
///
/// When the suite could not run at all: QEMU is not installed, the image
/// does not build, the disk image cannot be created, or QEMU cannot be
/// started. A run that starts and fails is `Ok` with the failures in the
/// summary ([`QemuSummary::passed`] is false).
pub fn run(root: &Path) -> Result<QemuSummary, String> {
    if !installed() {
        return Err(format!(
            "{QEMU} not installed (apt-get install qemu-system-arm)"
        ));
    }
    let elf = build_image(root)?;
    let dir = target_dir(root).join("qemu");
    let disk = dir.join("disk.img");
    fresh_disk(&disk)?;
    let vdisks = [dir.join("vblk0.img"), dir.join("vblk1.img")];
    for v in &vdisks {
        prepared_disk(v)?;
    }
    let (output, exit, wall, stderr) = run_qemu(&elf, &disk, &vdisks)?;
    summarize(
        &output,
        exit,
        wall,
        &stderr,
        &[("d0", &disk), ("v0", &vdisks[0]), ("v1", &vdisks[1])],
    )
}

/// Parses one run's UART `output`, records how QEMU ended (`exit`, `wall`,
/// its `stderr`), and checks the run's `DISK` claims against the disk
/// images `disks` (by drive id).
///
/// # Errors
///
/// The disk image cannot be read.
pub fn summarize(
    output: &str,
    exit: Exit,
    wall: Duration,
    stderr: &str,
    disks: &[(&str, &Path)],
) -> Result<QemuSummary, String> {
    let mut summary = parse(output);
    summary.exit = exit;
    summary.wall = wall;
    summary.notes.extend(
        stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("qemu: {l}")),
    );
    let mut images = Vec::new();
    for (drive, path) in disks {
        let bytes = fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        images.push((*drive, bytes));
    }
    summary.disk = summary
        .disk
        .iter()
        .map(|c| DiskCheck {
            claim: c.claim,
            result: match images.iter().find(|(d, _)| *d == c.claim.drive) {
                Some((_, image)) => check_claim(image, c.claim),
                None => Err(format!(
                    "drive {} is not attached to this run",
                    c.claim.drive
                )),
            },
        })
        .collect();
    Ok(summary)
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `target/`).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

fn build_image(root: &Path) -> Result<PathBuf, String> {
    build(root, IMAGE, TARGET)
}

/// Builds the bare-metal image `package` (whose binary has its name) for
/// `target` in release mode; returns the ELF's path.
///
/// # Errors
///
/// The build fails or leaves no ELF.
pub fn build(root: &Path, package: &str, target: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("\n==> qemu image: cargo build -p {package} --target {target} --release");
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--target", target, "--release"])
        .current_dir(root)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the {package} image failed ({status})"));
    }
    let elf = target_dir(root).join(target).join("release").join(package);
    if !elf.is_file() {
        return Err(format!("the image is missing at {}", elf.display()));
    }
    Ok(elf)
}

/// Creates (or empties) a sparse [`DISK_BYTES`] disk image at `path`.
///
/// # Errors
///
/// The file or its directory cannot be created or sized.
pub fn fresh_disk(path: &Path) -> Result<(), String> {
    let dir = path.parent().expect("the disk image lives in a directory");
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let file = fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.set_len(DISK_BYTES)
        .map_err(|e| format!("sizing {}: {e}", path.display()))
}

/// Size of each virtio-blk disk image (sparse).
pub const VIRTIO_DISK_BYTES: u64 = 4 << 20;

/// Host-prepared data on each virtio-blk disk, which the guest reads and
/// checks: `pattern(seed)` over `blocks` blocks from `lba`, as
/// `(lba, blocks, seed)`. Mirrors `dma_qemu_virt::report::PREPARED`
/// (pinned by a test on each side).
pub const PREPARED: (u64, u64, u32) = (4096, 64, 0x5eed_0001);

/// The virtio-blk devices, each with a drive: a modern device offering
/// packed rings at 00:02.0 (StreamID 16), whose DMA bypasses the SMMU
/// (no ACCESS_PLATFORM), and the same with `iommu_platform=on` at 00:03.0
/// (StreamID 24), whose DMA the SMMU translates. The suite drives each
/// with a split queue and with a packed queue.
pub const VIRTIO_BLK: [(&str, &str); 2] = [
    (
        "v0",
        "virtio-blk-pci,drive=v0,disable-legacy=on,packed=on,addr=02.0",
    ),
    (
        "v1",
        "virtio-blk-pci,drive=v1,disable-legacy=on,packed=on,iommu_platform=on,addr=03.0",
    ),
];

/// Creates (or empties) a sparse [`VIRTIO_DISK_BYTES`] disk image at
/// `path` holding the [`PREPARED`] data.
///
/// # Errors
///
/// The file cannot be created or written.
pub fn prepared_disk(path: &Path) -> Result<(), String> {
    use std::io::{Seek, SeekFrom, Write};
    let dir = path.parent().expect("the disk image lives in a directory");
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut file =
        fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.set_len(VIRTIO_DISK_BYTES)
        .map_err(|e| format!("sizing {}: {e}", path.display()))?;
    let (lba, blocks, seed) = PREPARED;
    let data: Vec<u8> = (0..blocks * BLOCK).map(|i| pattern_byte(seed, i)).collect();
    file.seek(SeekFrom::Start(lba * BLOCK))
        .and_then(|_| file.write_all(&data))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Runs QEMU to completion or the timeout; returns the UART output, how it
/// ended, the wall time and QEMU's standard error.
fn run_qemu(
    elf: &Path,
    disk: &Path,
    vdisks: &[PathBuf; 2],
) -> Result<(String, Exit, Duration, String), String> {
    let drive = format!("file={},if=none,id=d0,format=raw", disk.display());
    let args = [
        "-M",
        "virt,iommu=smmuv3",
        "-cpu",
        "cortex-a57",
        "-m",
        "128M",
        "-nographic",
        "-serial",
        "mon:stdio",
        "-semihosting",
        "-net",
        "none",
        "-kernel",
    ];
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.push(elf.display().to_string());
    all.extend(["-drive".into(), drive, "-device".into(), NVME_DEVICE.into()]);
    for ((id, device), path) in VIRTIO_BLK.iter().zip(vdisks) {
        all.extend([
            "-drive".into(),
            format!("file={},if=none,id={id},format=raw", path.display()),
            "-device".into(),
            device.to_string(),
        ]);
    }
    all.extend(NIC_PAIR.iter().map(|a| a.to_string()));
    nic_pair_is_closed(&all)?;
    println!("==> qemu: {QEMU} {}", all.join(" "));
    run_captured(QEMU, &all, WALL_TIMEOUT)
}

/// Runs `program` to completion or `timeout`, echoing its standard output
/// live; returns that output, how it ended, the wall time and its standard
/// error.
pub fn run_captured(
    program: &str,
    args: &[String],
    timeout: Duration,
) -> Result<(String, Exit, Duration, String), String> {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {program}: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // Echo the UART live (a hang then shows where it stopped) and keep it.
    let out_reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("  | {}", line.trim_end_matches('\r'));
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let err_reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    let exit = loop {
        match child
            .try_wait()
            .map_err(|e| format!("waiting for {program}: {e}"))?
        {
            Some(status) => break status.code().map_or(Exit::Signal, Exit::Code),
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Exit::TimedOut;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let wall = start.elapsed();
    let output = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok((output, exit, wall, stderr))
}

/// Parses the image's UART output. Unknown lines become notes when they
/// look like trouble (`PANIC`, `EXCEPTION`) and are ignored otherwise.
pub fn parse(output: &str) -> QemuSummary {
    let mut summary = QemuSummary {
        tests: Vec::new(),
        disk: Vec::new(),
        done: None,
        exit: Exit::Code(0),
        wall: Duration::ZERO,
        notes: Vec::new(),
    };
    for raw in output.lines() {
        let line = raw.trim_end_matches('\r');
        let mut words = line.splitn(4, ' ');
        match words.next() {
            Some("TEST") => {
                let name = words.next().unwrap_or_default().to_string();
                let status = match words.next() {
                    Some("PASS") => Status::Pass,
                    Some("FAIL") => Status::Fail,
                    Some("SKIP") => Status::Skip,
                    _ => {
                        summary.notes.push(format!("malformed line: {line}"));
                        continue;
                    }
                };
                let detail = words.next().unwrap_or_default().trim().to_string();
                summary.tests.push(TestLine {
                    name,
                    status,
                    detail,
                });
            }
            Some("DISK") => match parse_disk(line) {
                Some(claim) => summary.disk.push(DiskCheck {
                    claim,
                    result: Err("not checked".into()),
                }),
                None => summary.notes.push(format!("malformed line: {line}")),
            },
            Some("DONE") => {
                let n: Vec<u32> = line
                    .split(' ')
                    .skip(1)
                    .filter_map(|w| w.parse().ok())
                    .collect();
                match n[..] {
                    [p, f, s] => summary.done = Some((p, f, s)),
                    _ => summary.notes.push(format!("malformed line: {line}")),
                }
            }
            Some("PANIC") | Some("EXCEPTION") => summary.notes.push(line.to_string()),
            _ => {}
        }
    }
    summary
}

fn parse_disk(line: &str) -> Option<DiskClaim> {
    let mut w = line.split(' ').skip(1);
    let lba = w.next()?.parse().ok()?;
    let blocks = w.next()?.parse().ok()?;
    let seed = u32::from_str_radix(w.next()?.strip_prefix("0x")?, 16).ok()?;
    let drive = match w.next() {
        None => DRIVES[0],
        Some(name) => DRIVES.into_iter().find(|d| *d == name)?,
    };
    w.next().is_none().then_some(DiskClaim {
        drive,
        lba,
        blocks,
        seed,
    })
}

/// The byte at `offset` of the data pattern for `seed`: the same mixer as
/// `dma_qemu_virt::report::pattern_byte`.
pub fn pattern_byte(seed: u32, offset: u64) -> u8 {
    let word = offset / 4;
    let mut x = (u64::from(seed) << 32) ^ word;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> ((offset % 4) * 8)) as u8
}

/// Checks one claim against the disk image's bytes: the region starts at
/// pattern offset 0.
pub fn check_claim(image: &[u8], claim: DiskClaim) -> Result<(), String> {
    let start = claim.lba.checked_mul(BLOCK).ok_or("lba overflows")?;
    let len = claim.blocks.checked_mul(BLOCK).ok_or("length overflows")?;
    let end = start.checked_add(len).ok_or("range overflows")?;
    if end > image.len() as u64 {
        return Err(format!(
            "blocks end at byte {end}, past the {}-byte image",
            image.len()
        ));
    }
    let region = &image[start as usize..end as usize];
    match (0..len).find(|&i| region[i as usize] != pattern_byte(claim.seed, i)) {
        None => Ok(()),
        Some(i) => Err(format!(
            "byte {} (block {}, offset {}) is {:#04x}, expected {:#04x}",
            start + i,
            claim.lba + i / BLOCK,
            i % BLOCK,
            region[i as usize],
            pattern_byte(claim.seed, i)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "dma-qemu-virt test image\r\n\
        TEST boot.el1 PASS EL1\r\n\
        TEST nvme.ready FAIL timed out waiting for NVMe CSTS.RDY = 1\n\
        TEST smmu.fault SKIP no smmu\n\
        DISK 2 3 0x1234\n\
        DONE 1 1 1\n";

    #[test]
    fn parses_the_protocol() {
        let s = parse(RUN);
        assert_eq!(s.tests.len(), 3);
        assert_eq!(s.tests[0].detail, "EL1");
        assert_eq!(s.tests[1].status, Status::Fail);
        assert_eq!(s.tests[1].detail, "timed out waiting for NVMe CSTS.RDY = 1");
        assert_eq!(s.tests[2].status, Status::Skip);
        assert_eq!(s.done, Some((1, 1, 1)));
        assert_eq!(
            s.disk[0].claim,
            DiskClaim {
                drive: "d0",
                lba: 2,
                blocks: 3,
                seed: 0x1234
            }
        );
        assert!(s.notes.is_empty());
    }

    #[test]
    fn verdicts() {
        let mut s = parse(RUN);
        s.exit = Exit::Code(10);
        s.disk.clear();
        let p = s.problems();
        assert!(p[0].contains("a test failed"), "{p:?}");
        assert!(p[1].contains("nvme.ready failed"), "{p:?}");

        let ok = parse("TEST a PASS\nDONE 1 0 0\n");
        assert!(ok.passed());
        let mut killed = ok.clone();
        killed.exit = Exit::TimedOut;
        assert!(!killed.passed());
        let truncated = parse("TEST a PASS\n");
        assert_eq!(truncated.problems(), ["the image never printed DONE"]);
        let lying = parse("TEST a PASS\nDONE 2 0 0\n");
        assert!(!lying.passed());
        assert!(!parse("DONE 0 0 0\n").passed(), "no tests is a failure");
        let panicked = parse("PANIC at x\nTEST a PAS\n");
        assert_eq!(panicked.notes.len(), 2);
    }

    #[test]
    fn the_nic_pair_reaches_nothing_outside_qemu() {
        let line = |extra: &[&str]| -> Vec<String> {
            ["-net", "none"]
                .iter()
                .chain(NIC_PAIR.iter())
                .chain(extra)
                .map(|a| a.to_string())
                .collect()
        };
        assert_eq!(nic_pair_is_closed(&line(&[])), Ok(()));
        for bad in [
            &["-netdev", "user,id=c"][..],
            &["-netdev", "tap,id=c,ifname=tap0"],
            &["-netdev", "socket,id=c,listen=:1234"],
            &["-nic", "user"],
            &["-net", "user"],
            &["-netdev"],
        ] {
            assert!(nic_pair_is_closed(&line(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn claims_are_checked_on_their_drive() {
        let dir = std::env::temp_dir().join(format!("xtask-qemu-drives-{}", std::process::id()));
        let (d0, v0) = (dir.join("d0.img"), dir.join("v0.img"));
        fresh_disk(&d0).unwrap();
        prepared_disk(&v0).unwrap();
        let (lba, blocks, seed) = PREPARED;
        let out = format!(
            "TEST a PASS\nDISK {lba} {blocks} {seed:#x} v0\nDISK {lba} {blocks} {seed:#x}\n\
             DISK 0 1 0x1 v1\nDONE 1 0 0\n"
        );
        let disks = [("d0", d0.as_path()), ("v0", v0.as_path())];
        let s = summarize(&out, Exit::Code(0), Duration::ZERO, "", &disks).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.disk[0].result, Ok(()), "the prepared data is on v0");
        assert!(s.disk[1].result.is_err(), "and not on d0");
        let missing = s.disk[2].result.as_ref().unwrap_err();
        assert!(missing.contains("v1 is not attached"), "{missing}");
        assert!(!s.passed());
    }

    /// The image's `report::tests::prepared_data_is_pinned` pins the same.
    #[test]
    fn prepared_data_matches_the_image() {
        assert_eq!(PREPARED, (4096, 64, 0x5eed_0001));
    }

    #[test]
    fn exit_codes_match_the_image() {
        assert_eq!(Exit::Code(0).meaning(), "all tests passed");
        assert_eq!(Exit::Code(12).meaning(), "unexpected CPU exception");
        assert!(Exit::Code(1).meaning().starts_with("QEMU failed"));
    }

    /// The image's `report::tests::pattern_is_pinned` pins the same word.
    #[test]
    fn pattern_matches_the_image() {
        let word0 = u32::from_le_bytes([0, 1, 2, 3].map(|i| pattern_byte(0x1234, i)));
        assert_eq!(word0, 0xa80a_b087);
    }

    #[test]
    fn disk_claims_are_checked_byte_for_byte() {
        let claim = DiskClaim {
            drive: "d0",
            lba: 1,
            blocks: 2,
            seed: 7,
        };
        let mut image = vec![0u8; 4 * BLOCK as usize];
        for i in 0..2 * BLOCK {
            image[(BLOCK + i) as usize] = pattern_byte(7, i);
        }
        assert_eq!(check_claim(&image, claim), Ok(()));
        image[(BLOCK + 700) as usize] ^= 1;
        let err = check_claim(&image, claim).unwrap_err();
        assert!(err.contains("block 2, offset 188"), "{err}");
        let past = DiskClaim { lba: 3, ..claim };
        assert!(check_claim(&image, past).unwrap_err().contains("past the"));
        assert_eq!(parse_disk("DISK 1 2 7"), None, "seed needs 0x");
        assert_eq!(parse_disk("DISK 1 2 0x7 extra"), None, "not a drive");
        assert_eq!(parse_disk("DISK 1 2 0x7 v1").map(|c| c.drive), Some("v1"));
        assert_eq!(parse_disk("DISK 1 2 0x7 v1 x"), None);
    }
}
