//! Outages and long tasks: a private Redis stopped and restarted mid-run, ACL users, and
//! lease extension.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::redis;
use runtime_adapters_redis::RedisQueue;
use runtime_contracts::{PublishOutcome, QueueError, Task, TaskId, TaskQueue};
use tokio::sync::Notify;

use crate::common::{self, RedisServer, config, eventually, queue, unique};

/// Publishes with retry: a publish whose reply was lost is retried with the same task,
/// which the queue answers with `Duplicate` if the first try was stored.
async fn publish_retrying(q: &RedisQueue, task: Task) {
    loop {
        match q.publish(task.clone()).await {
            Ok(PublishOutcome::Enqueued | PublishOutcome::Duplicate { .. }) => return,
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn redis_restart_mid_run_loses_nothing_and_readiness_comes_back() {
    let mut server = RedisServer::start(&[]).unwrap();
    let url = server.url();
    let name = unique("restart");
    let q = Arc::new(
        RedisQueue::connect(config(&url, &name, Duration::from_millis(800), 5))
            .await
            .unwrap(),
    );
    let total = 400usize;
    let tasks: Vec<Task> = (0..total).map(|i| Task::new("r", format!("{i}"))).collect();
    let want: HashSet<TaskId> = tasks.iter().map(|t| t.id).collect();
    let done = Arc::new(Mutex::new(HashSet::new()));
    let progress = Arc::new(Notify::new());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut workers = Vec::new();
    for _ in 0..2 {
        let (q, done, progress, stop) = (q.clone(), done.clone(), progress.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut errors = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match q.consume(5, Duration::from_millis(100)).await {
                    Ok(batch) => {
                        for d in &batch {
                            done.lock().unwrap().insert(d.task.id);
                        }
                        if let Err(e) = q.ack_batch(&batch).await {
                            assert!(e.is_transient() || matches!(e, QueueError::LeaseLost(_)));
                            errors += 1;
                        }
                        progress.notify_waiters();
                    }
                    Err(e) => {
                        assert!(e.is_transient(), "{e:?}");
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            errors
        }));
    }
    let publisher = {
        let q = q.clone();
        let tasks = tasks.clone();
        tokio::spawn(async move {
            for t in tasks {
                publish_retrying(&q, t).await;
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        })
    };

    // Stop Redis once work is under way, while the publisher is still publishing.
    let d2 = done.clone();
    eventually("some progress", Duration::from_secs(20), || {
        let n = d2.lock().unwrap().len();
        async move { n >= 50 }
    })
    .await
    .unwrap();
    server.stop().unwrap();
    let err = q.ping().await.unwrap_err();
    assert!(
        err.is_transient(),
        "readiness must fail while redis is down: {err:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // an outage that lasts a while
    server.restart().unwrap();
    let q2 = q.clone();
    eventually(
        "readiness to come back by itself",
        Duration::from_secs(10),
        || {
            let q = q2.clone();
            async move { q.ping().await.is_ok() }
        },
    )
    .await
    .unwrap();

    publisher.await.unwrap();
    let d3 = done.clone();
    let w = want.clone();
    eventually("every task to be handled", Duration::from_secs(30), || {
        let ok = w.is_subset(&d3.lock().unwrap());
        async move { ok }
    })
    .await
    .unwrap();
    // Redelivered leftovers (acks lost in the outage) settle too.
    let q3 = q.clone();
    eventually("the queue to drain", Duration::from_secs(10), || {
        let q = q3.clone();
        async move {
            q.stats()
                .await
                .map(|s| s.pending == 0 && s.in_flight == 0 && s.delayed == 0)
                .unwrap_or(false)
        }
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut errors = 0;
    for w in workers {
        errors += w.await.unwrap();
    }
    assert!(errors > 0, "the outage was not noticed");
    let s = q.stats().await.unwrap();
    assert_eq!(
        s.published_total, total as u64,
        "a publish was stored twice or lost"
    );
    assert!(s.acked_total >= total as u64);
    q.close().await;
}

#[tokio::test]
async fn acl_user_with_password_works_and_wrong_password_is_unavailable() {
    let server = RedisServer::start(&["--requirepass", "admin-pw"]).unwrap();
    let admin_url = format!("redis://:admin-pw@127.0.0.1:{}", server.port);
    let mut admin = common::client(&admin_url).await;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "worker", "on", ">w-pw", "~*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://worker:w-pw@127.0.0.1:{}", server.port);
    let q = RedisQueue::connect(config(&url, "acl", Duration::from_secs(5), 3))
        .await
        .unwrap();
    q.publish(Task::new("r", "x")).await.unwrap();
    let d = q.consume(1, Duration::from_secs(1)).await.unwrap();
    q.ack_batch(&d).await.unwrap();
    assert_eq!(q.stats().await.unwrap().acked_total, 1);

    let wrong = format!("redis://worker:not-it@127.0.0.1:{}", server.port);
    let err = RedisQueue::connect(config(&wrong, "acl", Duration::from_secs(5), 3))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("not-it"));
}

#[tokio::test]
async fn long_task_with_lease_extension_is_not_delivered_twice() {
    let name = unique("extend");
    let _cleanup = common::Cleanup(name.clone());
    let q = Arc::new(queue(&name, Duration::from_millis(300), 3).await);
    q.publish(Task::new("r", "long")).await.unwrap();
    let d = q
        .consume(1, Duration::from_secs(1))
        .await
        .unwrap()
        .remove(0);
    let other = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut stolen = 0;
            for _ in 0..15 {
                stolen += q
                    .consume(1, Duration::from_millis(100))
                    .await
                    .unwrap()
                    .len();
            }
            stolen
        })
    };
    // The "work": 1.5 s, five visibility timeouts, extending the lease as it goes.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        q.extend_lease(&d, Duration::from_millis(300))
            .await
            .unwrap();
    }
    assert_eq!(other.await.unwrap(), 0, "the task was delivered twice");
    q.ack(&d).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!((s.expired_total, s.acked_total, s.in_flight), (0, 1, 0));
}
