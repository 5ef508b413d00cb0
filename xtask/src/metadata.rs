//! The part of `cargo metadata --format-version 1` that xtask reads, as plain structs.
//!
//! Only the fields the checks need are declared; serde ignores the rest, so newer cargo
//! versions that add fields keep working.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer, de::Error as _};

use crate::process;

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub packages: Vec<Package>,
    pub workspace_members: Vec<String>,
    pub workspace_root: PathBuf,
    /// The resolved dependency graph (absent with `--no-deps`).
    #[serde(default)]
    pub resolve: Option<Resolve>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Package {
    pub name: String,
    pub id: String,
    pub manifest_path: PathBuf,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    #[serde(default)]
    pub targets: Vec<Target>,
    /// The fields a registry needs (`cargo xtask check-package`).
    #[serde(flatten)]
    pub publishing: Publishing,
}

/// A package's registry metadata, as `cargo metadata` reports it (workspace inheritance
/// resolved).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Publishing {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub readme: Option<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    /// `None`: any registry; `Some([])`: `publish = false`.
    #[serde(default)]
    pub publish: Option<Vec<String>>,
}

/// A dependency as declared in a manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Dependency {
    /// The package name (not the `rename`d alias).
    pub name: String,
    #[serde(default, deserialize_with = "dep_kind")]
    pub kind: DepKind,
    /// `None` for path dependencies, the registry or git URL otherwise.
    #[serde(default)]
    pub source: Option<String>,
    /// The `cfg(...)` or triple this dependency is limited to, if any.
    #[serde(default)]
    pub target: Option<String>,
    /// The version requirement (`*` when the manifest gives none).
    #[serde(default)]
    pub req: String,
    /// The local path of a path dependency.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    pub name: String,
    pub kind: Vec<String>,
    pub src_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Resolve {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Node {
    pub id: String,
    #[serde(default)]
    pub deps: Vec<NodeDep>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeDep {
    /// Package id of the dependency.
    pub pkg: String,
    /// Empty with very old cargo versions; treated as a normal dependency then.
    #[serde(default)]
    pub dep_kinds: Vec<NodeDepKind>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeDepKind {
    #[serde(default, deserialize_with = "dep_kind")]
    pub kind: DepKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DepKind {
    #[default]
    Normal,
    Dev,
    Build,
}

impl DepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DepKind::Normal => "normal",
            DepKind::Dev => "dev",
            DepKind::Build => "build",
        }
    }
}

impl std::fmt::Display for DepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// cargo writes `null` for normal dependencies, `"dev"` and `"build"` for the others.
fn dep_kind<'de, D: Deserializer<'de>>(de: D) -> Result<DepKind, D::Error> {
    let raw: Option<String> = Option::deserialize(de)?;
    match raw.as_deref() {
        None | Some("normal") => Ok(DepKind::Normal),
        Some("dev") => Ok(DepKind::Dev),
        Some("build") => Ok(DepKind::Build),
        Some(other) => Err(D::Error::custom(format!(
            "unknown dependency kind `{other}`"
        ))),
    }
}

impl Metadata {
    /// Parses the JSON printed by `cargo metadata --format-version 1`.
    pub fn from_json(json: &str) -> anyhow::Result<Self> {
        serde_json::from_str(json).context("cannot parse `cargo metadata` output")
    }

    /// Workspace member packages, in the order cargo lists them.
    pub fn workspace_packages(&self) -> impl Iterator<Item = &Package> {
        let members: HashSet<&str> = self.workspace_members.iter().map(String::as_str).collect();
        self.packages
            .iter()
            .filter(move |p| members.contains(p.id.as_str()))
    }

    pub fn package(&self, id: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.id == id)
    }

    pub fn workspace_package_named(&self, name: &str) -> Option<&Package> {
        self.workspace_packages().find(|p| p.name == name)
    }
}

impl Package {
    /// The package's directory relative to the workspace root (`crates/runtime-core`).
    pub fn relative_dir(&self, workspace_root: &Path) -> PathBuf {
        let dir = self.manifest_path.parent().unwrap_or(&self.manifest_path);
        dir.strip_prefix(workspace_root)
            .unwrap_or(dir)
            .to_path_buf()
    }
}

/// Runs `cargo metadata --format-version 1` on this workspace and parses it.
pub fn load() -> anyhow::Result<Metadata> {
    let what = "cargo metadata --format-version 1";
    let output = process::cargo_command(["metadata", "--quiet", "--format-version", "1"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{what}`"))?;
    if !output.status.success() {
        bail!("`{what}` failed ({})", output.status);
    }
    let json = String::from_utf8(output.stdout).context("`cargo metadata` printed non-UTF-8")?;
    Metadata::from_json(&json)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn parses_cargo_metadata_json() {
        let json = r#"{
            "packages": [{
                "name": "runtime-core", "id": "core-id", "version": "0.1.0",
                "manifest_path": "/ws/crates/runtime-core/Cargo.toml",
                "dependencies": [
                    {"name": "runtime-contracts", "source": null, "kind": null, "path": "/ws/crates/runtime-contracts"},
                    {"name": "tokio", "source": "registry+https://github.com/rust-lang/crates.io-index", "kind": "dev", "target": null},
                    {"name": "cc", "source": "registry+x", "kind": "build", "target": "cfg(unix)"}
                ],
                "targets": [{"name": "runtime_core", "kind": ["lib"], "src_path": "/ws/crates/runtime-core/src/lib.rs"}]
            }],
            "workspace_members": ["core-id"],
            "workspace_root": "/ws",
            "resolve": {"nodes": [{"id": "core-id", "deps": [
                {"name": "tokio", "pkg": "tokio-id", "dep_kinds": [{"kind": "dev", "target": null}]}
            ]}]},
            "version": 1
        }"#;
        let meta = Metadata::from_json(json).unwrap();
        let core = meta.workspace_package_named("runtime-core").unwrap();
        let kinds: Vec<DepKind> = core.dependencies.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [DepKind::Normal, DepKind::Dev, DepKind::Build]);
        assert!(core.dependencies[0].source.is_none());
        assert_eq!(core.dependencies[2].target.as_deref(), Some("cfg(unix)"));
        assert_eq!(
            core.relative_dir(&meta.workspace_root),
            Path::new("crates/runtime-core")
        );
        let resolve = meta.resolve.unwrap();
        assert_eq!(resolve.nodes[0].deps[0].dep_kinds[0].kind, DepKind::Dev);
    }

    #[test]
    fn rejects_an_unknown_dependency_kind() {
        let json = r#"{"packages": [{"name": "a", "id": "a", "manifest_path": "/a/Cargo.toml",
            "dependencies": [{"name": "b", "kind": "weird"}]}],
            "workspace_members": ["a"], "workspace_root": "/"}"#;
        let error = Metadata::from_json(json).unwrap_err();
        assert!(format!("{error:#}").contains("unknown dependency kind `weird`"));
    }
}
