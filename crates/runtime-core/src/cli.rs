//! The command line every app gets: `run`, `check-config`, `print-config`.
//!
//! An app flattens [`RuntimeCommand`] into its own clap enum and adds its commands:
//!
//! ```
//! use clap::{Parser, Subcommand};
//! use runtime_core::cli::RuntimeCommand;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(Subcommand)]
//! enum Command {
//!     #[command(flatten)]
//!     Runtime(RuntimeCommand),
//!     /// List stored orders
//!     Orders {
//!         #[arg(long)]
//!         json: bool,
//!     },
//! }
//!
//! let cli = Cli::parse_from(["bot", "check-config", "--config", "a.toml", "--config", "b.toml"]);
//! assert!(matches!(cli.command, Command::Runtime(RuntimeCommand::CheckConfig(_))));
//! ```
//!
//! The app describes its configuration once in an [`AppConfigSpec`] (name, env prefix,
//! embedded defaults, validators, the file loader and the optional database layer) and
//! calls [`load_config`], [`check_config`] or [`print_config`]. How `run` composes the
//! runtime is app code; the CLI only loads the configuration.
//!
//! Loading is two-phase because the database layer is configured in files or the
//! environment (`[config_db] url = ...`): defaults + files + environment are read first
//! (unvalidated), each [`LayerFactory`] looks at that bootstrap view and may return a
//! provider, and then the full stack defaults < files < database < environment is
//! loaded and validated.
//!
//! Exit codes: [`EXIT_OK`], [`EXIT_CONFIG`] for a configuration problem, [`EXIT_FAILURE`]
//! for anything else; [`exit_codes_help`] is their `--help` text.
//!
//! Relative paths in a config file are relative to that file's directory (a config
//! names its catalog or secret beside it, and must mean the same from any working
//! directory): every key ending in `_file`, plus the keys an app declares with
//! [`AppConfigSpec::path_key`]. Paths from the environment or the database stay
//! relative to the working directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use runtime_contracts::{
    ConfigError, ConfigLayer, ConfigOrigin, ConfigProvider, ConfigSnapshot, Probe,
};

use crate::config::{
    ConfigurationManager, DefaultsProvider, EnvProvider, EnvSource, PlainFileProvider, Validator,
    known_sections_validator, load_unvalidated, to_toml,
};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;

/// Exit code for any failure that is not a configuration problem.
pub const EXIT_FAILURE: u8 = 1;

/// Exit code for a configuration that cannot be loaded or is invalid.
pub const EXIT_CONFIG: u8 = 2;

/// Exit code when a second stop signal cut the graceful stop short
/// ([`RuntimeError::Interrupted`](crate::RuntimeError::Interrupted)): 128 + SIGINT, as
/// shells report an interrupted command.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The `Exit codes:` section of a command's `--help`; `ok` says what success means for
/// that command.
pub fn exit_codes_help(ok: &str) -> String {
    format!(
        "Exit codes:\n  {EXIT_OK}  {ok}\n  {EXIT_FAILURE}  any other failure (a server unreachable, \
         output not writable, ...)\n  {EXIT_CONFIG}  the configuration is wrong (a bad file, \
         value or key; every problem is listed)"
    )
}

/// [`exit_codes_help`] of a long-running command, which a second stop signal cuts short.
pub fn exit_codes_help_interruptible(ok: &str) -> String {
    format!(
        "{}\n  {EXIT_INTERRUPTED}  a second Ctrl-C or SIGTERM cut the graceful stop short",
        exit_codes_help(ok)
    )
}

/// Adds examples and exit codes to the `--help` of the runtime's subcommands, naming the
/// app's binary `bin` (call on the app's `clap::Command` before parsing).
pub fn with_runtime_help(cmd: clap::Command, bin: &str) -> clap::Command {
    let help_with = |examples: &[&str], codes: String| {
        let mut text = String::from("Examples:\n");
        for example in examples {
            text.push_str(&format!("  {bin} {example}\n"));
        }
        text.push('\n');
        text.push_str(&codes);
        text
    };
    let help = |examples: &[&str], ok: &str| help_with(examples, exit_codes_help(ok));
    cmd.mut_subcommand("run", |c| {
        c.after_help(help_with(
            &[
                "run --config /etc/bot/bot.toml",
                "run -c base.toml -c prod.toml     # later files win",
            ],
            exit_codes_help_interruptible(
                "stopped gracefully (SIGINT/SIGTERM or POST /admin/shutdown)",
            ),
        ))
    })
    .mut_subcommand("check-config", |c| {
        c.after_help(help(
            &[
                "check-config --config /etc/bot/bot.toml",
                "check-config -c base.toml -c prod.toml",
                "check-config -c prod.toml --connect   # then try each server (table; 2 on a failure)",
            ],
            "the configuration is valid (with --connect: and every server answered)",
        ))
    })
    .mut_subcommand("print-config", |c| {
        c.after_help(help(
            &[
                "print-config --config /etc/bot/bot.toml",
                "print-config -c bot.toml --origins   # where each value came from",
            ],
            "printed (also when the reader closes the output early, as `| head` does)",
        ))
    })
}

