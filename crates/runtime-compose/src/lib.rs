//! # runtime-compose
//!
//! The one path from the platform configuration to the components an app runs:
//!
//! ```text
//! ConfigSnapshot --plan()--> Plan (every adapter config, checked, no I/O)
//!                             |-- build_queue()   queue.backend    -> memory | redis
//!                             |-- build_limiter() the same backend's pool limits
//!                             |-- build_tracer()  tracing.exporter -> none | stdout | otlp
//!                             |-- bind_control()  control.*        -> the HTTP control plane
//!                             `-- schedule_module() [[schedules]]  -> scheduled sources (exclusive: the lease holder ticks)
//! ```
//!
//! [`plan`] is pure: core reads what it owns of each section (`queue.backend`, the shared
//! queue keys, `tracing.exporter`), and each adapter reads its own keys into its settings
//! and checks them, so a config it accepts never fails at start-up for a config reason.
//! Unknown keys of `[queue]`, `[tracing]` and `[control]` are reported here, since only
//! the composition knows every adapter's keys.
//! [`validator`] runs it as a configuration validator, which puts it on the path of
//! `check-config`, `run` and every reload alike. Each adapter is behind a cargo feature
//! (`memory`, `redis`, `otel`, `http`, `schedule`); choosing one the build lacks is a config error
//! naming the key.
//!
//! [`client::Client`] is the producer's side of the same path: a process that does not
//! run the runtime builds its queue from the same `[queue]` keys and enqueues typed jobs.

use std::sync::Arc;

pub mod client;
#[cfg(feature = "schedule")]
mod schedules;
#[cfg(feature = "schedule")]
pub use schedules::{SCHEDULE_LEADER_LEASE, ScheduleModule};

use runtime_contracts::{
    ConfigError, ConfigIssue, ConfigSnapshot, Probe, QueueBackendSettings, QueueError, QueueShared,
    TaskLimiter, TaskQueue, TraceFactory, error_chain,
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
    fn setup(message: impl Into<String>) -> ComposeError {
        ComposeError::Setup {
            message: message.into(),
        }
    }
}

/// The queue backends built in: one line each, `"<cargo feature>" => <settings type>`,
/// the feature named like the backend's `queue.backend` tag. This is the one place a
/// backend is registered: the tag comes from its settings type
/// ([`QueueBackendSettings::BACKEND`]), and its keys, checks and builder come with it.
macro_rules! queue_backends {
    ($($feature:literal => $settings:ty),* $(,)?) => {
        /// Queue backends by cargo feature, and whether this build has each.
        const QUEUE_FEATURES: &[(&str, bool)] = &[$(($feature, cfg!(feature = $feature))),*];

        // One push per built-in feature; `vec![]` cannot leave out an element by cfg.
        #[allow(clippy::vec_init_then_push)]
        fn builtin_queues() -> Vec<QueueBackend> {
            #[allow(unused_mut)]
            let mut queues = Vec::new();
            $(
                #[cfg(feature = $feature)]
                queues.push(QueueBackend::of::<$settings>());
            )*
            queues
        }
    };
}

queue_backends! {
    "memory" => runtime_adapters_memory::MemoryQueueSettings,
    "redis" => runtime_adapters_redis::RedisQueueSettings,
}

/// A backend's settings behind one type, for the registry.
trait PlannedSettings: Send + Sync + std::fmt::Debug {
    fn build(&self, shared: &QueueShared) -> Result<Arc<dyn TaskQueue>, QueueError>;
    fn limiter(&self, shared: &QueueShared) -> Result<Option<Arc<dyn TaskLimiter>>, QueueError>;
    fn effective(&self) -> Value;
    fn target(&self) -> String;
}

