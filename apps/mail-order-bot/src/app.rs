//! Composition: configuration in, a runtime with every piece chosen by configuration out.
//!
//! | key | picks |
//! |---|---|
//! | `queue.backend` | the memory or the Redis queue (connected lazily, so the bot starts, not ready, while Redis is down), through [`runtime_compose`] |
//! | `tracing.exporter` | the core's id-only factory (`none`) or the OTel one (`stdout`, `otlp`), through [`runtime_compose`] |
//! | `control.enabled`, `control.bind`, `control.token`, `control.header_read_timeout`, `control.idle_timeout`, `control.max_connections` | the HTTP control plane, through [`runtime_compose`] |
//! | `mail.source` | the source, inside [`MailOrderModule`] |
//! | `[[schedules]]` | scheduled sources (the `daily-summary` route), through [`runtime_compose`] |
//!
//! The platform choices are planned by [`runtime_compose::plan`], the same check
//! `check-config` runs (its validator is in [`crate::config::validators`]).
//!
//! [`run`] is `mail-order-bot run`: logs, config watchers (file changes, SIGHUP), the
//! runtime until SIGINT/SIGTERM, graceful stop. Errors are an [`AppError`], whose
//! [`AppError::exit_code`] is 2 for configuration problems and 1 for anything else
//! (`runtime_core::cli::EXIT_CONFIG`, `EXIT_FAILURE`).

use std::net::SocketAddr;
use std::sync::Arc;

use runtime_compose::ComposeError;
use runtime_contracts::{ApplicationModule, ConfigError, ConfigSnapshot, Probe};
use runtime_core::cli::{ConfigArgs, EXIT_CONFIG, EXIT_FAILURE, EXIT_INTERRUPTED, load_config};
use runtime_core::config::PlatformConfig;
use runtime_core::{ConfigurationManager, RuntimeError, RuntimeManager, StopToken};
use tracing::{info, warn};

use crate::config::{APP_NAME, config_spec};
use crate::module::MailOrderModule;

/// Why the application could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The configuration cannot be loaded or is invalid (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The runtime failed to start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The order store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A component could not be set up.
    #[error("{message}")]
    Setup {
        /// What failed.
        message: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl AppError {
    /// [`EXIT_CONFIG`] for configuration problems (also those a module's check found at
    /// start), [`EXIT_INTERRUPTED`] after a second stop signal, [`EXIT_FAILURE`] for
    /// everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Runtime(RuntimeError::Config(_)) => EXIT_CONFIG,
            AppError::Runtime(RuntimeError::Interrupted) => EXIT_INTERRUPTED,
            _ => EXIT_FAILURE,
        }
    }

    /// True when a second stop signal asked to exit at once.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, AppError::Runtime(RuntimeError::Interrupted))
    }

    pub(crate) fn setup(message: impl Into<String>) -> AppError {
        AppError::Setup {
            message: message.into(),
        }
    }
}

impl From<ComposeError> for AppError {
    fn from(error: ComposeError) -> Self {
        match error {
            ComposeError::Config(e) => AppError::Config(e),
            other => AppError::setup(other.to_string()),
        }
    }
}

/// Choices that are not configuration.
#[derive(Clone, Debug)]
pub struct ComposeOptions {
    /// Whether the runtime listens for SIGINT/SIGTERM itself (tests turn it off).
    pub handle_signals: bool,
    /// When `control.bind` is taken, serve on a free loopback port instead of failing
    /// (the demo, which must run on any machine).
    pub control_port_fallback: bool,
}

impl Default for ComposeOptions {
    fn default() -> Self {
        ComposeOptions {
            handle_signals: true,
            control_port_fallback: false,
        }
    }
}

/// A composed, not yet started application.
pub struct Composed {
    /// The runtime (start it, or `run` it).
    pub runtime: RuntimeManager,
    /// The module (store, progress counter).
    pub module: Arc<MailOrderModule>,
    /// Where the control plane listens, if enabled.
    pub control_addr: Option<SocketAddr>,
    /// Set when the configured control address was taken and another was used.
    pub control_fallback_from: Option<SocketAddr>,
}

impl std::fmt::Debug for Composed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composed")
            .field("control_addr", &self.control_addr)
            .finish_non_exhaustive()
    }
}