/// `--config FILE`, repeatable.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigArgs {
    /// Configuration file, TOML or YAML (.yaml/.yml); repeat to layer several, later wins
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    pub config: Vec<PathBuf>,
}

/// Arguments of `check-config`.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckArgs {
    /// The configuration files.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// After the offline checks, try each configured server for real (queue, trace
    /// collector, the app's own: mailbox, database); exit 2 if any fails
    #[arg(long)]
    pub connect: bool,
    /// How long each `--connect` probe may take
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
}

/// Arguments of `print-config`.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintArgs {
    /// The configuration files.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Show where each value came from (file:line, environment variable, database row)
    #[arg(long)]
    pub origins: bool,
}

/// The runtime's subcommands; flatten into the app's own enum.
#[derive(Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum RuntimeCommand {
    /// Run until SIGINT/SIGTERM, then stop gracefully
    Run(ConfigArgs),
    /// Validate the configuration: exit 0, or exit 2 listing every problem
    CheckConfig(CheckArgs),
    /// Print the effective configuration as TOML, secrets as ***
    PrintConfig(PrintArgs),
}

/// Makes the provider for one `--config` file.
pub type FileLoader = Arc<dyn Fn(&Path) -> Box<dyn ConfigProvider> + Send + Sync>;

/// Rewrites a value given in a config file whose directory is `base`, when it is a
/// relative path (or holds one); `None` keeps the value as written.
pub type PathResolver = fn(value: &str, base: &Path) -> Option<String>;

/// [`PathResolver`] for a plain path: a relative one is joined to `base`.
pub fn resolve_path(value: &str, base: &Path) -> Option<String> {
    let path = Path::new(value);
    if value.is_empty() || path.is_absolute() || base.as_os_str().is_empty() {
        return None;
    }
    base.join(path).to_str().map(str::to_owned)
}

/// Looks at the bootstrap configuration (defaults + files + environment) and returns the
/// provider of an extra layer (the database), or `None` when it is not configured.
pub type LayerFactory = Arc<
    dyn Fn(&ConfigSnapshot) -> Result<Option<Box<dyn ConfigProvider>>, ConfigError> + Send + Sync,
>;

/// How an application's configuration is put together.
#[derive(Clone)]
pub struct AppConfigSpec {
    /// App name (messages).
    pub name: &'static str,
    /// Environment prefix (`MOB` or `MOB_`).
    pub env_prefix: &'static str,
    /// The built-in defaults, a TOML document (usually `include_str!`).
    pub defaults_toml: &'static str,
    /// The app's own top-level sections. When not empty, any other section that is not
    /// a platform one is an error (a typo like `[workrs]` must not pass silently).
    pub sections: Vec<String>,
    /// Checks of the app's sections.
    pub validators: Vec<Validator>,
    /// Makes file providers; `None` uses [`PlainFileProvider`] (no line numbers). Apps
    /// pass `runtime_adapters_config::FileProvider::boxed`.
    pub file_loader: Option<FileLoader>,
    /// Extra layers between files and environment (the database), with the section that
    /// configures each (a known section).
    pub layers: Vec<(String, LayerFactory)>,
    /// Where environment variables come from; `None` is the process environment.
    pub env_source: Option<EnvSource>,
    /// Keys holding paths beside the `*_file` ones, with how to resolve each (see the
    /// module docs).
    pub path_keys: Vec<(String, PathResolver)>,
}

impl std::fmt::Debug for AppConfigSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfigSpec")
            .field("name", &self.name)
            .field("env_prefix", &self.env_prefix)
            .field("sections", &self.sections)
            .finish_non_exhaustive()
    }
}

impl AppConfigSpec {
    /// A spec with defaults and nothing else.
    pub fn new(name: &'static str, env_prefix: &'static str, defaults_toml: &'static str) -> Self {
        AppConfigSpec {
            name,
            env_prefix,
            defaults_toml,
            sections: Vec::new(),
            validators: Vec::new(),
            file_loader: None,
            layers: Vec::new(),
            env_source: None,
            // The runtime's own path key: relative to the config file like any other.
            path_keys: vec![("runtime.state_dir".to_owned(), resolve_path as PathResolver)],
        }
    }

