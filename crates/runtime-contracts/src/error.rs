//! Error types shared by several contracts.

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error with its causes, `: `-joined, each cause only when the text does not hold it
/// yet (many errors already name their cause in their message).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Errors of a task source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The upstream system (a remote server, a directory, ...) cannot be reached or failed; the
    /// runtime restarts the source with backoff.
    #[error("source unavailable: {message}")]
    Unavailable {
        /// What happened (no secrets).
        message: String,
        /// The cause.
        #[source]
        source: Option<BoxError>,
    },
    /// The source is misconfigured; restarting will not help.
    #[error("source misconfigured: {0}")]
    Config(String),
    /// Publishing to the queue failed.
    #[error("publish failed: {0}")]
    Queue(#[from] crate::QueueError),
    /// The upstream system refused the operation for good (a server answering `NO [CANNOT]`, a file
    /// name the store will never accept): retrying cannot help. An acknowledger returns it
    /// so the runtime dead-letters the task with this reason instead of retrying for ever.
    #[error("refused for good: {0}")]
    Permanent(String),
}

impl SourceError {
    /// An upstream outage with its cause.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> SourceError {
        SourceError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Whether retrying can never succeed ([`SourceError::Permanent`] or
    /// [`SourceError::Config`]).
    pub fn is_permanent(&self) -> bool {
        matches!(self, SourceError::Permanent(_) | SourceError::Config(_))
    }
}

/// Errors of an application module while registering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// The module's configuration is wrong.
    #[error("configuration: {0}")]
    Config(#[from] crate::ConfigError),
    /// A resource the module needs could not be set up.
    #[error("{message}")]
    Setup {
        /// What failed.
        message: String,
        /// The cause.
        #[source]
        source: Option<BoxError>,
    },
}

impl ModuleError {
    /// A set-up failure with its cause.
    pub fn setup(message: impl Into<String>, source: impl Into<BoxError>) -> ModuleError {
        ModuleError::Setup {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// Errors of a control endpoint (for example the HTTP server).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The endpoint could not bind or serve.
    #[error("{message}")]
    Io {
        /// What failed.
        message: String,
        /// The cause.
        #[source]
        source: Option<BoxError>,
    },
    /// The endpoint's configuration is unsafe or wrong.
    #[error("{0}")]
    Config(String),
}
