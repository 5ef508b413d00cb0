#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use super::*;
use crate::metadata::{Dependency, Node, NodeDep, NodeDepKind, Resolve};

const ROOT: &str = "/ws";

/// Builds synthetic `cargo metadata`: workspace crates by directory, external crates by
/// name; the resolved graph is derived from the declared dependencies.
#[derive(Default)]
struct Builder {
    packages: Vec<Package>,
    members: Vec<String>,
}

fn id_of(name: &str) -> String {
    format!("pkg#{name}")
}

fn dep(name: &str, kind: DepKind, source: Option<&str>) -> Dependency {
    Dependency {
        name: name.to_string(),
        kind,
        source: source.map(str::to_string),
        target: None,
        req: String::new(),
        path: None,
    }
}

impl Builder {
    /// A workspace crate at `dir` (its name is the last path component) with path
    /// dependencies on other workspace crates.
    fn member(mut self, dir: &str, deps: &[(&str, DepKind)]) -> Self {
        let name = dir.rsplit('/').next().unwrap();
        self.packages.push(Package {
            name: name.to_string(),
            id: id_of(name),
            manifest_path: PathBuf::from(format!("{ROOT}/{dir}/Cargo.toml")),
            dependencies: deps
                .iter()
                .map(|(n, k)| {
                    let source = if self.is_external(n) {
                        Some("registry+https://github.com/rust-lang/crates.io-index")
                    } else {
                        None
                    };
                    dep(n, *k, source)
                })
                .collect(),
            targets: Vec::new(),
            publishing: Default::default(),
        });
        self.members.push(id_of(name));
        self
    }

    /// A registry crate with its own (normal) dependencies.
    fn external(mut self, name: &str, deps: &[&str]) -> Self {
        self.packages.push(Package {
            name: name.to_string(),
            id: id_of(name),
            manifest_path: PathBuf::from(format!("/registry/{name}/Cargo.toml")),
            dependencies: deps
                .iter()
                .map(|n| dep(n, DepKind::Normal, Some("registry")))
                .collect(),
            targets: Vec::new(),
            publishing: Default::default(),
        });
        self
    }

    fn is_external(&self, name: &str) -> bool {
        self.packages
            .iter()
            .any(|p| p.name == name && !self.members.contains(&p.id))
    }

    /// The real workspace's shape, which obeys every rule.
    fn good() -> Self {
        use DepKind::*;
        Builder::default()
            .external("tokio", &["mio"])
            .external("mio", &[])
            .external("serde", &[])
            .member(
                "crates/runtime-contracts",
                &[("serde", Normal), ("tokio", Dev)],
            )
            .member(
                "crates/runtime-core",
                &[("runtime-contracts", Normal), ("runtime-testkit", Dev)],
            )
            .member(
                "crates/runtime-adapters-memory",
                &[("runtime-contracts", Normal), ("runtime-testkit", Dev)],
            )
            .member(
                "crates/runtime-adapters-redis",
                &[("runtime-contracts", Normal), ("runtime-testkit", Dev)],
            )
            .member(
                "crates/runtime-testkit",
                &[
                    ("runtime-contracts", Normal),
                    ("runtime-core", Normal),
                    ("runtime-adapters-memory", Normal),
                ],
            )
            .member(
                "crates/runtime-compose",
                &[
                    ("runtime-contracts", Normal),
                    ("runtime-core", Normal),
                    ("runtime-adapters-memory", Normal),
                    ("runtime-adapters-redis", Normal),
                ],
            )
            .member(
                "apps/mail-order-bot",
                &[
                    ("runtime-contracts", Normal),
                    ("runtime-core", Normal),
                    ("runtime-compose", Normal),
                    ("runtime-adapters-redis", Normal),
                    ("runtime-testkit", Dev),
                ],
            )
            .member(
                "crates/runtime-bench",
                &[
                    ("runtime-core", Normal),
                    ("runtime-testkit", Normal),
                    ("mail-order-bot", Normal),
                ],
            )
            .member("xtask", &[])
    }

