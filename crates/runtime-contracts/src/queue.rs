//! The queue contract: at-least-once delivery with leases, attempts and a dead-letter set.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigIssue, QueueShared};
use crate::controls::TaskControls;
use crate::lease::{LeaderLease, LeaseError};
use crate::task::{Delivery, Task, TaskId};

/// What `publish` did with a task.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishOutcome {
    /// The task is in the queue.
    Enqueued,
    /// A live task with the same unique key (pending, delayed, running or dead), the same
    /// origin (pending, delayed or running) or the same id is already in the queue; this
    /// one was dropped. `existing` is that task's id. Keeps a polling source from flooding
    /// the queue and makes a publisher's retry safe.
    Duplicate {
        /// The id of the task that was matched.
        existing: TaskId,
    },
}

impl PublishOutcome {
    /// True for [`PublishOutcome::Duplicate`].
    pub fn is_duplicate(self) -> bool {
        matches!(self, PublishOutcome::Duplicate { .. })
    }

    /// The id of the task that is in the queue for this publish: `published` (the id of
    /// the task handed to `publish`) when it was enqueued, the matched one otherwise.
    pub fn task_id(self, published: TaskId) -> TaskId {
        match self {
            PublishOutcome::Enqueued => published,
            PublishOutcome::Duplicate { existing } => existing,
        }
    }
}

/// What `nack` did with a task.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NackOutcome {
    /// The task will be delivered again (after the delay, if any).
    Requeued,
    /// The task used up its attempts and is now in the dead-letter set.
    DeadLettered,
    /// Its cancellation was requested while it ran: it left the queue, not retried.
    Cancelled,
}

/// A task that failed for good, kept until an operator retries or deletes it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The task as it was last delivered.
    pub task: Task,
    /// Why it failed (the last error).
    pub reason: String,
    /// When it was dead-lettered, ms since the epoch.
    pub failed_at_ms: u64,
}

/// Counts a queue reports. Gauges are "now"; `*_total` counters only grow over the life
/// of the queue (for a shared backend such as Redis: of the queue, not of this process).
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Backend kind (`memory`, `redis`, ...).
    pub backend: String,
    /// Ready to be delivered now.
    pub pending: u64,
    /// Delivered and not yet settled.
    pub in_flight: u64,
    /// Waiting for their not-before time (delayed nack or scheduled).
    pub delayed: u64,
    /// In the dead-letter set.
    pub dead: u64,
    /// Bound on pending + delayed + in flight, if the queue is bounded.
    pub capacity: Option<u64>,
    /// Publishers waiting for room right now (backpressure).
    pub blocked_publishers: u64,
    /// Tasks accepted by publish.
    pub published_total: u64,
    /// Tasks acknowledged.
    pub acked_total: u64,
    /// Failed attempts reported by nack.
    pub nacked_total: u64,
    /// Tasks handed back without counting an attempt.
    pub released_total: u64,
    /// Tasks moved to the dead-letter set.
    pub dead_lettered_total: u64,
    /// Deliveries whose lease ran out and came back (consumer died or stalled).
    pub expired_total: u64,
    /// Tasks cancelled by [`TaskControls::cancel`] (removed or signalled).
    #[serde(default)]
    pub cancelled_total: u64,
}

/// Errors of a queue backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The backend cannot be reached now; the operation may succeed later.
    #[error("queue backend unavailable: {message}")]
    Unavailable {
        /// What happened (no secrets).
        message: String,
        /// The cause.
        #[source]
        source: Option<crate::BoxError>,
    },
    /// The lease of this delivery is no longer held (it expired and the task may be with
    /// another consumer, or the task was settled already).
    #[error("lease lost for task {0}")]
    LeaseLost(TaskId),
    /// The queue is closed.
    #[error("queue closed")]
    Closed,
    /// A stored task could not be decoded.
    #[error("corrupt task data: {0}")]
    Corrupt(String),
    /// The request itself is wrong (for example a dead letter that does not exist).
    #[error("{0}")]
    Invalid(String),
    /// This backend (or its server, as configured) cannot do this; retrying will not help.
    #[error("not supported by this queue backend: {0}")]
    Unsupported(String),
}

impl QueueError {
    /// A backend outage with its cause.
    pub fn unavailable(
        message: impl Into<String>,
        source: impl Into<crate::BoxError>,
    ) -> QueueError {
        QueueError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}

/// A task queue.
///
/// Semantics every backend keeps (checked by the conformance suite in `runtime-testkit`):
/// * at-least-once: only `ack` removes a task; a delivery that is not settled within the
///   visibility timeout is delivered again (without counting an attempt);
/// * `nack` counts an attempt and keeps the delivery's `task.headers` (a worker records
///   per-attempt data there, such as the first attempt's trace context); with a delay the task is invisible until then, without one
///   it is ready at once; at `max_attempts` failed attempts it moves to the dead-letter set;
/// * `release` hands a task back without counting an attempt (shutdown, outage);
/// * a task with an origin is refused as [`PublishOutcome::Duplicate`] while another live
///   task with the same origin is pending, delayed or in flight (dead-lettering frees it);
/// * a task with a unique key ([`crate::UNIQUE_KEY_HEADER`]) is refused as
///   [`PublishOutcome::Duplicate`] while another task with that key is pending, delayed,
///   in flight or dead; a duplicate answers the matched task's id, under any number of
///   concurrent publishers; `publish` refuses what [`Task::check_publishable`] refuses;
/// * `nack` records its error with [`Task::record_error`];
/// * a settle call with a lease that is no longer held fails with [`QueueError::LeaseLost`].
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// The queue's name.
    fn name(&self) -> &str;

