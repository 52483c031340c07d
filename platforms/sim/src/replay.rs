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
/// (the test harness names each test's thread after it); an example is
/// rerun with `cargo run --example`.
pub(crate) fn command(seed: u64) -> String {
    let package = std::env::var("CARGO_PKG_NAME").ok();
    let package_arg = package
        .as_ref()
        .map(|p| format!(" -p {p}"))
        .unwrap_or_default();
    let exe = std::env::current_exe().ok();
    let example = exe.as_ref().and_then(|exe| {
        let dir = exe.parent()?.file_name()?;
        (dir == "examples").then(|| exe.file_stem()?.to_str().map(str::to_owned))?
    });
    if let Some(example) = example {
        return format!("replay: {SEED_VAR}={seed} cargo run{package_arg} --example {example}");
    }
    let mut cmd = format!("replay: {SEED_VAR}={seed} cargo test{package_arg}");
    let target = exe.and_then(|exe| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_this_very_test() {
        // Run by cargo, the library's tests know their package and run on a
        // thread named after the test.
        let cmd = command(77);
        assert_eq!(
            cmd,
            "replay: DMA_SIM_SEED=77 cargo test -p dma-sim --lib -- --exact \
             replay::tests::the_command_names_this_very_test"
        );
    }
}
