//! `status()` answers promptly while a queue's stats call hangs (Redis stalled): from the
//! last stats, with their age, and fresh again once the backend answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_contracts::{
    DeadLetter, Delivery, NackOutcome, PublishOutcome, QueueError, QueueStats, Task, TaskId,
    TaskQueue,
};
use runtime_core::RuntimeManager;
use runtime_testkit::fakes::{MemoryQueue, config};
use tokio::sync::watch;

use crate::{fast_platform, queue};

/// The memory queue, except that `stats` hangs while `stalled` is set.
struct StallingQueue {
    inner: Arc<MemoryQueue>,
    stalled: watch::Sender<bool>,
    stats_calls: AtomicUsize,
}

#[async_trait]
impl TaskQueue for StallingQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn backend(&self) -> &'static str {
        "stalling"
    }
    async fn publish(&self, task: Task) -> Result<PublishOutcome, QueueError> {
        self.inner.publish(task).await
    }
    async fn consume(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.inner.consume(max, wait).await
    }
    async fn ack(&self, d: &Delivery) -> Result<(), QueueError> {
        self.inner.ack(d).await
    }
    async fn nack(
        &self,
        d: &Delivery,
        delay: Option<Duration>,
        error: &str,
    ) -> Result<NackOutcome, QueueError> {
        self.inner.nack(d, delay, error).await
    }
    async fn release(&self, d: &Delivery, delay: Option<Duration>) -> Result<(), QueueError> {
        self.inner.release(d, delay).await
    }
    async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), QueueError> {
        self.inner.dead_letter(d, reason).await
    }
    async fn extend_lease(&self, d: &Delivery, by: Duration) -> Result<(), QueueError> {
        self.inner.extend_lease(d, by).await
    }
    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.stats_calls.fetch_add(1, Ordering::SeqCst);
        let mut rx = self.stalled.subscribe();
        let _ = rx.wait_for(|stalled| !*stalled).await;
        self.inner.stats().await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.inner.dead_letters(limit).await
    }
    async fn retry_dead_letter(&self, id: TaskId) -> Result<bool, QueueError> {
        self.inner.retry_dead_letter(id).await
    }
    async fn delete_dead_letter(&self, id: TaskId) -> Result<bool, QueueError> {
        self.inner.delete_dead_letter(id).await
    }
    async fn purge_dead_letters(&self) -> Result<u64, QueueError> {
        self.inner.purge_dead_letters().await
    }
    async fn ping(&self) -> Result<(), QueueError> {
        self.inner.ping().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_from_the_last_stats_while_the_stats_call_hangs() {
    let q = Arc::new(StallingQueue {
        inner: queue(3),
        stalled: watch::channel(false).0,
        stats_calls: AtomicUsize::new(0),
    });
    let rt = RuntimeManager::builder(config(fast_platform(serde_json::json!({}))).await)
        .queue(q.clone())
        .handle_signals(false)
        .build();
    let plane = rt.handle().control_plane();
    q.publish(Task::new("r", b"1".to_vec())).await.unwrap();

    let fresh = plane.status().await;
    assert_eq!(fresh.queues[0].pending, 1);
    assert!(fresh.stats_age_ms < 200, "{}", fresh.stats_age_ms);

    q.stalled.send_replace(true);
    q.publish(Task::new("r", b"2".to_vec())).await.unwrap();
    let mut last_age = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let s = plane.status().await;
        // Before: every call waited for the 2 s stats timeout.
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "status took {:?}",
            t.elapsed()
        );
        // The last numbers, not zeros, and how old they are.
        assert_eq!(s.queues[0].pending, 1, "{:?}", s.queues[0]);
        assert!(
            s.stats_age_ms > last_age,
            "{} after {last_age}",
            s.stats_age_ms
        );
        last_age = s.stats_age_ms;
    }
    // One hung call is waited on by every status, not one more per status.
    assert_eq!(q.stats_calls.load(Ordering::SeqCst), 2);

    // The backend answers again: the hung call completes and status is fresh.
    q.stalled.send_replace(false);
    let s = plane.status().await;
    assert_eq!(s.queues[0].pending, 2, "{:?}", s.queues[0]);
    assert!(s.stats_age_ms < 200, "{}", s.stats_age_ms);
}
