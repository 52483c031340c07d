//! `cargo xtask`: the one entry point for people and CI. The commands are
//! listed, with what they do, in [`COMMANDS`] (`cargo xtask --help`).

mod bench;
mod linux;
mod manifest;
mod qemu;
mod qemu_riscv;
mod runner;

use std::process::ExitCode;

use runner::{Outcome, Runner};

/// Library crates that must build for bare-metal targets, with default
/// features (which add only `alloc`) and without.
const NO_STD_CRATES: &[&str] = &[
    "dma-core",
    "dma-coherence",
    "dma-sg",
    "dma-ring",
    "dma-direct",
    "dma-iommu",
    "dma-bounce",
    "dma-drivers",
];

/// Library crates whose default features include `std`: built for bare
/// metal without default features only.
const NO_STD_ONLY_WITHOUT_DEFAULTS: &[&str] = &["dma-check"];

/// Bare-metal targets every library crate builds for.
const NO_STD_TARGETS: &[&str] = &[
    "aarch64-unknown-none",
    "riscv64gc-unknown-none-elf",
    "thumbv7em-none-eabihf",
];

/// A command: its name, its arguments, and what it does.
struct Command {
    name: &'static str,
    args: &'static str,
    about: &'static str,
    run: fn(&mut Runner, &[String]),
}

const COMMANDS: &[Command] = &[
    Command {
        name: "test",
        args: "",
        about: "every check CI runs (fmt, clippy, tests, docs as docs.rs builds them, \
                packaging, the MSRV, no_std builds, qemu-user, loom, miri, fuzz, QEMU), \
                each step numbered, with a summary table",
        run: |r, _| r.run_counted(test),
    },
    Command {
        name: "demo",
        args: "",
        about: "the reference drivers on the mock hardware's presets",
        run: |r, _| demo(r),
    },
    Command {
        name: "bench",
        args: "[--quick] [cargo bench args...] [-- criterion args...]",
        about: "the criterion benches, then one table: each measure beside its peer or limit \
                from the same run (rtrb, crossbeam's ArrayQueue, memcpy, the raw-pointer \
                baseline, the bare platform, the issue's targets) and the ratio; --quick for \
                a fast, rougher look (criterion's --quick, short warm-up and measurement)",
        run: bench::run,
    },
    Command {
        name: "loom",
        args: "",
        about: "the loom models at a deeper preemption bound (3)",
        run: |r, _| loom(r, "3"),
    },
    Command {
        name: "miri",
        args: "",
        about: "the miri step of `test` alone (dma-core, dma-direct, dma-ring and dma-sg \
                with their integration tests, dma-check)",
        run: |r, _| miri(r),
    },
    Command {
        name: "doc",
        args: "",
        about: "the documentation exactly as docs.rs builds it (nightly, --cfg docsrs, \
                all features, every target in [package.metadata.docs.rs]; warnings denied; \
                and the README's example the same as the one dma-direct runs as a doctest)",
        run: |r, _| r.run_counted(doc),
    },
    Command {
        name: "package",
        args: "",
        about: "cargo package of every published crate, each verified by a build",
        run: |r, _| package(r),
    },
    Command {
        name: "msrv",
        args: "",
        about: "the library crates checked on the declared rust-version toolchain",
        run: |r, _| msrv(r),
    },
    Command {
        name: "qemu",
        args: "",
        about: "the bare-metal NVMe suites on QEMU's virt boards: aarch64 (with SMMUv3) \
                and riscv64 (M-mode)",
        run: |r, _| {
            qemu_suite(r);
            qemu_riscv_suite(r);
        },
    },
    Command {
        name: "linux",
        args: "",
        about: "the VFIO suite in Linux guests under QEMU TCG (x86_64 with intel-iommu, \
                aarch64 with SMMUv3), with the disk image checked afterwards",
        run: |r, _| linux_suite(r),
    },
    Command {
        name: "fuzz",
        args: "[seconds]",
        about: "every fuzz target of every fuzz crate (*/fuzz, platforms/*/fuzz), \
                each for the seconds given (default 300)",
        run: |r, args| match args.first().map_or(Ok(300), |s| s.parse()) {
            Ok(seconds) => fuzz(r, FuzzTime::Each(seconds)),
            Err(_) => r.record("fuzz", Outcome::Fail, 0.0, "seconds must be a whole number"),
        },
    },
];

