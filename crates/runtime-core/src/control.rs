//! The ControlPlaneService: the runtime's status and admin actions as plain calls.

use std::sync::Arc;

use async_trait::async_trait;
use runtime_contracts::{
    AdminError, CancelOutcome, ComponentHealth, ControlPlane, DeadLetterEntry, EnqueueReceipt,
    FinalOutcome, HealthReport, PoolStatus, PurgedDeadLetters, QueueError, ReloadReport,
    RuntimeState, RuntimeStatus, SourceStatus, Task, TaskId, TaskInfo, TaskQueue, TaskSink,
    TaskState,
};

use crate::shared::Shared;

/// Implements [`ControlPlane`] over a running runtime; transports (HTTP) expose it.
pub struct ControlPlaneService {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for ControlPlaneService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneService")
            .finish_non_exhaustive()
    }
}

impl ControlPlaneService {
    pub(crate) fn new(inner: Arc<Shared>) -> Self {
        ControlPlaneService { inner }
    }

    /// The runner of source `name`, while the runtime runs.
    fn source(&self, name: &str) -> Result<Arc<crate::sources::SourceRunner>, AdminError> {
        self.running()?;
        self.inner
            .source_list()
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| AdminError::NotFound(format!("source {name:?}")))
    }

    /// Every queue, or the one named (which must exist).
    fn queues(&self, queue: Option<&str>) -> Result<Vec<Arc<dyn TaskQueue>>, AdminError> {
        let queues = self.inner.queue_list();
        match queue {
            None => Ok(queues),
            Some(name) => {
                let one: Vec<_> = queues.into_iter().filter(|q| q.name() == name).collect();
                if one.is_empty() {
                    Err(AdminError::NotFound(format!("queue {name:?}")))
                } else {
                    Ok(one)
                }
            }
        }
    }

    fn running(&self) -> Result<(), AdminError> {
        match self.inner.state() {
            RuntimeState::Running => Ok(()),
            other => Err(AdminError::Conflict(format!(
                "the runtime is {}",
                serde_json::to_value(other)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ))),
        }
    }
}

fn queue_error(error: QueueError) -> AdminError {
    match error {
        QueueError::Invalid(m) => AdminError::Invalid(m),
        QueueError::Unsupported(m) => AdminError::Unsupported(m),
        other => AdminError::Unavailable(other.to_string()),
    }
}

/// The name tasks enqueued by hand carry as their source in traces.
const ENQUEUE_SOURCE: &str = "control-plane";

#[async_trait]
impl ControlPlane for ControlPlaneService {
    async fn status(&self) -> RuntimeStatus {
        self.inner.status().await
    }

    async fn liveness(&self) -> ComponentHealth {
        self.inner.health.liveness()
    }

    async fn readiness(&self) -> HealthReport {
        self.inner.health.readiness(self.inner.state()).await
    }

    async fn health(&self) -> HealthReport {
        self.inner.health.health(self.inner.state()).await
    }

    async fn pause_source(&self, name: &str) -> Result<SourceStatus, AdminError> {
        self.source(name)?.pause().await
    }

    async fn resume_source(&self, name: &str) -> Result<SourceStatus, AdminError> {
        self.source(name)?.resume().await
    }

    async fn reload_config(&self) -> Result<ReloadReport, AdminError> {
        Ok(self.inner.config.reload().await)
    }