impl<S: QueueBackendSettings> PlannedSettings for S {
    fn build(&self, shared: &QueueShared) -> Result<Arc<dyn TaskQueue>, QueueError> {
        QueueBackendSettings::build(self, shared)
    }
    fn limiter(&self, shared: &QueueShared) -> Result<Option<Arc<dyn TaskLimiter>>, QueueError> {
        QueueBackendSettings::limiter(self, shared)
    }
    fn effective(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn target(&self) -> String {
        QueueBackendSettings::target(self)
    }
}

/// The queue `[queue]` chose: the backend's own settings, checked, and the shared keys.
#[derive(Clone, Debug)]
pub struct QueuePlan {
    backend: &'static str,
    shared: QueueShared,
    settings: Arc<dyn PlannedSettings>,
}

impl QueuePlan {
    /// The `queue.backend` tag.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// The keys every backend shares.
    pub fn shared(&self) -> &QueueShared {
        &self.shared
    }

    /// The backend's own keys with their effective values (defaults filled in, secrets
    /// `***`), as `print-config` shows them.
    pub fn effective(&self) -> Value {
        self.settings.effective()
    }
}

/// One queue backend composition can choose by `queue.backend`: its tag, the keys it
/// reads in `[queue]`, and how to plan it.
#[derive(Clone, Copy)]
pub struct QueueBackend {
    tag: &'static str,
    keys: fn() -> Vec<String>,
    plan: fn(&ConfigSnapshot, &QueueShared, bool, &mut Vec<ConfigIssue>) -> Option<QueuePlan>,
}

impl std::fmt::Debug for QueueBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueBackend")
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl QueueBackend {
    /// The backend whose settings are `S`.
    pub fn of<S: QueueBackendSettings>() -> QueueBackend {
        QueueBackend {
            tag: S::BACKEND,
            keys: keys_of::<S>,
            plan: plan_backend::<S>,
        }
    }

    /// Its `queue.backend` tag.
    pub fn tag(&self) -> &'static str {
        self.tag
    }
}

/// Reads `S`'s keys (so their types are checked whichever backend is chosen); when `S`
/// is the chosen one, also checks its values and plans it.
fn plan_backend<S: QueueBackendSettings>(
    snapshot: &ConfigSnapshot,
    shared: &QueueShared,
    chosen: bool,
    issues: &mut Vec<ConfigIssue>,
) -> Option<QueuePlan> {
    let settings = read::<S>(snapshot, "queue", issues)?;
    if !chosen {
        return None;
    }
    let settings = checked(settings.check(shared), settings, issues)?;
    Some(QueuePlan {
        backend: S::BACKEND,
        shared: shared.clone(),
        settings: Arc::new(settings),
    })
}

/// The components composition can choose from: the queue backends built in (see
/// `queue_backends!`), plus any a program adds ([`Backends::with_queue`]).
#[derive(Clone, Debug)]
pub struct Backends {
    queues: Vec<QueueBackend>,
}

impl Default for Backends {
    fn default() -> Self {
        Backends::builtin()
    }
}

impl Backends {
    /// The backends this build has.
    pub fn builtin() -> Backends {
        Backends {
            queues: builtin_queues(),
        }
    }

    /// Adds the queue backend whose settings are `S` (replacing one with its tag).
    pub fn with_queue<S: QueueBackendSettings>(mut self) -> Backends {
        self.queues.retain(|q| q.tag != S::BACKEND);
        self.queues.push(QueueBackend::of::<S>());
        self
    }

    /// The `queue.backend` tags that can be chosen.
    pub fn queue_tags(&self) -> Vec<&'static str> {
        self.queues.iter().map(|q| q.tag).collect()
    }
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
    /// `[[schedules]]`, each checked (empty when there are none).
    #[cfg(feature = "schedule")]
    pub schedules: Vec<runtime_adapters_schedule::ScheduleSpec>,
}

/// The trace exporters by `tracing.exporter` tag; `none` is the core's.
const TRACE_EXPORTERS: [(&str, &str, bool); 3] = [
    ("none", "", true),
    ("stdout", "otel", cfg!(feature = "otel")),
    ("otlp", "otel", cfg!(feature = "otel")),
];

/// Whether this program was built with the runtime-compose feature `feature`. In a
/// workspace build cargo unifies features, so an app may get more than it asked for.
pub fn has_feature(feature: &str) -> bool {
    const OTHERS: [(&str, bool); 3] = [
        ("otel", cfg!(feature = "otel")),
        ("http", cfg!(feature = "http")),
        ("schedule", cfg!(feature = "schedule")),
    ];
    QUEUE_FEATURES
        .iter()
        .chain(&OTHERS)
        .any(|(name, on)| *on && *name == feature)
}