    fn build(self) -> Metadata {
        let nodes = self
            .packages
            .iter()
            .map(|p| Node {
                id: p.id.clone(),
                deps: p
                    .dependencies
                    .iter()
                    .map(|d| NodeDep {
                        pkg: id_of(&d.name),
                        dep_kinds: vec![NodeDepKind { kind: d.kind }],
                    })
                    .collect(),
            })
            .collect();
        Metadata {
            packages: self.packages,
            workspace_members: self.members,
            workspace_root: PathBuf::from(ROOT),
            resolve: Some(Resolve { nodes }),
        }
    }
}

fn messages(violations: &[Violation]) -> Vec<String> {
    violations.iter().map(ToString::to_string).collect()
}

fn source(path: &str, text: &str) -> SourceFile {
    SourceFile {
        path: PathBuf::from(path),
        text: text.to_string(),
    }
}

#[test]
fn the_real_workspace_obeys_the_layer_rules() {
    let meta = metadata::load().unwrap();
    let sources = contracts_sources(&meta).unwrap();
    assert!(!sources.is_empty(), "found no contracts sources");
    let violations = check(&meta, &sources);
    assert!(violations.is_empty(), "{:#?}", messages(&violations));
}

#[test]
fn a_well_layered_synthetic_workspace_passes() {
    let violations = check(&Builder::good().build(), &[]);
    assert!(violations.is_empty(), "{:#?}", messages(&violations));
}

#[test]
fn fires_on_core_depending_on_an_adapter() {
    let meta = Builder::good()
        .member(
            "crates/runtime-core",
            &[
                ("runtime-contracts", DepKind::Normal),
                ("runtime-adapters-redis", DepKind::Normal),
            ],
        )
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        [
            "runtime-core -> runtime-adapters-redis (normal): core may depend only on runtime-contracts"
        ]
    );
}

#[test]
fn only_apps_may_depend_on_the_composition_layer() {
    let meta = Builder::good()
        .member(
            "crates/runtime-core",
            &[
                ("runtime-contracts", DepKind::Normal),
                ("runtime-compose", DepKind::Dev),
            ],
        )
        .member(
            "crates/runtime-adapters-http",
            &[
                ("runtime-contracts", DepKind::Normal),
                ("runtime-compose", DepKind::Normal),
            ],
        )
        .member(
            "crates/runtime-contracts",
            &[("runtime-compose", DepKind::Dev)],
        )
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        [
            "runtime-adapters-http -> runtime-compose (normal): adapters may depend only on \
             runtime-contracts (not core, another adapter or an app)",
            "runtime-contracts -> runtime-compose (dev): contracts may depend on no workspace crate",
            "runtime-core -> runtime-compose (dev): core may depend only on runtime-contracts",
        ]
    );
}

#[test]
fn the_composition_layer_may_not_depend_on_an_app_or_the_testkit() {
    let meta = Builder::good()
        .member(
            "crates/runtime-compose",
            &[
                ("runtime-core", DepKind::Normal),
                ("mail-order-bot", DepKind::Normal),
                ("runtime-testkit", DepKind::Normal),
            ],
        )
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        [
            "runtime-compose -> mail-order-bot (normal): runtime-compose may depend only on \
             contracts, core and adapters",
            "runtime-compose -> runtime-testkit (normal): runtime-testkit may be used only as a \
             dev-dependency",
        ]
    );
    assert_eq!(
        Layer::classify(Path::new("crates/runtime-compose")),
        Some(Layer::Compose)
    );
}

#[test]
fn fires_on_an_adapter_depending_on_another_adapter() {
    let meta = Builder::good()
        .member(
            "crates/runtime-adapters-http",
            &[
                ("runtime-contracts", DepKind::Normal),
                ("runtime-adapters-memory", DepKind::Build),
            ],
        )
        .build();
    let violations = check_edges(&meta);
    assert_eq!(violations.len(), 1, "{:#?}", messages(&violations));
    assert!(matches!(
        &violations[0],
        Violation::Edge { from, to, kind: DepKind::Build, .. }
            if from == "runtime-adapters-http" && to == "runtime-adapters-memory"
    ));
}

