//! # runtime-compose
//!
//! The one path from the platform configuration to the components an app runs:
//!
//! ```text
//! PlatformConfig --plan()--> Plan (every adapter config, checked, no I/O)
//!                             |-- build_queue()   queue.backend    -> memory | redis
//!                             |-- build_tracer()  tracing.exporter -> none | stdout | otlp
//!                             `-- bind_control()  control.*        -> the HTTP control plane
//! ```
//!
//! [`plan`] is pure: it maps each section to its adapter's config and runs the adapter's
//! own check, so a config it accepts never fails at start-up for a config reason.
//! [`validator`] runs it as a configuration validator, which puts it on the path of
//! `check-config`, `run` and every reload alike. Each adapter is behind a cargo feature
//! (`memory`, `redis`, `otel`, `http`); choosing one the build lacks is a config error
//! naming the key.

use std::sync::Arc;

// A runtime always needs a queue.
#[cfg(not(any(feature = "memory", feature = "redis")))]
compile_error!("runtime-compose needs at least one queue feature: `memory` or `redis`");

use runtime_contracts::{ConfigError, ConfigIssue, ConfigSnapshot, TaskQueue, TraceFactory};
use runtime_core::config::{PlatformConfig, QueueBackend, TraceExporter, Validator};

/// Why a planned component could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// The configuration asks for something that cannot be (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A component could not be set up for a reason other than its configuration.
    #[error("{message}")]
    Setup {
        /// What failed.
        message: String,
    },
}

impl ComposeError {
    #[cfg(any(feature = "redis", feature = "otel", feature = "http"))]
    fn setup(message: impl Into<String>) -> ComposeError {
        ComposeError::Setup {
            message: message.into(),
        }
    }
}

/// The queue `[queue]` chose, with its adapter's config.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum QueuePlan {
    /// `queue.backend = "memory"`.
    #[cfg(feature = "memory")]
    Memory(runtime_adapters_memory::MemoryQueueConfig),
    /// `queue.backend = "redis"`.
    #[cfg(feature = "redis")]
    Redis(runtime_adapters_redis::RedisQueueConfig),
}

/// The trace factory `[tracing]` chose.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TracerPlan {
    /// `tracing.exporter = "none"`: the core's id-only factory.
    Ids,
    /// `stdout` or `otlp`.
    #[cfg(feature = "otel")]
    Otel(runtime_adapters_otel::OtelConfig),
}

/// Every component the configuration chose, each config checked by its adapter.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The queue.
    pub queue: QueuePlan,
    /// The trace factory.
    pub tracer: TracerPlan,
    /// The control plane; `None` when `control.enabled = false`.
    #[cfg(feature = "http")]
    pub control: Option<runtime_adapters_http::HttpConfig>,
}

/// Whether this program was built with the runtime-compose feature `feature`. In a
/// workspace build cargo unifies features, so an app may get more than it asked for.
pub fn has_feature(feature: &str) -> bool {
    const BUILT: [(&str, bool); 4] = [
        ("memory", cfg!(feature = "memory")),
        ("redis", cfg!(feature = "redis")),
        ("otel", cfg!(feature = "otel")),
        ("http", cfg!(feature = "http")),
    ];
    BUILT.iter().any(|(name, on)| *on && *name == feature)
}

/// Maps the platform sections to adapter configs and checks each, without I/O. Every
/// problem is reported with its key.
///
/// # Errors
/// [`ConfigError::Invalid`] with one issue per bad key.
pub fn plan(platform: &PlatformConfig, service_name: &str) -> Result<Plan, ConfigError> {
    let mut issues = Vec::new();
    let queue = plan_queue(platform, &mut issues);
    let tracer = plan_tracer(platform, service_name, &mut issues);
    #[cfg(feature = "http")]
    let control = plan_control(platform, &mut issues);
    match (queue, tracer) {
        (Some(queue), Some(tracer)) if issues.is_empty() => Ok(Plan {
            queue,
            tracer,
            #[cfg(feature = "http")]
            control,
        }),
        _ => Err(ConfigError::Invalid(issues)),
    }
}

