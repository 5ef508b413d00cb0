//! The queue conformance suite: the semantics of
//! [`TaskQueue`](runtime_contracts::TaskQueue), written once and run against every
//! backend.
//!
//! A backend's test crate implements [`QueueFactory`] and expands
//! [`queue_conformance_tests!`](crate::queue_conformance_tests), which makes one
//! `#[tokio::test]` per case (the crate needs `tokio` as a dev-dependency):
//!
//! ```ignore
//! struct Memory;
//! #[async_trait::async_trait]
//! impl QueueFactory for Memory {
//!     async fn make(&self, opts: QueueOptions) -> Arc<dyn TaskQueue> { /* build it */ }
//!     fn bounded(&self) -> bool { true }
//! }
//! runtime_testkit::queue_conformance_tests!(Memory);
//! ```
//!
//! Every case makes its own queue with a unique name ([`unique_name`]), so cases run in
//! parallel against one shared server, and calls [`QueueFactory::cleanup`] at the end,
//! pass or fail. Cases wait with `consume(.., wait)` and deadlines, never with bare
//! sleeps; waits return as soon as the task arrives, so the generous limits only cost
//! time when a backend is broken. Cases that must not be confused with a lease expiry
//! use a long visibility timeout; the ones about expiry use a short one.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail, ensure};
use async_trait::async_trait;
use runtime_contracts::{
    Delivery, NackOutcome, PublishOutcome, QueueError, QueueStats, Task, TaskId, TaskQueue,
};

/// The error a case fails with.
pub type CaseError = anyhow::Error;
/// What a case returns.
pub type CaseResult = Result<(), CaseError>;

/// How a case wants its queue.
#[derive(Clone, Debug)]
pub struct QueueOptions {
    /// Unique per case; backends namespace their storage with it.
    pub name: String,
    /// Bound on pending + delayed + in-flight tasks (bounded backends).
    pub capacity: usize,
    /// Lease length of a delivery.
    pub visibility_timeout: Duration,
    /// Failed attempts before a nack dead-letters.
    pub max_attempts: u32,
}

/// Builds the backend under test.
#[async_trait]
pub trait QueueFactory: Send + Sync {
    /// A fresh, empty queue with these options. Panic with a clear message (naming the
    /// missing server and how to start it) if the backend cannot be reached.
    async fn make(&self, opts: QueueOptions) -> Arc<dyn TaskQueue>;

    /// True when `publish` waits for room; enables the backpressure case.
    fn bounded(&self) -> bool {
        false
    }

    /// Frees what `make` created (for example deletes a queue's Redis keys).
    async fn cleanup(&self, _queue: &Arc<dyn TaskQueue>) {}
}

/// A name unique across processes and calls: `prefix-<pid>-<time>-<n>`. Use it for
/// queue names, key prefixes and temporary databases.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// Expands to one `#[tokio::test]` per conformance case, each calling the case with the
/// factory expression (evaluated afresh per test).
#[macro_export]
macro_rules! queue_conformance_tests {
    ($factory:expr) => {
        $crate::queue_conformance_tests!(@cases $factory;
            ack_removes_task,
            nack_without_delay_redelivers_at_once,
            nack_with_delay_hides_task_until_due,
            visibility_timeout_redelivers_without_attempt,
            extend_lease_prevents_redelivery,
            stale_lease_is_refused,
            release_does_not_count_an_attempt,
            dead_letter_after_max_attempts_then_list_retry_delete_purge,
            dead_letter_moves_task_straight_to_dead_set,
            stats_add_up,
            scheduled_task_not_delivered_early,
            origin_duplicates_refused_while_live,
            publish_batch_and_ack_batch,
            consume_wait_returns_empty_when_nothing_comes,
            consume_wakes_when_task_arrives,
            concurrent_consumers_each_task_once,
            backpressure_blocks_publisher_when_full,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() -> ::core::result::Result<(), $crate::queue_conformance::CaseError> {
                let factory = $factory;
                $crate::queue_conformance::$case(&factory).await
            }
        )*
    };
}

