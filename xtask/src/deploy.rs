//! `cargo xtask deploy`: the deployment bundle of mail-order-bot.
//!
//! Three places, one direction:
//!
//! * `deploy/templates/` — **hand-written** assets: the example config, the systemd unit,
//!   the Dockerfile, the compose file, the Kubernetes manifests. A few `{{placeholders}}`
//!   stand for values that must agree across files ([`Values`]).
//! * `deploy/rendered/` — **generated**: every template with its placeholders filled in,
//!   committed so reviewers see the real files in diffs and users can take them from a
//!   clone without running anything. Never edited by hand; `cargo xtask deploy --check`
//!   (and a test) fails when it is stale.
//! * the bundle (`target/deploy/` by default) — the rendered files, the catalog and the
//!   release binary: what an operator copies to a machine.
//!
//! Key decision: values that must agree are derived, not repeated. The runtime's
//! stop-sequence timeouts (`runtime.shutdown_timeout`, `source_stop_timeout`,
//! `release_timeout`, `control_stop_timeout`) are read from the example config, and the
//! stop timeouts of systemd, Docker and Kubernetes are computed from them
//! ([`stop_timeout_secs`]); the ConfigMap
//! embeds the example config itself. Changing the config and re-rendering keeps every
//! file consistent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::DeployArgs;
use crate::process;

/// Hand-written templates, relative to the workspace root.
pub const TEMPLATES: &str = "deploy/templates";
/// Generated, committed copies, relative to the workspace root.
pub const RENDERED: &str = "deploy/rendered";
/// The example configuration, relative to [`TEMPLATES`].
pub const EXAMPLE_CONFIG: &str = "mail-order-bot.toml";
/// The systemd unit, relative to [`TEMPLATES`].
pub const UNIT: &str = "mail-order-bot.service";
/// The catalog shipped with the bundle and embedded in the ConfigMap.
pub const CATALOG: &str = "apps/mail-order-bot/samples/catalog.csv";
/// The cargo profile of the shipped binary (release without line tables, stripped).
pub const DIST_PROFILE: &str = "dist";
/// The file naming a bundle's contents; its presence marks a directory as ours.
pub const BUNDLE_MANIFEST: &str = "BUNDLE";

/// Margin above the runtime's stop sequence for the process to exit and the supervisor
/// to notice.
pub const STOP_MARGIN_SECS: u64 = 5;

/// The runtime's stop sequence, as the example config sets it (`[runtime]`): sources
/// stop, workers drain, cut-off workers hand their tasks back, the control plane stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopBudget {
    /// `runtime.source_stop_timeout`.
    pub source_stop: Duration,
    /// `runtime.shutdown_timeout`.
    pub shutdown: Duration,
    /// `runtime.release_timeout`.
    pub release: Duration,
    /// `runtime.control_stop_timeout`.
    pub control_stop: Duration,
}

/// How long systemd, Docker and Kubernetes must wait after SIGTERM before killing: the
/// whole stop sequence plus [`STOP_MARGIN_SECS`].
pub fn stop_timeout_secs(budget: &StopBudget) -> u64 {
    let sequence = budget.source_stop + budget.shutdown + budget.release + budget.control_stop;
    sequence.as_secs_f64().ceil() as u64 + STOP_MARGIN_SECS
}

/// The values placeholders stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Values {
    /// The workspace version (mail-order-bot uses `version.workspace = true`).
    pub version: String,
    /// `runtime.shutdown_timeout` as written in the example config (`"30s"`).
    pub shutdown_timeout: String,
    /// `runtime.source_stop_timeout` as written in the example config.
    pub source_stop_timeout: String,
    /// `runtime.release_timeout` as written in the example config.
    pub release_timeout: String,
    /// `runtime.control_stop_timeout` as written in the example config.
    pub control_stop_timeout: String,
    /// [`stop_timeout_secs`] of it.
    pub stop_timeout_secs: u64,
    /// The example config, verbatim.
    pub config_toml: String,
    /// The catalog, verbatim.
    pub catalog_csv: String,
}

