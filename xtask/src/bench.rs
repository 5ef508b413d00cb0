//! `cargo xtask bench`: runs the benchmark binaries of `runtime-bench`.
//!
//! The binaries are discovered from `cargo metadata` (every `bin` target of the crate),
//! so adding `crates/runtime-bench/src/bin/foo.rs` is all it takes to add a benchmark.
//! Each binary prints its own tables; this command adds a header per benchmark and a
//! summary, and fails if any benchmark failed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cli::BenchArgs;
use crate::metadata::{self, Metadata};
use crate::process;

pub const BENCH_CRATE: &str = "runtime-bench";

/// One benchmark binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bench {
    pub name: String,
    pub src_path: PathBuf,
}

/// The `bin` targets of `runtime-bench`, sorted by name.
pub fn discover(meta: &Metadata) -> anyhow::Result<Vec<Bench>> {
    let package = meta
        .workspace_package_named(BENCH_CRATE)
        .with_context(|| format!("the workspace has no {BENCH_CRATE} crate"))?;
    let mut benches: Vec<Bench> = package
        .targets
        .iter()
        .filter(|t| t.kind.iter().any(|k| k == "bin"))
        .map(|t| Bench {
            name: t.name.clone(),
            src_path: t.src_path.clone(),
        })
        .collect();
    benches.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(benches)
}

/// The requested benchmarks (all when `names` is empty), in the order asked; an unknown
/// name fails with the list of known ones.
pub fn select<'a>(known: &'a [Bench], names: &[String]) -> anyhow::Result<Vec<&'a Bench>> {
    if names.is_empty() {
        return Ok(known.iter().collect());
    }
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| !known.iter().any(|b| &b.name == *n))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known_names: Vec<&str> = known.iter().map(|b| b.name.as_str()).collect();
        bail!(
            "unknown benchmark{} {}; known: {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", "),
            if known_names.is_empty() {
                "none yet".to_string()
            } else {
                known_names.join(", ")
            }
        );
    }
    Ok(names
        .iter()
        .filter_map(|n| known.iter().find(|b| &b.name == n))
        .collect())
}

/// The first sentence of a benchmark's `//!` doc (which may span lines), as its
/// description: whole, never cut mid-sentence.
pub fn describe(src_path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(src_path).ok()?;
    let paragraph: Vec<&str> = text
        .lines()
        .map(str::trim)
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| l.trim().trim_start_matches('#').trim())
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let joined = paragraph.join(" ");
    let sentence = match joined.find(". ") {
        Some(end) => &joined[..=end],
        None => joined.as_str(),
    };
    (!sentence.is_empty()).then(|| sentence.trim().to_owned())
}

/// `text` wrapped to lines of at most `width` characters (words are not split).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().map(|l| l.len()).unwrap_or(0);
        if line > 0 && line + 1 + word.len() > width {
            lines.push(String::new());
        }
        if let Some(last) = lines.last_mut() {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let meta = metadata::load()?;
    let known = discover(&meta)?;
    if args.list {
        if known.is_empty() {
            println!("no benchmarks yet: add crates/{BENCH_CRATE}/src/bin/<name>.rs");
        }
        let width = known.iter().map(|b| b.name.len()).max().unwrap_or(0);
        for bench in &known {
            let about = describe(&bench.src_path).unwrap_or_default();
            // Continuation lines start under the description, within 100 columns.
            for (i, line) in wrap(&about, 98usize.saturating_sub(width).max(40))
                .iter()
                .enumerate()
            {
                let name = if i == 0 { bench.name.as_str() } else { "" };
                println!("{name:<width$}  {line}");
            }
        }
        return Ok(());
    }
    let selected = select(&known, &args.names)?;
    if selected.is_empty() {
        println!("no benchmarks to run: add crates/{BENCH_CRATE}/src/bin/<name>.rs");
        return Ok(());
    }

    // Build everything first, so compile time is not counted as the first benchmark's.
    let mut build_args = vec!["build", "--release", "-p", BENCH_CRATE];
    for bench in &selected {
        build_args.extend(["--bin", bench.name.as_str()]);
    }
    let build_line = process::display_cargo(&build_args);
    println!("==> building: {build_line}");
    process::run_ok(&mut process::cargo_command(&build_args), &build_line)?;

    let mut results: Vec<(&str, bool, Duration)> = Vec::new();
    for (index, bench) in selected.iter().enumerate() {
        let mut run_args = vec![
            "run",
            "--quiet",
            "--release",
            "-p",
            BENCH_CRATE,
            "--bin",
            bench.name.as_str(),
        ];
        if !args.args.is_empty() {
            run_args.push("--");
            run_args.extend(args.args.iter().map(String::as_str));
        }
        let line = process::display_cargo(&run_args);
        println!(
            "\n==> bench {}/{}: {} ({line})",
            index + 1,
            selected.len(),
            bench.name
        );
        let started = Instant::now();
        let status = process::status(&mut process::cargo_command(&run_args), &line)?;
        let elapsed = started.elapsed();
        if !status.success() {
            eprintln!("bench {} failed ({status})", bench.name);
        }
        results.push((bench.name.as_str(), status.success(), elapsed));
    }

    println!("\n==> bench summary");
    let width = results.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (name, ok, elapsed) in &results {
        println!(
            "  {name:<width$}  {}  {:.1}s",
            if *ok { "ok    " } else { "FAILED" },
            elapsed.as_secs_f64()
        );
    }
    let failed: Vec<&str> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    if !failed.is_empty() {
        bail!("benchmarks failed: {}", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn benches(names: &[&str]) -> Vec<Bench> {
        names
            .iter()
            .map(|n| Bench {
                name: n.to_string(),
                src_path: PathBuf::from(format!("src/bin/{n}.rs")),
            })
            .collect()
    }

    #[test]
    fn no_names_selects_every_benchmark() {
        let known = benches(&["queue", "router"]);
        let selected = select(&known, &[]).unwrap();
        assert_eq!(selected.len(), 2);
    }

    #[test]
    fn names_select_in_the_order_asked() {
        let known = benches(&["queue", "router"]);
        let selected = select(&known, &["router".into(), "queue".into()]).unwrap();
        let names: Vec<&str> = selected.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["router", "queue"]);
    }

    #[test]
    fn descriptions_are_whole_sentences_and_wrap_between_words() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("b.rs");
        std::fs::write(
            &src,
            "//! Time from an IMAP APPEND to the order being stored, one message at a time,\n\
             //! with IDLE. Dovecot itself announces new mail late.\n//!\n//! More.\nfn main() {}\n",
        )
        .unwrap();
        assert_eq!(
            describe(&src).unwrap(),
            "Time from an IMAP APPEND to the order being stored, one message at a time, with IDLE."
        );
        let lines = wrap("aaa bbb ccc ddd", 7);
        assert_eq!(lines, ["aaa bbb", "ccc ddd"]);
        assert!(wrap("a-very-long-word x", 4).iter().all(|l| !l.is_empty()));
    }

    #[test]
    fn unknown_names_fail_listing_the_known_ones() {
        let known = benches(&["queue", "router"]);
        let error = select(&known, &["queue".into(), "nope".into()]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown benchmark nope; known: queue, router"
        );
    }

    #[test]
    fn the_real_bench_crate_is_discovered() {
        let meta = metadata::load().unwrap();
        let found = discover(&meta).unwrap();
        for bench in &found {
            assert!(bench.src_path.exists(), "{}", bench.src_path.display());
        }
    }
}