/// Short lease, for the cases about expiry.
const SHORT_LEASE: Duration = Duration::from_millis(400);
/// Long lease, for cases where an expiry would hide the behaviour under test.
const LONG_LEASE: Duration = Duration::from_secs(60);
/// How long to wait for something that must arrive (returns early when it does).
const ARRIVE: Duration = Duration::from_secs(5);
/// Tolerance for millisecond clocks (a backend may round due times to milliseconds).
const CLOCK_SLACK: Duration = Duration::from_millis(30);
/// A case that takes longer than this is broken (hung), not slow.
const CASE_LIMIT: Duration = Duration::from_secs(60);

fn options(prefix: &str, visibility_timeout: Duration) -> QueueOptions {
    QueueOptions {
        name: unique_name(prefix),
        capacity: 10_000,
        visibility_timeout,
        max_attempts: 5,
    }
}

/// Makes the queue, runs `body` under a time limit, and cleans up whatever happened.
async fn with_queue<F, Fut>(factory: &dyn QueueFactory, opts: QueueOptions, body: F) -> CaseResult
where
    F: FnOnce(Arc<dyn TaskQueue>) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let name = opts.name.clone();
    let queue = factory.make(opts).await;
    let result = match tokio::time::timeout(CASE_LIMIT, body(queue.clone())).await {
        Ok(result) => result,
        Err(_) => Err(anyhow!("case did not finish within {CASE_LIMIT:?} (hung?)")),
    };
    factory.cleanup(&queue).await;
    result.with_context(|| format!("queue {name} ({})", queue.backend()))
}

fn task(tag: &str) -> Task {
    Task::new("conformance", tag.as_bytes().to_vec())
}

/// Waits up to `wait` for exactly one delivery.
async fn consume_one(
    q: &Arc<dyn TaskQueue>,
    wait: Duration,
    what: &str,
) -> anyhow::Result<Delivery> {
    let mut got = q
        .consume(1, wait)
        .await
        .with_context(|| format!("consume ({what})"))?;
    match (got.pop(), got.is_empty()) {
        (Some(d), true) => Ok(d),
        (None, _) => bail!("expected a delivery within {wait:?} ({what}), got none"),
        (Some(_), false) => bail!("consume(1, ..) returned more than one delivery ({what})"),
    }
}

/// Checks that nothing is delivered within `wait`.
async fn consume_none(q: &Arc<dyn TaskQueue>, wait: Duration, what: &str) -> CaseResult {
    let got = q
        .consume(10, wait)
        .await
        .with_context(|| format!("consume ({what})"))?;
    if let Some(d) = got.first() {
        bail!(
            "expected no delivery within {wait:?} ({what}), got task {} (attempts {})",
            d.task.id,
            d.task.attempts
        );
    }
    Ok(())
}

/// Collects exactly `n` deliveries, consuming until a deadline.
async fn consume_n(q: &Arc<dyn TaskQueue>, n: usize, what: &str) -> anyhow::Result<Vec<Delivery>> {
    let deadline = Instant::now() + ARRIVE;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "expected {n} deliveries ({what}), got {} in {ARRIVE:?}",
                out.len()
            );
        }
        out.extend(q.consume(n - out.len(), left).await.context("consume")?);
    }
    ensure!(out.len() == n, "consume returned more than asked ({what})");
    Ok(out)
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F) -> CaseResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The four gauges, for compact comparisons: (pending, in_flight, delayed, dead).
fn gauges(s: &QueueStats) -> (u64, u64, u64, u64) {
    (s.pending, s.in_flight, s.delayed, s.dead)
}

async fn expect_gauges(
    q: &Arc<dyn TaskQueue>,
    want: (u64, u64, u64, u64),
    when: &str,
) -> anyhow::Result<QueueStats> {
    let s = q.stats().await.context("stats")?;
    ensure!(
        gauges(&s) == want,
        "{when}: (pending, in_flight, delayed, dead) = {:?}, expected {want:?}; stats {s:?}",
        gauges(&s)
    );
    Ok(s)
}

fn expect_lease_lost<T: std::fmt::Debug>(r: Result<T, QueueError>, op: &str) -> CaseResult {
    match r {
        Err(QueueError::LeaseLost(_)) => Ok(()),
        other => bail!("{op} with a stale lease: expected LeaseLost, got {other:?}"),
    }
}

