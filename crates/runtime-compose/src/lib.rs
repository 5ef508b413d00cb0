//! # runtime-compose
//!
//! The one path from the platform configuration to the components an app runs:
//!
//! ```text
//! ConfigSnapshot --plan()--> Plan (every adapter config, checked, no I/O)
//!                             |-- build_queue()   queue.backend    -> memory | redis
//!                             |-- build_limiter() the same backend's pool limits
//!                             |-- build_tracer()  tracing.exporter -> none | stdout | otlp
//!                             `-- bind_control()  control.*        -> the HTTP control plane
//! ```
//!
//! [`plan`] is pure: core reads what it owns of each section (`queue.backend`, the shared
//! queue keys, `tracing.exporter`), and each adapter reads its own keys into its settings
//! and checks them, so a config it accepts never fails at start-up for a config reason.
//! Unknown keys of `[queue]`, `[tracing]` and `[control]` are reported here, since only
//! the composition knows every adapter's keys.
//! [`validator`] runs it as a configuration validator, which puts it on the path of
//! `check-config`, `run` and every reload alike. Each adapter is behind a cargo feature
//! (`memory`, `redis`, `otel`, `http`); choosing one the build lacks is a config error
//! naming the key.

use std::sync::Arc;

// A runtime always needs a queue.
#[cfg(not(any(feature = "memory", feature = "redis")))]
compile_error!("runtime-compose needs at least one queue feature: `memory` or `redis`");

use runtime_contracts::{
    ConfigError, ConfigIssue, ConfigSnapshot, TaskLimiter, TaskQueue, TraceFactory,
};
use runtime_core::config::{PlatformConfig, QueueConfig, TracingConfig, Validator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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

/// The queue backends by `queue.backend` tag, each with the feature that builds it in.
const QUEUE_BACKENDS: [(&str, &str, bool); 2] = [
    ("memory", "memory", cfg!(feature = "memory")),
    ("redis", "redis", cfg!(feature = "redis")),
];

/// The trace exporters by `tracing.exporter` tag; `none` is the core's.
const TRACE_EXPORTERS: [(&str, &str, bool); 3] = [
    ("none", "", true),
    ("stdout", "otel", cfg!(feature = "otel")),
    ("otlp", "otel", cfg!(feature = "otel")),
];

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

/// Reads the platform sections of `snapshot` (core's checks), maps each choice to its
/// adapter and runs the adapter's own check, without I/O. Every problem is reported with
/// its key.
///
/// # Errors
/// [`ConfigError::Invalid`] with one issue per bad key.
pub fn plan(snapshot: &ConfigSnapshot, service_name: &str) -> Result<Plan, ConfigError> {
    let mut issues = match PlatformConfig::from_snapshot(snapshot) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(issues)) => issues,
        Err(other) => return Err(other),
    };
    let (plan, more) = plan_adapters(snapshot, service_name);
    for issue in more {
        if !issues.contains(&issue) {
            issues.push(issue);
        }
    }
    match plan {
        Some(plan) if issues.is_empty() => Ok(plan),
        _ => Err(ConfigError::Invalid(issues)),
    }
}

/// A configuration validator running the adapters' part of [`plan`]: add it to the app's
/// config spec so that `check-config`, `run` and reloads reject exactly what composition
/// would. Core's own checks run beside it, so each problem is reported once.
pub fn validator(service_name: &'static str) -> Validator {
    Arc::new(move |snapshot: &ConfigSnapshot| plan_adapters(snapshot, service_name).1)
}

/// Reads the keys of the adapter settings `T` from the section at `path`, leaving out the
/// keys of the section that belong to core or to other adapters; each bad value is
/// reported with its key, source and value.
///
/// # Errors
/// [`ConfigError::Invalid`] with one issue per bad key.
pub fn read_settings<T: DeserializeOwned + Serialize + Default>(
    snapshot: &ConfigSnapshot,
    path: &str,
) -> Result<T, ConfigError> {
    let keys = keys_of::<T>();
    let mut own = snapshot.clone();
    if let Value::Object(top) = &mut own.tree
        && let Some(Value::Object(section)) = top.get_mut(path)
    {
        section.retain(|k, _| keys.contains(k));
    }
    runtime_core::config::section::<T>(&own, path)
}

