//! Conformance cases of the task controls: unique publish, lookup and cancel
//! ([`TaskControls`]). Generic over [`TaskQueue`] like the rest of the suite; a backend
//! without controls fails them, naming the missing capability.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use runtime_contracts::{
    CancelOutcome, NackOutcome, PublishOutcome, QueueError, Task, TaskControls, TaskId, TaskQueue,
    TaskState, TraceContext,
};

use super::{
    ARRIVE, CaseResult, LONG_LEASE, QueueFactory, SHORT_LEASE, consume_n, consume_none,
    consume_one, eventually, expect_gauges, options, task, with_queue,
};

fn controls(q: &Arc<dyn TaskQueue>) -> anyhow::Result<&dyn TaskControls> {
    q.controls()
        .ok_or_else(|| anyhow!("backend {} offers no TaskControls", q.backend()))
}

async fn state_of(q: &Arc<dyn TaskQueue>, id: TaskId) -> anyhow::Result<TaskState> {
    Ok(controls(q)?.lookup(id).await.context("lookup")?.state)
}

/// 32 publishers racing with one unique key: exactly one task is added, and every
/// publisher gets the id of that task. The key stays taken while the task is delayed,
/// running or dead, and is free again once it is acked or its dead letter deleted.
pub async fn unique_publish_under_concurrent_publishers(f: &dyn QueueFactory) -> CaseResult {
    const PUBLISHERS: usize = 32;
    with_queue(f, options("conf-unique", LONG_LEASE), |q| async move {
        let start = Arc::new(tokio::sync::Barrier::new(PUBLISHERS));
        let mut racers = Vec::new();
        for i in 0..PUBLISHERS {
            let (q, start) = (q.clone(), start.clone());
            racers.push(tokio::spawn(async move {
                let t = task(&format!("u{i}")).with_unique_key("order-42");
                let id = t.id;
                start.wait().await;
                let outcome = q.publish(t).await?;
                anyhow::Ok((outcome, outcome.task_id(id)))
            }));
        }
        let mut ids = Vec::new();
        let mut enqueued = 0;
        for r in racers {
            let (outcome, id) = r.await.context("publisher panicked")??;
            enqueued += usize::from(outcome == PublishOutcome::Enqueued);
            ids.push(id);
        }
        ensure!(
            enqueued == 1,
            "{enqueued} of {PUBLISHERS} publishes enqueued"
        );
        let first = ids[0];
        ensure!(
            ids.iter().all(|id| *id == first),
            "publishers were told different ids: {ids:?}"
        );
        let s = expect_gauges(&q, (1, 0, 0, 0), "after the race").await?;
        ensure!(
            s.published_total == 1,
            "published_total {}",
            s.published_total
        );

        let again = |tag: &str| task(tag).with_unique_key("order-42");
        let dup = PublishOutcome::Duplicate { existing: first };
        let d = consume_one(&q, ARRIVE, "the unique task").await?;
        ensure!(d.task.id == first, "delivered another task");
        ensure!(
            d.task.unique_key() == Some("order-42"),
            "the unique key did not travel with the task"
        );
        ensure!(
            q.publish(again("running")).await? == dup,
            "running: key not held"
        );
        q.nack(&d, Some(Duration::from_secs(60)), "later").await?;
        ensure!(
            q.publish(again("delayed")).await? == dup,
            "delayed: key not held"
        );
        ensure!(
            q.publish(task("other").with_unique_key("order-43")).await? == PublishOutcome::Enqueued,
            "another key refused"
        );
        Ok(())
    })
    .await
}

