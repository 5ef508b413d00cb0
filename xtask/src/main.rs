//! `cargo xtask`: parses the command line and hands it to the `xtask` library; only this
//! file picks exit codes (0 on success, 1 on any failure, 2 for usage errors via clap).

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