fn print_help() {
    println!("cargo xtask: the project's one entry point for people and CI\n");
    println!("usage: cargo xtask <command> [args]\n\ncommands:");
    for c in COMMANDS {
        let usage = format!("{} {}", c.name, c.args);
        println!("  {usage:<28} {}", first_clause(c.about));
    }
    println!("\n`cargo xtask help <command>` or `cargo xtask <command> --help` says more.");
}

fn print_command_help(c: &Command) {
    let usage = format!("cargo xtask {} {}", c.name, c.args);
    println!("usage: {}\n\n{}.", usage.trim_end(), c.about);
}

/// The summary line of a command's description.
fn first_clause(about: &str) -> &str {
    about.split(" (").next().unwrap_or(about)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(first) = args.first().map(String::as_str) else {
        print_help();
        return ExitCode::from(2);
    };
    let find = |name: &str| COMMANDS.iter().find(|c| c.name == name);
    match first {
        "-h" | "--help" | "help" => {
            match args.get(1) {
                None => print_help(),
                Some(name) => match find(name) {
                    Some(c) => print_command_help(c),
                    None => return unknown(name),
                },
            }
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let Some(command) = find(first) else {
        return unknown(first);
    };
    let rest = &args[1..];
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        print_command_help(command);
        return ExitCode::SUCCESS;
    }
    let mut runner = Runner::new();
    (command.run)(&mut runner, rest);
    runner.finish()
}

fn unknown(name: &str) -> ExitCode {
    let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
    eprintln!(
        "cargo xtask: unknown command `{name}`; the commands are {} (`cargo xtask --help`)",
        names.join(", ")
    );
    ExitCode::from(2)
}

fn test(r: &mut Runner) {
    r.cargo("fmt", &["fmt", "--all", "--check"], &[]);
    r.cargo(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    r.cargo(
        "tests",
        &[
            "test",
            "--workspace",
            "--exclude",
            "dma-conformance",
            "--lib",
            "--bins",
            "--tests",
            "--examples",
        ],
        &[],
    );
    // Its own row, so the table shows the contract held everywhere.
    r.cargo(
        "conformance (29 backend configurations)",
        &["test", "-p", "dma-conformance"],
        &[],
    );
    r.cargo("doc tests", &["test", "--workspace", "--doc"], &[]);
    doc(r);
    package(r);
    msrv(r);
    for target in NO_STD_TARGETS {
        if !r.ensure_target(target) {
            continue;
        }
        let mut args = vec!["build", "--target", target, "--no-default-features"];
        for c in NO_STD_CRATES {
            args.extend(["-p", c]);
        }
        let with_alloc: Vec<&str> = args
            .iter()
            .copied()
            .filter(|a| *a != "--no-default-features")
            .collect();
        for c in NO_STD_ONLY_WITHOUT_DEFAULTS {
            args.extend(["-p", c]);
        }
        r.cargo(&format!("no_std {target}"), &args, &[]);
        r.cargo(&format!("no_std+alloc {target}"), &with_alloc, &[]);
    }
    user_tests(r);
    loom(r, "2");
    miri(r);
    fuzz(r, FuzzTime::Total(CI_FUZZ_SECONDS));
    qemu_suite(r);
    qemu_riscv_suite(r);
    linux_suite(r);
}

/// The VFIO suite in a Linux guest per architecture (`xtask/src/linux.rs`).
fn linux_suite(r: &mut Runner) {
    for arch in &linux::ARCHES {
        let name = format!("linux {} VFIO suite", arch.name);
        let missing = linux::missing(arch);
        if !missing.is_empty() {
            r.skip(
                &name,
                &format!("missing {} (apt-get install them)", missing.join(", ")),
            );
            continue;
        }
        if !r.ensure_target(arch.target()) {
            continue;
        }
        if r.is_dry() {
            r.record(&name, Outcome::Pass, 0.0, "");
            continue;
        }
        let start = std::time::Instant::now();
        match linux::run(r.root(), arch) {
            Ok(summary) => {
                summary.print();
                let outcome = if summary.passed() {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                };
                r.record(
                    &name,
                    outcome,
                    start.elapsed().as_secs_f64(),
                    &summary.problems().join("; "),
                );
            }
            Err(why) => r.record(&name, Outcome::Fail, start.elapsed().as_secs_f64(), &why),
        }
    }
}

/// How long `cargo xtask test` fuzzes in all, shared among the targets.
const CI_FUZZ_SECONDS: u64 = 120;

/// How long each fuzz target runs.
#[derive(Clone, Copy)]
enum FuzzTime {
    /// Every target this long (`cargo xtask fuzz [seconds]`).
    Each(u64),
    /// This long in all, split evenly (at least 5 s each).
    Total(u64),
}

/// One libFuzzer target: the fuzz crate's directory (relative to the
/// root) and the `[[bin]]` name.
struct FuzzTarget {
    dir: std::path::PathBuf,
    bin: String,
}

/// Every fuzz crate (`*/fuzz/Cargo.toml`, `platforms/*/fuzz/Cargo.toml`)
/// and its `[[bin]]` targets, in path order.
fn fuzz_targets(root: &std::path::Path) -> Vec<FuzzTarget> {
    let mut dirs = Vec::new();
    for parent in [root.to_path_buf(), root.join("platforms")] {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        for entry in entries.flatten() {
            let fuzz = entry.path().join("fuzz");
            if fuzz.join("Cargo.toml").is_file() {
                dirs.push(fuzz);
            }
        }
    }
    dirs.sort();
    let mut targets = Vec::new();
    for dir in dirs {
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let rel = dir.strip_prefix(root).unwrap_or(&dir).to_path_buf();
        for bin in bin_names(&manifest) {
            targets.push(FuzzTarget {
                dir: rel.clone(),
                bin,
            });
        }
    }
    targets
}

/// The `name` of every `[[bin]]` table in a Cargo manifest.
fn bin_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            let Some(value) = line.strip_prefix("name").map(str::trim_start) else {
                continue;
            };
            if let Some(value) = value.strip_prefix('=') {
                names.push(value.trim().trim_matches('"').to_string());
            }
        }
    }
    names
}