/// A dead task keeps its unique key; deleting its dead letter frees it; an ack frees it.
pub async fn unique_key_held_by_dead_until_deleted(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-unique-dead", LONG_LEASE), |q| async move {
        let t = task("1").with_unique_key("k");
        let id = t.id;
        q.publish(t).await?;
        let d = consume_one(&q, ARRIVE, "first").await?;
        q.dead_letter(&d, "bad").await?;
        let dup = PublishOutcome::Duplicate { existing: id };
        ensure!(
            q.publish(task("2").with_unique_key("k")).await? == dup,
            "dead: key not held"
        );
        ensure!(q.delete_dead_letter(id).await?, "dead letter not found");
        let t = task("3").with_unique_key("k");
        let third = t.id;
        ensure!(
            q.publish(t).await? == PublishOutcome::Enqueued,
            "refused after the dead letter was deleted"
        );
        let d = consume_one(&q, ARRIVE, "third").await?;
        ensure!(d.task.id == third, "delivered another task");
        q.ack(&d).await?;
        ensure!(
            q.publish(task("4").with_unique_key("k")).await? == PublishOutcome::Enqueued,
            "refused after ack"
        );
        // A purge frees the keys of the letters it deletes too.
        let d = consume_one(&q, ARRIVE, "fourth").await?;
        q.dead_letter(&d, "bad").await?;
        ensure!(q.purge_dead_letters().await? == 1, "purge");
        ensure!(
            q.publish(task("5").with_unique_key("k")).await? == PublishOutcome::Enqueued,
            "refused after purge"
        );
        // Keys a queue must refuse.
        for bad in [
            String::new(),
            "k".repeat(runtime_contracts::MAX_UNIQUE_KEY_BYTES + 1),
        ] {
            match q.publish(task("bad").with_unique_key(bad.clone())).await {
                Err(QueueError::Invalid(_)) => {}
                other => bail!("unique key of {} bytes: {other:?}", bad.len()),
            }
        }
        Ok(())
    })
    .await
}

/// Lookup reports every state with the task's fields; an unknown id is `Unknown`.
pub async fn lookup_in_every_state(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-lookup", LONG_LEASE), |q| async move {
        let c = controls(&q)?;
        let ctx = TraceContext {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            sampled: true,
            trace_state: None,
        };
        let mut pending = Task::new("lookup-route", "p").with_unique_key("look-1");
        pending.set_trace_context(&ctx);
        let delayed = task("d").with_delay(Duration::from_secs(60));
        let (p, dl) = (pending.id, delayed.id);
        let due = delayed.not_before_ms;
        q.publish(pending).await?;
        q.publish(delayed).await?;

        let info = c.lookup(p).await?;
        ensure!(info.state == TaskState::Pending, "pending: {info:?}");
        ensure!(info.queue.as_deref() == Some(q.name()), "queue: {info:?}");
        ensure!(
            info.route.as_deref() == Some("lookup-route"),
            "route: {info:?}"
        );
        ensure!(
            info.trace_id.as_deref() == Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            "trace id: {info:?}"
        );
        ensure!(
            info.unique_key.as_deref() == Some("look-1"),
            "unique key: {info:?}"
        );
        ensure!(
            info.attempts == 0 && info.last_error.is_none(),
            "fresh: {info:?}"
        );
        let info = c.lookup(dl).await?;
        ensure!(info.state == TaskState::Delayed, "delayed: {info:?}");
        ensure!(
            info.not_before_ms
                .zip(due)
                .is_some_and(|(a, b)| a.abs_diff(b) < 1000),
            "not-before {:?}, published with {due:?}",
            info.not_before_ms
        );

        let d = consume_one(&q, ARRIVE, "the pending task").await?;
        ensure!(d.task.id == p, "delivered the delayed task early");
        let info = c.lookup(p).await?;
        ensure!(info.state == TaskState::Running, "running: {info:?}");
        ensure!(!info.cancel_requested, "cancel requested: {info:?}");
        q.nack(&d, None, "the first error").await?;
        let d = consume_one(&q, ARRIVE, "after nack").await?;
        let info = c.lookup(p).await?;
        ensure!(
            info.state == TaskState::Running && info.attempts == 1,
            "after one nack: {info:?}"
        );
        ensure!(
            info.last_error.as_deref() == Some("the first error"),
            "last error: {info:?}"
        );
        q.dead_letter(&d, "rejected for good").await?;
        let info = c.lookup(p).await?;
        ensure!(info.state == TaskState::Dead, "dead: {info:?}");
        ensure!(
            info.last_error.as_deref() == Some("rejected for good"),
            "dead reason: {info:?}"
        );
        ensure!(
            info.route.as_deref() == Some("lookup-route"),
            "dead route: {info:?}"
        );

        let info = c.lookup(TaskId::new()).await?;
        ensure!(
            info.state == TaskState::Unknown && info.queue.is_none(),
            "unknown: {info:?}"
        );
        q.delete_dead_letter(p).await?;
        ensure!(
            state_of(&q, p).await? == TaskState::Unknown,
            "deleted but known"
        );
        Ok(())
    })
    .await
}