/// Loads and validates the configuration from `--config` files, defaults and `MOB_*`.
pub async fn load(args: &ConfigArgs) -> Result<Arc<ConfigurationManager>, AppError> {
    Ok(Arc::new(load_config(&config_spec(), args).await?))
}

/// Builds the runtime from the configuration: queue, tracer, control plane, module.
pub async fn compose(
    config: Arc<ConfigurationManager>,
    options: &ComposeOptions,
) -> Result<Composed, AppError> {
    let plan = runtime_compose::plan(&config.current(), APP_NAME)?;
    let queue = plan.build_queue()?;
    let tracer = plan.build_tracer()?;
    let module = Arc::new(MailOrderModule::new());
    let platform = config.platform();
    let mut builder = RuntimeManager::builder(config)
        .queue(queue)
        .limiter(plan.build_limiter()?)
        .tracer(tracer)
        .module(module.clone())
        .handle_signals(options.handle_signals);
    // `[[schedules]]` (the daily summary): into the same queue, behind a leader lease in
    // Redis when the queue is shared.
    if let Some(schedules) = plan.schedule_module(&platform.queue.name, &platform.runtime.state_dir)
    {
        builder = builder.module(schedules);
    }
    let mut control_addr = None;
    let mut control_fallback_from = None;
    if let Some((plane, fallback)) = plan.bind_control(options.control_port_fallback).await? {
        control_addr = Some(plane.local_addr());
        control_fallback_from = fallback;
        builder = builder.endpoint(plane);
    }
    Ok(Composed {
        runtime: builder.build(),
        module,
        control_addr,
        control_fallback_from,
    })
}

/// The `check-config --connect` probes: composition's (queue, collector) and the
/// module's (mailbox, order database), for a config the offline checks accepted.
pub fn probes(snapshot: &ConfigSnapshot) -> Vec<Probe> {
    let mut probes = match runtime_compose::plan(snapshot, APP_NAME) {
        Ok(plan) => plan.probes(),
        // Not reached after the offline checks, which run the same plan.
        Err(_) => Vec::new(),
    };
    probes.extend(MailOrderModule::new().probes(snapshot));
    probes
}

/// Installs the log subscriber the configuration asks for.
pub fn init_logging(platform: &PlatformConfig) -> Result<(), AppError> {
    runtime_core::logging::init(&platform.tracing).map_err(|e| AppError::setup(e.to_string()))
}

/// Raises the soft open-files limit to the hard one, as servers commonly do: the default
/// soft limit (often 1024) is low for a process holding connections and files, and the
/// control plane sizes its connection cap from it. A failure only costs headroom.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-files limit"),
        Err(error) => warn!(%error, "cannot raise the open-files limit; keeping the current one"),
    }
}

/// Reloads on config file changes and SIGHUP until `stop` fires; a watcher that cannot
/// start is logged, not fatal (the admin endpoint still reloads).
pub fn spawn_config_watchers(config: &Arc<ConfigurationManager>, stop: &StopToken) {
    if let Err(error) = config.spawn_watchers(stop.signal()) {
        warn!(%error, "config watchers not started; reload with POST /admin/config/reload");
    }
}

/// `mail-order-bot run`: runs until SIGINT/SIGTERM, then stops gracefully.
pub async fn run(args: &ConfigArgs) -> Result<(), AppError> {
    let config = load(args).await?;
    init_logging(&config.platform())?;
    raise_open_files_limit();
    let composed = compose(config.clone(), &ComposeOptions::default()).await?;
    let watchers = StopToken::new();
    spawn_config_watchers(&config, &watchers);
    if let Some(addr) = composed.control_addr {
        info!(url = %format!("http://{addr}"), "control plane");
    }
    let result = composed.runtime.run().await;
    watchers.stop();
    let report = result?;
    info!(drained = report.drained, "mail-order-bot stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary picks the exit code of every way the runtime ends.
    #[test]
    fn exit_codes_of_runtime_endings() {
        let module_check = AppError::Runtime(RuntimeError::Config(ConfigError::invalid(
            "mail.kind",
            "unknown",
        )));
        assert_eq!(module_check.exit_code(), EXIT_CONFIG);
        let interrupted = AppError::Runtime(RuntimeError::Interrupted);
        assert!(interrupted.is_interrupted());
        assert_eq!(interrupted.exit_code(), 130);
        assert_eq!(
            AppError::Runtime(RuntimeError::AlreadyStarted).exit_code(),
            EXIT_FAILURE
        );
    }
}
