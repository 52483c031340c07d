//! `cargo xtask`: the one entry point for people and CI.
//!
//! - `test`: every check CI runs, with a summary table at the end.
//! - `demo`: the main job, the reference drivers on the mock hardware.
//! - `bench`: the criterion benches, with a table of the figures.
//! - `loom`: the loom models at a deeper preemption bound.
//! - `doc`: the documentation as docs.rs builds it.
//! - `qemu`: the bare-metal NVMe suite on QEMU's aarch64 virt board.

mod qemu;
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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut runner = Runner::new();
    match args.first().map(String::as_str) {
        Some("test") => test(&mut runner),
        Some("demo") => demo(&mut runner),
        Some("bench") => bench(&mut runner, &args[1..]),
        Some("loom") => loom(&mut runner, "3"),
        Some("doc") => doc(&mut runner),
        Some("qemu") => qemu_suite(&mut runner),
        Some("fuzz") => match args.get(1).map_or(Ok(300), |s| s.parse()) {
            Ok(seconds) => fuzz(&mut runner, FuzzTime::Each(seconds)),
            Err(_) => {
                eprintln!("cargo xtask fuzz [seconds]: seconds must be a whole number");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: cargo xtask <test|demo|bench|loom|doc|qemu|fuzz [seconds]>");
            return ExitCode::from(2);
        }
    }
    runner.finish()
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
            "--lib",
            "--bins",
            "--tests",
            "--examples",
        ],
        &[],
    );
    r.cargo("doc tests", &["test", "--workspace", "--doc"], &[]);
    doc(r);
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
    aarch64_user_tests(r);
    loom(r, "2");
    miri(r);
    fuzz(r, FuzzTime::Total(CI_FUZZ_SECONDS));
    qemu_suite(r);
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
    let target_dir = r.root().join("target/fuzz");
    let target_dir = target_dir.display().to_string();
    let artifacts = r.root().join("target/fuzz-artifacts");
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
        let corpus = r.root().join(format!("target/fuzz-corpus/{}", target.bin));
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
    let name = "qemu virt NVMe + SMMUv3 suite";
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
    let start = std::time::Instant::now();
    match qemu::run(r.root()) {
        Ok(summary) => {
            summary.print();
            let outcome = if summary.passed() {
                Outcome::Pass
            } else {
                Outcome::Fail
            };
            r.record(
                name,
                outcome,
                start.elapsed().as_secs_f64(),
                &summary.problems().join("; "),
            );
        }
        Err(why) => r.record(name, Outcome::Fail, start.elapsed().as_secs_f64(), &why),
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
        &[],
    );
    // The rings (every unsafe ring-memory access, the hostile-device
    // tests) and the SG tables, with few proptest cases; the slowest tests
    // are `cfg_attr(miri, ignore)`.
    r.cargo(
        "miri dma-ring + dma-sg",
        &[
            "+nightly", "miri", "test", "-p", "dma-ring", "-p", "dma-sg", "--lib", "--tests",
        ],
        // The tests leak their `&'static` platforms on purpose.
        &[
            ("PROPTEST_CASES", "4"),
            ("MIRIFLAGS", "-Zmiri-ignore-leaks"),
        ],
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

/// The aarch64 tests under qemu-user, where the real `dc` instructions run.
fn aarch64_user_tests(r: &mut Runner) {
    const TARGET: &str = "aarch64-unknown-linux-gnu";
    let name = "aarch64 tests (qemu-user)";
    for tool in ["qemu-aarch64", "aarch64-linux-gnu-gcc"] {
        if !runner::on_path(tool) {
            r.skip(
                name,
                &format!("{tool} not installed (apt-get install qemu-user gcc-aarch64-linux-gnu)"),
            );
            return;
        }
    }
    if !r.ensure_target(TARGET) {
        return;
    }
    r.cargo(
        name,
        &[
            "test",
            "--target",
            TARGET,
            "-p",
            "dma-core",
            "-p",
            "dma-coherence",
            "-p",
            "dma-direct",
        ],
        &[],
    );
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

fn doc(r: &mut Runner) {
    r.cargo(
        "cargo doc",
        &[
            "doc",
            "--workspace",
            "--no-deps",
            "--all-features",
            "--exclude",
            "xtask",
        ],
        &[("RUSTDOCFLAGS", "-D warnings")],
    );
    // The per-architecture modules, as docs.rs documents them for its
    // aarch64 and riscv64 targets (bare-metal targets stand in here).
    for target in ["aarch64-unknown-none", "riscv64gc-unknown-none-elf"] {
        if r.ensure_target(target) {
            let args = [
                "doc",
                "--no-deps",
                "--target",
                target,
                "-p",
                "dma-coherence",
                "-p",
                "dma-direct",
            ];
            r.cargo(
                &format!("cargo doc {target}"),
                &args,
                &[("RUSTDOCFLAGS", "-D warnings")],
            );
        }
    }
}

fn demo(r: &mut Runner) {
    if r.root().join("platforms/sim/examples/demo.rs").exists() {
        r.cargo(
            "demo",
            &["run", "--release", "-p", "dma-sim", "--example", "demo"],
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
}

fn bench(r: &mut Runner, extra: &[String]) {
    let mut args = vec!["bench", "--workspace", "--exclude", "xtask"];
    args.extend(extra.iter().map(String::as_str));
    if r.cargo("benches", &args, &[]) == Outcome::Pass {
        runner::print_criterion_table();
    }
}
