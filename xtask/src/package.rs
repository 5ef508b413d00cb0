//! `cargo xtask check-package`: every library crate could be published, and nothing else
//! would be by accident.
//!
//! A library crate (contracts, core, an adapter, compose; classified by path like
//! [`layers`](crate::layers)) needs what a registry and a user from another repository
//! need: a description, a license, a repository, a readme, keywords and categories;
//! `publish` not `false`; a version on every path dependency (cargo refuses to package
//! one without), matching that crate's version; no normal dependency on a crate that is
//! never published (the testkit, a tool). Apps, tools and the testkit keep
//! `publish = false`. The rules are a pure function over `cargo metadata`
//! ([`check`]); [`run`] then runs `cargo package --list` on each library crate and
//! fails on an error or a warning, or when the package lacks its manifest, its
//! `src/lib.rs` or its readme.

use std::fmt;
use std::process::Stdio;

use anyhow::{Context, bail};

use crate::layers::Layer;
use crate::metadata::{self, DepKind, Metadata, Package};
use crate::process;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The crate.
    pub package: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.package, self.message)
    }
}

/// Whether crates of `layer` are libraries other repositories use.
pub fn is_library(layer: Layer) -> bool {
    matches!(
        layer,
        Layer::Contracts | Layer::Core | Layer::Adapter | Layer::Compose
    )
}

fn layer_of(meta: &Metadata, package: &Package) -> Option<Layer> {
    Layer::classify(&package.relative_dir(&meta.workspace_root))
}

/// The library crates of the workspace, in cargo's order.
pub fn libraries(meta: &Metadata) -> Vec<&Package> {
    meta.workspace_packages()
        .filter(|p| layer_of(meta, p).is_some_and(is_library))
        .collect()
}

/// crates.io's rule for a keyword: ASCII letters, digits, `-` and `_`, starting with a
/// letter, at most 20 characters.
fn valid_keyword(keyword: &str) -> bool {
    keyword.len() <= 20
        && keyword.starts_with(|c: char| c.is_ascii_alphabetic())
        && keyword
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Checks the metadata rules; empty when every crate obeys them.
pub fn check(meta: &Metadata) -> Vec<Problem> {
    let mut problems = Vec::new();
    for package in meta.workspace_packages() {
        let mut problem = |message: String| {
            problems.push(Problem {
                package: package.name.clone(),
                message,
            })
        };
        let p = &package.publishing;
        let library = layer_of(meta, package).is_some_and(is_library);
        let never_published = p.publish.as_ref().is_some_and(Vec::is_empty);
        if !library {
            if !never_published {
                problem(
                    "is not a library crate: keep `publish = false` (publish.workspace = true)"
                        .into(),
                );
            }
            continue;
        }
        if never_published {
            problem("is a library crate but has `publish = false`".into());
        }
        let fields = [
            ("description", &p.description),
            ("license", &p.license),
            ("repository", &p.repository),
            ("readme", &p.readme),
        ];
        for (field, value) in fields {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                problem(format!("`{field}` is missing"));
            }
        }
        if p.keywords.is_empty() || p.keywords.len() > 5 {
            problem(format!("needs 1 to 5 keywords, has {}", p.keywords.len()));
        }
        for keyword in p.keywords.iter().filter(|k| !valid_keyword(k)) {
            problem(format!(
                "keyword {keyword:?} is not a valid crates.io keyword"
            ));
        }
        if p.categories.is_empty() {
            problem("`categories` is missing".into());
        }
        for dep in &package.dependencies {
            if dep.kind == DepKind::Dev || dep.path.is_none() {
                // Path dev-dependencies are left out of a package by cargo.
                continue;
            }
            let Some(target) = meta.workspace_package_named(&dep.name) else {
                continue;
            };
            if target
                .publishing
                .publish
                .as_ref()
                .is_some_and(Vec::is_empty)
            {
                problem(format!(
                    "depends on `{}`, which is never published",
                    dep.name
                ));
            }
            let version = &target.publishing.version;
            let wanted = [
                format!("^{version}"),
                format!("={version}"),
                version.clone(),
            ];
            if dep.req == "*" || dep.req.is_empty() {
                problem(format!(
                    "path dependency `{}` has no version (add `version = \"{version}\"` in the root [workspace.dependencies])",
                    dep.name
                ));
            } else if !wanted.contains(&dep.req) {
                problem(format!(
                    "path dependency `{}` asks for {} but the crate is {version}",
                    dep.name, dep.req
                ));
            }
        }
    }
    problems
}

