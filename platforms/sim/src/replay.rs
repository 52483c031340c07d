//! Replaying a failing run: the environment can force the seed of every
//! machine, and a report's panic prints the one command that does so.

/// The environment variable that forces every machine's seed.
pub const SEED_VAR: &str = "DMA_SIM_SEED";

/// The seed the environment forces, if any.
pub(crate) fn forced_seed() -> Option<u64> {
    std::env::var(SEED_VAR).ok()?.trim().parse().ok()
}

/// The command that reruns the current test with `seed`: the package and
/// test target from the running binary, the test from the thread's name
/// (the test harness names each test's thread after it).
pub(crate) fn command(seed: u64) -> String {
    let mut cmd = format!("replay: {SEED_VAR}={seed} cargo test");
    let package = std::env::var("CARGO_PKG_NAME").ok();
    if let Some(package) = &package {
        cmd.push_str(&format!(" -p {package}"));
    }
    let target = std::env::current_exe().ok().and_then(|exe| {
        let stem = exe.file_stem()?.to_str()?.to_owned();
        // Test binaries are named `<target>-<hash>`.
        Some(
            stem.rsplit_once('-')
                .map_or(stem.clone(), |(t, _)| t.to_owned()),
        )
    });
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_owned);
    if let (Some(target), Some(_)) = (&target, &test) {
        // The library's own tests run in a binary named after the crate.
        let lib = package.map(|p| p.replace('-', "_"));
        if lib.as_deref() == Some(target.as_str()) {
            cmd.push_str(" --lib");
        } else {
            cmd.push_str(&format!(" --test {target}"));
        }
    }
    if let Some(test) = test {
        cmd.push_str(&format!(" -- --exact {test}"));
    }
    cmd
}
