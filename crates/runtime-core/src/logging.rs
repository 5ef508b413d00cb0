//! Log output: human-readable or JSON, level changeable at run time.
//!
//! Each task runs inside a `task` span carrying `trace_id` and `span_id`, so every log
//! line written while a task runs names its trace.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{LogFormat, TracingConfig};

static RELOAD: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Errors setting up logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// The level filter does not parse.
    #[error("invalid log level {level:?}: {message}")]
    Level {
        /// The filter text.
        level: String,
        /// Why.
        message: String,
    },
}

/// Installs the global log subscriber (writing to stderr). A second call does nothing.
/// `RUST_LOG`, when set, overrides the configured level.
pub fn init(config: &TracingConfig) -> Result<(), LoggingError> {
    if RELOAD.get().is_some() {
        return Ok(());
    }
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| config.level.clone());
    let filter = EnvFilter::try_new(&level).map_err(|e| LoggingError::Level {
        level: level.clone(),
        message: e.to_string(),
    })?;
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    if result.is_ok() {
        let _ = RELOAD.set(handle);
    }
    Ok(())
}

/// Changes the log level filter live (a config reload of `tracing.level`).
pub fn set_level(level: &str) {
    let Some(handle) = RELOAD.get() else {
        return;
    };
    match EnvFilter::try_new(level) {
        Ok(filter) => {
            if handle.reload(filter).is_ok() {
                tracing::info!(level, "log level changed");
            }
        }
        Err(error) => tracing::warn!(level, %error, "ignoring invalid log level"),
    }
}
