//! `cargo xtask check-layers`: the architecture's dependency rules, checked against
//! `cargo metadata`.
//!
//! [`check`] is pure: it takes parsed [`Metadata`] and the contracts' source text and
//! returns every [`Violation`]. [`run`] does the I/O around it (runs cargo, reads files,
//! prints). Crates are classified by their path, so new adapters and apps are covered
//! without editing this file; a workspace crate that fits no layer is itself a violation,
//! because an unclassified crate would otherwise escape every rule.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

use crate::metadata::{self, DepKind, Metadata, Package};

/// Crates that bring an I/O stack; the contracts must not pull in any of them.
pub const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "redis",
    "deadpool-redis",
    "axum",
    "hyper",
    "sqlx",
    "async-imap",
    "tokio-rustls",
    "rustls",
    "reqwest",
    "tracing-subscriber",
];

/// Crate-name prefixes of I/O crates (the whole OpenTelemetry family).
pub const IO_CRATE_PREFIXES: &[&str] = &["opentelemetry"];

/// Business words the contracts must not contain (compared lowercase, whole words).
pub const BUSINESS_WORDS: &[&str] = &[
    "mail", "mails", "email", "emails", "order", "orders", "imap", "smtp",
];

pub const CONTRACTS: &str = "runtime-contracts";

/// Where a workspace crate sits in the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Contracts,
    Core,
    Adapter,
    /// `runtime-compose`: maps configuration to adapters; used by apps.
    Compose,
    App,
    Testkit,
    /// `runtime-bench` and `xtask`: may use anything, nothing may use them.
    Tool,
}

impl Layer {
    /// Classifies a crate by its directory relative to the workspace root.
    pub fn classify(relative_dir: &Path) -> Option<Layer> {
        let parts: Vec<&str> = relative_dir
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => s.to_str(),
                _ => None,
            })
            .collect();
        match parts.as_slice() {
            ["crates", "runtime-contracts"] => Some(Layer::Contracts),
            ["crates", "runtime-core"] => Some(Layer::Core),
            ["crates", "runtime-testkit"] => Some(Layer::Testkit),
            ["crates", "runtime-compose"] => Some(Layer::Compose),
            ["crates", "runtime-bench"] | ["xtask"] => Some(Layer::Tool),
            ["crates", name] if name.starts_with("runtime-adapters-") => Some(Layer::Adapter),
            ["apps", _] => Some(Layer::App),
            _ => None,
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A dependency edge between two workspace crates that the layer table forbids.
    Edge {
        from: String,
        to: String,
        kind: DepKind,
        reason: &'static str,
    },
    /// A workspace crate outside every layer.
    Unclassified { name: String, dir: PathBuf },
    /// The contracts depend on an I/O crate, directly (`path` has two entries) or through
    /// other crates (the full chain).
    IoCrate { path: Vec<String>, kind: DepKind },
    /// A business word in the contracts' sources.
    BusinessWord {
        file: PathBuf,
        line: usize,
        word: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Edge {
                from,
                to,
                kind,
                reason,
            } => write!(f, "{from} -> {to} ({kind}): {reason}"),
            Violation::Unclassified { name, dir } => write!(
                f,
                "{name} ({}): fits no layer; put it under crates/runtime-adapters-* or apps/*, \
                 or add it to the layer table in xtask/src/layers.rs",
                dir.display()
            ),
            Violation::IoCrate { path, kind } => {
                let io = path.last().map_or("?", String::as_str);
                write!(
                    f,
                    "{} ({kind}): contracts must not depend on the I/O crate {io}",
                    path.join(" -> ")
                )
            }
            Violation::BusinessWord { file, line, word } => write!(
                f,
                "{}:{line}: business word \"{word}\" in the contracts; they stay domain-free",
                file.display()
            ),
        }
    }
}

/// A source file of the contracts crate, with its path as it should be reported.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// Every violation in the workspace: layer edges, I/O crates under the contracts and
/// business words in the given contracts sources.
pub fn check(meta: &Metadata, contracts_sources: &[SourceFile]) -> Vec<Violation> {
    let mut violations = check_edges(meta);
    violations.extend(check_io(meta));
    violations.extend(check_words(contracts_sources));
    violations
}

