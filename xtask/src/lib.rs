//! # xtask
//!
//! The project's task runner, invoked as `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`). Plain Rust instead of shell scripts or `make`, so it runs
//! wherever cargo runs and can be unit tested.
//!
//! * [`ci`]: everything CI checks, in order, failing fast: fmt, clippy, check-layers, the
//!   test suite (nextest when installed), doc tests. If it passes locally, CI passes.
//! * [`layers`]: the architecture's dependency rules (which crate may depend on which),
//!   enforced against `cargo metadata`. The rules are a pure function over parsed
//!   metadata ([`layers::check`]) so tests can feed it synthetic workspaces.
//! * [`package`]: every library crate could be published (complete metadata, versions
//!   on path dependencies, `cargo package --list` clean); nothing else would be.
//! * [`bench`]: discovers and runs the benchmark binaries of `runtime-bench`.
//! * [`deploy`]: renders the hand-written templates of `deploy/templates/` into the
//!   committed `deploy/rendered/` and a bundle with the release binary; `--check` fails
//!   when the committed copies are stale.
//!
//! Key decision: crates are classified by where they live (`crates/runtime-adapters-*` is
//! an adapter, `apps/*` is an app), not by a hand-kept list, so a new adapter or app is
//! covered by the rules the moment it is added to the workspace.
// A tool, not a library: the workspace's `missing_docs` / `unreachable_pub` are for
// the library crates.
#![allow(missing_docs, unreachable_pub)]

pub mod bench;
pub mod ci;
pub mod cli;
pub mod deploy;
pub mod layers;
pub mod metadata;
pub mod package;
mod process;

use cli::{Cli, Command};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ci => ci::run(),
        Command::CheckLayers => layers::run(),
        Command::CheckPackage => package::run(),
        Command::Bench(args) => bench::run(&args),
        Command::Deploy(args) => deploy::run(&args),
    }
}