    /// Declares the app's own sections (others, beyond the platform's, are errors).
    pub fn sections(mut self, sections: &[&str]) -> Self {
        self.sections
            .extend(sections.iter().map(|s| (*s).to_owned()));
        self
    }

    /// Adds a validator.
    pub fn validator(mut self, v: Validator) -> Self {
        self.validators.push(v);
        self
    }

    /// Sets the file loader.
    pub fn file_loader(
        mut self,
        f: impl Fn(&Path) -> Box<dyn ConfigProvider> + Send + Sync + 'static,
    ) -> Self {
        self.file_loader = Some(Arc::new(f));
        self
    }

    /// Adds an extra layer (placed after files, before the environment) configured by
    /// `section`.
    pub fn layer(
        mut self,
        section: &str,
        factory: impl Fn(&ConfigSnapshot) -> Result<Option<Box<dyn ConfigProvider>>, ConfigError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.layers.push((section.to_owned(), Arc::new(factory)));
        self
    }

    /// Reads environment variables from `source` instead of the process environment
    /// (embedding, tests).
    pub fn env_vars(
        mut self,
        source: impl Fn() -> Vec<(String, String)> + Send + Sync + 'static,
    ) -> Self {
        self.env_source = Some(Arc::new(source));
        self
    }

    /// Declares `key` (dotted) a path: relative in a config file means relative to the
    /// file's directory. `resolve` is [`resolve_path`] for plain paths; a URL that holds
    /// a path (`sqlite://./x.db`) brings its own.
    pub fn path_key(mut self, key: &str, resolve: PathResolver) -> Self {
        self.path_keys.push((key.to_owned(), resolve));
        self
    }

    fn env_provider(&self) -> Box<dyn ConfigProvider> {
        match &self.env_source {
            Some(source) => Box::new(EnvProvider::with_source(self.env_prefix, source.clone())),
            None => Box::new(EnvProvider::new(self.env_prefix)),
        }
    }

    fn file_provider(&self, path: &Path) -> Box<dyn ConfigProvider> {
        let inner = match &self.file_loader {
            Some(f) => f(path),
            None => PlainFileProvider::boxed(path),
        };
        Box::new(RelativeToFile {
            inner,
            path_keys: self.path_keys.clone(),
        })
    }
}

/// A file layer whose relative paths are resolved against the file's directory.
struct RelativeToFile {
    inner: Box<dyn ConfigProvider>,
    path_keys: Vec<(String, PathResolver)>,
}

impl RelativeToFile {
    fn resolver(&self, key: &str) -> Option<PathResolver> {
        if let Some((_, resolve)) = self.path_keys.iter().find(|(k, _)| k == key) {
            return Some(*resolve);
        }
        let leaf = key.rsplit('.').next().unwrap_or(key);
        leaf.ends_with("_file")
            .then_some(resolve_path as PathResolver)
    }
}

#[async_trait::async_trait]
impl ConfigProvider for RelativeToFile {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn load(&self) -> Result<ConfigLayer, ConfigError> {
        let mut layer = self.inner.load().await?;
        for (key, entry) in layer.entries.iter_mut() {
            let (ConfigOrigin::File { path, .. }, serde_json::Value::String(value)) =
                (&entry.origin, &entry.value)
            else {
                continue;
            };
            let base = path.parent().unwrap_or(Path::new(""));
            if let Some(resolved) = self.resolver(key).and_then(|r| r(value, base)) {
                entry.value = serde_json::Value::String(resolved);
            }
        }
        Ok(layer)
    }

    fn watch_paths(&self) -> Vec<PathBuf> {
        self.inner.watch_paths()
    }
}

