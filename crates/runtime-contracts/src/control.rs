//! The runtime's status and administration as plain calls and plain data, so a transport
//! (the HTTP adapter) can expose them without knowing the core.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::ConfigIssue;
use crate::controls::{CancelOutcome, TaskInfo};
use crate::error::EndpointError;
use crate::health::{ComponentHealth, HealthReport};
use crate::queue::{DeadLetter, QueueStats};
use crate::signal::StopSignal;
use crate::source::{ScheduleStatus, SourceStatus};
use crate::task::{Task, TaskId};
use crate::worker::PoolStatus;

/// The runtime's life cycle.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeState {
    /// Loading config, registering modules, starting components.
    Starting,
    /// All components started.
    Running,
    /// Draining.
    Stopping,
    /// Done.
    Stopped,
}

/// A registered module.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ModuleStatus {
    /// Its name.
    pub name: String,
}

/// The whole runtime at a glance.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct RuntimeStatus {
    /// Life-cycle state.
    pub state: RuntimeState,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Version of the configuration in force.
    pub config_version: u64,
    /// Accepted reloads.
    pub config_reloads: u64,
    /// Rejected reloads.
    pub config_reload_failures: u64,
    /// Modules.
    pub modules: Vec<ModuleStatus>,
    /// Sources.
    pub sources: Vec<SourceStatus>,
    /// Schedules (`[[schedules]]`): next and last tick, runs; also listed in `sources`.
    #[serde(default)]
    pub schedules: Vec<ScheduleStatus>,
    /// Queues with their stats (a queue whose backend is down shows what is known).
    pub queues: Vec<QueueStats>,
    /// Worker pools.
    pub pools: Vec<PoolStatus>,
    /// Spans the exporter dropped.
    pub dropped_spans: u64,
    /// Age in milliseconds of the oldest queue stats in `queues`: they are gathered in the
    /// background, so a stalled backend shows its last numbers and a growing age.
    #[serde(default)]
    pub stats_age_ms: u64,
}

/// A dead letter with the queue it is in.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct DeadLetterEntry {
    /// Queue name.
    pub queue: String,
    /// The dead letter.
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// How many dead letters a purge deleted from one queue.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct PurgedDeadLetters {
    /// Queue name.
    pub queue: String,
    /// Dead letters deleted.
    pub purged: u64,
}

/// The result of a reload request.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Whether the new configuration was accepted.
    pub accepted: bool,
    /// The version in force after the request.
    pub version: u64,
    /// Keys that changed (when accepted).
    pub changed_keys: Vec<String>,
    /// Why it was rejected (when not).
    pub errors: Vec<ConfigIssue>,
}

/// Errors of administrative calls.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is wrong.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request cannot be served in the current state (e.g. stopping).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A backend is down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The backend (or this runtime) cannot do this.
    #[error("not supported: {0}")]
    Unsupported(String),
}

/// What an enqueue by hand did.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EnqueueReceipt {
    /// The id of the task in the queue: the new one, or the matched one on a duplicate.
    pub id: TaskId,
    /// True when a live task with the same unique key was matched and nothing was added.
    pub duplicate: bool,
}

/// Status, health and administration of a running runtime. The core implements it; the
/// HTTP adapter serves it.
#[async_trait]
pub trait ControlPlane: Send + Sync + 'static {
    /// A status snapshot.
    async fn status(&self) -> RuntimeStatus;
    /// Liveness: the runtime's own loop responds. Never depends on backends.
    async fn liveness(&self) -> ComponentHealth;
    /// Readiness: runtime running and every readiness contributor up.
    async fn readiness(&self) -> HealthReport;
    /// Every contributor.
    async fn health(&self) -> HealthReport;
    /// Stops a source producing.
    async fn pause_source(&self, name: &str) -> Result<SourceStatus, AdminError>;
    /// Restarts a paused source.
    async fn resume_source(&self, name: &str) -> Result<SourceStatus, AdminError>;
    /// Reloads configuration (validated first; an invalid one is rejected).
    async fn reload_config(&self) -> Result<ReloadReport, AdminError>;
    /// Dead letters of every queue (or one), up to `limit` per queue.
    async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetterEntry>, AdminError>;
    /// Re-enqueues a dead letter.
    async fn retry_dead_letter(&self, id: TaskId) -> Result<(), AdminError>;
    /// Deletes a dead letter.
    async fn delete_dead_letter(&self, id: TaskId) -> Result<(), AdminError>;
    /// Deletes every dead letter of every queue (or one); how many, per queue.
    async fn purge_dead_letters(
        &self,
        queue: Option<&str>,
    ) -> Result<Vec<PurgedDeadLetters>, AdminError>;
    /// Changes a pool's concurrency live.
    async fn set_concurrency(
        &self,
        pool: &str,
        concurrency: usize,
    ) -> Result<PoolStatus, AdminError>;
    /// Starts a graceful shutdown and returns at once.
    async fn shutdown(&self) -> Result<(), AdminError>;
    /// Publishes `task` into queue `queue` (an operator's enqueue by hand).
    async fn enqueue(&self, queue: &str, task: Task) -> Result<EnqueueReceipt, AdminError> {
        let _ = (queue, task);
        Err(AdminError::Unsupported("enqueue".into()))
    }
    /// Looks a task up in every queue; [`TaskInfo::unknown`] when none has it.
    async fn task(&self, id: TaskId) -> Result<TaskInfo, AdminError> {
        let _ = id;
        Err(AdminError::Unsupported("task lookup".into()))
    }
    /// Cancels a task in whichever queue has it.
    async fn cancel_task(&self, id: TaskId) -> Result<CancelOutcome, AdminError> {
        let _ = id;
        Err(AdminError::Unsupported("cancel".into()))
    }
}

/// A long-running component that serves the control plane (the HTTP server). The runtime
/// starts it last and stops it first... of what serves traffic; it keeps answering
/// health while draining so orchestrators see readiness go false.
#[async_trait]
pub trait ControlEndpoint: Send + Sync + 'static {
    /// Name (for status and logs).
    fn name(&self) -> &str;
    /// Binds (failing fast if it cannot) and serves until `stop` fires.
    async fn serve(
        &self,
        plane: Arc<dyn ControlPlane>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), EndpointError>;
}
