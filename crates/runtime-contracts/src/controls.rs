//! Task controls: looking a task up by id and cancelling it, offered by a queue backend
//! through [`TaskQueue::controls`](crate::TaskQueue::controls). Unique publish needs no
//! capability: every backend honours [`UNIQUE_KEY_HEADER`] in `publish`.
//!
//! They are a capability trait rather than methods of `TaskQueue` because a backend may
//! lack them (a stream whose messages cannot be found by id) or lack one at run time
//! (a server version without the feature): such a backend returns `None` from `controls()`
//! or [`QueueError::Unsupported`](crate::QueueError::Unsupported) from one call, never a
//! panic.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::queue::QueueError;
use crate::task::{Delivery, TaskId, TaskOrigin};

/// The header that carries a task's unique key. While a live task (pending, delayed,
/// running or dead) with the same key is in the queue, publishing another one adds
/// nothing and answers [`PublishOutcome::Duplicate`](crate::PublishOutcome::Duplicate)
/// with the id of that task. The claim ends when the task is acked, cancelled, or its
/// dead letter is deleted or purged.
///
/// A header, not a field: backends store headers already, so the key crosses every
/// backend's wire form unchanged, and the task stays within its size budget.
pub const UNIQUE_KEY_HEADER: &str = "plba-unique-key";

/// The header where a queue keeps the error of a task's last failed attempt (set by
/// `nack`, shown by [`TaskControls::lookup`]). At most [`MAX_LAST_ERROR_BYTES`].
pub const LAST_ERROR_HEADER: &str = "plba-last-error";

/// Longest last error a queue keeps with a task; longer ones are cut at a character
/// boundary, so a handler that fails with a huge message cannot grow every task.
pub const MAX_LAST_ERROR_BYTES: usize = 1024;

/// Longest unique key a publisher may set; a longer one is refused as invalid.
pub const MAX_UNIQUE_KEY_BYTES: usize = 512;

/// Where a task is in its life, as [`TaskControls::lookup`] reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Ready to be delivered now.
    Pending,
    /// Waiting for its not-before time.
    Delayed,
    /// Delivered to a consumer that holds its lease.
    Running,
    /// In the dead-letter set.
    Dead,
    /// Not in the queue: never published here, or already acked or cancelled.
    Unknown,
}

impl TaskState {
    /// The word used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Delayed => "delayed",
            TaskState::Running => "running",
            TaskState::Dead => "dead",
            TaskState::Unknown => "unknown",
        }
    }
}

/// One task as an operator sees it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The task id.
    pub id: TaskId,
    /// Its state.
    pub state: TaskState,
    /// The queue it is in (`None` when unknown).
    pub queue: Option<String>,
    /// Its route (`None` when unknown).
    pub route: Option<String>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was first published, ms since the epoch.
    pub enqueued_at_ms: Option<u64>,
    /// Not delivered before this time, ms since the epoch (delayed tasks, scheduled retries).
    pub not_before_ms: Option<u64>,
    /// The error of the last failed attempt (the dead-letter reason for a dead task).
    pub last_error: Option<String>,
    /// The W3C trace id the task continues, 32 hex digits.
    pub trace_id: Option<String>,
    /// Its unique key, if it has one.
    pub unique_key: Option<String>,
    /// The source item it stands for, if any (the runtime tells that source's
    /// acknowledger when an operator cancels the task, so the item is not produced again).
    #[serde(default)]
    pub origin: Option<TaskOrigin>,
    /// True when it is running and cancellation was requested.
    #[serde(default)]
    pub cancel_requested: bool,
}

impl TaskInfo {
    /// The answer for an id no queue knows.
    pub fn unknown(id: TaskId) -> TaskInfo {
        TaskInfo {
            id,
            state: TaskState::Unknown,
            queue: None,
            route: None,
            attempts: 0,
            enqueued_at_ms: None,
            not_before_ms: None,
            last_error: None,
            trace_id: None,
            unique_key: None,
            origin: None,
            cancel_requested: false,
        }
    }

    /// The fields a task itself carries, for a task in `queue` in `state`.
    pub fn of(task: &crate::Task, queue: &str, state: TaskState) -> TaskInfo {
        TaskInfo {
            id: task.id,
            state,
            queue: Some(queue.to_owned()),
            route: Some(task.route.to_string()),
            attempts: task.attempts,
            enqueued_at_ms: Some(task.enqueued_at_ms),
            not_before_ms: task.not_before_ms,
            last_error: task.headers.get(LAST_ERROR_HEADER).map(str::to_owned),
            trace_id: task.trace_context().map(|c| format!("{:032x}", c.trace_id)),
            unique_key: task.unique_key().map(str::to_owned),
            origin: task.origin.as_deref().cloned(),
            cancel_requested: false,
        }
    }
}

/// What [`TaskControls::cancel`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelOutcome {
    /// The task was pending or delayed and is gone.
    Removed,
    /// The task is running: its holder is told to stop, and the queue settles it
    /// without retry (a nack, release, dead-letter or expired lease of it removes it).
    Signalled,
    /// The task is in the dead-letter set; delete it there instead.
    Dead,
    /// No such task in this queue.
    Unknown,
}

/// Lookup and cancellation of tasks by id. Every call is atomic in the backend.
///
/// Semantics every implementation keeps (checked by the queue conformance suite):
/// * `lookup` costs O(1) (or O(log n)), never a scan of the queue;
/// * `cancel` of a pending or delayed task removes it (its unique key and origin are
///   free again); of a running task marks it, and from then on the queue never retries
///   nor dead-letters that delivery: `nack`, `release` and `dead_letter` of it remove it
///   and answer as cancelled, and an expired lease removes it instead of redelivering;
///   `ack` of it still completes it (the work finished);
/// * each `Removed` or `Signalled` adds one to `QueueStats::cancelled_total`;
/// * [`TaskControls::cancelled`] completes for the holder of a running task once its
///   cancellation was requested, within the backend's documented latency.
#[async_trait]
pub trait TaskControls: Send + Sync {
    /// The task's state and fields; [`TaskState::Unknown`] when it is not in the queue.
    async fn lookup(&self, id: TaskId) -> Result<TaskInfo, QueueError>;

    /// Cancels the task.
    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome, QueueError>;

    /// Completes once cancellation of this (running) delivery has been requested. The
    /// worker selects on it beside the handler; dropping the future stops watching. A
    /// backend that cannot tell stays pending for ever. An error means the backend could
    /// not be asked; the caller may call again later.
    async fn cancelled(&self, delivery: &Delivery) -> Result<(), QueueError>;
}