/// An acked task is gone: not redelivered even after the visibility timeout.
pub async fn ack_removes_task(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-ack", SHORT_LEASE), |q| async move {
        let t = task("ack");
        let id = t.id;
        ensure!(
            q.publish(t).await? == PublishOutcome::Enqueued,
            "publish refused"
        );
        let d = consume_one(&q, ARRIVE, "first delivery").await?;
        ensure!(d.task.id == id, "delivered another task");
        ensure!(d.task.payload == b"ack", "payload changed in the queue");
        ensure!(d.task.route == "conformance", "route changed in the queue");
        ensure!(
            d.task.attempts == 0,
            "a fresh task has attempts {}",
            d.task.attempts
        );
        q.ack(&d).await.context("ack")?;
        consume_none(
            &q,
            SHORT_LEASE * 2,
            "after ack, past the visibility timeout",
        )
        .await?;
        let s = expect_gauges(&q, (0, 0, 0, 0), "after ack").await?;
        ensure!(
            s.acked_total == 1 && s.published_total == 1,
            "counters {s:?}"
        );
        ensure!(s.expired_total == 0, "an acked delivery expired: {s:?}");
        Ok(())
    })
    .await
}

/// `nack(None)` makes the task ready at once (well before the lease would run out) and
/// counts the attempt.
pub async fn nack_without_delay_redelivers_at_once(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-nack", LONG_LEASE), |q| async move {
        q.publish(task("nack")).await?;
        let mut d = consume_one(&q, ARRIVE, "first delivery").await?;
        // A worker may record per-attempt data in the headers; nack keeps it.
        d.task.headers.insert("x-attempt-note", "first");
        let outcome = q.nack(&d, None, "boom").await.context("nack")?;
        ensure!(outcome == NackOutcome::Requeued, "nack said {outcome:?}");
        let again = consume_one(&q, ARRIVE, "redelivery after nack").await?;
        ensure!(again.task.id == d.task.id, "redelivered another task");
        ensure!(
            again.task.headers.get("x-attempt-note") == Some("first"),
            "nack dropped the delivery's headers: {:?}",
            again.task.headers
        );
        ensure!(
            again.task.attempts == 1,
            "attempts {} after one nack",
            again.task.attempts
        );
        ensure!(again.lease != d.lease, "a redelivery must get a new lease");
        q.ack(&again).await.context("ack")?;
        let s = q.stats().await?;
        ensure!(s.nacked_total == 1 && s.acked_total == 1, "counters {s:?}");
        ensure!(s.expired_total == 0, "expired instead of nacked: {s:?}");
        Ok(())
    })
    .await
}

/// `nack(Some(delay))` hides the task until the delay has passed, then delivers it.
pub async fn nack_with_delay_hides_task_until_due(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-nack-delay", LONG_LEASE), |q| async move {
        let delay = Duration::from_millis(800);
        q.publish(task("delayed nack")).await?;
        let d = consume_one(&q, ARRIVE, "first delivery").await?;
        let nacked_at = Instant::now();
        q.nack(&d, Some(delay), "later").await.context("nack")?;
        expect_gauges(&q, (0, 0, 1, 0), "right after a delayed nack").await?;
        consume_none(&q, Duration::from_millis(300), "before the retry delay").await?;
        let again = consume_one(&q, ARRIVE, "after the retry delay").await?;
        let waited = nacked_at.elapsed();
        ensure!(
            waited + CLOCK_SLACK >= delay,
            "delivered {waited:?} after a nack delayed by {delay:?}"
        );
        ensure!(again.task.attempts == 1, "attempts {}", again.task.attempts);
        q.ack(&again).await?;
        Ok(())
    })
    .await
}

/// An unsettled delivery comes back after the visibility timeout, with a new lease, and
/// without counting an attempt.
pub async fn visibility_timeout_redelivers_without_attempt(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-expire", SHORT_LEASE), |q| async move {
        q.publish(task("expire")).await?;
        let d = consume_one(&q, ARRIVE, "first delivery").await?;
        let leased_at = Instant::now();
        // The consumer "dies": it never settles `d`.
        let again = consume_one(&q, ARRIVE, "redelivery after the lease ran out").await?;
        let waited = leased_at.elapsed();
        ensure!(again.task.id == d.task.id, "redelivered another task");
        ensure!(
            waited + CLOCK_SLACK >= SHORT_LEASE,
            "redelivered after {waited:?}, before the visibility timeout {SHORT_LEASE:?}"
        );
        ensure!(
            again.task.attempts == 0,
            "an expiry counted an attempt: {}",
            again.task.attempts
        );
        ensure!(again.lease != d.lease, "a redelivery must get a new lease");
        q.ack(&again).await.context("ack of the redelivery")?;
        let s = q.stats().await?;
        ensure!(
            s.expired_total == 1,
            "expired_total {} (want 1): {s:?}",
            s.expired_total
        );
        ensure!(s.nacked_total == 0, "an expiry counted as a nack: {s:?}");
        ensure!(gauges(&s) == (0, 0, 0, 0), "gauges {s:?}");
        Ok(())
    })
    .await
}

