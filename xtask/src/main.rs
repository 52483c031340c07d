//! `cargo xtask`: the one entry point for people and CI. The commands are
//! listed, with what they do, in [`COMMANDS`] (`cargo xtask --help`).

mod linux;
mod manifest;
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
        args: "[cargo bench args...]",
        about: "the criterion benches, then a table of their medians",
        run: bench,
    },
    Command {
        name: "loom",
        args: "",
        about: "the loom models at a deeper preemption bound (3)",
        run: |r, _| loom(r, "3"),
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
        about: "the bare-metal NVMe suite on QEMU's aarch64 virt board",
        run: |r, _| qemu_suite(r),
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
        about: "the dma-sg fuzz target for a bounded time (default 300 s)",
        run: |r, args| fuzz(r, args.first().map_or("300", String::as_str)),
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
        "conformance (21 backend configurations)",
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
    aarch64_user_tests(r);
    loom(r, "2");
    miri(r);
    fuzz(r, "30");
    qemu_suite(r);
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
    // The fuzz crate is its own workspace: without CARGO_TARGET_DIR it
    // builds under its own directory.
    let fuzz_target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(_) => runner::target_dir(r.root()),
        None => r.root().join("dma-sg/fuzz/target"),
    };
    let exe = fuzz_target_dir.join(format!("{host}/release/{TARGET_BIN}"));
    let target = runner::target_dir(r.root());
    let corpus = target.join(format!("fuzz-corpus/{TARGET_BIN}"));
    let artifacts = target.join("fuzz-artifacts");
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
    if r.is_dry() {
        return r.record(name, Outcome::Pass, 0.0, "");
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
/// them. `--workspace` verifies each crate against the packages of its
/// unpublished siblings (a local registry overlay), so each is built from
/// its .crate file alone, as crates.io users will build it.
fn package(r: &mut Runner) {
    r.cargo(
        "package (verified)",
        &[
            "package",
            "--workspace",
            "--exclude",
            "xtask",
            "--allow-dirty",
        ],
        &[],
    );
}

/// The library crates checked on the declared MSRV toolchain, with the
/// committed lockfile (`--locked`): resolver "3" keeps it MSRV-compatible.
fn msrv(r: &mut Runner) {
    let version = match manifest::rust_version(r.root()) {
        Ok(v) => v,
        Err(why) => return r.record("msrv", Outcome::Fail, 0.0, &why),
    };
    let name = format!("msrv {version}");
    if !has_toolchain(&version) {
        let why = format!(
            "Rust {version} is not installed (rustup toolchain install {version} --profile minimal)"
        );
        return r.skip(&name, &why);
    }
    let crates = match manifest::library_crates(r.root()) {
        Ok(crates) => crates,
        Err(why) => return r.record(&name, Outcome::Fail, 0.0, &why),
    };
    let toolchain = format!("+{version}");
    let mut args = vec![toolchain.as_str(), "check", "--locked", "--all-targets"];
    for c in &crates {
        args.extend(["-p", c.name.as_str()]);
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

fn bench(r: &mut Runner, extra: &[String]) {
    let mut args = vec!["bench", "--workspace", "--exclude", "xtask"];
    args.extend(extra.iter().map(String::as_str));
    if r.cargo("benches", &args, &[]) == Outcome::Pass {
        runner::print_criterion_table(r.root());
    }
}