/// Cancelling a pending or a delayed task removes it (and frees its unique key and
/// origin); a second cancel and an unknown id are `Unknown`; a dead task is `Dead`.
pub async fn cancel_removes_pending_and_delayed(f: &dyn QueueFactory) -> CaseResult {
    with_queue(f, options("conf-cancel", LONG_LEASE), |q| async move {
        let c = controls(&q)?;
        let a = task("a").with_unique_key("ka").with_origin("src", "item-a");
        let b = task("b")
            .with_unique_key("kb")
            .with_delay(Duration::from_secs(60));
        let keep = task("keep");
        let (ia, ib, ik) = (a.id, b.id, keep.id);
        q.publish(a).await?;
        q.publish(keep).await?;
        q.publish(b).await?;
        expect_gauges(&q, (2, 0, 1, 0), "published").await?;

        ensure!(
            c.cancel(ia).await? == CancelOutcome::Removed,
            "pending not removed"
        );
        ensure!(
            c.cancel(ib).await? == CancelOutcome::Removed,
            "delayed not removed"
        );
        ensure!(
            c.cancel(ia).await? == CancelOutcome::Unknown,
            "cancelled twice"
        );
        ensure!(
            c.cancel(TaskId::new()).await? == CancelOutcome::Unknown,
            "unknown id"
        );
        ensure!(
            state_of(&q, ia).await? == TaskState::Unknown,
            "a still known"
        );
        ensure!(
            state_of(&q, ib).await? == TaskState::Unknown,
            "b still known"
        );
        let s = expect_gauges(&q, (1, 0, 0, 0), "after cancel").await?;
        ensure!(
            s.cancelled_total == 2,
            "cancelled_total {}",
            s.cancelled_total
        );

        let d = consume_one(&q, ARRIVE, "the task that was kept").await?;
        ensure!(d.task.id == ik, "delivered a cancelled task");
        consume_none(&q, Duration::from_millis(300), "after cancel").await?;
        // Claims are free again.
        ensure!(
            q.publish(task("a2").with_unique_key("ka")).await? == PublishOutcome::Enqueued,
            "unique key still taken"
        );
        ensure!(
            q.publish(task("a3").with_origin("src", "item-a")).await? == PublishOutcome::Enqueued,
            "origin still taken"
        );
        q.dead_letter(&d, "bad").await?;
        ensure!(c.cancel(ik).await? == CancelOutcome::Dead, "dead task");
        let s = q.stats().await?;
        ensure!(
            s.cancelled_total == 2,
            "cancelled_total {}",
            s.cancelled_total
        );
        Ok(())
    })
    .await
}