impl Values {
    /// Reads the values from the workspace at `root`.
    pub fn read(root: &Path) -> anyhow::Result<Values> {
        let config_path = root.join(TEMPLATES).join(EXAMPLE_CONFIG);
        let config_toml = read(&config_path)?;
        let config: toml::Table = toml::from_str(&config_toml)
            .with_context(|| format!("{} is not valid TOML", config_path.display()))?;
        // Every part of the stop sequence is read, so the stop timeouts cannot disagree
        // with what the deployed runtime does.
        let timeout = |key: &str| -> anyhow::Result<(String, Duration)> {
            let text = config
                .get("runtime")
                .and_then(|r| r.get(key))
                .and_then(toml::Value::as_str)
                .with_context(|| {
                    format!(
                        "{} must set runtime.{key} (the stop timeouts derive from it)",
                        config_path.display()
                    )
                })?
                .to_owned();
            let parsed = humantime::parse_duration(&text)
                .with_context(|| format!("runtime.{key} = {text:?} is not a duration"))?;
            Ok((text, parsed))
        };
        let (shutdown_timeout, shutdown) = timeout("shutdown_timeout")?;
        let (source_stop_timeout, source_stop) = timeout("source_stop_timeout")?;
        let (release_timeout, release) = timeout("release_timeout")?;
        let (control_stop_timeout, control_stop) = timeout("control_stop_timeout")?;
        let budget = StopBudget {
            source_stop,
            shutdown,
            release,
            control_stop,
        };
        Ok(Values {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            stop_timeout_secs: stop_timeout_secs(&budget),
            shutdown_timeout,
            source_stop_timeout,
            release_timeout,
            control_stop_timeout,
            config_toml,
            catalog_csv: read(&root.join(CATALOG))?,
        })
    }

    fn vars(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("version", self.version.clone()),
            ("shutdown_timeout", self.shutdown_timeout.clone()),
            ("source_stop_timeout", self.source_stop_timeout.clone()),
            ("release_timeout", self.release_timeout.clone()),
            ("control_stop_timeout", self.control_stop_timeout.clone()),
            ("stop_timeout_secs", self.stop_timeout_secs.to_string()),
            ("config_toml", self.config_toml.clone()),
            ("catalog_csv", self.catalog_csv.clone()),
        ])
    }
}

/// Fills `{{name}}` placeholders. A placeholder alone on its line takes a multi-line value,
/// each line indented like the placeholder (for YAML block scalars); inline placeholders
/// take single-line values. Unknown names and unclosed braces are errors.
pub fn render(template: &str, vars: &BTreeMap<&str, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len());
    for (n, line) in template.split_inclusive('\n').enumerate() {
        let lineno = n + 1;
        let body = line.trim_end_matches('\n');
        let trimmed = body.trim_start();
        if let Some(name) = trimmed
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .filter(|name| !name.contains("{{") && !name.contains("}}"))
        {
            let value = lookup(vars, name.trim(), lineno)?;
            let indent = &body[..body.len() - trimmed.len()];
            for (i, value_line) in value.lines().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                if !value_line.is_empty() {
                    out.push_str(indent);
                    out.push_str(value_line);
                }
            }
            if line.ends_with('\n') {
                out.push('\n');
            }
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("line {lineno}: `{{{{` without a closing `}}}}`");
            };
            let value = lookup(vars, after[..end].trim(), lineno)?;
            if value.trim_end_matches('\n').contains('\n') {
                bail!(
                    "line {lineno}: {{{{{}}}}} has several lines; put it alone on its line",
                    after[..end].trim()
                );
            }
            out.push_str(value.trim_end_matches('\n'));
            rest = &after[end + 2..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

fn lookup<'a>(
    vars: &'a BTreeMap<&str, String>,
    name: &str,
    line: usize,
) -> anyhow::Result<&'a str> {
    match vars.get(name) {
        Some(v) => Ok(v),
        None => bail!(
            "line {line}: unknown placeholder {{{{{name}}}}}; known: {}",
            vars.keys().copied().collect::<Vec<_>>().join(", ")
        ),
    }
}

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Path relative to `deploy/rendered/` (and to the bundle), `/`-separated.
    pub path: String,
    /// The content.
    pub text: String,
}

