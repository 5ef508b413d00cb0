//! `cargo xtask ci`: every check CI runs, in order, failing fast.
//!
//! One entry point for humans and CI alike (`.ci/run` calls exactly this), so "passes
//! locally" means "passes in CI". Each step's child process inherits the environment,
//! so `CARGO_TARGET_DIR` and friends pass through.

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::metadata;
use crate::{layers, package, process};

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `cargo <args>`.
    Cargo(Vec<&'static str>),
    /// The layer rules, in process.
    CheckLayers,
    /// The library crates' package metadata and `cargo package --list`.
    CheckPackage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub action: Action,
}

impl Step {
    fn cargo(name: &'static str, args: &[&'static str]) -> Self {
        Step {
            name,
            action: Action::Cargo(args.to_vec()),
        }
    }

    pub fn command_line(&self) -> String {
        match &self.action {
            Action::Cargo(args) => process::display_cargo(args),
            Action::CheckLayers => "cargo xtask check-layers".to_string(),
            Action::CheckPackage => "cargo xtask check-package".to_string(),
        }
    }
}

/// The steps, in order. `nextest` picks the test runner.
pub fn steps(nextest: bool) -> Vec<Step> {
    let tests = if nextest {
        Step::cargo(
            "tests",
            &["nextest", "run", "--workspace", "--no-fail-fast"],
        )
    } else {
        Step::cargo("tests", &["test", "--workspace", "--no-fail-fast"])
    };
    vec![
        Step::cargo("fmt", &["fmt", "--all", "--check"]),
        Step::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step {
            name: "check-layers",
            action: Action::CheckLayers,
        },
        Step {
            name: "check-package",
            action: Action::CheckPackage,
        },
        tests,
        Step::cargo("doc-tests", &["test", "--workspace", "--doc"]),
    ]
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed(Duration),
    Failed(Duration),
    NotRun,
}

/// The one-line summary: `ci: FAILED in 73.4s | fmt ok 0.3s | clippy FAILED 73.1s | ...`.
pub fn summary(results: &[(&str, Outcome)], total: Duration) -> String {
    let failed = results
        .iter()
        .any(|(_, o)| !matches!(o, Outcome::Passed(_)));
    let mut line = format!(
        "ci: {} in {:.1}s",
        if failed { "FAILED" } else { "ok" },
        total.as_secs_f64()
    );
    for (name, outcome) in results {
        let _ = match outcome {
            Outcome::Passed(d) => write!(line, " | {name} ok {:.1}s", d.as_secs_f64()),
            Outcome::Failed(d) => write!(line, " | {name} FAILED {:.1}s", d.as_secs_f64()),
            Outcome::NotRun => write!(line, " | {name} not run"),
        };
    }
    line
}

/// Whether `cargo nextest` is installed.
fn nextest_available() -> bool {
    process::cargo_command(["nextest", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_step(step: &Step) -> anyhow::Result<()> {
    match &step.action {
        Action::Cargo(args) => {
            process::run_ok(&mut process::cargo_command(args), &step.command_line())
        }
        Action::CheckLayers => layers::run_on(&metadata::load()?),
        Action::CheckPackage => package::run_on(&metadata::load()?),
    }
}

pub fn run() -> anyhow::Result<()> {
    let nextest = nextest_available();
    if !nextest {
        println!(
            "ci: cargo-nextest not found, running the tests with `cargo test` instead \
             (install it with `cargo install cargo-nextest --locked`)"
        );
    }
    let steps = steps(nextest);
    let started = Instant::now();
    let mut results: Vec<(&str, Outcome)> =
        steps.iter().map(|s| (s.name, Outcome::NotRun)).collect();
    let mut failure = None;
    for (index, step) in steps.iter().enumerate() {
        println!(
            "\n==> ci step {}/{}: {} ({})",
            index + 1,
            steps.len(),
            step.name,
            step.command_line()
        );
        let step_started = Instant::now();
        let result = run_step(step);
        let elapsed = step_started.elapsed();
        match result {
            Ok(()) => results[index].1 = Outcome::Passed(elapsed),
            Err(error) => {
                results[index].1 = Outcome::Failed(elapsed);
                failure = Some((step.name, error));
                break;
            }
        }
    }
    println!("\n{}", summary(&results, started.elapsed()));
    if let Some((name, error)) = failure {
        bail!("ci step `{name}` failed: {error:#}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_the_documented_order() {
        let names: Vec<&str> = steps(true).iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "fmt",
                "clippy",
                "check-layers",
                "check-package",
                "tests",
                "doc-tests"
            ]
        );
    }

    #[test]
    fn tests_fall_back_to_cargo_test_without_nextest() {
        let with = steps(true);
        let without = steps(false);
        assert_eq!(
            with[4].command_line(),
            "cargo nextest run --workspace --no-fail-fast"
        );
        assert_eq!(
            without[4].command_line(),
            "cargo test --workspace --no-fail-fast"
        );
        assert_eq!(
            with[1].command_line(),
            "cargo clippy --workspace --all-targets -- -D warnings"
        );
    }

    #[test]
    fn the_summary_names_each_step_and_its_time() {
        let line = summary(
            &[
                ("fmt", Outcome::Passed(Duration::from_millis(300))),
                ("clippy", Outcome::Failed(Duration::from_millis(73_100))),
                ("tests", Outcome::NotRun),
            ],
            Duration::from_millis(73_400),
        );
        assert_eq!(
            line,
            "ci: FAILED in 73.4s | fmt ok 0.3s | clippy FAILED 73.1s | tests not run"
        );
        let ok = summary(&[("fmt", Outcome::Passed(Duration::ZERO))], Duration::ZERO);
        assert_eq!(ok, "ci: ok in 0.0s | fmt ok 0.0s");
    }
}