/// `extend_lease` keeps a slow delivery from coming back.
pub async fn extend_lease_prevents_redelivery(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-extend", SHORT_LEASE), |q| async move {
        q.publish(task("extend")).await?;
        let d = consume_one(&q, ARRIVE, "first delivery").await?;
        q.extend_lease(&d, Duration::from_secs(10))
            .await
            .context("extend_lease")?;
        consume_none(&q, SHORT_LEASE * 3, "past the original lease").await?;
        q.ack(&d).await.context("ack with the extended lease")?;
        let s = q.stats().await?;
        ensure!(s.expired_total == 0 && s.acked_total == 1, "counters {s:?}");
        Ok(())
    })
    .await
}

/// Every settle call with a lease that is no longer held fails with `LeaseLost`, and
/// does not disturb the current holder.
pub async fn stale_lease_is_refused(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-stale", SHORT_LEASE), |q| async move {
        q.publish(task("stale")).await?;
        let old = consume_one(&q, ARRIVE, "first delivery").await?;
        let current = consume_one(&q, ARRIVE, "redelivery after expiry").await?;
        expect_lease_lost(q.ack(&old).await, "ack")?;
        expect_lease_lost(q.nack(&old, None, "x").await, "nack")?;
        expect_lease_lost(q.release(&old, None).await, "release")?;
        expect_lease_lost(q.dead_letter(&old, "x").await, "dead_letter")?;
        expect_lease_lost(
            q.extend_lease(&old, Duration::from_secs(1)).await,
            "extend_lease",
        )?;
        expect_gauges(&q, (0, 1, 0, 0), "after stale settles").await?;
        q.ack(&current).await.context("ack by the current holder")?;
        expect_lease_lost(q.ack(&current).await, "second ack")?;
        let s = expect_gauges(&q, (0, 0, 0, 0), "after the ack").await?;
        ensure!(s.acked_total == 1 && s.nacked_total == 0, "counters {s:?}");
        Ok(())
    })
    .await
}

/// `release` hands a task back without counting an attempt, at once or after a delay.
pub async fn release_does_not_count_an_attempt(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-release", LONG_LEASE), |q| async move {
        q.publish(task("release")).await?;
        let d = consume_one(&q, ARRIVE, "first delivery").await?;
        q.release(&d, None).await.context("release")?;
        let again = consume_one(&q, ARRIVE, "after release").await?;
        ensure!(again.task.attempts == 0, "release counted an attempt");
        let released_at = Instant::now();
        let delay = Duration::from_millis(600);
        q.release(&again, Some(delay))
            .await
            .context("release with delay")?;
        consume_none(&q, Duration::from_millis(200), "before the release delay").await?;
        let third = consume_one(&q, ARRIVE, "after the release delay").await?;
        ensure!(
            released_at.elapsed() + CLOCK_SLACK >= delay,
            "released task came back early"
        );
        ensure!(
            third.task.attempts == 0,
            "delayed release counted an attempt"
        );
        q.ack(&third).await?;
        let s = q.stats().await?;
        ensure!(
            s.released_total == 2 && s.nacked_total == 0,
            "counters {s:?}"
        );
        Ok(())
    })
    .await
}