/// Cancelling a running task signals its holder (`cancelled` completes) and from then
/// on the queue never retries nor dead-letters it: nack, release and dead-letter remove
/// it; an ack still completes it.
pub async fn cancel_signals_running_task_and_it_is_never_retried(
    f: &dyn QueueFactory,
) -> CaseResult {
    let mut opts = options("conf-cancel-run", LONG_LEASE);
    opts.max_attempts = 1;
    with_queue(f, opts, |q| async move {
        let c = controls(&q)?;
        let tasks: Vec<Task> = (0..4)
            .map(|i| task(&format!("r{i}")).with_unique_key(format!("run-{i}")))
            .collect();
        q.publish_batch(tasks).await?;
        let all = consume_n(&q, 4, "four running tasks").await?;

        // The holder watches; the cancel reaches it.
        let watch = {
            let (q, d) = (q.clone(), all[0].clone());
            tokio::spawn(async move {
                let c = controls(&q)?;
                c.cancelled(&d).await.context("cancelled")
            })
        };
        for d in &all {
            ensure!(
                c.cancel(d.task.id).await? == CancelOutcome::Signalled,
                "running task {} not signalled",
                d.task.id
            );
        }
        // Twice is still signalled, and counted once.
        ensure!(
            c.cancel(all[0].task.id).await? == CancelOutcome::Signalled,
            "again"
        );
        tokio::time::timeout(ARRIVE, watch)
            .await
            .context("the holder did not see the cancellation")?
            .context("watcher panicked")??;
        let info = c.lookup(all[0].task.id).await?;
        ensure!(
            info.state == TaskState::Running && info.cancel_requested,
            "lookup of a signalled task: {info:?}"
        );

        // max_attempts is 1: without the cancel this nack would dead-letter.
        let outcome = q.nack(&all[0], None, "stopped").await?;
        ensure!(outcome == NackOutcome::Cancelled, "nack said {outcome:?}");
        q.release(&all[1], None).await?;
        q.dead_letter(&all[2], "stopped").await?;
        q.ack(&all[3]).await?;

        let s = expect_gauges(&q, (0, 0, 0, 0), "after settling cancelled tasks").await?;
        ensure!(
            s.cancelled_total == 4,
            "cancelled_total {}",
            s.cancelled_total
        );
        ensure!(s.acked_total == 1, "acked_total {}", s.acked_total);
        ensure!(s.dead_lettered_total == 0, "dead-lettered a cancelled task");
        consume_none(&q, Duration::from_millis(300), "after cancel").await?;
        for d in &all {
            ensure!(
                state_of(&q, d.task.id).await? == TaskState::Unknown,
                "still known"
            );
        }
        ensure!(
            q.publish(task("again").with_unique_key("run-0")).await? == PublishOutcome::Enqueued,
            "unique key of a cancelled task still taken"
        );
        Ok(())
    })
    .await
}

/// A running task cancelled after its holder died is removed when its lease runs out,
/// not delivered again.
pub async fn cancelled_task_of_a_dead_holder_is_not_redelivered(
    f: &dyn QueueFactory,
) -> CaseResult {
    with_queue(f, options("conf-cancel-exp", SHORT_LEASE), |q| async move {
        let c = controls(&q)?;
        let t = task("orphan");
        let id = t.id;
        q.publish(t).await?;
        let _held = consume_one(&q, ARRIVE, "the task").await?;
        ensure!(
            c.cancel(id).await? == CancelOutcome::Signalled,
            "not signalled"
        );
        consume_none(&q, SHORT_LEASE * 4, "past the lease of a cancelled task").await?;
        eventually(ARRIVE, "the cancelled task to leave", || {
            let q = q.clone();
            async move { Ok(state_of(&q, id).await? == TaskState::Unknown) }
        })
        .await?;
        let s = expect_gauges(&q, (0, 0, 0, 0), "after the lease ran out").await?;
        ensure!(
            s.cancelled_total == 1,
            "cancelled_total {}",
            s.cancelled_total
        );
        Ok(())
    })
    .await
}

/// Cancel racing ack on 50 running tasks: every task ends exactly once, nothing is
/// redelivered, and every ack succeeds (an ack of a signalled task still completes it).
pub async fn cancel_racing_ack_settles_each_task_once(f: &dyn QueueFactory) -> CaseResult {
    const N: usize = 50;
    with_queue(f, options("conf-cancel-race", LONG_LEASE), |q| async move {
        let tasks: Vec<Task> = (0..N).map(|i| task(&format!("x{i}"))).collect();
        q.publish_batch(tasks).await?;
        let all = consume_n(&q, N, "the tasks").await?;
        let mut joins = Vec::new();
        for d in all {
            let q2 = q.clone();
            let id = d.task.id;
            joins.push(tokio::spawn(async move {
                let c = controls(&q2)?;
                let (acked, cancelled) = tokio::join!(q2.ack(&d), c.cancel(id));
                acked.context("ack")?;
                let cancelled = cancelled.context("cancel")?;
                ensure!(
                    matches!(cancelled, CancelOutcome::Signalled | CancelOutcome::Unknown),
                    "cancel said {cancelled:?}"
                );
                anyhow::Ok(())
            }));
        }
        for j in joins {
            j.await.context("racer panicked")??;
        }
        let s = expect_gauges(&q, (0, 0, 0, 0), "after the race").await?;
        ensure!(s.acked_total == N as u64, "acked_total {}", s.acked_total);
        consume_none(&q, Duration::from_millis(300), "after the race").await?;
        Ok(())
    })
    .await
}
