//! The platform's own configuration sections: `runtime`, `workers`, and the parts of
//! `queue` and `tracing` every backend and exporter shares (with the chosen one's tag as a
//! plain string). The adapters own their keys (`queue.redis_url`, `control.*`, ...); the
//! composition (`runtime-compose`) reads and checks them, unknown keys included.
//! Applications own every other section.

use std::time::Duration;

use runtime_contracts::{ConfigError, ConfigIssue, ConfigSnapshot, QueueShared, Rate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Validator;
use super::extract::{issue, suggest};

/// All platform sections.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformConfig {
    /// `[runtime]`
    pub runtime: RuntimeConfig,
    /// `[queue]`
    pub queue: QueueConfig,
    /// `[workers]`
    pub workers: WorkersConfig,
    /// `[tracing]`
    pub tracing: TracingConfig,
}

/// The platform section names (`[control]` is the control plane's, read by the
/// composition).
pub const PLATFORM_SECTIONS: [&str; 6] = [
    "runtime",
    "queue",
    "workers",
    "control",
    "tracing",
    "schedules",
];

/// A validator that rejects top-level sections nobody owns (`[workrs]`), suggesting the
/// closest known one. `app_sections` are the application's; platform sections are added.
pub fn known_sections_validator(app_sections: Vec<String>) -> Validator {
    std::sync::Arc::new(move |snapshot: &ConfigSnapshot| {
        let mut known: Vec<String> = PLATFORM_SECTIONS.iter().map(|s| (*s).to_owned()).collect();
        known.extend(app_sections.iter().cloned());
        let Value::Object(top) = &snapshot.tree else {
            return Vec::new();
        };
        top.keys()
            .filter(|k| !known.contains(k))
            .map(|k| {
                let mut message = format!("unknown section; known sections: {}", known.join(", "));
                if let Some(s) = suggest(k, known.iter().map(String::as_str)) {
                    message.push_str(&format!("; did you mean `{s}`?"));
                }
                issue(snapshot, k, message)
            })
            .collect()
    })
}

impl PlatformConfig {
    /// Reads and checks the platform sections of a snapshot; every problem is reported,
    /// with its key, source and value.
    pub fn from_snapshot(snapshot: &ConfigSnapshot) -> Result<Self, ConfigError> {
        let mut issues = Vec::new();
        let mut cfg = PlatformConfig::default();
        macro_rules! section {
            ($field:ident) => {
                match super::extract::section(snapshot, stringify!($field)) {
                    Ok(v) => cfg.$field = v,
                    Err(ConfigError::Invalid(mut i)) => issues.append(&mut i),
                    Err(e) => return Err(e),
                }
            };
        }
        section!(runtime);
        section!(queue);
        section!(workers);
        section!(tracing);
        // Sections that failed to read stay at their (valid) defaults, so range checks
        // report only values that were actually given.
        let mut more = cfg.check();
        super::extract::complete(snapshot, &mut more);
        issues.extend(more);
        if issues.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }

    /// How often a running task's lease is renewed: `workers.lease_renewal`, or a third
    /// of `queue.visibility_timeout` so two renewals may fail before the lease runs out.
    pub fn lease_renewal(&self) -> Duration {
        self.workers
            .lease_renewal
            .unwrap_or(self.queue.visibility_timeout / 3)
    }