/// At `max_attempts` failed attempts a nack dead-letters; the dead set can be listed
/// (oldest first), retried (attempts back to 0), deleted from and purged.
pub async fn dead_letter_after_max_attempts_then_list_retry_delete_purge(
    f: &dyn QueueFactory,
) -> CaseResult {
    let mut opts = options("conf-dead", LONG_LEASE);
    opts.max_attempts = 3;
    with_queue(f, opts, |q| async move {
        let first = task("doomed");
        let first_id = first.id;
        q.publish(first).await?;
        for attempt in 1..=3u32 {
            let d = consume_one(&q, ARRIVE, "delivery before dead-letter").await?;
            ensure!(
                d.task.attempts == attempt - 1,
                "attempts {} on delivery {attempt}",
                d.task.attempts
            );
            let outcome = q.nack(&d, None, &format!("boom {attempt}")).await?;
            let want = if attempt < 3 {
                NackOutcome::Requeued
            } else {
                NackOutcome::DeadLettered
            };
            ensure!(
                outcome == want,
                "nack {attempt} said {outcome:?}, expected {want:?}"
            );
        }
        consume_none(&q, Duration::from_millis(300), "after dead-letter").await?;
        let s = expect_gauges(&q, (0, 0, 0, 1), "after dead-letter").await?;
        ensure!(
            s.dead_lettered_total == 1 && s.nacked_total == 3,
            "counters {s:?}"
        );

        // A second dead letter, so listing order, delete and purge have something to see.
        let second = task("rejected");
        let second_id = second.id;
        q.publish(second).await?;
        let d = consume_one(&q, ARRIVE, "second task").await?;
        q.dead_letter(&d, "bad input").await?;

        let dead = q.dead_letters(10).await.context("dead_letters")?;
        let ids: Vec<TaskId> = dead.iter().map(|d| d.task.id).collect();
        ensure!(
            ids == vec![first_id, second_id],
            "dead letters {ids:?}, expected oldest first"
        );
        ensure!(
            dead[0].reason == "boom 3",
            "reason {:?}, expected the last error",
            dead[0].reason
        );
        ensure!(
            dead[0].task.attempts == 3,
            "dead letter attempts {}",
            dead[0].task.attempts
        );
        ensure!(dead[0].failed_at_ms > 0, "failed_at_ms not set");
        ensure!(q.dead_letters(1).await?.len() == 1, "limit ignored");

        ensure!(
            q.retry_dead_letter(first_id).await?,
            "retry of a dead letter returned false"
        );
        ensure!(
            !q.retry_dead_letter(TaskId::new()).await?,
            "retry of an unknown id returned true"
        );
        let back = consume_one(&q, ARRIVE, "retried dead letter").await?;
        ensure!(back.task.id == first_id, "retry delivered another task");
        ensure!(
            back.task.attempts == 0,
            "retried task has attempts {}",
            back.task.attempts
        );
        q.ack(&back).await?;

        ensure!(
            q.delete_dead_letter(second_id).await?,
            "delete returned false"
        );
        ensure!(
            !q.delete_dead_letter(second_id).await?,
            "second delete returned true"
        );
        ensure!(
            q.dead_letters(10).await?.is_empty(),
            "dead set not empty after delete"
        );

        for tag in ["p1", "p2"] {
            q.publish(task(tag)).await?;
            let d = consume_one(&q, ARRIVE, "task to purge").await?;
            q.dead_letter(&d, "purge me").await?;
        }
        ensure!(q.purge_dead_letters().await? == 2, "purge did not report 2");
        ensure!(
            q.dead_letters(10).await?.is_empty(),
            "dead set not empty after purge"
        );
        expect_gauges(&q, (0, 0, 0, 0), "after purge").await?;
        Ok(())
    })
    .await
}

/// `dead_letter` moves a delivery straight to the dead set, whatever its attempts.
pub async fn dead_letter_moves_task_straight_to_dead_set(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-reject", LONG_LEASE), |q| async move {
        let t = task("reject");
        let id = t.id;
        q.publish(t).await?;
        let d = consume_one(&q, ARRIVE, "delivery").await?;
        q.dead_letter(&d, "invalid order")
            .await
            .context("dead_letter")?;
        consume_none(&q, Duration::from_millis(300), "after dead_letter").await?;
        let s = expect_gauges(&q, (0, 0, 0, 1), "after dead_letter").await?;
        ensure!(
            s.dead_lettered_total == 1 && s.nacked_total == 0,
            "counters {s:?}"
        );
        let dead = q.dead_letters(10).await?;
        ensure!(
            dead.len() == 1 && dead[0].task.id == id,
            "dead letters {dead:?}"
        );
        ensure!(
            dead[0].reason == "invalid order",
            "reason {:?}",
            dead[0].reason
        );
        ensure!(dead[0].task.attempts == 0, "dead_letter counted an attempt");
        Ok(())
    })
    .await
}