/// Reads the platform sections of `snapshot` (core's checks), maps each choice to its
/// adapter and runs the adapter's own check, without I/O. Every problem is reported with
/// its key.
///
/// # Errors
/// [`ConfigError::Invalid`] with one issue per bad key.
pub fn plan(snapshot: &ConfigSnapshot, service_name: &str) -> Result<Plan, ConfigError> {
    plan_with(&Backends::builtin(), snapshot, service_name)
}

/// [`plan`] choosing among `backends` (the built-in ones plus a program's own).
///
/// # Errors
/// [`ConfigError::Invalid`] with one issue per bad key.
pub fn plan_with(
    backends: &Backends,
    snapshot: &ConfigSnapshot,
    service_name: &str,
) -> Result<Plan, ConfigError> {
    let mut issues = match PlatformConfig::from_snapshot(snapshot) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(issues)) => issues,
        Err(other) => return Err(other),
    };
    let (plan, more) = plan_adapters(backends, snapshot, service_name);
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
    validator_with(Backends::builtin(), service_name)
}

/// [`validator`] choosing among `backends`; use the same `backends` as [`plan_with`].
pub fn validator_with(backends: Backends, service_name: &'static str) -> Validator {
    Arc::new(move |snapshot: &ConfigSnapshot| plan_adapters(&backends, snapshot, service_name).1)
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
    backends: &Backends,
    snapshot: &ConfigSnapshot,
    service_name: &str,
) -> (Option<Plan>, Vec<ConfigIssue>) {
    let mut issues = Vec::new();
    let queue = plan_queue(backends, snapshot, &mut issues);
    let tracer = plan_tracer(snapshot, service_name, &mut issues);
    #[cfg(feature = "http")]
    let control = plan_control(snapshot, &mut issues);
    #[cfg(feature = "schedule")]
    let schedules = schedules::plan_schedules(snapshot, &mut issues);
    #[cfg(not(feature = "schedule"))]
    if snapshot.get("schedules").is_some() {
        issues.push(runtime_core::config::issue(
            snapshot,
            "schedules",
            "schedules are not built into this program (runtime-compose feature `schedule`)",
        ));
    }
    let plan = match (queue, tracer) {
        (Some(queue), Some(tracer)) if issues.is_empty() => Some(Plan {
            queue,
            tracer,
            #[cfg(feature = "http")]
            control,
            #[cfg(feature = "schedule")]
            schedules,
        }),
        _ => None,
    };
    (plan, issues)
}