#[test]
fn fires_on_an_adapter_depending_on_core_even_as_a_dev_dependency() {
    let meta = Builder::good()
        .member(
            "crates/runtime-adapters-otel",
            &[
                ("runtime-contracts", DepKind::Normal),
                ("runtime-core", DepKind::Dev),
            ],
        )
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        [
            "runtime-adapters-otel -> runtime-core (dev): adapters may depend only on \
          runtime-contracts (not core, another adapter or an app)"
        ]
    );
}

#[test]
fn fires_on_a_normal_or_build_dependency_on_the_testkit() {
    let meta = Builder::good()
        .member(
            "apps/other-bot",
            &[
                ("runtime-core", DepKind::Normal),
                ("runtime-testkit", DepKind::Normal),
            ],
        )
        .member(
            "crates/runtime-adapters-imap",
            &[
                ("runtime-contracts", DepKind::Normal),
                ("runtime-testkit", DepKind::Build),
            ],
        )
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        [
            "other-bot -> runtime-testkit (normal): runtime-testkit may be used only as a dev-dependency",
            "runtime-adapters-imap -> runtime-testkit (build): runtime-testkit may be used only as a dev-dependency",
        ]
    );
}

#[test]
fn the_testkit_never_depends_on_an_app() {
    let meta = Builder::good()
        .member(
            "crates/runtime-testkit",
            &[
                ("runtime-core", DepKind::Normal),
                ("mail-order-bot", DepKind::Dev),
            ],
        )
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        [
            "runtime-testkit -> mail-order-bot (dev): runtime-testkit may depend only on contracts, core and adapters"
        ]
    );
}

#[test]
fn contracts_depend_on_no_workspace_crate() {
    let meta = Builder::good()
        .member(
            "crates/runtime-contracts",
            &[
                ("runtime-core", DepKind::Dev),
                ("runtime-testkit", DepKind::Dev),
            ],
        )
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        ["runtime-contracts -> runtime-core (dev): contracts may depend on no workspace crate"]
    );
}

#[test]
fn nothing_depends_on_bench_or_xtask() {
    let meta = Builder::good()
        .member(
            "apps/mail-order-bot",
            &[
                ("runtime-core", DepKind::Normal),
                ("runtime-bench", DepKind::Dev),
            ],
        )
        .member("crates/runtime-bench", &[("xtask", DepKind::Normal)])
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        [
            "mail-order-bot -> runtime-bench (dev): nothing may depend on runtime-bench or xtask",
            "runtime-bench -> xtask (normal): nothing may depend on runtime-bench or xtask",
        ]
    );
}

#[test]
fn apps_may_not_depend_on_each_other() {
    let meta = Builder::good()
        .member("apps/other-bot", &[("mail-order-bot", DepKind::Normal)])
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        [
            "other-bot -> mail-order-bot (normal): apps may depend only on contracts, core and adapters"
        ]
    );
}

#[test]
fn new_adapters_are_classified_by_their_path() {
    let meta = Builder::good()
        .member(
            "crates/runtime-adapters-kafka",
            &[("runtime-core", DepKind::Normal)],
        )
        .build();
    assert_eq!(
        messages(&check_edges(&meta)),
        [
            "runtime-adapters-kafka -> runtime-core (normal): adapters may depend only on \
          runtime-contracts (not core, another adapter or an app)"
        ]
    );
}

#[test]
fn a_crate_outside_every_layer_is_reported() {
    let meta = Builder::good().member("crates/helpers", &[]).build();
    let violations = check_edges(&meta);
    assert!(
        matches!(&violations[..], [Violation::Unclassified { name, .. }] if name == "helpers"),
        "{:#?}",
        messages(&violations)
    );
}

#[test]
fn a_registry_crate_sharing_a_workspace_name_is_not_an_edge() {
    let mut builder = Builder::good();
    let core = builder
        .packages
        .iter_mut()
        .find(|p| p.name == "runtime-core")
        .unwrap();
    core.dependencies.push(dep(
        "runtime-adapters-redis",
        DepKind::Normal,
        Some("registry"),
    ));
    assert!(check_edges(&builder.build()).is_empty());
}

