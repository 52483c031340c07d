//! What the packaging, docs.rs and MSRV steps need from the manifests, read
//! from the files themselves so that a new crate is covered once it is a
//! workspace member (xtask has no dependencies, so no TOML parser: the
//! manifests keep to the plain layout these functions read).

use std::path::Path;

/// A workspace member that is published (no `publish = false`).
pub struct LibraryCrate {
    /// The package name.
    pub name: String,
    /// The targets docs.rs documents: `[package.metadata.docs.rs] targets`,
    /// or docs.rs's default target when the list is absent.
    pub docs_rs_targets: Vec<String>,
    /// Its own `rust-version` when it does not inherit the workspace's
    /// (a crate whose dependencies need a newer compiler).
    pub rust_version: Option<String>,
}

/// docs.rs's default (and only, without a `targets` list) target.
const DOCS_RS_DEFAULT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The published workspace members, in the order `members` lists them.
pub fn library_crates(root: &Path) -> Result<Vec<LibraryCrate>, String> {
    let workspace = read(&root.join("Cargo.toml"))?;
    let members = string_array(&workspace, "members")
        .ok_or("the workspace Cargo.toml has no `members = [...]`")?;
    let mut crates = Vec::new();
    for member in members {
        let path = root.join(&member).join("Cargo.toml");
        let manifest = read(&path)?;
        let package = section(&manifest, "[package]");
        if value(&package, "publish") == Some("false") {
            continue;
        }
        let name = value(&package, "name")
            .map(unquote)
            .ok_or(format!("{}: no package name", path.display()))?;
        let docs_rs = section(&manifest, "[package.metadata.docs.rs]");
        let docs_rs_targets = string_array(&docs_rs, "targets")
            .unwrap_or_else(|| vec![DOCS_RS_DEFAULT_TARGET.to_string()]);
        let rust_version = value(&package, "rust-version").map(|v| unquote(v).to_string());
        crates.push(LibraryCrate {
            name: name.to_string(),
            docs_rs_targets,
            rust_version,
        });
    }
    Ok(crates)
}

/// The workspace's `rust-version` (the MSRV every crate inherits).
pub fn rust_version(root: &Path) -> Result<String, String> {
    let workspace = read(&root.join("Cargo.toml"))?;
    value(&section(&workspace, "[workspace.package]"), "rust-version")
        .map(|v| unquote(v).to_string())
        .ok_or_else(|| "the workspace Cargo.toml has no [workspace.package] rust-version".into())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The lines of `[header]` up to the next header (empty if absent).
fn section(text: &str, header: &str) -> String {
    text.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The raw value of `key = value` in a section.
fn value<'a>(section: &'a str, key: &str) -> Option<&'a str> {
    section.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The strings of `key = ["a", "b", ...]`, which may span lines.
fn string_array(text: &str, key: &str) -> Option<Vec<String>> {
    let start = text.lines().position(|l| {
        l.split_once('=')
            .is_some_and(|(k, v)| k.trim() == key && v.trim_start().starts_with('['))
    })?;
    let mut items = Vec::new();
    for line in text.lines().skip(start) {
        let line = line.split_once('#').map_or(line, |(code, _)| code);
        let line = line.split_once('=').map_or(line, |(_, v)| v);
        items.extend(line.split('"').skip(1).step_by(2).map(str::to_string));
        if line.contains(']') {
            break;
        }
    }
    Some(items)
}

fn unquote(v: &str) -> &str {
    v.trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"[package]
name = "dma-x"
publish = false
rust-version = "1.88"

[package.metadata.docs.rs]
all-features = true
targets = ["a-b-c",
    "d-e-f"] # two
"#;

    #[test]
    fn reads_name_publish_and_targets() {
        let package = section(MANIFEST, "[package]");
        assert_eq!(value(&package, "name").map(unquote), Some("dma-x"));
        assert_eq!(value(&package, "publish"), Some("false"));
        assert_eq!(value(&package, "rust-version").map(unquote), Some("1.88"));
        assert_eq!(
            value("rust-version.workspace = true\n", "rust-version"),
            None
        );
        let docs = section(MANIFEST, "[package.metadata.docs.rs]");
        assert_eq!(
            string_array(&docs, "targets"),
            Some(vec!["a-b-c".to_string(), "d-e-f".to_string()])
        );
        assert_eq!(string_array(&package, "targets"), None);
        assert_eq!(section(MANIFEST, "[missing]"), "");
    }

    #[test]
    fn this_workspace_has_publishable_crates_and_an_msrv() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let crates = library_crates(root).unwrap();
        assert!(crates.iter().any(|c| c.name == "dma-core"));
        assert!(crates.iter().all(|c| c.name != "xtask"));
        assert!(rust_version(root).unwrap().starts_with("1."));
    }
}
