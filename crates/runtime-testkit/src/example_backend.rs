//! An example queue backend, written the way a new one is: its own `[queue]` keys as a
//! [`QueueBackendSettings`] type (schema, defaults, `check`, `build`), nothing in core.
//! A program plugs it in with one line,
//! `runtime_compose::Backends::builtin().with_queue::<ExampleQueueSettings>()`, and
//! selects it with `queue.backend = "example"`; a backend shipped with plba registers
//! itself with one line of `queue_backends!` in runtime-compose instead.
//!
//! Underneath it is the memory queue, reporting itself as `example`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtime_adapters_memory::{MemoryQueue, MemoryQueueConfig};
use runtime_contracts::{
    ConfigIssue, DeadLetter, Delivery, LeaderLease, LeaseError, NackOutcome, PublishOutcome,
    QueueBackendSettings, QueueError, QueueShared, QueueStats, Task, TaskId, TaskQueue,
};
use serde::{Deserialize, Serialize};

/// The example backend's own key of `[queue]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExampleQueueSettings {
    /// `queue.example_capacity`: bound on live tasks, at least 1 (default 16).
    pub example_capacity: usize,
}

impl Default for ExampleQueueSettings {
    fn default() -> Self {
        ExampleQueueSettings {
            example_capacity: 16,
        }
    }
}

impl QueueBackendSettings for ExampleQueueSettings {
    const BACKEND: &'static str = "example";

    fn check(&self, _shared: &QueueShared) -> Vec<ConfigIssue> {
        if self.example_capacity == 0 {
            return vec![ConfigIssue::new(
                "queue.example_capacity",
                Some("0".into()),
                "expected a whole number of at least 1",
            )];
        }
        Vec::new()
    }

    fn build(&self, shared: &QueueShared) -> Result<Arc<dyn TaskQueue>, QueueError> {
        Ok(Arc::new(ExampleQueue(MemoryQueue::new(
            MemoryQueueConfig {
                name: shared.name.clone(),
                capacity: self.example_capacity,
                visibility_timeout: shared.visibility_timeout,
                max_attempts: shared.max_attempts,
                ..MemoryQueueConfig::default()
            },
        ))))
    }
}

/// The example queue: the memory queue under another backend name.
#[derive(Debug)]
pub struct ExampleQueue(MemoryQueue);

#[async_trait]
impl TaskQueue for ExampleQueue {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn backend(&self) -> &'static str {
        ExampleQueueSettings::BACKEND
    }
    async fn publish(&self, task: Task) -> Result<PublishOutcome, QueueError> {
        self.0.publish(task).await
    }
    async fn consume(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.0.consume(max, wait).await
    }
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.0.ack(delivery).await
    }
    async fn nack(
        &self,
        delivery: &Delivery,
        retry_delay: Option<Duration>,
        error: &str,
    ) -> Result<NackOutcome, QueueError> {
        self.0.nack(delivery, retry_delay, error).await
    }
    async fn release(
        &self,
        delivery: &Delivery,
        delay: Option<Duration>,
    ) -> Result<(), QueueError> {
        self.0.release(delivery, delay).await
    }
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        self.0.dead_letter(delivery, reason).await
    }
    async fn extend_lease(&self, delivery: &Delivery, by: Duration) -> Result<(), QueueError> {
        self.0.extend_lease(delivery, by).await
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut stats = self.0.stats().await?;
        stats.backend = ExampleQueueSettings::BACKEND.to_owned();
        Ok(stats)
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.0.dead_letters(limit).await
    }
    async fn retry_dead_letter(&self, id: TaskId) -> Result<bool, QueueError> {
        self.0.retry_dead_letter(id).await
    }
    async fn delete_dead_letter(&self, id: TaskId) -> Result<bool, QueueError> {
        self.0.delete_dead_letter(id).await
    }
    async fn purge_dead_letters(&self) -> Result<u64, QueueError> {
        self.0.purge_dead_letters().await
    }
    async fn ping(&self) -> Result<(), QueueError> {
        self.0.ping().await
    }
    async fn close(&self) {
        self.0.close().await
    }
    fn leader_lease(&self, name: &str, ttl: Duration) -> Result<Arc<dyn LeaderLease>, LeaseError> {
        self.0.leader_lease(name, ttl)
    }
}