/// Gauges and counters through a scripted sequence.
pub async fn stats_add_up(f: &dyn QueueFactory) -> CaseResult {
    let opts = options("conf-stats", LONG_LEASE);
    let (name, capacity, bounded) = (opts.name.clone(), opts.capacity as u64, f.bounded());
    with_queue(f, opts, |q| async move {
        let later = Duration::from_secs(60);
        let s = expect_gauges(&q, (0, 0, 0, 0), "new queue").await?;
        ensure!(s.name == name, "stats name {:?}, expected {name:?}", s.name);
        ensure!(s.backend == q.backend() && !s.backend.is_empty(), "backend {:?}", s.backend);
        if bounded {
            ensure!(s.capacity == Some(capacity), "capacity {:?}", s.capacity);
        }
        ensure!(s.blocked_publishers == 0, "blocked publishers on a new queue");

        for tag in ["a", "b", "c", "d"] {
            q.publish(task(tag)).await?;
        }
        q.publish(task("e").with_delay(later)).await?;
        expect_gauges(&q, (4, 0, 1, 0), "after 4 + 1 scheduled publishes").await?;

        let two = consume_n(&q, 2, "first two").await?;
        expect_gauges(&q, (2, 2, 1, 0), "after consuming 2").await?;
        q.ack(&two[0]).await?;
        q.nack(&two[1], Some(later), "later").await?;
        expect_gauges(&q, (2, 0, 2, 0), "after ack + delayed nack").await?;

        let two = consume_n(&q, 2, "next two").await?;
        q.release(&two[0], None).await?;
        q.dead_letter(&two[1], "bad").await?;
        let s = expect_gauges(&q, (1, 0, 2, 1), "after release + dead_letter").await?;
        let counters = (
            s.published_total,
            s.acked_total,
            s.nacked_total,
            s.released_total,
            s.dead_lettered_total,
            s.expired_total,
        );
        ensure!(
            counters == (5, 1, 1, 1, 1, 0),
            "(published, acked, nacked, released, dead_lettered, expired) = {counters:?}, expected (5, 1, 1, 1, 1, 0)"
        );
        Ok(())
    })
    .await
}

/// A task published with a not-before time is not delivered before it.
pub async fn scheduled_task_not_delivered_early(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-scheduled", LONG_LEASE), |q| async move {
        let delay = Duration::from_millis(800);
        let published_at = Instant::now();
        q.publish(task("scheduled").with_delay(delay)).await?;
        expect_gauges(&q, (0, 0, 1, 0), "scheduled task").await?;
        consume_none(&q, Duration::from_millis(300), "before its time").await?;
        let d = consume_one(&q, ARRIVE, "after its time").await?;
        let waited = published_at.elapsed();
        ensure!(
            waited + CLOCK_SLACK >= delay,
            "delivered after {waited:?}, scheduled in {delay:?}"
        );
        q.ack(&d).await?;
        Ok(())
    })
    .await
}

/// A second live task with the same origin is refused while the first is pending or in
/// flight, and accepted once the first is acked or dead-lettered.
pub async fn origin_duplicates_refused_while_live(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-origin", LONG_LEASE), |q| async move {
        let item = |tag: &str, key: &str| task(tag).with_origin("mailbox", key);
        let first = item("1", "k1");
        let dup = PublishOutcome::Duplicate { existing: first.id };
        ensure!(
            q.publish(first).await? == PublishOutcome::Enqueued,
            "first refused"
        );
        ensure!(
            q.publish(item("2", "k1")).await? == dup,
            "pending duplicate accepted (or not naming the first)"
        );
        ensure!(
            q.publish(item("3", "k2")).await? == PublishOutcome::Enqueued,
            "other key refused"
        );
        ensure!(
            q.publish(task("4").with_origin("other-source", "k1"))
                .await?
                == PublishOutcome::Enqueued,
            "same key from another source refused"
        );

        let all = consume_n(&q, 3, "the three live tasks").await?;
        let k1 = all
            .iter()
            .find(|d| {
                d.task
                    .origin
                    .as_ref()
                    .is_some_and(|o| o.source == "mailbox" && o.key == "k1")
            })
            .context("the k1 task was not delivered with its origin")?;
        ensure!(
            q.publish(item("5", "k1")).await? == dup,
            "in-flight duplicate accepted"
        );
        // A nack keeps the task live.
        q.nack(k1, None, "retry").await?;
        ensure!(
            q.publish(item("6", "k1")).await? == dup,
            "duplicate accepted after nack"
        );
        let k1 = consume_one(&q, ARRIVE, "k1 after nack").await?;
        q.ack(&k1).await?;
        ensure!(
            q.publish(item("7", "k1")).await? == PublishOutcome::Enqueued,
            "refused after ack"
        );

        // Dead-lettering frees the origin too.
        let k2 = all
            .iter()
            .find(|d| d.task.origin.as_ref().is_some_and(|o| o.key == "k2"))
            .context("the k2 task was not delivered")?;
        q.dead_letter(k2, "bad").await?;
        ensure!(
            q.publish(item("8", "k2")).await? == PublishOutcome::Enqueued,
            "refused after dead-letter"
        );

        let s = q.stats().await?;
        ensure!(
            s.published_total == 5,
            "published_total {} counts duplicates?",
            s.published_total
        );
        Ok(())
    })
    .await
}