/// Renders every template of `root`, sorted by path.
pub fn render_all(root: &Path) -> anyhow::Result<Vec<Rendered>> {
    let values = Values::read(root)?;
    let vars = values.vars();
    let templates = root.join(TEMPLATES);
    let mut out = Vec::new();
    for rel in files_under(&templates)? {
        let path = templates.join(&rel);
        let text = render(&read(&path)?, &vars)
            .with_context(|| format!("cannot render {}", path.display()))?;
        out.push(Rendered { path: rel, text });
    }
    Ok(out)
}

/// Files under `dir`, relative and `/`-separated, sorted; an absent dir has none.
fn files_under(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let entries = match std::fs::read_dir(&abs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel.as_os_str().is_empty() => {
                return Ok(found);
            }
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", abs.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", abs.display()))?;
            let child = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(child);
            } else {
                let parts: Vec<String> = child
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                found.push(parts.join("/"));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The committed files of `deploy/rendered/` that do not match the templates, each with
/// why: `differs`, `missing`, or `left over` (no template makes it).
pub fn stale(root: &Path) -> anyhow::Result<Vec<String>> {
    let rendered = render_all(root)?;
    let dir = root.join(RENDERED);
    let mut problems = Vec::new();
    for r in &rendered {
        match std::fs::read_to_string(dir.join(&r.path)) {
            Ok(text) if text == r.text => {}
            Ok(_) => problems.push(format!("{RENDERED}/{} (differs)", r.path)),
            Err(_) => problems.push(format!("{RENDERED}/{} (missing)", r.path)),
        }
    }
    for rel in files_under(&dir)? {
        if !rendered.iter().any(|r| r.path == rel) {
            problems.push(format!(
                "{RENDERED}/{rel} (left over: no template makes it)"
            ));
        }
    }
    Ok(problems)
}

/// Writes the rendered files into `dir` (creating it), removing files no template makes;
/// returns the paths whose content changed.
pub fn write_rendered(dir: &Path, rendered: &[Rendered]) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    for r in rendered {
        let path = dir.join(&r.path);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(r.text.as_str()) {
            write(&path, r.text.as_bytes())?;
            changed.push(r.path.clone());
        }
    }
    for rel in files_under(dir)? {
        if !rendered.iter().any(|r| r.path == rel) {
            let path = dir.join(&rel);
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            changed.push(rel);
        }
    }
    Ok(changed)
}

