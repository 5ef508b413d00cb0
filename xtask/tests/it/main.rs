//! End-to-end checks of the `xtask` binary: exit codes and the messages people see.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

mod deploy;

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run the xtask binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_layers_passes_on_this_workspace() {
    let out = xtask(&["check-layers"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("check-layers: ok"));
}

#[test]
fn bench_list_succeeds() {
    let out = xtask(&["bench", "--list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn an_unknown_benchmark_fails_naming_the_known_ones() {
    let out = xtask(&["bench", "no-such-bench"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown benchmark no-such-bench; known:"),
        "{stderr}"
    );
}

#[test]
fn help_shows_every_command() {
    let out = xtask(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in ["ci", "check-layers", "bench", "deploy"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}