/// The layer table, applied to every dependency edge between workspace crates.
pub fn check_edges(meta: &Metadata) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut layers: HashMap<&str, Layer> = HashMap::new();
    for package in meta.workspace_packages() {
        let dir = package.relative_dir(&meta.workspace_root);
        match Layer::classify(&dir) {
            Some(layer) => {
                layers.insert(package.name.as_str(), layer);
            }
            None => violations.push(Violation::Unclassified {
                name: package.name.clone(),
                dir,
            }),
        }
    }

    // BTreeSet: one report per (from, to, kind) even when a dependency is declared for
    // several targets, in a stable order.
    let mut edges = BTreeSet::new();
    for package in meta.workspace_packages() {
        let Some(&from) = layers.get(package.name.as_str()) else {
            continue;
        };
        for dep in &package.dependencies {
            // A workspace edge is a path dependency on a member; a registry crate that
            // happens to share a name is not one.
            if dep.source.is_some() {
                continue;
            }
            let Some(&to) = layers.get(dep.name.as_str()) else {
                continue;
            };
            if let Some(reason) = edge_rule(from, to, dep.kind) {
                edges.insert((package.name.clone(), dep.name.clone(), dep.kind, reason));
            }
        }
    }
    violations.extend(
        edges
            .into_iter()
            .map(|(from, to, kind, reason)| Violation::Edge {
                from,
                to,
                kind,
                reason,
            }),
    );
    violations
}

/// The layer table: `None` when `from` may depend on `to` with this kind, the reason
/// otherwise.
pub fn edge_rule(from: Layer, to: Layer, kind: DepKind) -> Option<&'static str> {
    use Layer::*;
    if to == Tool {
        return Some("nothing may depend on runtime-bench or xtask");
    }
    if from == Tool {
        return None;
    }
    if to == Testkit {
        return match kind {
            DepKind::Dev => None,
            DepKind::Normal | DepKind::Build => {
                Some("runtime-testkit may be used only as a dev-dependency")
            }
        };
    }
    match (from, to) {
        (Contracts, _) => Some("contracts may depend on no workspace crate"),
        (Core, Contracts) => None,
        (Core, _) => Some("core may depend only on runtime-contracts"),
        (Adapter, Contracts) => None,
        (Adapter, _) => Some(
            "adapters may depend only on runtime-contracts (not core, another adapter or an app)",
        ),
        (Compose, Contracts | Core | Adapter) => None,
        (Compose, _) => Some("runtime-compose may depend only on contracts, core and adapters"),
        (App, Contracts | Core | Adapter | Compose) => None,
        // The message predates runtime-compose; tests outside xtask may match it.
        (App, _) => Some("apps may depend only on contracts, core and adapters"),
        (Testkit, Contracts | Core | Adapter) => None,
        (Testkit, _) => Some("runtime-testkit may depend only on contracts, core and adapters"),
        (Tool, _) => None,
    }
}