/// Loads and validates the configuration: defaults < files (in order) < extra layers
/// (database) < environment.
pub async fn load_config(
    spec: &AppConfigSpec,
    args: &ConfigArgs,
) -> Result<ConfigurationManager, ConfigError> {
    let mut bottom: Vec<Box<dyn ConfigProvider>> =
        vec![Box::new(DefaultsProvider::new(spec.defaults_toml))];
    bottom.extend(args.config.iter().map(|p| spec.file_provider(p)));

    let mut extra: Vec<Box<dyn ConfigProvider>> = Vec::new();
    if !spec.layers.is_empty() {
        let mut boot: Vec<Box<dyn ConfigProvider>> =
            vec![Box::new(DefaultsProvider::new(spec.defaults_toml))];
        boot.extend(args.config.iter().map(|p| spec.file_provider(p)));
        boot.push(spec.env_provider());
        let bootstrap = load_unvalidated(&boot).await?;
        let mut issues = Vec::new();
        for (_, factory) in &spec.layers {
            match factory(&bootstrap) {
                Ok(Some(p)) => extra.push(p),
                Ok(None) => {}
                Err(ConfigError::Invalid(mut i)) => issues.append(&mut i),
                Err(e) => return Err(e),
            }
        }
        if !issues.is_empty() {
            return Err(ConfigError::Invalid(issues));
        }
    }

    let mut providers = bottom;
    providers.extend(extra);
    providers.push(spec.env_provider());
    let mut validators = spec.validators.clone();
    if !spec.sections.is_empty() {
        let mut known = spec.sections.clone();
        known.extend(spec.layers.iter().map(|(s, _)| s.clone()));
        validators.push(known_sections_validator(known));
    }
    ConfigurationManager::load(providers, validators).await
}

/// Writes a configuration error for an operator and returns [`EXIT_CONFIG`].
pub fn report_error(error: &ConfigError, err: &mut dyn Write) -> u8 {
    let _ = writeln!(err, "error: {error}");
    EXIT_CONFIG
}

/// For `run`: prints the error to stderr and gives exit code 2.
pub fn config_error_exit(error: &ConfigError) -> ExitCode {
    ExitCode::from(report_error(error, &mut std::io::stderr()))
}

/// Writes `text` to standard output (or `out`) and flushes. A reader that closed the
/// pipe early (`| head`) wanted no more: that is a normal end, not an error.
pub fn write_output(out: &mut dyn Write, text: &str) -> std::io::Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `check-config` writing to the given streams; returns the exit code.
pub async fn check_config_to(
    spec: &AppConfigSpec,
    args: &ConfigArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match load_config(spec, args).await {
        Ok(manager) => {
            let snapshot = manager.current();
            let text = format!(
                "{}: configuration ok ({} keys from: {})\n",
                spec.name,
                snapshot.origins.len(),
                manager.layer_names().join(", ")
            );
            output_exit(write_output(out, &text), err)
        }
        Err(e) => report_error(&e, err),
    }
}

fn output_exit(written: std::io::Result<()>, err: &mut dyn Write) -> u8 {
    match written {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "error: cannot write to standard output: {e}");
            EXIT_FAILURE
        }
    }
}

/// Makes the `check-config --connect` probes from the checked configuration (the
/// composition's and the app modules').
pub type ProbeFactory<'a> = &'a (dyn Fn(&ConfigSnapshot) -> Vec<Probe> + Sync);

/// How one `--connect` probe ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// What was checked.
    pub component: String,
    /// Where (secrets redacted).
    pub target: String,
    /// How long it took, or why it failed.
    pub outcome: Result<Duration, String>,
}

/// Runs every probe at once, each cut off after `timeout`; reports in the given order.
pub async fn run_probes(probes: Vec<Probe>, timeout: Duration) -> Vec<ProbeReport> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut reports: Vec<ProbeReport> = Vec::with_capacity(probes.len());
    for (i, probe) in probes.into_iter().enumerate() {
        reports.push(ProbeReport {
            component: probe.component,
            target: probe.target,
            outcome: Err("did not finish".into()),
        });
        let check = probe.check;
        tasks.spawn(async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(timeout, check).await {
                Ok(Ok(())) => Ok(started.elapsed()),
                Ok(Err(message)) => Err(message),
                Err(_) => Err(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                )),
            };
            (i, outcome)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        // A panicking probe stays "did not finish".
        if let Ok((i, outcome)) = joined
            && let Some(report) = reports.get_mut(i)
        {
            report.outcome = outcome;
        }
    }
    reports
}