/// The keys of `T`, from its defaults (every field serializes, `None` as null).
fn keys_of<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()) {
        Ok(Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Core's part of a section, or its defaults when it does not read (core reports that).
fn core_section<T: DeserializeOwned + Default>(snapshot: &ConfigSnapshot, path: &str) -> T {
    runtime_core::config::section::<T>(snapshot, path).unwrap_or_default()
}

/// [`read_settings`], its problems added to `issues`.
fn read<T: DeserializeOwned + Serialize + Default>(
    snapshot: &ConfigSnapshot,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<T> {
    match read_settings::<T>(snapshot, path) {
        Ok(settings) => Some(settings),
        Err(ConfigError::Invalid(more)) => {
            issues.extend(more);
            None
        }
        Err(other) => {
            issues.push(runtime_core::config::issue(
                snapshot,
                path,
                other.to_string(),
            ));
            None
        }
    }
}

/// Keys of the section at `path` that neither core nor an adapter built in knows.
fn unknown_keys(
    snapshot: &ConfigSnapshot,
    path: &str,
    known: &[String],
    issues: &mut Vec<ConfigIssue>,
) {
    let Some(Value::Object(section)) = snapshot.get(path) else {
        return;
    };
    for key in section.keys().filter(|k| !known.contains(k)) {
        let mut message = format!("unknown key; known keys here: {}", known.join(", "));
        if let Some(s) = runtime_core::config::suggest(key, known.iter().map(String::as_str)) {
            message.push_str(&format!("; did you mean `{s}`?"));
        }
        issues.push(runtime_core::config::issue(
            snapshot,
            &format!("{path}.{key}"),
            message,
        ));
    }
}

/// The issue for a tag no arm took: one this build lacks, or one that does not exist.
fn unknown_choice(
    snapshot: &ConfigSnapshot,
    key: &str,
    value: &str,
    choices: &[(&str, &str, bool)],
) -> ConfigIssue {
    let message = match choices.iter().find(|(name, _, _)| *name == value) {
        Some((_, feature, _)) => format!(
            "{value:?} is not built into this program (runtime-compose feature `{feature}`)"
        ),
        None => format!(
            "expected one of {}",
            choices
                .iter()
                .map(|(name, _, _)| format!("\"{name}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    runtime_core::config::issue(snapshot, key, message)
}

/// Moves an adapter's check result into `issues`; `Some(config)` when it had none.
fn checked<T>(problems: Vec<ConfigIssue>, config: T, issues: &mut Vec<ConfigIssue>) -> Option<T> {
    if problems.is_empty() {
        Some(config)
    } else {
        issues.extend(problems);
        None
    }
}

/// The adapters' part of [`plan`]: the plan, or the problems core does not report.
fn plan_adapters(
    snapshot: &ConfigSnapshot,
    service_name: &str,
) -> (Option<Plan>, Vec<ConfigIssue>) {
    let mut issues = Vec::new();
    let queue = plan_queue(snapshot, &mut issues);
    let tracer = plan_tracer(snapshot, service_name, &mut issues);
    #[cfg(feature = "http")]
    let control = plan_control(snapshot, &mut issues);
    let plan = match (queue, tracer) {
        (Some(queue), Some(tracer)) if issues.is_empty() => Some(Plan {
            queue,
            tracer,
            #[cfg(feature = "http")]
            control,
        }),
        _ => None,
    };
    (plan, issues)
}

fn plan_queue(snapshot: &ConfigSnapshot, issues: &mut Vec<ConfigIssue>) -> Option<QueuePlan> {
    let q: QueueConfig = core_section(snapshot, "queue");
    let mut known = keys_of::<QueueConfig>();
    // Every backend built in reads its keys (so their types are checked whichever is
    // chosen, as before); the chosen one also checks its values.
    #[cfg(feature = "memory")]
    let memory = {
        known.extend(keys_of::<runtime_adapters_memory::MemoryQueueSettings>());
        read::<runtime_adapters_memory::MemoryQueueSettings>(snapshot, "queue", issues)
    };
    #[cfg(feature = "redis")]
    let redis = {
        known.extend(keys_of::<runtime_adapters_redis::RedisQueueSettings>());
        read::<runtime_adapters_redis::RedisQueueSettings>(snapshot, "queue", issues)
    };
    unknown_keys(snapshot, "queue", &known, issues);
    let shared = q.shared();
    match q.backend.as_str() {
        #[cfg(feature = "memory")]
        "memory" => {
            let s = memory?;
            checked(s.check(), QueuePlan::Memory(s.config(&shared)), issues)
        }
        #[cfg(feature = "redis")]
        "redis" => {
            let s = redis?;
            checked(
                s.check(&shared),
                QueuePlan::Redis(s.config(&shared)),
                issues,
            )
        }
        other => {
            issues.push(unknown_choice(
                snapshot,
                "queue.backend",
                other,
                &QUEUE_BACKENDS,
            ));
            None
        }
    }
}

fn plan_tracer(
    snapshot: &ConfigSnapshot,
    service_name: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<TracerPlan> {
    let t: TracingConfig = core_section(snapshot, "tracing");
    #[allow(unused_mut)]
    let mut known = keys_of::<TracingConfig>();
    #[cfg(feature = "otel")]
    let otel = {
        known.extend(keys_of::<runtime_adapters_otel::OtelSettings>());
        read::<runtime_adapters_otel::OtelSettings>(snapshot, "tracing", issues)
    };
    unknown_keys(snapshot, "tracing", &known, issues);
    let _ = service_name;
    match t.exporter.as_str() {
        "none" => Some(TracerPlan::Ids),
        #[cfg(feature = "otel")]
        "stdout" | "otlp" => {
            use runtime_adapters_otel::ExporterKind;
            let kind = if t.exporter == "stdout" {
                ExporterKind::Stdout
            } else {
                ExporterKind::Otlp
            };
            let s = otel?;
            checked(
                s.check(kind, service_name),
                TracerPlan::Otel(s.config(kind, service_name)),
                issues,
            )
        }
        other => {
            issues.push(unknown_choice(
                snapshot,
                "tracing.exporter",
                other,
                &TRACE_EXPORTERS,
            ));
            None
        }
    }
}

#[cfg(feature = "http")]
fn plan_control(
    snapshot: &ConfigSnapshot,
    issues: &mut Vec<ConfigIssue>,
) -> Option<runtime_adapters_http::HttpConfig> {
    use runtime_adapters_http::ControlSettings;
    unknown_keys(snapshot, "control", &keys_of::<ControlSettings>(), issues);
    let s = read::<ControlSettings>(snapshot, "control", issues)?;
    checked(s.check(), s.config(), issues).flatten()
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

    /// Builds the limiter of the planned queue's backend, which keeps pools' per-key
    /// concurrency and rates (`[workers]`): in process for memory, shared through Redis
    /// for redis. Give it to `RuntimeBuilder::limiter`.
    ///
    /// # Errors
    /// [`ComposeError::Setup`] when the adapter refuses (not expected after [`plan`]).
    pub fn build_limiter(&self) -> Result<Arc<dyn TaskLimiter>, ComposeError> {
        Ok(match &self.queue {
            #[cfg(feature = "memory")]
            QueuePlan::Memory(_) => Arc::new(runtime_adapters_memory::MemoryLimiter::new()),
            #[cfg(feature = "redis")]
            QueuePlan::Redis(c) => {
                Arc::new(runtime_adapters_redis::RedisLimiter::new(c).map_err(|e| {
                    ComposeError::setup(format!("cannot set up the redis limiter: {e}"))
                })?)
            }
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
