//! Redis-specific behaviour beyond the shared conformance suite: cross-handle leases,
//! wake-ups, dedupe across processes' handles, stats shared through Redis, secrets.

use std::sync::Arc;
use std::time::Duration;

use runtime_adapters_redis::{RedisQueue, RedisQueueConfig};
use runtime_contracts::{NackOutcome, PublishOutcome, QueueError, Task, TaskQueue};
use tokio::time::Instant;

use crate::common::{self, queue, unique};

#[tokio::test]
async fn full_cycle_with_two_handles_sharing_stats() {
    let name = unique("cycle");
    let _cleanup = common::Cleanup(name.clone());
    let a = queue(&name, Duration::from_secs(30), 3).await;
    let b = queue(&name, Duration::from_secs(30), 3).await;
    let tasks: Vec<Task> = (0..1200).map(|i| Task::new("r", format!("t{i}"))).collect();
    let out = a.publish_batch(tasks.clone()).await.unwrap();
    assert!(out.iter().all(|o| *o == PublishOutcome::Enqueued));
    // Publishing the same task again (a retried publish) is a duplicate, not a second copy.
    assert_eq!(
        a.publish(tasks[0].clone()).await.unwrap(),
        PublishOutcome::Duplicate {
            existing: tasks[0].id
        }
    );
    let mut seen = Vec::new();
    while seen.len() < tasks.len() {
        let got = b.consume(400, Duration::from_secs(1)).await.unwrap();
        assert!(!got.is_empty(), "queue ran dry after {}", seen.len());
        b.ack_batch(&got).await.unwrap();
        seen.extend(got.into_iter().map(|d| d.task.id));
    }
    // FIFO within one publisher.
    assert_eq!(seen, tasks.iter().map(|t| t.id).collect::<Vec<_>>());
    let s = a.stats().await.unwrap();
    assert_eq!(
        (s.pending, s.in_flight, s.published_total, s.acked_total),
        (0, 0, 1200, 1200)
    );
    assert_eq!(s.backend, "redis");
}

#[tokio::test]
async fn nack_counts_attempts_and_dead_letters_then_retry_resets() {
    let name = unique("nack");
    let _cleanup = common::Cleanup(name.clone());
    let q = queue(&name, Duration::from_secs(30), 2).await;
    let t = Task::new("r", "x").with_origin("src", "k1");
    q.publish(t.clone()).await.unwrap();
    let d = q
        .consume(1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        q.nack(&d, None, "boom 1").await.unwrap(),
        NackOutcome::Requeued
    );
    // A stale lease cannot settle again.
    assert!(matches!(q.ack(&d).await, Err(QueueError::LeaseLost(id)) if id == t.id));
    let d = q
        .consume(1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(d.task.attempts, 1);
    // While live, the origin refuses a second task.
    let dup = Task::new("r", "y").with_origin("src", "k1");
    assert_eq!(
        q.publish(dup.clone()).await.unwrap(),
        PublishOutcome::Duplicate { existing: t.id }
    );
    assert_eq!(
        q.nack(&d, None, "boom 2").await.unwrap(),
        NackOutcome::DeadLettered
    );
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].task.id,
            dead[0].reason.as_str(),
            dead[0].task.attempts
        ),
        (t.id, "boom 2", 2)
    );
    let s = q.stats().await.unwrap();
    assert_eq!(
        (s.dead, s.nacked_total, s.dead_lettered_total, s.pending),
        (1, 2, 1, 0)
    );
    assert!(q.retry_dead_letter(t.id).await.unwrap());
    assert!(!q.retry_dead_letter(t.id).await.unwrap());
    let d = q
        .consume(1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((d.task.id, d.task.attempts), (t.id, 0));
    q.dead_letter(&d, "rejected").await.unwrap();
    // Dead letters are not live: the origin is free again.
    assert_eq!(q.publish(dup).await.unwrap(), PublishOutcome::Enqueued);
    assert!(q.delete_dead_letter(t.id).await.unwrap());
    assert!(!q.delete_dead_letter(t.id).await.unwrap());
    let d = q
        .consume(1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    q.dead_letter(&d, "again").await.unwrap();
    assert_eq!(q.purge_dead_letters().await.unwrap(), 1);
    assert_eq!(q.stats().await.unwrap().dead, 0);
}

#[tokio::test]
async fn expired_lease_comes_back_without_an_attempt_and_old_lease_is_lost() {
    let name = unique("expire");
    let _cleanup = common::Cleanup(name.clone());
    let q = queue(&name, Duration::from_millis(200), 3).await;
    q.publish(Task::new("r", "x")).await.unwrap();
    let first = q
        .consume(1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    // Blocks until the lease runs out and the task comes back: no polling by the test.
    let again = q
        .consume(1, Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    assert_eq!((again.task.id, again.task.attempts), (first.task.id, 0));
    assert!(matches!(q.ack(&first).await, Err(QueueError::LeaseLost(_))));
    assert!(matches!(
        q.extend_lease(&first, Duration::from_secs(1)).await,
        Err(QueueError::LeaseLost(_))
    ));
    q.release(&again, None).await.unwrap();
    let third = q
        .consume(1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(third.task.attempts, 0);
    q.ack(&third).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!(
        (s.expired_total, s.released_total, s.nacked_total),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn delayed_and_scheduled_tasks_wait_for_their_time() {
    let name = unique("delay");
    let _cleanup = common::Cleanup(name.clone());
    let q = queue(&name, Duration::from_secs(30), 3).await;
    q.publish(Task::new("r", "later").with_delay(Duration::from_millis(300)))
        .await
        .unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.pending, s.delayed), (0, 1));
    assert!(q.consume(1, Duration::ZERO).await.unwrap().is_empty());
    let start = Instant::now();
    let d = q
        .consume(1, Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "delivered too early"
    );
    q.nack(&d, Some(Duration::from_millis(200)), "later")
        .await
        .unwrap();
    assert_eq!(q.stats().await.unwrap().delayed, 1);
    let d = q
        .consume(1, Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(d.task.attempts, 1);
    q.ack(&d).await.unwrap();
}

#[tokio::test]
async fn idle_consumer_wakes_on_publish_from_another_handle() {
    let name = unique("wake");
    let _cleanup = common::Cleanup(name.clone());
    let q = Arc::new(queue(&name, Duration::from_secs(30), 3).await);
    let publisher = queue(&name, Duration::from_secs(30), 3).await;
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move { q.consume(1, Duration::from_secs(20)).await })
        })
        .collect();
    // Let the waiters block (if one is not blocked yet it finds the task directly).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    publisher
        .publish_batch((0..4).map(|i| Task::new("r", format!("{i}"))).collect())
        .await
        .unwrap();
    let mut got = 0;
    for w in waiters {
        let d = w.await.unwrap().unwrap();
        got += d.len();
        q.ack_batch(&d).await.unwrap();
    }
    assert_eq!(got, 4);
    // Woken by the publish, not by the 20 s wait running out.
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_errors_not_panics() {
    let mut c = RedisQueueConfig::new("http://nope", "q");
    assert!(matches!(
        RedisQueue::connect(c.clone()).await,
        Err(QueueError::Invalid(_))
    ));
    // TLS against a plain port and a closed port: both unavailable, and the password
    // never shows in the error.
    for url in [
        "rediss://u:hunter2@127.0.0.1:6379",
        "redis://u:hunter2@127.0.0.1:1",
    ] {
        c = common::config(url, "q", Duration::from_secs(1), 1);
        let err = RedisQueue::connect(c).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