#[test]
fn fires_on_contracts_depending_on_tokio() {
    let meta = Builder::good()
        .member(
            "crates/runtime-contracts",
            &[("serde", DepKind::Normal), ("tokio", DepKind::Normal)],
        )
        .build();
    assert_eq!(
        messages(&check_io(&meta)),
        ["runtime-contracts -> tokio (normal): contracts must not depend on the I/O crate tokio"]
    );
}

#[test]
fn fires_on_contracts_pulling_in_an_io_crate_through_another_crate() {
    let meta = Builder::good()
        .external("innocent", &["serde", "opentelemetry_sdk"])
        .external("opentelemetry_sdk", &["tokio"])
        .member("crates/runtime-contracts", &[("innocent", DepKind::Build)])
        .build();
    assert_eq!(
        messages(&check_io(&meta)),
        [
            "runtime-contracts -> innocent -> opentelemetry_sdk (build): contracts must not \
          depend on the I/O crate opentelemetry_sdk"
        ]
    );
}

#[test]
fn io_crates_as_dev_dependencies_of_the_contracts_are_allowed() {
    // Builder::good() gives the contracts tokio as a dev-dependency.
    assert!(check_io(&Builder::good().build()).is_empty());
}

#[test]
fn io_crates_cover_the_named_list_and_the_opentelemetry_family() {
    for name in [
        "tokio",
        "mio",
        "deadpool-redis",
        "sqlx",
        "tracing-subscriber",
        "opentelemetry-otlp",
    ] {
        assert!(is_io_crate(name), "{name}");
    }
    for name in [
        "serde",
        "tracing",
        "async-trait",
        "thiserror",
        "tokio-util-ish",
    ] {
        assert!(!is_io_crate(name), "{name}");
    }
}

#[test]
fn fires_on_business_words_with_file_and_line() {
    let files = [
        source(
            "crates/runtime-contracts/src/task.rs",
            "use std::sync::atomic::Ordering;\n\
             pub struct OrderId(u64);\n\
             // the mailbox border is fine\n\
             fn fetch(order_id: u64, e_mail: &str) {}\n",
        ),
        source(
            "crates/runtime-contracts/src/source.rs",
            "pub struct IMAPSource;\npub trait SmtpSink {}\n/// Reads EMAILS.\n",
        ),
    ];
    assert_eq!(
        messages(&check_words(&files)),
        [
            "crates/runtime-contracts/src/task.rs:2: business word \"order\" in the contracts; they stay domain-free",
            "crates/runtime-contracts/src/task.rs:4: business word \"order\" in the contracts; they stay domain-free",
            "crates/runtime-contracts/src/task.rs:4: business word \"mail\" in the contracts; they stay domain-free",
            "crates/runtime-contracts/src/source.rs:1: business word \"imap\" in the contracts; they stay domain-free",
            "crates/runtime-contracts/src/source.rs:2: business word \"smtp\" in the contracts; they stay domain-free",
            "crates/runtime-contracts/src/source.rs:3: business word \"emails\" in the contracts; they stay domain-free",
        ]
    );
}

#[test]
fn words_split_at_case_changes_underscores_and_digits() {
    assert_eq!(split_words("OrderId"), ["Order", "Id"]);
    assert_eq!(split_words("IMAPSource"), ["IMAP", "Source"]);
    assert_eq!(split_words("order_id: u64"), ["order", "id", "u", "64"]);
    assert_eq!(split_words("Ordering::Relaxed"), ["Ordering", "Relaxed"]);
    assert_eq!(split_words("  mailbox "), ["mailbox"]);
    assert_eq!(split_words("HTTP2Server"), ["HTTP", "2", "Server"]);
    assert!(split_words("").is_empty());
}

#[test]
fn violations_of_all_kinds_are_collected_together() {
    let meta = Builder::good()
        .member(
            "crates/runtime-contracts",
            &[
                ("tokio", DepKind::Normal),
                ("runtime-core", DepKind::Normal),
            ],
        )
        .build();
    let files = [source(
        "crates/runtime-contracts/src/lib.rs",
        "//! orders\n",
    )];
    assert_eq!(check(&meta, &files).len(), 3);
}