/// Writes the bundle into `out`: the rendered files, the catalog, the binary (when
/// given) and a [`BUNDLE_MANIFEST`]. `out` must be absent, empty, or an earlier bundle
/// (it is then replaced), so a wrong `--out` cannot wipe unrelated files.
pub fn write_bundle(
    root: &Path,
    out: &Path,
    rendered: &[Rendered],
    binary: Option<&Path>,
) -> anyhow::Result<()> {
    if out.exists() {
        let is_bundle = out.join(BUNDLE_MANIFEST).is_file();
        let is_empty = std::fs::read_dir(out)
            .with_context(|| format!("cannot list {}", out.display()))?
            .next()
            .is_none();
        if !is_bundle && !is_empty {
            bail!(
                "refusing to write the bundle into {}: it is not empty and holds no {BUNDLE_MANIFEST} \
                 of an earlier bundle",
                out.display()
            );
        }
        if is_bundle {
            std::fs::remove_dir_all(out)
                .with_context(|| format!("cannot remove the old bundle {}", out.display()))?;
        }
    }
    let mut manifest = String::new();
    let values = Values::read(root)?;
    let _ = writeln!(
        manifest,
        "mail-order-bot {} deployment bundle",
        values.version
    );
    let _ = writeln!(
        manifest,
        "made by `cargo xtask deploy`; see docs/operations.md\n"
    );
    for r in rendered {
        write(&out.join(&r.path), r.text.as_bytes())?;
        let _ = writeln!(manifest, "{}", r.path);
    }
    write(&out.join("catalog.csv"), values.catalog_csv.as_bytes())?;
    let _ = writeln!(manifest, "catalog.csv");
    match binary {
        Some(bin) => {
            let dest = out.join("mail-order-bot");
            std::fs::copy(bin, &dest)
                .with_context(|| format!("cannot copy {} to {}", bin.display(), dest.display()))?;
            let _ = writeln!(manifest, "mail-order-bot");
        }
        None => {
            let _ = writeln!(manifest, "(no binary: built with --no-build)");
        }
    }
    write(&out.join(BUNDLE_MANIFEST), manifest.as_bytes())
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the workspace root when
/// relative) or `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// Runs `cargo xtask deploy`.
pub fn run(args: &DeployArgs) -> anyhow::Result<()> {
    let root = process::workspace_root();
    if args.check {
        let problems = stale(&root)?;
        if problems.is_empty() {
            println!("deploy --check: ok, {RENDERED}/ matches {TEMPLATES}/");
            return Ok(());
        }
        let mut msg = format!(
            "{RENDERED}/ is stale; run `cargo xtask deploy --no-build` and commit the result:"
        );
        for p in &problems {
            let _ = write!(msg, "\n  {p}");
        }
        bail!(msg);
    }

    let binary = if args.no_build {
        None
    } else {
        let cargo_args = [
            "build",
            "--profile",
            DIST_PROFILE,
            "--locked",
            "-p",
            "mail-order-bot",
        ];
        let line = process::display_cargo(&cargo_args);
        eprintln!("deploy: {line}");
        process::run_ok(&mut process::cargo_command(cargo_args), &line)?;
        Some(target_dir(&root).join(DIST_PROFILE).join("mail-order-bot"))
    };

    let rendered = render_all(&root)?;
    let changed = write_rendered(&root.join(RENDERED), &rendered)?;
    for path in &changed {
        println!("deploy: updated {RENDERED}/{path} (commit it)");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir(&root).join("deploy"));
    write_bundle(&root, &out, &rendered, binary.as_deref())?;
    println!(
        "deploy: bundle in {} ({} files{})",
        out.display(),
        rendered.len() + 1,
        if binary.is_some() {
            " and the release binary"
        } else {
            "; no binary: --no-build"
        }
    );
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("v", "1.2".to_owned()),
            ("block", "a = 1\n\nb = 2\n".to_owned()),
        ])
    }

    #[test]
    fn inline_placeholders_are_filled() {
        assert_eq!(
            render("x {{v}} y {{ v }}\n", &vars()).unwrap(),
            "x 1.2 y 1.2\n"
        );
    }

    #[test]
    fn a_placeholder_alone_on_its_line_is_indented_line_by_line() {
        let out = render("data: |\n    {{block}}\nend\n", &vars()).unwrap();
        assert_eq!(out, "data: |\n    a = 1\n\n    b = 2\nend\n");
    }

    #[test]
    fn unknown_unclosed_and_misplaced_placeholders_are_errors() {
        let e = render("a\n{{nope}}\n", &vars()).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("nope") && e.contains("known: block, v"),
            "{e}"
        );
        assert!(render("x {{v\n", &vars()).is_err());
        let e = render("x = {{block}}\n", &vars()).unwrap_err().to_string();
        assert!(e.contains("alone on its line"), "{e}");
    }

    #[test]
    fn stop_timeout_covers_the_stop_sequence() {
        // The runtime's defaults around the given shutdown_timeout.
        let budget = |shutdown| StopBudget {
            source_stop: Duration::from_secs(10),
            shutdown,
            release: Duration::from_secs(10),
            control_stop: Duration::from_secs(5),
        };
        assert_eq!(stop_timeout_secs(&budget(Duration::from_secs(30))), 60);
        assert_eq!(stop_timeout_secs(&budget(Duration::from_millis(1500))), 32);
    }
}