    async fn dead_letters(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetterEntry>, AdminError> {
        let mut out = Vec::new();
        for q in self.queues(queue)? {
            for letter in q.dead_letters(limit).await.map_err(queue_error)? {
                out.push(DeadLetterEntry {
                    queue: q.name().to_owned(),
                    letter,
                });
            }
        }
        Ok(out)
    }

    async fn retry_dead_letter(&self, id: TaskId) -> Result<(), AdminError> {
        for q in self.inner.queue_list() {
            if q.retry_dead_letter(id).await.map_err(queue_error)? {
                tracing::info!(queue = %q.name(), task_id = %id, "dead letter retried");
                return Ok(());
            }
        }
        Err(AdminError::NotFound(format!("dead letter {id}")))
    }

    async fn delete_dead_letter(&self, id: TaskId) -> Result<(), AdminError> {
        for q in self.inner.queue_list() {
            if q.delete_dead_letter(id).await.map_err(queue_error)? {
                tracing::info!(queue = %q.name(), task_id = %id, "dead letter deleted");
                return Ok(());
            }
        }
        Err(AdminError::NotFound(format!("dead letter {id}")))
    }

    async fn purge_dead_letters(
        &self,
        queue: Option<&str>,
    ) -> Result<Vec<PurgedDeadLetters>, AdminError> {
        let mut out = Vec::new();
        for q in self.queues(queue)? {
            let purged = q.purge_dead_letters().await.map_err(queue_error)?;
            // Logged per queue as it happens: if a later queue fails, the log still
            // shows what was already deleted.
            tracing::info!(queue = %q.name(), purged, "dead letters purged");
            out.push(PurgedDeadLetters {
                queue: q.name().to_owned(),
                purged,
            });
        }
        Ok(out)
    }

    async fn set_concurrency(
        &self,
        pool: &str,
        concurrency: usize,
    ) -> Result<PoolStatus, AdminError> {
        self.running()?;
        self.inner.supervisor.set_concurrency(pool, concurrency)
    }

    async fn shutdown(&self) -> Result<(), AdminError> {
        tracing::info!("shutdown requested through the control plane");
        self.inner.shutdown_requested.stop();
        Ok(())
    }

    async fn enqueue(&self, queue: &str, task: Task) -> Result<EnqueueReceipt, AdminError> {
        let q = self
            .inner
            .queue(queue)
            .ok_or_else(|| AdminError::NotFound(format!("queue {queue:?}")))?;
        let id = task.id;
        // Through the sink every source uses, so the task starts a trace like theirs.
        let sink = crate::sources::RuntimeSink::new(ENQUEUE_SOURCE, q, self.inner.trace.clone());
        let outcome = sink.publish(task).await.map_err(queue_error)?;
        let receipt = EnqueueReceipt {
            id: outcome.task_id(id),
            duplicate: outcome.is_duplicate(),
        };
        tracing::info!(queue, task_id = %receipt.id, duplicate = receipt.duplicate, "task enqueued by hand");
        Ok(receipt)
    }

    async fn task(&self, id: TaskId) -> Result<TaskInfo, AdminError> {
        let mut controlled = false;
        for q in self.inner.queue_list() {
            let Some(c) = q.controls() else { continue };
            controlled = true;
            let info = c.lookup(id).await.map_err(queue_error)?;
            if info.state != TaskState::Unknown {
                return Ok(info);
            }
        }
        if controlled {
            Ok(TaskInfo::unknown(id))
        } else {
            Err(AdminError::Unsupported(
                "no queue offers task lookup".into(),
            ))
        }
    }

    async fn cancel_task(&self, id: TaskId) -> Result<CancelOutcome, AdminError> {
        let mut controlled = false;
        for q in self.inner.queue_list() {
            let Some(c) = q.controls() else { continue };
            controlled = true;
            // Read first: a removed task is gone, and its source must still be told.
            let info = c.lookup(id).await.map_err(queue_error)?;
            if info.state == TaskState::Unknown {
                continue;
            }
            let outcome = c.cancel(id).await.map_err(queue_error)?;
            tracing::info!(queue = %q.name(), task_id = %id, ?outcome, "task cancel requested");
            if outcome == CancelOutcome::Removed
                && let Some(origin) = &info.origin
            {
                self.tell_source(&origin.source, &origin.key).await;
            }
            if outcome != CancelOutcome::Unknown {
                return Ok(outcome);
            }
        }
        if controlled {
            Ok(CancelOutcome::Unknown)
        } else {
            Err(AdminError::Unsupported("no queue offers cancel".into()))
        }
    }
}

impl ControlPlaneService {
    /// A cancelled task's source item is flagged like a dead letter's, so a polling
    /// source does not produce it again. Best effort: on failure the item may come back.
    async fn tell_source(&self, source: &str, key: &str) {
        let Some(ack) = self.inner.acks.get(source) else {
            return;
        };
        let outcome = FinalOutcome::DeadLettered {
            reason: crate::worker::CANCELLED_REASON.to_owned(),
        };
        if let Err(error) = ack.acknowledge(key, &outcome).await {
            tracing::warn!(%error, %source, "could not tell the source about a cancelled task; the item may be produced again");
        }
    }
}
