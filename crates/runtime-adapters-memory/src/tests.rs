//! What the conformance suite cannot see: backpressure details, wake-ups, memory
//! accounting and the bookkeeping that keeps the queue compact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime_contracts::{PublishOutcome, QueueError, Task, TaskQueue};

use crate::{MemoryQueue, MemoryQueueConfig};

fn queue(capacity: usize, visibility_timeout: Duration) -> Arc<MemoryQueue> {
    Arc::new(MemoryQueue::new(MemoryQueueConfig {
        name: "unit".to_owned(),
        capacity,
        visibility_timeout,
        max_attempts: 3,
        ..MemoryQueueConfig::default()
    }))
}

const LONG: Duration = Duration::from_secs(60);

async fn blocked(q: &MemoryQueue) -> u64 {
    q.stats().await.unwrap().blocked_publishers
}

/// Polls until `q` shows `n` blocked publishers.
async fn until_blocked(q: &MemoryQueue, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while blocked(q).await != n {
        assert!(
            Instant::now() < deadline,
            "never saw {n} blocked publishers"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn config_defaults_and_humantime() {
    let c: MemoryQueueConfig =
        serde_json::from_str(r#"{"name":"q","visibility_timeout":"1m 30s"}"#).unwrap();
    assert_eq!(c.name, "q");
    assert_eq!(c.visibility_timeout, Duration::from_secs(90));
    assert_eq!(c.capacity, MemoryQueueConfig::default().capacity);
    assert!(c.validate().is_ok());
    assert!(serde_json::from_str::<MemoryQueueConfig>(r#"{"capacty":1}"#).is_err());
    let zero = MemoryQueueConfig {
        capacity: 0,
        ..MemoryQueueConfig::default()
    };
    assert_eq!(zero.validate().unwrap_err().key, "capacity");
    // `new` clamps instead of building a queue that can never accept a task.
    assert_eq!(MemoryQueue::new(zero).capacity(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_is_refused_at_once_even_when_full() {
    let q = queue(1, LONG);
    q.publish(Task::new("r", "a").with_origin("s", "k"))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        q.publish(Task::new("r", "b").with_origin("s", "k")),
    )
    .await
    .expect("a duplicate must not wait for room");
    assert!(outcome.unwrap().is_duplicate());
    assert_eq!(blocked(&q).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_publisher_is_no_longer_counted() {
    let q = queue(1, LONG);
    q.publish(Task::new("r", "a")).await.unwrap();
    let waiting = {
        let q = q.clone();
        tokio::spawn(async move { q.publish(Task::new("r", "b")).await })
    };
    until_blocked(&q, 1).await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert_eq!(blocked(&q).await, 0);
    assert_eq!(q.stats().await.unwrap().published_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_freed_slot_lets_one_blocked_publisher_through() {
    let q = queue(2, LONG);
    q.publish_batch(vec![Task::new("r", "a"), Task::new("r", "b")])
        .await
        .unwrap();
    let publishers: Vec<_> = (0..3)
        .map(|i| {
            let q = q.clone();
            tokio::spawn(async move { q.publish(Task::new("r", format!("p{i}"))).await })
        })
        .collect();
    until_blocked(&q, 3).await;
    let two = q.consume(2, Duration::ZERO).await.unwrap();
    q.ack_batch(&two).await.unwrap();
    until_blocked(&q, 1).await;
    let s = q.stats().await.unwrap();
    assert_eq!((s.pending, s.published_total), (2, 4));
    // Dead-lettering frees room as well.
    let d = q.consume(1, Duration::ZERO).await.unwrap();
    q.dead_letter(&d[0], "bad").await.unwrap();
    until_blocked(&q, 0).await;
    for p in publishers {
        assert_eq!(p.await.unwrap().unwrap(), PublishOutcome::Enqueued);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_batch_fills_then_waits() {
    let q = queue(3, LONG);
    let batch = {
        let q = q.clone();
        tokio::spawn(async move {
            q.publish_batch((0..5).map(|i| Task::new("r", format!("{i}"))).collect())
                .await
        })
    };
    until_blocked(&q, 1).await;
    assert_eq!(q.stats().await.unwrap().pending, 3);
    let got = q.consume(10, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 3);
    q.ack_batch(&got).await.unwrap();
    let outcomes = tokio::time::timeout(Duration::from_secs(5), batch)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(outcomes, vec![PublishOutcome::Enqueued; 5]);
    let rest = q.consume(10, Duration::ZERO).await.unwrap();
    let payloads: Vec<_> = rest.iter().map(|d| d.task.payload.clone()).collect();
    assert_eq!(payloads, vec![b"3".to_vec(), b"4".to_vec()], "order kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_wakes_blocked_publishers_and_consumers() {
    let q = queue(1, LONG);
    q.publish(Task::new("r", "a")).await.unwrap();
    let publisher = {
        let q = q.clone();
        tokio::spawn(async move { q.publish(Task::new("r", "b")).await })
    };
    until_blocked(&q, 1).await;
    let d = q.consume(1, Duration::ZERO).await.unwrap();
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move { q.consume(1, Duration::from_secs(60)).await })
    };
    q.close().await;
    let p = tokio::time::timeout(Duration::from_secs(5), publisher)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(p, Err(QueueError::Closed)), "{p:?}");
    let c = tokio::time::timeout(Duration::from_secs(5), consumer)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(c, Err(QueueError::Closed)), "{c:?}");
    assert!(q.ping().await.is_err());
    // Deliveries already out can still be settled after close.
    q.ack(&d[0]).await.unwrap();
}

/// A consumer asleep on an empty queue (long wait) must wake for a delayed task that
/// falls due meanwhile, not sleep out its whole wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_consumer_rearms_for_an_earlier_due_time() {
    let q = queue(10, LONG);
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move { q.consume(1, Duration::from_secs(60)).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while q.with_state(|s| s.sleeper_count()) == 0 {
        assert!(Instant::now() < deadline, "consumer never went to sleep");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    q.publish(Task::new("r", "x").with_delay(Duration::from_millis(200)))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), consumer)
        .await
        .expect("the sleeping consumer did not wake for the due task")
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        q.with_state(|s| s.sleeper_count()),
        0,
        "sleeper left behind"
    );
}

/// Likewise for a lease that another consumer let run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_consumer_rearms_for_a_new_lease_deadline() {
    let q = queue(10, Duration::from_millis(200));
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move { q.consume(1, Duration::from_secs(60)).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while q.with_state(|s| s.sleeper_count()) == 0 {
        assert!(Instant::now() < deadline, "consumer never went to sleep");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Enqueue without waking the sleeper, so this test's own consume takes the task;
    // then this "consumer" dies holding it.
    let offered = q.with_state(|s| s.offer(Task::new("r", "x"), 10, u64::MAX));
    assert!(matches!(offered, crate::state::Offer::Done { .. }));
    let first = q.consume(1, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    let got = tokio::time::timeout(Duration::from_secs(10), consumer)
        .await
        .expect("the sleeping consumer did not wake for the expired lease")
        .unwrap()
        .unwrap();
    assert_eq!(got[0].task.id, first[0].task.id);
    assert_eq!(q.stats().await.unwrap().expired_total, 1);
}

#[tokio::test]
async fn extended_lease_still_expires_later() {
    let q = queue(10, Duration::from_millis(100));
    q.publish(Task::new("r", "x")).await.unwrap();
    let d = q.consume(1, Duration::ZERO).await.unwrap();
    q.extend_lease(&d[0], Duration::from_millis(400))
        .await
        .unwrap();
    let t = Instant::now();
    let again = q.consume(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(again.len(), 1, "extended lease never expired");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "expired at the old deadline"
    );
    assert!(q.ack(&d[0]).await.is_err());
}

#[tokio::test]
async fn memory_accounting_follows_heap_bytes() {
    const N: usize = 20_000;
    let q = queue(N, LONG);
    let mut expected_heap = 0;
    for i in 0..N {
        let t = Task::new("bench", vec![i as u8; 100]);
        expected_heap += t.heap_bytes();
        q.publish(t).await.unwrap();
    }
    let m = q.memory_usage();
    assert_eq!(m.live_tasks, N);
    assert_eq!(m.task_heap_bytes, expected_heap);
    let per_task = m.overhead_bytes / N;
    assert!(
        per_task < 256,
        "queue overhead {per_task} bytes per waiting task"
    );

    // Through in-flight and out: every byte is given back.
    let mut left = N;
    while left > 0 {
        let got = q.consume(500, Duration::ZERO).await.unwrap();
        left -= got.len();
        q.ack_batch(&got).await.unwrap();
    }
    let m = q.memory_usage();
    assert_eq!((m.live_tasks, m.task_heap_bytes), (0, 0));
    assert!(
        m.overhead_bytes < 2 * 1024 * 1024,
        "structures kept {} bytes",
        m.overhead_bytes
    );
}

#[tokio::test]
async fn origin_index_is_accounted_and_freed() {
    let plain = queue(1000, LONG);
    let keyed = queue(1000, LONG);
    for i in 0..100 {
        plain.publish(Task::new("r", "x")).await.unwrap();
        let t = Task::new("r", "x").with_origin("src", format!("key-{i}"));
        keyed.publish(t).await.unwrap();
    }
    let (p, k) = (plain.memory_usage(), keyed.memory_usage());
    assert!(
        k.task_heap_bytes > p.task_heap_bytes,
        "origin strings are task heap"
    );
    assert!(
        k.overhead_bytes > p.overhead_bytes,
        "the origin index is overhead"
    );
    let got = keyed.consume(100, Duration::ZERO).await.unwrap();
    keyed.ack_batch(&got).await.unwrap();
    assert_eq!(keyed.memory_usage().task_heap_bytes, 0);
    assert_eq!(keyed.with_state(|s| s.origin_index_len()), (0, 0));
    // The index is empty: the same origins are accepted again.
    let again = keyed
        .publish(Task::new("r", "x").with_origin("src", "key-1"))
        .await
        .unwrap();
    assert_eq!(again, PublishOutcome::Enqueued);
}

/// Settled deliveries leave stale deadline entries behind; compaction keeps them bounded
/// by the live ones even with a long visibility timeout.
#[tokio::test]
async fn stale_lease_deadlines_are_compacted() {
    let q = queue(100, LONG);
    for _ in 0..20_000 {
        q.publish(Task::new("r", "x")).await.unwrap();
        let d = q.consume(1, Duration::ZERO).await.unwrap();
        q.ack(&d[0]).await.unwrap();
    }
    let entries = q.with_state(|s| s.deadline_entries());
    assert!(
        entries <= 2 * 1024 + 2,
        "{entries} deadline entries for no live delivery"
    );
}

#[tokio::test]
async fn retried_dead_letter_shares_origin_safely() {
    let q = queue(10, LONG);
    q.publish(Task::new("r", "1").with_origin("s", "k"))
        .await
        .unwrap();
    let d = q.consume(1, Duration::ZERO).await.unwrap();
    q.dead_letter(&d[0], "bad").await.unwrap();
    // The source publishes the item again, then an operator retries the dead letter.
    q.publish(Task::new("r", "2").with_origin("s", "k"))
        .await
        .unwrap();
    assert!(q.retry_dead_letter(d[0].task.id).await.unwrap());
    let both = q.consume(2, Duration::ZERO).await.unwrap();
    assert_eq!(both.len(), 2);
    q.ack(&both[0]).await.unwrap();
    // One live task with the origin is left, so a third is still a duplicate.
    let third = q
        .publish(Task::new("r", "3").with_origin("s", "k"))
        .await
        .unwrap();
    assert!(third.is_duplicate());
    q.ack(&both[1]).await.unwrap();
    let fourth = q
        .publish(Task::new("r", "4").with_origin("s", "k"))
        .await
        .unwrap();
    assert_eq!(fourth, PublishOutcome::Enqueued);
}

#[tokio::test]
async fn stale_lease_after_slot_reuse_is_refused() {
    let q = queue(10, LONG);
    q.publish(Task::new("r", "a")).await.unwrap();
    let a = q.consume(1, Duration::ZERO).await.unwrap();
    q.ack(&a[0]).await.unwrap();
    q.publish(Task::new("r", "b")).await.unwrap();
    let b = q.consume(1, Duration::ZERO).await.unwrap();
    // Same slab slot, new generation: the old lease names nothing.
    assert_eq!(a[0].lease.0 & 0xffff_ffff, b[0].lease.0 & 0xffff_ffff);
    assert!(matches!(q.ack(&a[0]).await, Err(QueueError::LeaseLost(_))));
    // A lease with another task's id is refused too.
    let mut forged = b[0].clone();
    forged.task.id = a[0].task.id;
    assert!(matches!(
        q.ack(&forged).await,
        Err(QueueError::LeaseLost(_))
    ));
    q.ack(&b[0]).await.unwrap();
}

fn byte_queue(capacity_bytes: u64) -> Arc<MemoryQueue> {
    Arc::new(MemoryQueue::new(MemoryQueueConfig {
        name: "bytes".to_owned(),
        capacity: 100,
        capacity_bytes,
        visibility_timeout: LONG,
        max_attempts: 1,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_holds_publishers_like_the_count_bound() {
    let q = byte_queue(100);
    q.publish(Task::new("r", vec![0u8; 60])).await.unwrap();
    q.publish(Task::new("r", vec![0u8; 40])).await.unwrap();
    assert_eq!(q.memory_usage().payload_bytes, 100);
    // Far below the count bound, but one byte past the byte bound: full, as for a count.
    let back = q.try_publish(Task::new("r", vec![0u8; 1])).unwrap();
    assert!(
        back.is_err(),
        "a publish past capacity_bytes must find the queue full"
    );
    let waiting = {
        let q = q.clone();
        tokio::spawn(async move { q.publish(Task::new("r", vec![0u8; 50])).await })
    };
    until_blocked(&q, 1).await;
    // Acking the 60-byte task makes room for the 50 bytes; a dead letter frees bytes too.
    let first = q.consume(1, Duration::ZERO).await.unwrap();
    q.ack(&first[0]).await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), PublishOutcome::Enqueued);
    assert_eq!(q.memory_usage().payload_bytes, 90);
    let rest = q.consume(10, Duration::ZERO).await.unwrap();
    for d in &rest {
        q.nack(d, None, "bad").await.unwrap();
    }
    assert_eq!(q.memory_usage().payload_bytes, 0);
    // One task larger than the bound still goes into an empty queue instead of waiting
    // for ever, and then it alone fills the queue.
    q.publish(Task::new("r", vec![0u8; 500])).await.unwrap();
    assert!(
        q.try_publish(Task::new("r", vec![0u8; 1]))
            .unwrap()
            .is_err()
    );
}

#[test]
fn capacity_bytes_has_a_default_and_must_be_positive() {
    let c: MemoryQueueConfig = serde_json::from_str(r#"{"capacity_bytes":1024}"#).unwrap();
    assert_eq!(c.capacity_bytes, 1024);
    assert_eq!(
        MemoryQueueConfig::default().capacity_bytes,
        crate::DEFAULT_CAPACITY_BYTES
    );
    let zero = MemoryQueueConfig {
        capacity_bytes: 0,
        ..MemoryQueueConfig::default()
    };
    assert_eq!(zero.validate().unwrap_err().key, "capacity_bytes");
}