fn plan_queue(
    backends: &Backends,
    snapshot: &ConfigSnapshot,
    issues: &mut Vec<ConfigIssue>,
) -> Option<QueuePlan> {
    let q: QueueConfig = core_section(snapshot, "queue");
    let shared = q.shared();
    let mut known = keys_of::<QueueConfig>();
    let mut planned = None;
    for backend in &backends.queues {
        known.extend((backend.keys)());
        let chosen = backend.tag == q.backend;
        if let Some(plan) = (backend.plan)(snapshot, &shared, chosen, issues) {
            planned = Some(plan);
        }
    }
    unknown_keys(snapshot, "queue", &known, issues);
    if !backends.queues.iter().any(|b| b.tag == q.backend) {
        // Registered tags first, then the ones this build lacks.
        let mut choices: Vec<(&str, &str, bool)> = backends
            .queues
            .iter()
            .map(|b| (b.tag, b.tag, true))
            .collect();
        for (feature, _) in QUEUE_FEATURES {
            if !choices.iter().any(|(tag, _, _)| tag == feature) {
                choices.push((feature, feature, false));
            }
        }
        issues.push(unknown_choice(
            snapshot,
            "queue.backend",
            &q.backend,
            &choices,
        ));
    }
    planned
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
        let queue = &self.queue;
        queue.settings.build(&queue.shared).map_err(|e| {
            ComposeError::setup(format!("cannot set up the {} queue: {e}", queue.backend))
        })
    }

    /// The `check-config --connect` probes of the planned components: the queue (built
    /// and pinged, then closed) and, for the OTLP exporter, a TCP connection to the
    /// collector. Targets carry no secret.
    pub fn probes(&self) -> Vec<Probe> {
        let mut probes = Vec::new();
        let queue = self.queue.clone();
        probes.push(Probe::new(
            "queue",
            format!("{} {}", queue.backend, queue.settings.target()),
            async move {
                let built = queue
                    .settings
                    .build(&queue.shared)
                    .map_err(|e| e.to_string())?;
                let pinged = built.ping().await.map_err(|e| error_chain(&e));
                built.close().await;
                pinged
            },
        ));
        #[cfg(feature = "otel")]
        if let TracerPlan::Otel(c) = &self.tracer
            && c.exporter == runtime_adapters_otel::ExporterKind::Otlp
        {
            let endpoint = c.otlp_endpoint.clone();
            probes.push(Probe::new(
                "tracing",
                format!("otlp {}", runtime_contracts::redact_url(&endpoint)),
                async move { reach(&endpoint).await },
            ));
        }
        probes
    }

    /// Builds the limiter of the planned queue's backend, which keeps pools' per-key
    /// concurrency and rates (`[workers]`): in process for memory, shared through Redis
    /// for redis; `None` for a backend without one. Give it to `RuntimeBuilder::limiter`.
    ///
    /// # Errors
    /// [`ComposeError::Setup`] when the adapter refuses (not expected after [`plan`]).
    pub fn build_limiter(&self) -> Result<Option<Arc<dyn TaskLimiter>>, ComposeError> {
        self.queue
            .settings
            .limiter(&self.queue.shared)
            .map_err(|e| {
                ComposeError::setup(format!(
                    "cannot set up the {} limiter: {e}",
                    self.queue.backend
                ))
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

/// Opens (and closes) a TCP connection to the host and port of an `http://` URL.
#[cfg(feature = "otel")]
async fn reach(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    // Credentials before `@` are not part of the address.
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let address = if host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host_port.to_owned()
    } else {
        format!("{host_port}:80")
    };
    tokio::net::TcpStream::connect(&address)
        .await
        .map(drop)
        .map_err(|e| format!("cannot connect to {address}: {e}"))
}

/// The configuration as `print-config` shows it: `tree` (the snapshot's redacted tree)
/// with every key of the chosen adapters filled in with its effective value where the
/// configuration leaves it out (the adapters' own defaults), secrets `***`. Keys the
/// configuration sets keep their value.
pub fn fill_effective(backends: &Backends, snapshot: &ConfigSnapshot, tree: &mut Value) {
    let mut sections: Vec<(&str, Value)> = Vec::new();
    let mut ignored = Vec::new();
    if let Some(queue) = plan_queue(backends, snapshot, &mut ignored) {
        sections.push(("queue", queue.effective()));
    }
    #[cfg(feature = "otel")]
    if let Some(s) = read::<runtime_adapters_otel::OtelSettings>(snapshot, "tracing", &mut ignored)
    {
        sections.push(("tracing", serde_json::to_value(s).unwrap_or(Value::Null)));
    }
    #[cfg(feature = "http")]
    if let Some(s) =
        read::<runtime_adapters_http::ControlSettings>(snapshot, "control", &mut ignored)
    {
        sections.push(("control", serde_json::to_value(s).unwrap_or(Value::Null)));
    }
    let Value::Object(top) = tree else {
        return;
    };
    for (name, values) in sections {
        let Value::Object(values) = values else {
            continue;
        };
        let section = top
            .entry(name)
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        let Value::Object(section) = section else {
            continue;
        };
        for (key, value) in values {
            if section.get(&key).is_some_and(|v| !v.is_null()) || value.is_null() {
                continue;
            }
            let value = if runtime_contracts::is_secret_key(&key) && !value.is_null() {
                Value::String(runtime_contracts::REDACTED.to_owned())
            } else {
                value
            };
            section.insert(key, value);
        }
    }
}