/// A configuration validator running [`plan`]: add it to the app's config spec so that
/// `check-config`, `run` and reloads reject exactly what composition would.
///
/// When the platform sections do not even parse, core's own validation reports that;
/// this one then has nothing to add.
pub fn validator(service_name: &'static str) -> Validator {
    Arc::new(move |snapshot: &ConfigSnapshot| {
        let Ok(platform) = PlatformConfig::from_snapshot(snapshot) else {
            return Vec::new();
        };
        match plan(&platform, service_name) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(issues)) => issues,
            Err(other) => vec![issue("queue", other.to_string())],
        }
    })
}

fn issue(key: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: key.to_owned(),
        origin: None,
        value: None,
        message: message.into(),
    }
}

fn missing_feature(key: &str, value: &str, feature: &str) -> ConfigIssue {
    issue(
        key,
        format!("{value:?} is not built into this program (runtime-compose feature `{feature}`)"),
    )
}

fn plan_queue(platform: &PlatformConfig, issues: &mut Vec<ConfigIssue>) -> Option<QueuePlan> {
    let q = &platform.queue;
    match q.backend {
        #[cfg(feature = "memory")]
        QueueBackend::Memory => Some(QueuePlan::Memory(
            runtime_adapters_memory::MemoryQueueConfig {
                name: q.name.clone(),
                capacity: q.capacity,
                visibility_timeout: q.visibility_timeout,
                max_attempts: q.max_attempts,
                ..runtime_adapters_memory::MemoryQueueConfig::default()
            },
        )),
        #[cfg(feature = "redis")]
        QueueBackend::Redis => {
            let config = runtime_adapters_redis::RedisQueueConfig {
                visibility_timeout: q.visibility_timeout,
                max_attempts: q.max_attempts,
                ..runtime_adapters_redis::RedisQueueConfig::new(
                    q.redis_url.expose(),
                    q.name.clone(),
                )
            };
            let problems = config.check();
            if problems.is_empty() {
                return Some(QueuePlan::Redis(config));
            }
            issues.extend(problems.into_iter().map(|p| {
                let key = match p.field {
                    "url" => "queue.redis_url",
                    "name" => "queue.name",
                    "max_attempts" => "queue.max_attempts",
                    "visibility_timeout" => "queue.visibility_timeout",
                    // Fields without a key of their own keep today's defaults.
                    _ => "queue",
                };
                issue(key, p.message)
            }));
            None
        }
        #[allow(unreachable_patterns)]
        other => {
            let (value, feature) = match other {
                QueueBackend::Memory => ("memory", "memory"),
                QueueBackend::Redis => ("redis", "redis"),
            };
            issues.push(missing_feature("queue.backend", value, feature));
            None
        }
    }
}