/// `publish_batch` reports one outcome per task in order; `ack_batch` settles them all.
pub async fn publish_batch_and_ack_batch(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-batch", LONG_LEASE), |q| async move {
        let mut tasks: Vec<Task> = (0..10).map(|i| task(&format!("b{i}"))).collect();
        tasks[3] = task("b3").with_origin("src", "same");
        tasks[7] = task("b7").with_origin("src", "same");
        let ids: HashSet<TaskId> = tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 7)
            .map(|(_, t)| t.id)
            .collect();
        let outcomes = q
            .publish_batch(tasks.clone())
            .await
            .context("publish_batch")?;
        let mut want = vec![PublishOutcome::Enqueued; 10];
        want[7] = PublishOutcome::Duplicate {
            existing: tasks[3].id,
        };
        ensure!(outcomes == want, "outcomes {outcomes:?}");

        let got = consume_n(&q, 9, "the batch").await?;
        let got_ids: HashSet<TaskId> = got.iter().map(|d| d.task.id).collect();
        ensure!(got_ids == ids, "delivered ids differ from published ones");
        q.ack_batch(&got).await.context("ack_batch")?;
        let s = expect_gauges(&q, (0, 0, 0, 0), "after ack_batch").await?;
        ensure!(
            s.published_total == 9 && s.acked_total == 9,
            "counters {s:?}"
        );
        consume_none(&q, Duration::from_millis(200), "after ack_batch").await?;
        Ok(())
    })
    .await
}

/// `consume` with a wait returns an empty vector when nothing comes, after waiting.
pub async fn consume_wait_returns_empty_when_nothing_comes(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-empty", LONG_LEASE), |q| async move {
        let wait = Duration::from_millis(300);
        let started = Instant::now();
        let got = q.consume(5, wait).await.context("consume")?;
        ensure!(
            got.is_empty(),
            "an empty queue delivered {} tasks",
            got.len()
        );
        let waited = started.elapsed();
        ensure!(
            waited + CLOCK_SLACK >= wait,
            "returned after {waited:?}, before the wait {wait:?}"
        );
        ensure!(
            q.consume(5, Duration::ZERO).await?.is_empty(),
            "zero wait delivered"
        );
        Ok(())
    })
    .await
}

/// A consumer waiting on an empty queue gets a task published meanwhile, without
/// waiting out its whole `wait`.
pub async fn consume_wakes_when_task_arrives(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-wake", LONG_LEASE), |q| async move {
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move { q.consume(1, Duration::from_secs(30)).await })
        };
        // Give the consumer time to start waiting; the case passes either way, but this
        // way it exercises the wake-up rather than the fast path.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = task("wake");
        let id = t.id;
        q.publish(t).await?;
        let got = tokio::time::timeout(Duration::from_secs(10), consumer)
            .await
            .context("a waiting consumer was not woken by a publish")?
            .context("consumer task")??;
        ensure!(
            got.len() == 1 && got[0].task.id == id,
            "woken consumer got {} tasks",
            got.len()
        );
        q.ack(&got[0]).await?;
        Ok(())
    })
    .await
}

