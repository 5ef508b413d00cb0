//! `cargo xtask`: parses the command line and hands it to the `xtask` library; only this
//! file picks exit codes (0 on success, 1 on any failure, 2 for usage errors via clap).
// A tool, not a library: the workspace's `missing_docs` / `unreachable_pub` are for
// the library crates.
#![allow(missing_docs, unreachable_pub)]

use std::process::ExitCode;

use clap::Parser;
use xtask::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match xtask::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
