//! Running cargo and other tools as child processes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, bail};

/// The cargo that started us (`$CARGO`, set by `cargo run`), so the pinned toolchain is
/// used; plain `cargo` from `PATH` otherwise.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The workspace root: xtask lives one level below it.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// A cargo command run from the workspace root; the environment (CARGO_TARGET_DIR,
/// RUSTFLAGS, ...) is inherited.
pub fn cargo_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(cargo());
    cmd.args(args).current_dir(workspace_root());
    cmd
}

/// Renders a cargo command line for messages: `cargo clippy --workspace ...`.
pub fn display_cargo(args: &[&str]) -> String {
    let mut line = String::from("cargo");
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// Runs a command with inherited stdio and returns its exit status.
pub fn status(cmd: &mut Command, what: &str) -> anyhow::Result<ExitStatus> {
    cmd.stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start `{what}`"))
}

/// Runs a command with inherited stdio and fails unless it exits 0.
pub fn run_ok(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = status(cmd, what)?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}
