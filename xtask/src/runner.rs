//! Runs steps, keeps their outcomes, and prints the summary table.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It ran and succeeded.
    Pass,
    /// It ran and failed.
    Fail,
    /// It could not run here; the reason is printed.
    Skip,
}

/// The steps run so far.
pub struct Runner {
    root: PathBuf,
    rows: Vec<(String, Outcome, f64, String)>,
    /// Counting only: steps pass without running, so that a dry run of a
    /// command learns how many steps the real run will show.
    dry: bool,
    /// The step count of the dry run, shown as `[n/total]`.
    total: Option<usize>,
}

impl Runner {
    /// A runner working from the workspace root.
    pub fn new() -> Self {
        // `cargo run` sets CARGO_MANIFEST_DIR for the process too; prefer it
        // to the compile-time path, which a target directory copied or shared
        // from another checkout would carry over (its xtask looks fresh, so
        // the other checkout's suite would run).
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = manifest_dir
            .parent()
            .expect("xtask lives in the workspace")
            .to_path_buf();
        Self {
            root,
            rows: Vec::new(),
            dry: false,
            total: None,
        }
    }

    /// Runs `plan` twice: once counting its steps without running them,
    /// then for real, each step shown as `[n/total]`. A step that a failure
    /// makes its plan skip leaves the count short, never long.
    pub fn run_counted(&mut self, plan: impl Fn(&mut Self)) {
        let mut counter = Self {
            root: self.root.clone(),
            rows: Vec::new(),
            dry: true,
            total: None,
        };
        plan(&mut counter);
        self.total = Some(counter.rows.len());
        plan(self);
    }

    /// Whether this is the counting pass of [`run_counted`](Self::run_counted).
    pub fn is_dry(&self) -> bool {
        self.dry
    }

    /// `[n/total] name`, for the step about to be recorded.
    fn label(&self, name: &str) -> String {
        match self.total {
            Some(total) => format!("[{}/{total}] {name}", self.rows.len() + 1),
            None => name.to_string(),
        }
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `cargo ARGS` with extra environment, records and returns the outcome.
    pub fn cargo(&mut self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        if self.dry {
            self.record(name, Outcome::Pass, 0.0, "");
            return Outcome::Pass;
        }
        println!("\n==> {}: cargo {}", self.label(name), args.join(" "));
        let start = Instant::now();
        let mut cmd = if args.first().is_some_and(|a| a.starts_with('+')) {
            // Another toolchain: go through the rustup proxy, and drop what the
            // outer (stable) cargo and rustup put in the environment.
            let mut c = Command::new("cargo");
            for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC"] {
                c.env_remove(var);
            }
            c
        } else {
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        };
        let status = cmd
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&self.root)
            .status();
        let outcome = match status {
            Ok(s) if s.success() => Outcome::Pass,
            _ => Outcome::Fail,
        };
        self.rows.push((
            name.to_string(),
            outcome,
            start.elapsed().as_secs_f64(),
            String::new(),
        ));
        outcome
    }

    /// Runs any program, records and returns the outcome.
    pub fn command(&mut self, name: &str, program: &Path, args: &[String]) -> Outcome {
        if self.dry {
            self.record(name, Outcome::Pass, 0.0, "");
            return Outcome::Pass;
        }
        println!(
            "\n==> {}: {} {}",
            self.label(name),
            program.display(),
            args.join(" ")
        );
        let start = Instant::now();
        let status = Command::new(program)
            .args(args)
            .current_dir(&self.root)
            .status();
        let outcome = if status.is_ok_and(|s| s.success()) {
            Outcome::Pass
        } else {
            Outcome::Fail
        };
        self.rows.push((
            name.to_string(),
            outcome,
            start.elapsed().as_secs_f64(),
            String::new(),
        ));
        outcome
    }

    /// Records the outcome of a step that is not a cargo command.
    pub fn record(&mut self, name: &str, outcome: Outcome, seconds: f64, detail: &str) {
        self.rows
            .push((name.to_string(), outcome, seconds, detail.to_string()));
    }

    /// Records a step that cannot run here, with the reason.
    pub fn skip(&mut self, name: &str, why: &str) {
        if !self.dry {
            println!("\n==> {}: SKIP: {why}", self.label(name));
        }
        self.rows
            .push((name.to_string(), Outcome::Skip, 0.0, why.to_string()));
    }

    /// Makes sure a rustup target is installed, adding it if it is not.
    /// Returns false (after recording a SKIP) when that is impossible.
    pub fn ensure_target(&mut self, target: &str) -> bool {
        self.ensure_target_for(None, target)
    }

    /// As [`ensure_target`](Self::ensure_target), for a given toolchain
    /// (`Some("nightly")`) rather than the default one.
    pub fn ensure_target_for(&mut self, toolchain: Option<&str>, target: &str) -> bool {
        if self.dry {
            return true;
        }
        let rustup = |args: &[&str]| {
            let mut c = Command::new("rustup");
            c.args(args);
            if let Some(t) = toolchain {
                c.args(["--toolchain", t]);
            }
            c
        };
        let installed = rustup(&["target", "list", "--installed"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == target)
            });
        match installed {
            Ok(true) => true,
            Ok(false) => {
                let added = rustup(&["target", "add", target])
                    .status()
                    .map(|s| s.success());
                if matches!(added, Ok(true)) {
                    true
                } else {
                    let toolchain = toolchain.map_or(String::new(), |t| format!(" (+{t})"));
                    self.skip(
                        &format!("target {target}{toolchain}"),
                        "rustup could not add the target",
                    );
                    false
                }
            }
            Err(_) => {
                self.skip(
                    &format!("target {target}"),
                    "rustup is not available to add the target",
                );
                false
            }
        }
    }

    /// Prints the summary table and turns the outcomes into an exit code.
    pub fn finish(self) -> ExitCode {
        let width = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(0)
            .max(4);
        println!("\n{:<width$} {:>6} {:>9}", "step", "result", "seconds");
        println!("{}", "-".repeat(width + 17));
        let mut failed = 0;
        for (name, outcome, secs, why) in &self.rows {
            let label = match outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => {
                    failed += 1;
                    "FAIL"
                }
                Outcome::Skip => "SKIP",
            };
            println!(
                "{name:<width$} {label:>6} {secs:>9.1}{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!("  ({why})")
                }
            );
        }
        let passed = self.rows.iter().filter(|r| r.1 == Outcome::Pass).count();
        let skipped = self.rows.iter().filter(|r| r.1 == Outcome::Skip).count();
        println!("\nxtask: {passed} passed, {failed} failed, {skipped} skipped");
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// The host's target triple, from `rustc -vV`.
pub fn host_triple() -> Option<String> {
    let out = Command::new("rustc").arg("-vV").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
}

/// Whether an executable is on PATH.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// The target directory cargo builds into: `CARGO_TARGET_DIR` (relative to
/// the workspace root when relative), else `target/` under the root.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
