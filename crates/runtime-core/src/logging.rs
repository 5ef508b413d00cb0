//! Log output: human-readable or JSON, level changeable at run time.
//!
//! Each task runs inside a `task` span carrying `trace_id` and `span_id`, so every log
//! line written while a task runs names its trace.

use std::io::IsTerminal;
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
    let filter = filter_for(&level).map_err(|e| LoggingError::Level {
        level: level.clone(),
        message: e.to_string(),
    })?;
    // Colour codes only for a person at a terminal; in a file they are noise.
    let ansi = std::io::stderr().is_terminal();
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
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
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
    match filter_for(level) {
        Ok(filter) => {
            if handle.reload(filter).is_ok() {
                tracing::info!(level, "log level changed");
            }
        }
        Err(error) => tracing::warn!(level, %error, "ignoring invalid log level"),
    }
}

/// Dependencies whose debug and trace output is about their own machinery (file watching,
/// sockets, HTTP framing, SQL statements). At `trace` the config watcher's own inotify
/// events fed back into a log file beside the config: 392 MB in 6 s.
const NOISY_TARGETS: &[&str] = &[
    "notify",
    "mio",
    "hyper",
    "hyper_util",
    "h2",
    "tower",
    "rustls",
    "sqlx",
    "async_imap",
];

/// The level filter for `level`, with [`NOISY_TARGETS`] kept at `warn` unless `level`
/// names them itself.
fn filter_for(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut filter = EnvFilter::try_new(level)?;
    for target in NOISY_TARGETS {
        let named = level
            .split(',')
            .any(|directive| directive.trim().starts_with(target));
        if !named {
            filter = filter.add_directive(format!("{target}=warn").parse()?);
        }
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::filter_for;

    #[test]
    fn noisy_dependencies_stay_at_warn_unless_named() {
        let text = filter_for("trace")
            .map(|f| f.to_string())
            .unwrap_or_default();
        assert!(text.contains("notify=warn"), "{text}");
        assert!(text.contains("mio=warn"), "{text}");
        let named = filter_for("info,notify=trace")
            .map(|f| f.to_string())
            .unwrap_or_default();
        assert!(named.contains("notify=trace"), "{named}");
        assert!(!named.contains("notify=warn"), "{named}");
        assert!(filter_for("not a level at all ===").is_err());
    }
}