pub fn is_io_crate(name: &str) -> bool {
    IO_CRATES.contains(&name) || IO_CRATE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// I/O crates reachable from the contracts through normal and build dependencies:
/// declared ones first (named with their kind), then transitive ones from the resolved
/// graph (named with the whole chain, shortest first).
pub fn check_io(meta: &Metadata) -> Vec<Violation> {
    let Some(contracts) = meta.workspace_package_named(CONTRACTS) else {
        return Vec::new();
    };
    let mut violations = Vec::new();
    let mut reported = BTreeSet::new();
    for dep in &contracts.dependencies {
        if dep.kind != DepKind::Dev && is_io_crate(&dep.name) && reported.insert(dep.name.clone()) {
            violations.push(Violation::IoCrate {
                path: vec![contracts.name.clone(), dep.name.clone()],
                kind: dep.kind,
            });
        }
    }

    let Some(resolve) = &meta.resolve else {
        return violations;
    };
    let nodes: HashMap<&str, &metadata::Node> =
        resolve.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let name_of = |id: &str| meta.package(id).map_or(id.to_string(), |p| p.name.clone());

    // Breadth first, so each I/O crate is reported with its shortest chain. The first hop
    // remembers its kind; dev-only edges out of the contracts are not followed (tests may
    // use tokio), and below an I/O crate there is nothing more to learn.
    let mut queue: VecDeque<(&str, Vec<String>, DepKind)> = VecDeque::new();
    let mut seen = BTreeSet::from([contracts.id.as_str()]);
    queue.push_back((
        contracts.id.as_str(),
        vec![contracts.name.clone()],
        DepKind::Normal,
    ));
    while let Some((id, chain, first_kind)) = queue.pop_front() {
        let Some(node) = nodes.get(id) else { continue };
        for dep in &node.deps {
            let kinds = dep.dep_kinds.iter().map(|k| k.kind);
            let non_dev = kinds.clone().filter(|k| *k != DepKind::Dev).min();
            let kind = match (non_dev, dep.dep_kinds.is_empty()) {
                (Some(kind), _) => kind,
                (None, true) => DepKind::Normal,
                (None, false) => continue,
            };
            if !seen.insert(dep.pkg.as_str()) {
                continue;
            }
            let name = name_of(&dep.pkg);
            let mut next_chain = chain.clone();
            next_chain.push(name.clone());
            let hop_kind = if chain.len() == 1 { kind } else { first_kind };
            if is_io_crate(&name) {
                if reported.insert(name) {
                    violations.push(Violation::IoCrate {
                        path: next_chain,
                        kind: hop_kind,
                    });
                }
            } else {
                queue.push_back((dep.pkg.as_str(), next_chain, hop_kind));
            }
        }
    }
    violations
}

/// Business words in the given sources, one violation per word per line.
pub fn check_words(files: &[SourceFile]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for file in files {
        for (index, line) in file.text.lines().enumerate() {
            for word in split_words(line) {
                let lower = word.to_lowercase();
                if BUSINESS_WORDS.contains(&lower.as_str()) {
                    violations.push(Violation::BusinessWord {
                        file: file.path.clone(),
                        line: index + 1,
                        word: lower,
                    });
                }
            }
        }
    }
    violations
}

/// Splits a line into words: at every non-alphanumeric character (so `_` separates
/// snake_case), at lower-to-upper case changes (`OrderId` is `Order`, `Id`), at the end of
/// an acronym (`IMAPSource` is `IMAP`, `Source`) and between letters and digits. Whole
/// words stay whole: `Ordering` and `mailbox` are one word each.
pub fn split_words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    for run in line.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<(usize, char)> = run.char_indices().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (pos, c) = chars[i];
            let prev = chars[i - 1].1;
            let next = chars.get(i + 1).map(|&(_, n)| n);
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_alphabetic() != c.is_alphabetic())
                || (prev.is_uppercase()
                    && c.is_uppercase()
                    && next.is_some_and(char::is_lowercase));
            if boundary {
                words.push(&run[start..pos]);
                start = pos;
            }
        }
        if start < run.len() {
            words.push(&run[start..]);
        }
    }
    words
}

/// Reads every `.rs` file under the contracts' `src/`, paths relative to the workspace
/// root, sorted so reports are stable.
pub fn contracts_sources(meta: &Metadata) -> anyhow::Result<Vec<SourceFile>> {
    let contracts: &Package = meta
        .workspace_package_named(CONTRACTS)
        .with_context(|| format!("the workspace has no {CONTRACTS} crate"))?;
    let src = contracts
        .manifest_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("src");
    let mut paths = Vec::new();
    collect_rs_files(&src, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let path = path
                .strip_prefix(&meta.workspace_root)
                .map_or_else(|_| path.clone(), Path::to_path_buf);
            Ok(SourceFile { path, text })
        })
        .collect()
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if file_type.is_dir() {
            collect_rs_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Counts for the success line.
fn workspace_edge_count(meta: &Metadata) -> usize {
    let names: BTreeSet<&str> = meta.workspace_packages().map(|p| p.name.as_str()).collect();
    meta.workspace_packages()
        .flat_map(|p| &p.dependencies)
        .filter(|d| d.source.is_none() && names.contains(d.name.as_str()))
        .count()
}

/// `cargo xtask check-layers`.
pub fn run() -> anyhow::Result<()> {
    let meta = metadata::load()?;
    run_on(&meta)
}

/// Checks already-loaded metadata, printing each violation; used by `ci` too.
pub fn run_on(meta: &Metadata) -> anyhow::Result<()> {
    let sources = contracts_sources(meta)?;
    let violations = check(meta, &sources);
    if violations.is_empty() {
        println!(
            "check-layers: ok ({} crates, {} workspace dependency edges, {} contracts source files)",
            meta.workspace_packages().count(),
            workspace_edge_count(meta),
            sources.len()
        );
        return Ok(());
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    bail!(
        "check-layers: {} violation{} of the layer rules",
        violations.len(),
        if violations.len() == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests;
