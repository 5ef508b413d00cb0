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
//! Exit codes: 0 ok, 2 configuration problem ([`EXIT_CONFIG`]), 1 anything else.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use runtime_contracts::{ConfigError, ConfigProvider, ConfigSnapshot};

use crate::config::{
    ConfigurationManager, DefaultsProvider, EnvProvider, EnvSource, PlainFileProvider, Validator,
    known_sections_validator, load_unvalidated, redacted_tree, to_toml,
};

/// Exit code for a configuration that cannot be loaded or is invalid.
pub const EXIT_CONFIG: u8 = 2;

/// `--config FILE`, repeatable.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigArgs {
    /// Configuration file, TOML or YAML (.yaml/.yml); repeat to layer several, later wins
    #[arg(long = "config", short = 'c', value_name = "FILE")]
    pub config: Vec<PathBuf>,
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
    CheckConfig(ConfigArgs),
    /// Print the effective configuration as TOML, secrets as ***
    PrintConfig(PrintArgs),
}

/// Makes the provider for one `--config` file.
pub type FileLoader = Arc<dyn Fn(&Path) -> Box<dyn ConfigProvider> + Send + Sync>;

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

    fn env_provider(&self) -> Box<dyn ConfigProvider> {
        match &self.env_source {
            Some(source) => Box::new(EnvProvider::with_source(self.env_prefix, source.clone())),
            None => Box::new(EnvProvider::new(self.env_prefix)),
        }
    }

    fn file_provider(&self, path: &Path) -> Box<dyn ConfigProvider> {
        match &self.file_loader {
            Some(f) => f(path),
            None => PlainFileProvider::boxed(path),
        }
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
            let _ = writeln!(
                out,
                "{}: configuration ok ({} keys from: {})",
                spec.name,
                snapshot.origins.len(),
                manager.layer_names().join(", ")
            );
            0
        }
        Err(e) => report_error(&e, err),
    }
}

/// `check-config`: exit 0, or 2 with every problem on stderr.
pub async fn check_config(spec: &AppConfigSpec, args: &ConfigArgs) -> ExitCode {
    ExitCode::from(
        check_config_to(spec, args, &mut std::io::stdout(), &mut std::io::stderr()).await,
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
            let tree = redacted_tree(&snapshot);
            let origins = args.origins.then_some(&snapshot.origins);
            let _ = write!(out, "{}", to_toml(&tree, origins));
            0
        }
        Err(e) => report_error(&e, err),
    }
}

/// `print-config`: the effective configuration as TOML, secrets `***`.
pub async fn print_config(spec: &AppConfigSpec, args: &PrintArgs) -> ExitCode {
    ExitCode::from(
        print_config_to(spec, args, &mut std::io::stdout(), &mut std::io::stderr()).await,
    )
}