    /// The backend kind, for status (`memory`, `redis`).
    fn backend(&self) -> &'static str;

    /// Adds a task. A bounded queue waits for room (backpressure).
    async fn publish(&self, task: Task) -> Result<PublishOutcome, QueueError>;

    /// Adds a task if that can be done at once, without waiting (an in-process queue
    /// with room): `Ok(Ok(outcome))`, or `Ok(Err(task))` handing the task back when the
    /// caller must use [`TaskQueue::publish`]. The default always hands it back. It lets
    /// a busy publisher skip one async call (and its allocation) per task.
    fn try_publish(&self, task: Task) -> Result<Result<PublishOutcome, Task>, QueueError> {
        Ok(Err(task))
    }

    /// Adds many tasks; backends that can, do it in one round trip.
    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(self.publish(task).await?);
        }
        Ok(out)
    }

    /// Takes up to `max` ready tasks, waiting up to `wait` for the first one. Returns an
    /// empty vector when nothing arrived in time, so callers can check for shutdown.
    async fn consume(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError>;

    /// Settles a delivery as done: the task leaves the queue.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// Settles many deliveries as done; backends that can, do it in one round trip.
    async fn ack_batch(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        for d in deliveries {
            self.ack(d).await?;
        }
        Ok(())
    }

    /// Reports a failed attempt: retry after `retry_delay` (at once when `None`), or
    /// dead-letter when the attempts are used up. `error` is kept as the reason.
    async fn nack(
        &self,
        delivery: &Delivery,
        retry_delay: Option<Duration>,
        error: &str,
    ) -> Result<NackOutcome, QueueError>;

    /// Hands a task back without counting an attempt, visible again after `delay`.
    async fn release(&self, delivery: &Delivery, delay: Option<Duration>)
    -> Result<(), QueueError>;

    /// Moves a delivery straight to the dead-letter set (the handler rejected it for good).
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;

    /// Extends the lease of a delivery that is still being worked on by `by` from now.
    async fn extend_lease(&self, delivery: &Delivery, by: Duration) -> Result<(), QueueError>;

    /// Current counts.
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    /// Up to `limit` dead letters, oldest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Puts a dead letter back into the queue with its attempts reset. False if unknown.
    async fn retry_dead_letter(&self, id: TaskId) -> Result<bool, QueueError>;

    /// Deletes one dead letter. False if unknown.
    async fn delete_dead_letter(&self, id: TaskId) -> Result<bool, QueueError>;

    /// Deletes all dead letters; returns how many.
    async fn purge_dead_letters(&self) -> Result<u64, QueueError>;

    /// Checks that the backend is reachable (readiness).
    async fn ping(&self) -> Result<(), QueueError>;

    /// Lookup and cancellation by id, when this backend offers them.
    fn controls(&self) -> Option<&dyn TaskControls> {
        None
    }

    /// Stops accepting work and frees resources. Tasks already stored stay stored.
    async fn close(&self) {}

    /// A leader lease named `name` that every process sharing this queue contends for,
    /// lasting `ttl` without renewal (a capability: the runtime uses it to run an
    /// exclusive source in one process at a time). No I/O here: an unreachable backend
    /// shows up later as "not held". The default offers none.
    ///
    /// # Errors
    /// [`LeaseError::Invalid`] for an unusable name or ttl, [`LeaseError::Unsupported`]
    /// when the backend has no lease (the default).
    fn leader_lease(&self, name: &str, ttl: Duration) -> Result<Arc<dyn LeaderLease>, LeaseError> {
        let _ = (name, ttl);
        Err(LeaseError::Unsupported {
            backend: self.backend().to_owned(),
        })
    }
}

/// A queue backend's own keys of `[queue]`, as its adapter crate defines them: the
/// composition layer (`runtime-compose`) reads them when `queue.backend` is
/// [`BACKEND`](QueueBackendSettings::BACKEND), checks them without I/O and builds the
/// queue from them. Adding a backend is a crate implementing this plus one registration
/// line in the composition layer; nothing in core changes.
///
/// The type is the schema: serde reads the keys (`#[serde(default, deny_unknown_fields)]`),
/// its `Default` gives the documented defaults, and serializing it shows the effective
/// values ([`Secret`](crate::Secret) fields as `***`).
pub trait QueueBackendSettings:
    Serialize + serde::de::DeserializeOwned + Default + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// The `queue.backend` tag, and the backend's [`TaskQueue::backend`] name.
    const BACKEND: &'static str;

    /// Every problem the backend would refuse, each with its key (`queue.<key>`); pure,
    /// so `check-config` and `run` give one verdict.
    fn check(&self, shared: &QueueShared) -> Vec<ConfigIssue>;

    /// The queue, without I/O (it connects lazily, so a start with its server down
    /// works and readiness shows it). Only called when [`check`](Self::check) found nothing.
    ///
    /// # Errors
    /// What the adapter still refuses (not expected after a clean check).
    fn build(&self, shared: &QueueShared) -> Result<Arc<dyn TaskQueue>, QueueError>;

    /// Where the queue lives, for `check-config --connect` (a server URL with its password
    /// redacted); the default is the tag alone (an in-process queue).
    fn target(&self) -> String {
        Self::BACKEND.to_owned()
    }

    /// The backend's limiter for pools' per-key concurrency and rates (`[workers]`), when
    /// it has one (a capability; the default has none, and a pool with limits then fails
    /// its start naming the backend).
    ///
    /// # Errors
    /// What the adapter refuses.
    fn limiter(
        &self,
        shared: &QueueShared,
    ) -> Result<Option<Arc<dyn crate::limits::TaskLimiter>>, QueueError> {
        let _ = shared;
        Ok(None)
    }
}