    /// Checks values serde cannot (ranges, combinations).
    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut bad = |key: &str, value: String, message: &str| {
            issues.push(ConfigIssue {
                key: key.to_owned(),
                origin: None,
                value: Some(value),
                message: message.to_owned(),
            })
        };
        let dur = |d: Duration| format!("{:?}", humantime::format_duration(d).to_string());
        if self.runtime.shutdown_timeout.is_zero() {
            bad(
                "runtime.shutdown_timeout",
                dur(self.runtime.shutdown_timeout),
                "expected a duration above zero, like \"30s\"",
            );
        }
        for (key, d) in [
            (
                "runtime.source_stop_timeout",
                self.runtime.source_stop_timeout,
            ),
            ("runtime.release_timeout", self.runtime.release_timeout),
            (
                "runtime.control_stop_timeout",
                self.runtime.control_stop_timeout,
            ),
        ] {
            if d.is_zero() {
                bad(key, dur(d), "expected a duration above zero, like \"5s\"");
            }
        }
        if let Some(d) = self.workers.lease_renewal
            && (d.is_zero() || d >= self.queue.visibility_timeout)
        {
            bad(
                "workers.lease_renewal",
                dur(d),
                "expected a duration above zero and below queue.visibility_timeout, like \"20s\"",
            );
        }
        if self.queue.max_attempts == 0 {
            bad(
                "queue.max_attempts",
                "0".into(),
                "expected a whole number of at least 1",
            );
        }
        if self.queue.name.trim().is_empty() {
            bad("queue.name", "\"\"".into(), "expected a non-empty name");
        }
        if self.workers.concurrency == 0 || self.workers.concurrency > 4096 {
            bad(
                "workers.concurrency",
                self.workers.concurrency.to_string(),
                "expected a whole number from 1 to 4096",
            );
        }
        let w = &self.workers;
        if let Some(key) = &w.concurrency_key
            && (key.trim().is_empty() || key.len() > 128)
        {
            bad(
                "workers.concurrency_key",
                format!("{key:?}"),
                "expected the name of a task header, like \"customer\"",
            );
        }
        if let Some(n) = w.per_key {
            if n == 0 {
                bad(
                    "workers.per_key",
                    "0".into(),
                    "expected a whole number of at least 1",
                );
            } else if w.concurrency_key.is_none() {
                bad(
                    "workers.per_key",
                    n.to_string(),
                    "needs workers.concurrency_key, the task header that names the key",
                );
            }
        }
        if w.rate_per_key {
            let missing = match (&w.concurrency_key, &w.rate) {
                (None, _) => Some("workers.concurrency_key, the task header that names the key"),
                (_, None) => Some("workers.rate"),
                _ => None,
            };
            if let Some(missing) = missing {
                bad(
                    "workers.rate_per_key",
                    "true".into(),
                    &format!("needs {missing}"),
                );
            }
        }
        if self.workers.task_timeout.is_zero() {
            bad(
                "workers.task_timeout",
                dur(self.workers.task_timeout),
                "expected a duration above zero, like \"30s\"",
            );
        }
        if self.workers.retry_base.is_zero() {
            bad(
                "workers.retry_base",
                dur(self.workers.retry_base),
                "expected a duration above zero, like \"1s\"",
            );
        }
        if self.workers.retry_max < self.workers.retry_base {
            bad(
                "workers.retry_max",
                dur(self.workers.retry_max),
                "expected a duration not below workers.retry_base",
            );
        }
        if self.queue.visibility_timeout < Duration::from_millis(100) {
            bad(
                "queue.visibility_timeout",
                dur(self.queue.visibility_timeout),
                "expected a duration of at least 100ms, like \"60s\"",
            );
        }
        let level = &self.tracing.level;
        let expected = "expected a log filter like \"info\" or \"my_app=debug,info\"";
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level) {
            bad(
                "tracing.level",
                format!("{level:?}"),
                &format!("{expected}: {e}"),
            );
        } else if !is_level_filter(level) {
            // A bare word parses as a target name ("loud" = everything from the target
            // `loud`), which silences every log: a typo of a level, not a filter.
            bad(
                "tracing.level",
                format!("{level:?}"),
                &format!("{expected}: {level:?} is neither a level nor target=level"),
            );
        }
        issues
    }
}

/// Whether every directive of `filter` names a level (`info`) or a target with one
/// (`my_app=debug`, `my_app::db`-style paths included).
fn is_level_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .all(|d| d.contains('=') || LEVELS.contains(&d.to_ascii_lowercase().as_str()))
}

/// The default `runtime.state_dir`.
pub(crate) const DEFAULT_STATE_DIR: &str = "./var/state";

