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
        Some("fuzz") => fuzz(&mut runner, args.get(1).map_or("300", String::as_str)),
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
    user_tests(r);
    loom(r, "2");
    miri(r);
    fuzz(r, "30");
    qemu_suite(r);
}

/// The dma-sg fuzz target (table builder + PRP encoder), built the way
/// `cargo fuzz build -O` builds it but without needing cargo-fuzz
/// installed, then run for a bounded time.
fn fuzz(r: &mut Runner, seconds: &str) {
    const TARGET_BIN: &str = "sg_build_prp";
    let name = format!("fuzz {TARGET_BIN} ({seconds} s)");
    let Some(host) = runner::host_triple() else {
        r.skip(&name, "cannot tell the host triple from rustc -vV");
        return;
    };
    let has_nightly = std::process::Command::new("cargo")
        .args(["+nightly", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nightly {
        r.skip(
            &name,
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
    let build = [
        "+nightly",
        "build",
        "--manifest-path",
        "dma-sg/fuzz/Cargo.toml",
        "--release",
        "--target",
        &host,
        "--bin",
        TARGET_BIN,
    ];
    if r.cargo(
        &format!("fuzz build {TARGET_BIN}"),
        &build,
        &[("RUSTFLAGS", &rustflags)],
    ) != Outcome::Pass
    {
        return;
    }
    let exe = r
        .root()
        .join(format!("dma-sg/fuzz/target/{host}/release/{TARGET_BIN}"));
    let corpus = r.root().join(format!("target/fuzz-corpus/{TARGET_BIN}"));
    let artifacts = r.root().join("target/fuzz-artifacts");
    for dir in [&corpus, &artifacts] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            let why = format!("cannot create {}: {e}", dir.display());
            r.record(&name, Outcome::Fail, 0.0, &why);
            return;
        }
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
    // The checker's bookkeeping, one test per misuse class. (Its threaded
    // correct-use test and dma-ring's proptests pass under miri too, but
    // take minutes; they are left to `cargo +nightly miri test` by hand.)
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
