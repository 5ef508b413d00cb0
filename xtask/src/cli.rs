//! The command line, declared with clap's derive API.

use clap::{Args, Parser, Subcommand};

/// Project automation for the plba workspace.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything CI checks, in order, stopping at the first failing step
    #[command(
        long_about = "Run everything CI checks, in order, stopping at the first failing step:

  1. fmt           cargo fmt --all --check
  2. clippy        cargo clippy --workspace --all-targets -- -D warnings
  3. check-layers  the layer rules (see `cargo xtask check-layers --help`)
  4. check-package the library crates could be published (see `cargo xtask check-package --help`)
  5. tests         cargo nextest run --workspace --no-fail-fast
                   (falls back to `cargo test --workspace --no-fail-fast` without nextest)
  6. doc-tests     cargo test --workspace --doc

Ends with a one-line summary and the time each step took. The tests need Redis and
PostgreSQL on 127.0.0.1 and Dovecot installed (`.ci/run` prepares a fresh Debian machine).
CARGO_TARGET_DIR and other cargo settings pass through from the environment."
    )]
    Ci,

    /// Check the dependency edges between workspace crates against the layer table
    #[command(
        long_about = "Check the dependency edges between workspace crates against the layer table.

Reads `cargo metadata` and checks every normal, build and dev dependency between
workspace crates:

  runtime-contracts      no workspace crate
  runtime-core           runtime-contracts
  runtime-adapters-*     runtime-contracts only (not core, not another adapter, not apps)
  apps/*                 contracts, core, adapters
  runtime-testkit        contracts, core, adapters (never apps)
  runtime-bench, xtask   anything; nothing may depend on them

Any crate may use runtime-testkit as a dev-dependency, and only as one. Crates are
classified by their path (crates/runtime-adapters-* is an adapter, apps/* an app).

Also checks that runtime-contracts pulls in no I/O crate (tokio, mio, redis, axum, hyper,
sqlx, rustls, opentelemetry*, ...) and that its sources name no business concept (mail,
email, order, imap, smtp, as whole words, also inside CamelCase and snake_case).
Exits 1, naming each offending edge, file and line, when a rule is broken."
    )]
    CheckLayers,

    /// Check that every library crate could be published (metadata, versions, cargo package --list)
    #[command(
        long_about = "Check that every library crate could be published, and nothing else would be.

Library crates (runtime-contracts, runtime-core, runtime-adapters-*, runtime-compose,
classified by path) need description, license, repository, readme, 1 to 5 valid keywords
and categories; not `publish = false`; a version on every path dependency, matching that
crate's version; no normal dependency on a crate that is never published. Every other
crate (apps, tools, runtime-testkit) keeps `publish = false`. Then runs
`cargo package --list --allow-dirty -p CRATE` for each library crate and fails on an error,
a warning, or a package without Cargo.toml, src/lib.rs or its readme.
Exits 1, naming each crate and problem."
    )]
    CheckPackage,

    /// Run the benchmark binaries of runtime-bench in release mode (all when no NAME is given)
    Bench(BenchArgs),

    /// Build the release binary and render the deployment bundle (systemd, container, Kubernetes)
    #[command(
        long_about = "Build the release binary and render the deployment bundle.

Templates are hand-written under deploy/templates/ ({{version}}, {{shutdown_timeout}},
{{stop_timeout_secs}}, {{config_toml}}, {{catalog_csv}} are filled in). The renderer writes
the filled-in copies to deploy/rendered/ (committed: review them in diffs) and the bundle
to --out: those files, catalog.csv and the release binary.

  --check     re-render in memory and exit 1, naming each file, when deploy/rendered/ is
              stale; builds nothing and writes nothing (CI)
  --no-build  skip `cargo build --release -p mail-order-bot`; the bundle then has no binary
  --out DIR   where the bundle goes (default <target dir>/deploy); an existing DIR must be
              empty or an earlier bundle, which is replaced"
    )]
    Deploy(DeployArgs),
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Where to put the bundle (default: <target dir>/deploy)
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,

    /// Only check that the committed deploy/rendered/ matches the templates
    #[arg(long)]
    pub check: bool,

    /// Do not build the release binary
    #[arg(long)]
    pub no_build: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmarks to run, by binary name (see --list); all of them when none is given
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// List the available benchmarks and exit
    #[arg(long, conflicts_with = "names")]
    pub list: bool,

    /// Arguments passed to every benchmark binary (after `--`)
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}