/// What `cargo package --list` found wrong with one crate's package.
fn check_listing(package: &Package, listing: &str, stderr: &str) -> Vec<String> {
    let mut problems: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with("warning") || l.starts_with("error"))
        .map(|l| format!("cargo package --list: {l}"))
        .collect();
    let files: Vec<&str> = listing.lines().collect();
    let readme = package
        .publishing
        .readme
        .as_deref()
        .and_then(|r| std::path::Path::new(r).file_name())
        .and_then(|n| n.to_str());
    for needed in ["Cargo.toml", "src/lib.rs"].into_iter().chain(readme) {
        if !files.contains(&needed) {
            problems.push(format!("the package lacks {needed}"));
        }
    }
    problems
}

/// Runs `cargo package --list` for one crate: (stdout, stderr) or an error on failure.
fn package_list(name: &str) -> anyhow::Result<(String, String)> {
    let output = process::cargo_command(["package", "--list", "--allow-dirty", "-p", name])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `cargo package --list -p {name}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!(
            "`cargo package --list -p {name}` failed ({}): {stderr}",
            output.status
        );
    }
    Ok((stdout, stderr))
}

/// The metadata rules and `cargo package --list` of every library crate: the problems.
pub fn problems(meta: &Metadata) -> anyhow::Result<Vec<Problem>> {
    let mut problems = check(meta);
    for package in libraries(meta) {
        let (listing, stderr) = package_list(&package.name)?;
        problems.extend(
            check_listing(package, &listing, &stderr)
                .into_iter()
                .map(|message| Problem {
                    package: package.name.clone(),
                    message,
                }),
        );
    }
    Ok(problems)
}

/// `cargo xtask check-package`.
pub fn run() -> anyhow::Result<()> {
    let meta = metadata::load()?;
    run_on(&meta)
}

/// Checks already-loaded metadata, printing each problem; used by `ci` too.
pub fn run_on(meta: &Metadata) -> anyhow::Result<()> {
    let problems = problems(meta)?;
    if problems.is_empty() {
        println!(
            "check-package: ok ({} library crates package with complete metadata)",
            libraries(meta).len()
        );
        return Ok(());
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    bail!("check-package: {} problem(s)", problems.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A synthetic workspace: a contracts crate, core depending on it, the testkit and
    /// an app, each with the metadata `edit` leaves it.
    fn workspace(edit: impl Fn(&mut serde_json::Value)) -> Metadata {
        let lib = |name: &str, deps: serde_json::Value| {
            serde_json::json!({
                "name": name, "id": name, "version": "0.1.0",
                "manifest_path": format!("/ws/crates/{name}/Cargo.toml"),
                "description": "d", "license": "MIT", "repository": "https://example.invalid/r",
                "readme": "../../README.md", "keywords": ["jobs"], "categories": ["asynchronous"],
                "publish": null, "dependencies": deps
            })
        };
        let mut json = serde_json::json!({
            "packages": [
                lib("runtime-contracts", serde_json::json!([])),
                lib("runtime-core", serde_json::json!([
                    {"name": "runtime-contracts", "req": "^0.1.0", "kind": null, "source": null, "path": "/ws/crates/runtime-contracts"},
                    {"name": "runtime-testkit", "req": "*", "kind": "dev", "source": null, "path": "/ws/crates/runtime-testkit"}
                ])),
                {"name": "runtime-testkit", "id": "runtime-testkit", "version": "0.1.0",
                 "manifest_path": "/ws/crates/runtime-testkit/Cargo.toml", "publish": []},
                {"name": "app", "id": "app", "version": "0.1.0",
                 "manifest_path": "/ws/apps/app/Cargo.toml", "publish": []}
            ],
            "workspace_members": ["runtime-contracts", "runtime-core", "runtime-testkit", "app"],
            "workspace_root": "/ws"
        });
        edit(&mut json);
        Metadata::from_json(&json.to_string()).unwrap()
    }

    fn messages(meta: &Metadata) -> Vec<String> {
        check(meta).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn complete_metadata_passes() {
        assert_eq!(messages(&workspace(|_| {})), Vec::<String>::new());
    }

    #[test]
    fn each_missing_field_is_named() {
        let meta = workspace(|j| {
            let core = &mut j["packages"][1];
            core["repository"] = serde_json::Value::Null;
            core["readme"] = serde_json::Value::Null;
            core["keywords"] = serde_json::json!([]);
            core["categories"] = serde_json::json!([]);
            j["packages"][0]["keywords"] = serde_json::json!(["has space"]);
        });
        let m = messages(&meta);
        for expected in [
            "runtime-core: `repository` is missing",
            "runtime-core: `readme` is missing",
            "runtime-core: needs 1 to 5 keywords, has 0",
            "runtime-core: `categories` is missing",
            "runtime-contracts: keyword \"has space\" is not a valid crates.io keyword",
        ] {
            assert!(m.iter().any(|x| x == expected), "{expected} not in {m:#?}");
        }
    }

    #[test]
    fn a_path_dependency_needs_a_matching_version() {
        let without = workspace(|j| j["packages"][1]["dependencies"][0]["req"] = "*".into());
        assert!(
            messages(&without)[0].contains("path dependency `runtime-contracts` has no version"),
            "{:?}",
            messages(&without)
        );
        let stale = workspace(|j| j["packages"][1]["dependencies"][0]["req"] = "^0.0.9".into());
        assert!(messages(&stale)[0].contains("asks for ^0.0.9 but the crate is 0.1.0"));
    }

    #[test]
    fn publishing_is_for_libraries_only() {
        let locked = workspace(|j| j["packages"][0]["publish"] = serde_json::json!([]));
        assert_eq!(
            messages(&locked),
            [
                "runtime-contracts: is a library crate but has `publish = false`",
                "runtime-core: depends on `runtime-contracts`, which is never published"
            ]
        );
        let app = workspace(|j| j["packages"][3]["publish"] = serde_json::Value::Null);
        assert!(messages(&app)[0].starts_with("app: is not a library crate"));
        let uses_testkit = workspace(|j| {
            j["packages"][1]["dependencies"][1]["kind"] = serde_json::Value::Null;
            j["packages"][1]["dependencies"][1]["req"] = "^0.1.0".into();
        });
        assert_eq!(
            messages(&uses_testkit),
            ["runtime-core: depends on `runtime-testkit`, which is never published"]
        );
    }

    #[test]
    fn a_listing_without_the_readme_or_with_a_warning_fails() {
        let meta = workspace(|_| {});
        let core = meta.workspace_package_named("runtime-core").unwrap();
        let good = "Cargo.toml\nCargo.toml.orig\nREADME.md\nsrc/lib.rs\n";
        assert!(check_listing(core, good, "").is_empty());
        let problems = check_listing(
            core,
            "Cargo.toml\nsrc/lib.rs\n",
            "warning: manifest has no documentation, homepage or repository\n",
        );
        assert_eq!(
            problems,
            [
                "cargo package --list: warning: manifest has no documentation, homepage or repository",
                "the package lacks README.md"
            ]
        );
    }

    /// The real workspace: every library crate packages with complete metadata.
    #[test]
    fn every_library_crate_of_the_workspace_could_be_published() {
        let meta = metadata::load().unwrap();
        let libraries: Vec<&str> = libraries(&meta).iter().map(|p| p.name.as_str()).collect();
        for expected in [
            "runtime-contracts",
            "runtime-core",
            "runtime-compose",
            "runtime-adapters-redis",
        ] {
            assert!(libraries.contains(&expected), "{libraries:?}");
        }
        let problems = problems(&meta).unwrap();
        assert!(
            problems.is_empty(),
            "{:#?}",
            problems.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
    }
}