/// The probe results as an aligned table: component, target, `ok (12ms)` or `FAILED: ...`.
pub fn probe_table(reports: &[ProbeReport]) -> String {
    let result = |r: &ProbeReport| match &r.outcome {
        Ok(took) => format!("ok ({}ms)", took.as_millis()),
        Err(message) => format!("FAILED: {message}"),
    };
    let width = |f: &dyn Fn(&ProbeReport) -> usize, title: &str| {
        reports.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let (c, t) = (
        width(&|r| r.component.len(), "component"),
        width(&|r| r.target.len(), "target"),
    );
    let mut text = format!("{:c$}  {:t$}  result\n", "component", "target");
    for r in reports {
        text.push_str(&format!(
            "{:c$}  {:t$}  {}\n",
            r.component,
            r.target,
            result(r)
        ));
    }
    text
}

/// `check-config [--connect]` writing to the given streams; returns the exit code. The
/// offline checks first (exactly [`check_config_to`]); with `--connect` then every probe
/// `probes` makes, as a table on `out`, exit 2 when one failed.
pub async fn check_config_connect_to(
    spec: &AppConfigSpec,
    args: &CheckArgs,
    probes: ProbeFactory<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let manager = match load_config(spec, &args.config).await {
        Ok(manager) => manager,
        Err(e) => return report_error(&e, err),
    };
    let snapshot = manager.current();
    let mut text = format!(
        "{}: configuration ok ({} keys from: {})\n",
        spec.name,
        snapshot.origins.len(),
        manager.layer_names().join(", ")
    );
    if !args.connect {
        return output_exit(write_output(out, &text), err);
    }
    let reports = run_probes(probes(&snapshot), args.connect_timeout).await;
    text.push_str(&probe_table(&reports));
    let failed = reports.iter().filter(|r| r.outcome.is_err()).count();
    let code = output_exit(write_output(out, &text), err);
    if failed > 0 {
        let _ = writeln!(
            err,
            "error: {failed} of {} connection checks failed",
            reports.len()
        );
        return EXIT_CONFIG;
    }
    code
}

/// `check-config [--connect]`: exit 0, or 2 with every problem on stderr (or a failed
/// connection check).
pub async fn check_config(
    spec: &AppConfigSpec,
    args: &CheckArgs,
    probes: ProbeFactory<'_>,
) -> ExitCode {
    ExitCode::from(
        check_config_connect_to(
            spec,
            args,
            probes,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )
        .await,
    )
}

/// `print-config` writing to the given streams; returns the exit code.
pub async fn print_config_to(
    spec: &AppConfigSpec,
    args: &PrintArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match load_config(spec, &args.config).await {
        Ok(manager) => {
            let snapshot = manager.current();
            let tree = snapshot.redacted();
            let origins = args.origins.then_some(&snapshot.origins);
            output_exit(write_output(out, &to_toml(&tree, origins)), err)
        }
        Err(e) => report_error(&e, err),
    }
}

/// Adds what the configuration leaves to its components' defaults to the printed tree
/// (the composition's `fill_effective`).
pub type EffectiveFill<'a> = &'a (dyn Fn(&ConfigSnapshot, &mut serde_json::Value) + Sync);

/// `print-config` with `fill` adding the components' own defaults; returns the exit code.
pub async fn print_effective_config_to(
    spec: &AppConfigSpec,
    args: &PrintArgs,
    fill: EffectiveFill<'_>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match load_config(spec, &args.config).await {
        Ok(manager) => {
            let snapshot = manager.current();
            let mut tree = snapshot.redacted();
            fill(&snapshot, &mut tree);
            let origins = args.origins.then_some(&snapshot.origins);
            output_exit(write_output(out, &to_toml(&tree, origins)), err)
        }
        Err(e) => report_error(&e, err),
    }
}

/// `print-config` with the components' defaults filled in by `fill`, secrets `***`.
pub async fn print_effective_config(
    spec: &AppConfigSpec,
    args: &PrintArgs,
    fill: EffectiveFill<'_>,
) -> ExitCode {
    ExitCode::from(
        print_effective_config_to(
            spec,
            args,
            fill,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )
        .await,
    )
}

/// `print-config`: the effective configuration as TOML, secrets `***`.
pub async fn print_config(spec: &AppConfigSpec, args: &PrintArgs) -> ExitCode {
    ExitCode::from(
        print_config_to(spec, args, &mut std::io::stdout(), &mut std::io::stderr()).await,
    )
}

#[cfg(test)]
mod tests {
    use super::resolve_path;
    use std::path::Path;

    #[test]
    fn only_relative_paths_move_to_the_file_directory() {
        let base = Path::new("/etc/bot");
        assert_eq!(
            resolve_path("catalog.csv", base).as_deref(),
            Some("/etc/bot/catalog.csv")
        );
        assert_eq!(
            resolve_path("../x/y", Path::new("conf")).as_deref(),
            Some("conf/../x/y")
        );
        assert_eq!(resolve_path("/abs/catalog.csv", base), None);
        assert_eq!(resolve_path("", base), None, "empty means unset");
        assert_eq!(
            resolve_path("x.csv", Path::new("")),
            None,
            "file in the cwd"
        );
    }
}