fn plan_tracer(
    platform: &PlatformConfig,
    service_name: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<TracerPlan> {
    let t = &platform.tracing;
    #[cfg(feature = "otel")]
    {
        use runtime_adapters_otel::{OtelConfig, OtelError};
        let config = match t.exporter {
            TraceExporter::None => return Some(TracerPlan::Ids),
            TraceExporter::Stdout => OtelConfig::stdout(),
            TraceExporter::Otlp => OtelConfig::otlp(t.otlp_endpoint.clone()),
        };
        let config = OtelConfig {
            service_name: service_name.to_owned(),
            ..config
        };
        match config.validate() {
            Ok(()) => Some(TracerPlan::Otel(config)),
            Err(error) => {
                let key = match &error {
                    OtelError::Config {
                        field: "otlp_endpoint",
                        ..
                    } => "tracing.otlp_endpoint",
                    _ => "tracing.exporter",
                };
                issues.push(issue(key, error.to_string()));
                None
            }
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = service_name;
        match t.exporter {
            TraceExporter::None => Some(TracerPlan::Ids),
            TraceExporter::Stdout | TraceExporter::Otlp => {
                let value = if t.exporter == TraceExporter::Stdout {
                    "stdout"
                } else {
                    "otlp"
                };
                issues.push(missing_feature("tracing.exporter", value, "otel"));
                None
            }
        }
    }
}

#[cfg(feature = "http")]
fn plan_control(
    platform: &PlatformConfig,
    issues: &mut Vec<ConfigIssue>,
) -> Option<runtime_adapters_http::HttpConfig> {
    use runtime_adapters_http::HttpConfig;
    use runtime_contracts::EndpointError;
    let c = &platform.control;
    if !c.enabled {
        return None;
    }
    // Unset keys keep the control plane's own defaults (defined once, in HttpConfig).
    let defaults = HttpConfig::default();
    let config = HttpConfig {
        bind: c.bind,
        token: c.token.clone(),
        header_read_timeout: c
            .header_read_timeout
            .unwrap_or(defaults.header_read_timeout),
        idle_timeout: c.idle_timeout.unwrap_or(defaults.idle_timeout),
        max_connections: c.max_connections.unwrap_or(defaults.max_connections),
        ..defaults
    };
    match config.check() {
        Ok(()) => Some(config),
        // An unsafe setting (a public address without a token) is the operator's config.
        Err(EndpointError::Config(message)) => {
            issues.push(issue("control.bind", message));
            None
        }
        Err(other) => {
            issues.push(issue("control", other.to_string()));
            None
        }
    }
}

impl Plan {
    /// Builds the planned queue. A Redis queue connects lazily, so start-up works while
    /// Redis is down and readiness shows it.
    ///
    /// # Errors
    /// [`ComposeError::Setup`] when the adapter refuses (not expected after [`plan`]).
    pub fn build_queue(&self) -> Result<Arc<dyn TaskQueue>, ComposeError> {
        Ok(match &self.queue {
            #[cfg(feature = "memory")]
            QueuePlan::Memory(c) => Arc::new(runtime_adapters_memory::MemoryQueue::new(c.clone())),
            #[cfg(feature = "redis")]
            QueuePlan::Redis(c) => Arc::new(
                runtime_adapters_redis::RedisQueue::connect_lazy(c.clone()).map_err(|e| {
                    ComposeError::setup(format!("cannot set up the redis queue: {e}"))
                })?,
            ),
        })
    }

    /// Builds the planned trace factory (starting the exporter thread for OTel).
    ///
    /// # Errors
    /// [`ComposeError::Setup`] when the exporter cannot start.
    pub fn build_tracer(&self) -> Result<Arc<dyn TraceFactory>, ComposeError> {
        Ok(match &self.tracer {
            TracerPlan::Ids => Arc::new(runtime_core::IdTraceFactory),
            #[cfg(feature = "otel")]
            TracerPlan::Otel(c) => Arc::new(
                runtime_adapters_otel::OtelTraceFactory::new(c.clone())
                    .map_err(|e| ComposeError::setup(format!("cannot set up trace export: {e}")))?,
            ),
        })
    }

    /// Binds the planned control plane; `None` when disabled. With `port_fallback`, a
    /// taken `control.bind` falls back to a free port on the same address, and the
    /// configured address is returned beside the plane.
    ///
    /// # Errors
    /// [`ComposeError::Setup`] when the address cannot be bound.
    #[cfg(feature = "http")]
    pub async fn bind_control(
        &self,
        port_fallback: bool,
    ) -> Result<
        Option<(
            Arc<runtime_adapters_http::HttpControlPlane>,
            Option<std::net::SocketAddr>,
        )>,
        ComposeError,
    > {
        use runtime_adapters_http::{HttpConfig, HttpControlPlane};
        use runtime_contracts::EndpointError;
        let Some(config) = &self.control else {
            return Ok(None);
        };
        match HttpControlPlane::bind(config.clone()).await {
            Ok(plane) => Ok(Some((Arc::new(plane), None))),
            Err(EndpointError::Io { .. }) if port_fallback => {
                let mut free = config.bind;
                free.set_port(0);
                let plane = HttpControlPlane::bind(HttpConfig {
                    bind: free,
                    ..config.clone()
                })
                .await
                .map_err(|e| ComposeError::setup(e.to_string()))?;
                Ok(Some((Arc::new(plane), Some(config.bind))))
            }
            Err(EndpointError::Config(message)) => {
                Err(ConfigError::invalid("control.bind", message).into())
            }
            Err(e) => Err(ComposeError::setup(e.to_string())),
        }
    }
}

// The unit tests use every adapter; the per-feature builds are exercised by the apps.
#[cfg(all(
    test,
    feature = "memory",
    feature = "redis",
    feature = "otel",
    feature = "http"
))]
mod tests;