/// `[runtime]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// How long workers may finish in-flight tasks at shutdown.
    #[serde(with = "runtime_contracts::duration")]
    pub shutdown_timeout: Duration,
    /// How long sources may take to stop producing at shutdown.
    #[serde(with = "runtime_contracts::duration")]
    pub source_stop_timeout: Duration,
    /// After `shutdown_timeout`, how long cut-off workers may take to hand their tasks
    /// back to the queue.
    #[serde(with = "runtime_contracts::duration")]
    pub release_timeout: Duration,
    /// How long control endpoints may take to stop, last in the stop sequence.
    #[serde(with = "runtime_contracts::duration")]
    pub control_stop_timeout: Duration,
    /// Where the runtime keeps small state files of its own (the schedules' last ticks).
    /// Relative in a config file: relative to that file's directory. Created on first use.
    pub state_dir: std::path::PathBuf,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shutdown_timeout: Duration::from_secs(30),
            source_stop_timeout: Duration::from_secs(10),
            release_timeout: Duration::from_secs(10),
            control_stop_timeout: Duration::from_secs(5),
            state_dir: std::path::PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// `[queue]`: the keys every backend shares. The chosen backend's own keys are its
/// adapter's, so unknown keys are not this type's to reject.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueueConfig {
    /// Backend tag (`memory`, `redis`, ...): the composition maps it to an adapter.
    pub backend: String,
    /// Queue name (the backend's key namespace).
    pub name: String,
    /// A delivery not settled within this time is delivered again.
    #[serde(with = "runtime_contracts::duration")]
    pub visibility_timeout: Duration,
    /// Failed attempts before dead-letter.
    pub max_attempts: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            backend: "memory".to_owned(),
            name: "tasks".to_owned(),
            visibility_timeout: Duration::from_secs(60),
            max_attempts: 5,
        }
    }
}

impl QueueConfig {
    /// The keys every backend gets.
    pub fn shared(&self) -> QueueShared {
        QueueShared {
            name: self.name.clone(),
            visibility_timeout: self.visibility_timeout,
            max_attempts: self.max_attempts,
        }
    }
}

/// `[workers]`
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Tasks run at once per pool.
    pub concurrency: usize,
    /// Per-task timeout.
    #[serde(with = "runtime_contracts::duration")]
    pub task_timeout: Duration,
    /// First retry delay of the exponential backoff.
    #[serde(with = "runtime_contracts::duration")]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[serde(with = "runtime_contracts::duration")]
    pub retry_max: Duration,
    /// Renew a running task's delivery lease this often. Unset: a third of
    /// `queue.visibility_timeout` ([`PlatformConfig::lease_renewal`]).
    #[serde(default, with = "runtime_contracts::duration::option")]
    pub lease_renewal: Option<Duration>,
    /// The task header whose value is a task's concurrency key (`"customer"`): at most
    /// `per_key` tasks with one key run at once, across every process sharing the
    /// backend. Tasks without the header are not limited per key.
    pub concurrency_key: Option<String>,
    /// Tasks of one key running at once (default 1 when `concurrency_key` is set).
    pub per_key: Option<u32>,
    /// Most task starts per period (`"50/s"`, `"1000/m"`), per pool, across processes.
    pub rate: Option<Rate>,
    /// The rate holds per concurrency key instead of for the whole pool.
    pub rate_per_key: bool,
}

impl WorkersConfig {
    /// The pool limits these keys ask for, `None` when there are none.
    pub fn limits(&self) -> Option<crate::limits::PoolLimits> {
        if self.concurrency_key.is_none() && self.rate.is_none() {
            return None;
        }
        Some(crate::limits::PoolLimits {
            concurrency_key: self.concurrency_key.clone(),
            per_key: self.per_key.unwrap_or(1),
            rate: self.rate,
            rate_per_key: self.rate_per_key,
        })
    }
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            concurrency: 8,
            task_timeout: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            lease_renewal: None,
            concurrency_key: None,
            per_key: None,
            rate: None,
            rate_per_key: false,
        }
    }
}

/// Log formats.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[tracing]`: logging, and the span exporter's tag. The exporter's own keys are its
/// adapter's, so unknown keys are not this type's to reject.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TracingConfig {
    /// Span exporter tag (`none`, `stdout`, `otlp`): the composition maps it.
    pub exporter: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`info`, `mail_order_bot=debug,info`).
    pub level: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            exporter: "none".to_owned(),
            log_format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}