/// Every fuzz target of every fuzz crate, built the way `cargo fuzz build
/// -O` builds them but without needing cargo-fuzz installed, then each run
/// for its share of `time`.
fn fuzz(r: &mut Runner, time: FuzzTime) {
    let targets = fuzz_targets(r.root());
    if targets.is_empty() {
        r.skip("fuzz", "no fuzz crates found (*/fuzz/Cargo.toml)");
        return;
    }
    let seconds = match time {
        FuzzTime::Each(s) => s,
        FuzzTime::Total(s) => (s / targets.len() as u64).max(5),
    };
    let Some(host) = runner::host_triple() else {
        r.skip("fuzz", "cannot tell the host triple from rustc -vV");
        return;
    };
    let has_nightly = std::process::Command::new("cargo")
        .args(["+nightly", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nightly {
        r.skip(
            "fuzz",
            "libFuzzer's instrumentation needs a nightly toolchain",
        );
        return;
    }
    // cargo fuzz's flags; --target keeps them off build scripts and proc macros.
    let rustflags = [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg fuzzing",
        "-Cllvm-args=-simplifycfg-branch-fold-threshold=0",
        "-Zsanitizer=address",
        "-Cllvm-args=-sanitizer-coverage-stack-depth",
        "-Ccodegen-units=1",
        "-Cdebug-assertions",
    ]
    .join(" ");
    // One target directory for every fuzz crate (each is its own
    // workspace), beside the root's.
    let target_root = runner::target_dir(r.root());
    let target_dir = target_root.join("fuzz").display().to_string();
    let artifacts = target_root.join("fuzz-artifacts");
    let mut built_dirs: Vec<(std::path::PathBuf, bool)> = Vec::new();
    for target in &targets {
        let built = match built_dirs.iter().find(|(d, _)| *d == target.dir) {
            Some(&(_, ok)) => ok,
            None => {
                let manifest = target.dir.join("Cargo.toml").display().to_string();
                let build = [
                    "+nightly",
                    "build",
                    "--manifest-path",
                    &manifest,
                    "--release",
                    "--bins",
                    "--target",
                    &host,
                    "--target-dir",
                    &target_dir,
                ];
                let name = format!("fuzz build {}", target.dir.display());
                let ok = r.cargo(&name, &build, &[("RUSTFLAGS", &rustflags)]) == Outcome::Pass;
                built_dirs.push((target.dir.clone(), ok));
                ok
            }
        };
        let name = format!("fuzz {} ({seconds} s)", target.bin);
        if !built {
            r.record(&name, Outcome::Fail, 0.0, "its fuzz crate did not build");
            continue;
        }
        let exe = std::path::Path::new(&target_dir).join(format!("{host}/release/{}", target.bin));
        let corpus = target_root.join(format!("fuzz-corpus/{}", target.bin));
        if let Err(e) = std::fs::create_dir_all(&corpus).and(std::fs::create_dir_all(&artifacts)) {
            let why = format!("cannot create {}: {e}", corpus.display());
            r.record(&name, Outcome::Fail, 0.0, &why);
            continue;
        }
        let args = [
            format!("-max_total_time={seconds}"),
            "-rss_limit_mb=2048".to_string(),
            "-print_final_stats=1".to_string(),
            format!("-artifact_prefix={}/", artifacts.display()),
            corpus.display().to_string(),
        ];
        r.command(&name, &exe, &args);
    }
}

/// The bare-metal NVMe suite on QEMU's virt board (platforms/qemu-virt).
fn qemu_suite(r: &mut Runner) {
    let name = "qemu aarch64 virt suite (NVMe, virtio-blk, NIC pair; direct and SMMUv3)";
    if !qemu::installed() {
        r.skip(
            name,
            "qemu-system-aarch64 not installed (apt-get install qemu-system-arm)",
        );
        return;
    }
    if !r.ensure_target("aarch64-unknown-none") {
        return;
    }
    if r.is_dry() {
        return r.record(name, Outcome::Pass, 0.0, "");
    }
    let start = std::time::Instant::now();
    let result = qemu::run(r.root());
    record_qemu(r, name, start, result);
}

/// The bare-metal NVMe suite on QEMU's riscv64 virt board
/// (platforms/qemu-riscv).
fn qemu_riscv_suite(r: &mut Runner) {
    let name = "qemu riscv64 virt NVMe suite";
    if !qemu_riscv::installed() {
        let why = format!(
            "{} not installed (apt-get install {})",
            qemu_riscv::QEMU,
            qemu_riscv::PACKAGE
        );
        return r.skip(name, &why);
    }
    if !r.ensure_target(qemu_riscv::TARGET) {
        return;
    }
    if r.is_dry() {
        return r.record(name, Outcome::Pass, 0.0, "");
    }
    let start = std::time::Instant::now();
    let result = qemu_riscv::run(r.root());
    record_qemu(r, name, start, result);
}

/// Prints a QEMU suite's summary and records its step.
fn record_qemu(
    r: &mut Runner,
    name: &str,
    start: std::time::Instant,
    result: Result<qemu::QemuSummary, String>,
) {
    let seconds = start.elapsed().as_secs_f64();
    match result {
        Ok(summary) => {
            summary.print();
            let outcome = if summary.passed() {
                Outcome::Pass
            } else {
                Outcome::Fail
            };
            r.record(name, outcome, seconds, &summary.problems().join("; "));
        }
        Err(why) => r.record(name, Outcome::Fail, seconds, &why),
    }
}

/// Miri over the crates with the most unsafe code, where nightly has it.
fn miri(r: &mut Runner) {
    let name = "miri";
    let has_miri = std::process::Command::new("cargo")
        .args(["+nightly", "miri", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_miri {
        r.skip(name, "no nightly toolchain with the miri component (rustup +nightly component add miri rust-src)");
        return;
    }
    r.cargo(
        name,
        &[
            "+nightly",
            "miri",
            "test",
            "-p",
            "dma-core",
            "--lib",
            "-p",
            "dma-direct",
            "--tests",
        ],
        // embedded-dma buffers are `'static`: those tests leak theirs on
        // purpose (`Box::leak`); proptest persists failures to files.
        &[
            ("PROPTEST_CASES", "16"),
            ("MIRIFLAGS", "-Zmiri-ignore-leaks -Zmiri-disable-isolation"),
        ],
    );
    // The rings' and the SG tables' unit and integration tests (every
    // unsafe ring-memory access, the device models, the encoders), with few
    // proptest cases and `common::iterations` cutting the device-thread
    // loops; what cannot finish in minutes under Miri (65,536-entry rings,
    // 70,000 requests) is `cfg_attr(miri, ignore = "why")`.
    r.cargo(
        "miri dma-ring + dma-sg",
        &[
            "+nightly", "miri", "test", "-p", "dma-ring", "-p", "dma-sg", "--tests",
        ],
        // The tests leak their `&'static` platforms on purpose.
        &[
            ("PROPTEST_CASES", "4"),
            ("MIRIFLAGS", "-Zmiri-ignore-leaks -Zmiri-disable-isolation"),
        ],
    );
    // The reference drivers' own unsafe: the volatile register window and
    // the rings' teardown, with the transports' unit tests over fake
    // register spaces. (Their end-to-end runs on the sim are too slow under
    // Miri; the sim's detector and dma-check watch those.)
    r.cargo(
        "miri dma-drivers",
        &["+nightly", "miri", "test", "-p", "dma-drivers", "--lib"],
        &[],
    );
    // The checker's bookkeeping, one test per misuse class. (Its threaded
    // correct-use test passes under miri too, but takes minutes; it is
    // left to `cargo +nightly miri test` by hand.)
    r.cargo(
        "miri dma-check",
        &[
            "+nightly",
            "miri",
            "test",
            "-p",
            "dma-check",
            "--lib",
            "--test",
            "classes",
        ],
        &[],
    );
}

/// A Linux target whose tests run under qemu-user, with the emulator and
/// cross linker `.cargo/config.toml` names for it and the Debian packages
/// that provide them (`.ci/run` installs those).
struct UserTarget {
    triple: &'static str,
    why: &'static str,
    qemu: &'static str,
    linker: &'static str,
    packages: &'static str,
    crates: &'static [&'static str],
}

/// The portable crates: no host-only code, so their tests say something
/// about every architecture.
const PORTABLE_CRATES: &[&str] = &[
    "dma-core",
    "dma-coherence",
    "dma-sg",
    "dma-ring",
    "dma-direct",
    "dma-iommu",
    "dma-bounce",
];

const USER_TARGETS: &[UserTarget] = &[
    UserTarget {
        triple: "aarch64-unknown-linux-gnu",
        why: "the real `dc` instructions",
        qemu: "qemu-aarch64",
        linker: "aarch64-linux-gnu-gcc",
        packages: "qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
        crates: &["dma-core", "dma-coherence", "dma-direct"],
    },
    UserTarget {
        triple: "riscv64gc-unknown-linux-gnu",
        why: "riscv64",
        qemu: "qemu-riscv64",
        linker: "riscv64-linux-gnu-gcc",
        packages: "qemu-user gcc-riscv64-linux-gnu libc6-dev-riscv64-cross",
        crates: PORTABLE_CRATES,
    },
    UserTarget {
        triple: "armv7-unknown-linux-gnueabihf",
        why: "32-bit pointers with 64-bit DMA addresses",
        qemu: "qemu-arm",
        linker: "arm-linux-gnueabihf-gcc",
        packages: "qemu-user gcc-arm-linux-gnueabihf libc6-dev-armhf-cross",
        crates: PORTABLE_CRATES,
    },
];

/// Each [`UserTarget`]'s tests under qemu-user (library and integration
/// tests; doc tests stay on the host).
fn user_tests(r: &mut Runner) {
    for t in USER_TARGETS {
        let name = format!("{} tests (qemu-user: {})", t.triple, t.why);
        let missing = [t.qemu, t.linker]
            .into_iter()
            .find(|tool| !runner::on_path(tool));
        if let Some(tool) = missing {
            let why = format!("{tool} not installed (apt-get install {})", t.packages);
            r.skip(&name, &why);
            continue;
        }
        if !r.ensure_target(t.triple) {
            continue;
        }
        let mut args = vec!["test", "--target", t.triple, "--lib", "--tests"];
        for c in t.crates {
            args.extend(["-p", c]);
        }
        r.cargo(&name, &args, &[]);
    }
}

fn loom(r: &mut Runner, preemptions: &str) {
    let flags = "--cfg dma_loom";
    let env = [
        ("RUSTFLAGS", flags),
        ("LOOM_MAX_PREEMPTIONS", preemptions),
        ("CARGO_TARGET_DIR", "target/loom"),
    ];
    r.cargo(
        &format!("loom models (preemptions {preemptions})"),
        &[
            "test",
            "--release",
            "-p",
            "dma-ring",
            "--lib",
            "--tests",
            "loom",
        ],
        &env,
    );
}

/// The documentation as docs.rs builds it: per published crate and per
/// target in its `[package.metadata.docs.rs]`, `cargo +nightly rustdoc --lib`
/// with every feature and `--cfg docsrs` for that crate only (not its
/// dependencies), plus warnings denied. First, that the README's example is
/// the tested one.
fn doc(r: &mut Runner) {
    readme_example(r);
    let crates = match manifest::library_crates(r.root()) {
        Ok(crates) => crates,
        Err(why) => return r.record("docs.rs docs", Outcome::Fail, 0.0, &why),
    };
    if !has_toolchain("nightly") {
        return r.skip(
            "docs.rs docs",
            "docs.rs builds with nightly: rustup toolchain install nightly",
        );
    }
    for c in &crates {
        for target in &c.docs_rs_targets {
            let name = format!("docs.rs {} {target}", c.name);
            if !r.ensure_target_for(Some("nightly"), target) {
                continue;
            }
            let args = [
                "+nightly",
                "rustdoc",
                "--lib",
                "-p",
                &c.name,
                "--all-features",
                "--target",
                target,
            ];
            let env = [
                ("RUSTDOCFLAGS", "--cfg docsrs -D warnings"),
                ("DOCS_RS", "1"),
            ];
            r.cargo(&name, &args, &env);
        }
    }
}

/// `cargo package` of every published crate, as `cargo publish` would make
/// them. Packaging several at once verifies each against the packages of
/// its unpublished siblings (a local registry overlay), so each is built
/// from its .crate file alone, as crates.io users will build it.
fn package(r: &mut Runner) {
    let name = "package (verified)";
    let crates = match manifest::library_crates(r.root()) {
        Ok(crates) => crates,
        Err(why) => return r.record(name, Outcome::Fail, 0.0, &why),
    };
    // Verification builds our unpublished crates as registry packages, and
    // cargo never rebuilds a registry package of the same version: a
    // previous run's build of them would stand in for today's sources.
    let stale = runner::target_dir(r.root()).join("package");
    let cleared = if r.is_dry() {
        Ok(())
    } else {
        std::fs::remove_dir_all(&stale)
    };
    if let Err(e) = cleared {
        if e.kind() != std::io::ErrorKind::NotFound {
            let why = format!("cannot clear {}: {e}", stale.display());
            return r.record(name, Outcome::Fail, 0.0, &why);
        }
    }
    // Cargo also never re-extracts a registry package of the same version:
    // the overlay's sources unpacked by a previous run (under
    // `$CARGO_HOME/registry/src/-<hash>/`, the local registries' directories)
    // would stand in for today's too. crates.io's own directories are left alone.
    if !r.is_dry() {
        if let Err(why) = clear_overlay_sources(&crates) {
            return r.record(name, Outcome::Fail, 0.0, &why);
        }
    }
    let mut args = vec!["package", "--allow-dirty"];
    for c in &crates {
        args.extend(["-p", c.name.as_str()]);
    }
    // And the verification builds get a target directory of their own,
    // cleared with the rest: in a shared one (`CARGO_TARGET_DIR`), a
    // previous run's build of a same-version registry package was reused.
    let verify = stale.join("verify");
    let verify = verify.display().to_string();
    r.cargo(name, &args, &[("CARGO_TARGET_DIR", verify.as_str())]);
}

/// Removes the unpacked sources of `crates` (any version) from cargo's
/// local-registry source directories, whose names start with `-`.
fn clear_overlay_sources(crates: &[manifest::LibraryCrate]) -> Result<(), String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(unpacked) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for dir in unpacked.flatten() {
            let file_name = dir.file_name();
            let dir_name = file_name.to_string_lossy();
            let ours = crates.iter().any(|c| {
                dir_name
                    .strip_prefix(c.name.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|v| v.starts_with(|ch: char| ch.is_ascii_digit()))
            });
            if ours {
                std::fs::remove_dir_all(dir.path())
                    .map_err(|e| format!("cannot clear {}: {e}", dir.path().display()))?;
            }
        }
    }
    Ok(())
}

/// The library crates checked on the declared MSRV toolchain, with the
/// committed lockfile (`--locked`): resolver "3" keeps it MSRV-compatible.
/// A crate declaring its own `rust-version` (its dependencies need a newer
/// compiler) is checked on that one, as a step of its own.
fn msrv(r: &mut Runner) {
    let workspace = match manifest::rust_version(r.root()) {
        Ok(v) => v,
        Err(why) => return r.record("msrv", Outcome::Fail, 0.0, &why),
    };
    let crates = match manifest::library_crates(r.root()) {
        Ok(crates) => crates,
        Err(why) => return r.record(&format!("msrv {workspace}"), Outcome::Fail, 0.0, &why),
    };
    let mut versions: Vec<String> = vec![workspace.clone()];
    for c in &crates {
        if let Some(v) = &c.rust_version {
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
    }
    for version in &versions {
        let on_it: Vec<&str> = crates
            .iter()
            .filter(|c| c.rust_version.as_ref().unwrap_or(&workspace) == version)
            .map(|c| c.name.as_str())
            .collect();
        msrv_check(r, version, &on_it);
    }
}

fn msrv_check(r: &mut Runner, version: &str, crates: &[&str]) {
    let name = format!("msrv {version}");
    if !has_toolchain(version) {
        let why = format!(
            "Rust {version} is not installed (rustup toolchain install {version} --profile minimal)"
        );
        return r.skip(&name, &why);
    }
    let toolchain = format!("+{version}");
    let mut args = vec![toolchain.as_str(), "check", "--locked", "--all-targets"];
    for c in crates {
        args.extend(["-p", c]);
    }
    let target_dir = runner::target_dir(r.root()).join("msrv");
    let target_dir = target_dir.display().to_string();
    r.cargo(&name, &args, &[("CARGO_TARGET_DIR", &target_dir)]);
}

/// Whether rustup has `toolchain` (`nightly`, `1.85`).
fn has_toolchain(toolchain: &str) -> bool {
    std::process::Command::new("cargo")
        .args([&format!("+{toolchain}"), "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The workspace README's mapping example must be dma-direct's README's,
/// which runs as a doctest there.
fn readme_example(r: &mut Runner) {
    let name = "README example = dma-direct's doctest";
    let example = |path: &str| -> Option<String> {
        let text = std::fs::read_to_string(r.root().join(path)).ok()?;
        let start = text.find("```rust\n")?;
        let len = text[start + 1..].find("```\n")? + 5;
        Some(text[start..start + len].to_string())
    };
    let (ours, tested) = (example("README.md"), example("platforms/direct/README.md"));
    let outcome = if ours.is_some() && ours == tested {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    let why = if outcome == Outcome::Pass {
        ""
    } else {
        "the first ```rust block of README.md and platforms/direct/README.md differ: copy the tested one"
    };
    r.record(name, outcome, 0.0, why);
}

fn demo(r: &mut Runner) {
    if r.root()
        .join("platforms/sim-presets/examples/demo.rs")
        .exists()
    {
        r.cargo(
            "demo",
            &[
                "run",
                "--release",
                "-p",
                "dma-sim-presets",
                "--example",
                "demo",
            ],
            &[],
        );
    } else {
        // Until the mock hardware's demo lands, the demo is the examples there are.
        r.cargo(
            "example map_buffer",
            &[
                "run",
                "--release",
                "-p",
                "dma-direct",
                "--example",
                "map_buffer",
            ],
            &[],
        );
    }
    // Bugs the mock hardware catches, each with its report.
    r.cargo(
        "bug catalogue",
        &[
            "run",
            "--release",
            "-p",
            "dma-sim",
            "--example",
            "bug_catalogue",
        ],
        &[],
    );
}
