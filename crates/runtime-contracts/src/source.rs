//! Task sources, the sink they publish into, and how they learn final outcomes.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::SourceError;
use crate::health::HealthContributor;
use crate::queue::{PublishOutcome, QueueError};
use crate::signal::StopSignal;
use crate::task::Task;

/// Task header a source sets, instead of the payload, on an item larger than its
/// `max_message_bytes`: the item's size in bytes. The handler rejects such a task from the
/// header alone.
pub const OVERSIZE_HEADER: &str = "x-source-oversize";

/// The default `max_message_bytes` of the sources and their handlers (25 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 25 * 1024 * 1024;

/// The outcome tag ([`TaskContext::tag_outcome`](crate::TaskContext::tag_outcome)) of a
/// task that succeeded by being refused; acknowledgers move its item to their
/// `rejected_folder`.
pub const REJECTED_TAG: &str = "rejected";

/// The `kind` of the scheduled source (`[[schedules]]`), whose status details carry a
/// [`ScheduleStatus`].
pub const SCHEDULE_KIND: &str = "schedule";

/// Task header a scheduled source sets: the tick's instant, RFC 3339 in UTC
/// (`2026-12-06T07:00:00Z`). The tick is also the task's origin key.
pub const SCHEDULE_TICK_HEADER: &str = "x-schedule-tick";

/// Task header a scheduled source sets: the tick's wall-clock time in the schedule's time
/// zone, RFC 3339 with that zone's offset and name (RFC 9557:
/// `2026-12-06T08:00:00+01:00[Europe/Berlin]`), so a handler can tell the local day.
pub const SCHEDULE_LOCAL_TICK_HEADER: &str = "x-schedule-local-tick";

/// What `/status` shows of one schedule (`schedules: [...]`). Times are RFC 3339 in UTC.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ScheduleStatus {
    /// The schedule's (and its source's) name.
    pub name: String,
    /// The next tick, if the schedule has one.
    pub next_run: Option<String>,
    /// The last tick published, if any (kept across restarts).
    pub last_run: Option<String>,
    /// Ticks this process published.
    pub runs_total: u64,
}

impl ScheduleStatus {
    /// The detail key under which a scheduled source's status carries this.
    pub const DETAIL: &'static str = "schedule";

    /// Puts this into a source's status details. Wrappers (a leader lease) forward the
    /// details, so the runtime finds it whatever wraps the source.
    pub fn write_details(&self, details: &mut BTreeMap<String, serde_json::Value>) {
        if let Ok(value) = serde_json::to_value(self) {
            details.insert(Self::DETAIL.to_owned(), value);
        }
    }

    /// The schedule status a source's status carries, if it is a scheduled source.
    pub fn from_source(status: &SourceStatus) -> Option<ScheduleStatus> {
        if status.kind != SCHEDULE_KIND {
            return None;
        }
        serde_json::from_value(status.details.get(Self::DETAIL)?.clone()).ok()
    }
}

/// Where a source publishes. The runtime's sink adds the trace context (a producer span
/// per task), counts what was produced and applies the queue's backpressure: `publish`
/// waits while a bounded queue is full.
#[async_trait]
pub trait TaskSink: Send + Sync {
    /// Publishes one task.
    async fn publish(&self, task: Task) -> Result<PublishOutcome, QueueError>;

    /// Publishes many tasks in one go where the backend can.
    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError>;
}

/// The state of a source as the control plane shows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Not started yet.
    Starting,
    /// Producing.
    Running,
    /// Paused by an operator.
    Paused,
    /// Lost its upstream; retrying with backoff.
    Reconnecting,
    /// Stopped for good.
    Stopped,
}

/// What the control plane shows of a source.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Registered name.
    pub name: String,
    /// Kind (`interval`, `directory`, `webhook`, ...).
    pub kind: String,
    /// State.
    pub state: SourceState,
    /// Tasks published (enqueued, duplicates not counted).
    pub produced: u64,
    /// Errors seen (connection losses, failed polls).
    pub errors: u64,
    /// The last error, if any (no secrets).
    pub last_error: Option<String>,
    /// Seconds since the source last talked to its upstream successfully.
    pub last_success_age_seconds: Option<f64>,
    /// Source-specific details (mode, folder, checkpoint).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
}

impl SourceStatus {
    /// A fresh status for a source that has not run yet.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        SourceStatus {
            name: name.into(),
            kind: kind.into(),
            state: SourceState::Starting,
            produced: 0,
            errors: 0,
            last_error: None,
            last_success_age_seconds: None,
            details: BTreeMap::new(),
        }
    }
}

/// Produces tasks.
///
/// The runtime calls [`TaskSource::run`] on its own async task and restarts it with
/// backoff when it returns an error; an operator's pause stops it through `stop` and a
/// resume calls `run` again. A source must find again, after a restart, whatever it had
/// not seen acknowledged: it relies on the queue refusing duplicates and on the handler
/// being idempotent, never on in-memory state alone.
#[async_trait]
pub trait TaskSource: Send + Sync + 'static {
    /// Registered name (unique in a runtime; also the name of its acknowledger).
    fn name(&self) -> &str;

    /// Kind, for status.
    fn kind(&self) -> &str;

    /// Produces into `sink` until `stop` fires (then returns `Ok`) or the upstream fails
    /// (then returns the error).
    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError>;

    /// Current status; the runtime fills in `state` and `produced`.
    fn status(&self) -> SourceStatus;

    /// The source's health contributor (connection, progress), if it has one.
    fn health(&self) -> Option<Arc<dyn HealthContributor>> {
        None
    }

    /// The acknowledger that completes this source's side of a task. The runtime
    /// registers it under the source's name in every process.
    fn acknowledger(&self) -> Option<Arc<dyn SourceAcknowledger>> {
        None
    }
}

/// The final outcome of a task, as told to the source that produced it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum FinalOutcome {
    /// The handler finished it. `tag` is what the handler set with
    /// [`TaskContext::tag_outcome`](crate::TaskContext::tag_outcome), so a source can file
    /// items differently (for example a folder per tag) without knowing the domain.
    Succeeded {
        /// The handler's tag, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// It failed for good and is in the dead-letter set.
    DeadLettered {
        /// The last error.
        reason: String,
    },
}

/// Completes the source's side of a task once its outcome is final: for example, marks an
/// item done after success, or flags it after a final failure so it is not produced
/// again. Runs in whichever process finished the task, so it must work from the origin
/// key alone, over its own connection.
///
/// On success, in sequence: handler, then `acknowledge`, then queue ack. If `acknowledge` fails
/// the task goes back to the queue (without counting an attempt) and the handler runs
/// again: handlers are idempotent, so both effects end up applied at least once.
#[async_trait]
pub trait SourceAcknowledger: Send + Sync + 'static {
    /// Applies `outcome` to the item named by `key`. Must be idempotent.
    async fn acknowledge(&self, key: &str, outcome: &FinalOutcome) -> Result<(), SourceError>;
}