/// 8 consumers, 1,000 tasks published while they run: every task delivered and acked
/// exactly once (the lease is long, so a second delivery would be a bug).
pub async fn concurrent_consumers_each_task_once(f: &dyn QueueFactory) -> CaseResult {
    const TASKS: usize = 1000;
    const CONSUMERS: usize = 8;
    with_queue(f, options("conf-many", LONG_LEASE), |q| async move {
        let seen: Arc<Mutex<HashMap<TaskId, u32>>> = Arc::default();
        let acked = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs(40);

        let mut consumers = Vec::new();
        for _ in 0..CONSUMERS {
            let (q, seen, acked) = (q.clone(), seen.clone(), acked.clone());
            consumers.push(tokio::spawn(async move {
                while acked.load(Ordering::SeqCst) < TASKS && Instant::now() < deadline {
                    let got = q.consume(16, Duration::from_millis(100)).await?;
                    if got.is_empty() {
                        continue;
                    }
                    {
                        let mut seen = seen.lock().map_err(|_| anyhow!("poisoned"))?;
                        for d in &got {
                            *seen.entry(d.task.id).or_default() += 1;
                        }
                    }
                    q.ack_batch(&got).await?;
                    acked.fetch_add(got.len(), Ordering::SeqCst);
                }
                anyhow::Ok(())
            }));
        }

        let mut published = HashSet::with_capacity(TASKS);
        for chunk in 0..TASKS / 100 {
            let batch: Vec<Task> = (0..100).map(|i| task(&format!("m{chunk}-{i}"))).collect();
            published.extend(batch.iter().map(|t| t.id));
            let outcomes = q.publish_batch(batch).await?;
            ensure!(
                outcomes.iter().all(|o| *o == PublishOutcome::Enqueued),
                "batch refused"
            );
        }
        for c in consumers {
            c.await.context("consumer panicked")??;
        }

        let seen = std::mem::take(&mut *seen.lock().map_err(|_| anyhow!("poisoned"))?);
        let twice = seen.values().filter(|n| **n > 1).count();
        ensure!(twice == 0, "{twice} tasks delivered more than once");
        let seen_ids: HashSet<TaskId> = seen.keys().copied().collect();
        ensure!(
            seen_ids == published,
            "delivered {} distinct tasks of {TASKS}",
            seen_ids.len()
        );
        let s = expect_gauges(&q, (0, 0, 0, 0), "after all acks").await?;
        ensure!(
            s.acked_total == TASKS as u64,
            "acked_total {}",
            s.acked_total
        );
        Ok(())
    })
    .await
}

/// Bounded backends only: a publisher waits while the queue is full (visible in stats)
/// and proceeds once an ack makes room.
pub async fn backpressure_blocks_publisher_when_full(f: &dyn QueueFactory) -> CaseResult {
    if !f.bounded() {
        return Ok(());
    }
    let mut opts = options("conf-backpressure", LONG_LEASE);
    opts.capacity = 2;
    with_queue(f, opts, |q| async move {
        q.publish(task("1")).await?;
        q.publish(task("2")).await?;
        let blocked = {
            let q = q.clone();
            tokio::spawn(async move { q.publish(task("3")).await })
        };
        eventually(ARRIVE, "stats to show one blocked publisher", || {
            let q = q.clone();
            async move { Ok(q.stats().await?.blocked_publishers == 1) }
        })
        .await?;
        ensure!(!blocked.is_finished(), "publish into a full queue returned");
        let s = expect_gauges(&q, (2, 0, 0, 0), "full queue").await?;
        ensure!(s.capacity == Some(2), "capacity {:?}", s.capacity);
        ensure!(
            s.published_total == 2,
            "the blocked task was counted as published"
        );

        let d = consume_one(&q, ARRIVE, "one task").await?;
        ensure!(!blocked.is_finished(), "consuming (not acking) made room");
        q.ack(&d).await?;
        let outcome = tokio::time::timeout(ARRIVE, blocked)
            .await
            .context("the blocked publisher did not proceed after an ack")?
            .context("publisher task")??;
        ensure!(outcome == PublishOutcome::Enqueued, "outcome {outcome:?}");
        let s = expect_gauges(&q, (2, 0, 0, 0), "after the blocked publish went through").await?;
        ensure!(
            s.blocked_publishers == 0,
            "still {} blocked publishers",
            s.blocked_publishers
        );
        ensure!(
            s.published_total == 3,
            "published_total {}",
            s.published_total
        );
        Ok(())
    })
    .await
}
