//! Admin actions through HTTP against a real runtime: pause/resume, dead letters,
//! concurrency, reload, readiness flips, shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::Method;
use runtime_contracts::{
    RuntimeState, SourceError, SourceState, SourceStatus, StopSignal, Task, TaskError, TaskQueue,
    TaskSink, TaskSource,
};
use runtime_testkit::fakes::{FnHandler, VecSource, reloadable_config};

use crate::{Client, Opts, Toggle, eventually_async, platform, start};

/// Publishes a task every 10 ms until stopped; resumes on the next run.
struct TickSource {
    produced: AtomicU64,
}

#[async_trait]
impl TaskSource for TickSource {
    fn name(&self) -> &str {
        "ticks"
    }
    fn kind(&self) -> &str {
        "tick"
    }
    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        loop {
            tokio::select! {
                _ = stop.stopped() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            sink.publish(Task::new("tick", "x")).await?;
            self.produced.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn status(&self) -> SourceStatus {
        SourceStatus::new("ticks", "tick")
    }
}

async fn produced(c: &Client) -> u64 {
    let s = c.get("/status").await.json();
    s["sources"][0]["produced"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_a_source_and_resume_restarts_it() {
    let source = Arc::new(TickSource {
        produced: AtomicU64::new(0),
    });
    let handler = FnHandler::new(Duration::ZERO, |_: &Task, _: &_| Ok::<(), TaskError>(()));
    let mut opts = Opts::new(handler);
    opts.sources = vec![source.clone()];
    let h = start(opts).await;
    let c = &h.client;
    assert!(eventually_async(Duration::from_secs(5), || async { produced(c).await >= 3 }).await);

    let r = c.admin(Method::POST, "/admin/sources/ticks/pause").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "paused");
    assert_eq!(r.json()["name"], "ticks");
    let at_pause = produced(c).await;
    let own_at_pause = source.produced.load(Ordering::SeqCst);
    // A window many ticks long: nothing may be produced while paused.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(produced(c).await, at_pause);
    assert_eq!(source.produced.load(Ordering::SeqCst), own_at_pause);
    let s = c.get("/status").await.json();
    assert_eq!(s["sources"][0]["state"], "paused");
    let metrics = c.get("/metrics").await.text();
    assert!(
        metrics.contains("plba_source_state{source=\"ticks\",kind=\"tick\",state=\"paused\"} 1\n"),
        "{metrics}"
    );

    let r = c.admin(Method::POST, "/admin/sources/ticks/resume").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(r.json()["state"], "paused");
    assert!(
        eventually_async(Duration::from_secs(5), || async {
            produced(c).await >= at_pause + 3
        })
        .await,
        "resume did not restart the source"
    );
    let s: SourceStatus =
        serde_json::from_value(c.get("/status").await.json()["sources"][0].clone()).unwrap();
    assert_eq!(s.state, SourceState::Running);
    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_retried_and_deleted() {
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let handler = FnHandler::new(Duration::ZERO, move |t: &Task, _: &_| {
        if f.load(Ordering::SeqCst) {
            Err(TaskError::Reject {
                reason: format!("cannot handle {}", t.id),
            })
        } else {
            Ok(())
        }
    });
    let tasks = vec![Task::new("t", "one"), Task::new("t", "two")];
    let ids: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
    let mut opts = Opts::new(handler.clone());
    opts.sources = vec![VecSource::new("src", tasks)];
    let h = start(opts).await;
    let c = &h.client;
    let q = h.queue.clone();
    assert!(
        eventually_async(Duration::from_secs(5), || async {
            q.stats().await.unwrap().dead == 2
        })
        .await
    );

    let list = c.admin(Method::GET, "/admin/dead-letters").await;
    assert_eq!(list.status, 200, "{}", list.text());
    let body = list.json();
    assert_eq!(body["count"], 2);
    let entries = body["dead_letters"].as_array().unwrap();
    let mut listed: Vec<String> = entries
        .iter()
        .map(|e| e["task"]["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed, want);
    for e in entries {
        assert_eq!(e["queue"], "q");
        assert!(
            e["reason"].as_str().unwrap().contains("cannot handle"),
            "{e}"
        );
        assert!(e["failed_at_ms"].as_u64().unwrap() > 0);
    }
    let one = c
        .admin(Method::GET, "/admin/dead-letters?queue=q&limit=1")
        .await;
    assert_eq!(one.json()["count"], 1);

    // Fix the cause, retry the first through the API: it is processed and acked.
    failing.store(false, Ordering::SeqCst);
    let calls_before = handler.call_count();
    let r = c
        .admin(
            Method::POST,
            &format!("/admin/dead-letters/{}/retry", ids[0]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["retried"], ids[0].as_str());
    assert!(
        handler
            .wait_calls(calls_before + 1, Duration::from_secs(5))
            .await
            > calls_before
    );
    assert!(
        eventually_async(Duration::from_secs(5), || async {
            q.stats().await.unwrap().acked_total == 1
        })
        .await
    );
    let last = handler.calls.lock().unwrap().last().unwrap().id.to_string();
    assert_eq!(last, ids[0]);

    // Delete the second; then it is gone for retry and delete alike.
    let r = c
        .admin(Method::DELETE, &format!("/admin/dead-letters/{}", ids[1]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["deleted"], ids[1].as_str());
    assert_eq!(
        c.admin(Method::GET, "/admin/dead-letters").await.json()["count"],
        0
    );
    c.admin(
        Method::POST,
        &format!("/admin/dead-letters/{}/retry", ids[1]),
    )
    .await
    .assert_error(404);
    c.admin(Method::DELETE, &format!("/admin/dead-letters/{}", ids[1]))
        .await
        .assert_error(404);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead, stats.pending, stats.in_flight), (0, 0, 0));
    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_purged_all_at_once() {
    let handler = FnHandler::new(Duration::ZERO, |_: &Task, _: &_| {
        Err::<(), _>(TaskError::reject("never"))
    });
    let tasks = vec![
        Task::new("t", "1"),
        Task::new("t", "2"),
        Task::new("t", "3"),
    ];
    let mut opts = Opts::new(handler);
    opts.sources = vec![VecSource::new("src", tasks)];
    let h = start(opts).await;
    let c = &h.client;
    let q = h.queue.clone();
    assert!(
        eventually_async(Duration::from_secs(5), || async {
            q.stats().await.unwrap().dead == 3
        })
        .await
    );

    c.admin(Method::DELETE, "/admin/dead-letters?queue=ghost")
        .await
        .assert_error(404);
    assert_eq!(
        q.stats().await.unwrap().dead,
        3,
        "a refused purge purges nothing"
    );
    let r = c.admin(Method::DELETE, "/admin/dead-letters?queue=q").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"purged": 3, "queues": [{"queue": "q", "purged": 3}]})
    );
    assert_eq!(
        c.admin(Method::GET, "/admin/dead-letters").await.json()["count"],
        0
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead, stats.pending, stats.in_flight), (0, 0, 0));
    // Nothing left: a purge of every queue deletes none and says so.
    let r = c.admin(Method::DELETE, "/admin/dead-letters").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"purged": 0, "queues": [{"queue": "q", "purged": 0}]})
    );
    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_concurrency_changes_live() {
    let handler = FnHandler::new(Duration::ZERO, |_: &Task, _: &_| Ok::<(), TaskError>(()));
    let h = start(Opts::new(handler)).await;
    let c = &h.client;
    let r = c
        .admin_json(
            "/admin/pools/p/concurrency",
            serde_json::json!({"concurrency": 5}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], "p");
    assert_eq!(r.json()["concurrency"], 5);
    assert_eq!(c.get("/status").await.json()["pools"][0]["concurrency"], 5);
    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_accepts_valid_and_rejects_invalid() {
    let (cfg, layer) = reloadable_config(platform()).await;
    let handler = FnHandler::new(Duration::ZERO, |_: &Task, _: &_| Ok::<(), TaskError>(()));
    let mut opts = Opts::new(handler);
    opts.config = Some(cfg);
    let h = start(opts).await;
    let c = &h.client;

    // Nothing changed: accepted, same version.
    let r = c.admin(Method::POST, "/admin/config/reload").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v0 = r.json()["version"].as_u64().unwrap();
    assert_eq!(r.json()["accepted"], true);

    // Invalid: 422, the errors name the key, the old version stays.
    let mut bad = platform();
    bad["queue"]["visibility_timeout"] = "1ms".into();
    layer.set(bad);
    let r = c.admin(Method::POST, "/admin/config/reload").await;
    let msg = r.assert_error(422);
    assert!(msg.contains("queue.visibility_timeout"), "{msg}");
    let body = r.json();
    assert_eq!(body["accepted"], false, "{body}");
    assert_eq!(body["version"], v0);
    assert_eq!(body["errors"][0]["key"], "queue.visibility_timeout");

    // Valid change: 200 with the changed key and a new version.
    let mut good = platform();
    good["workers"]["retry_max"] = "200ms".into();
    layer.set(good);
    let r = c.admin(Method::POST, "/admin/config/reload").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["accepted"], true);
    assert!(body["version"].as_u64().unwrap() > v0);
    assert!(
        body["changed_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "workers.retry_max"),
        "{body}"
    );
    let s = c.get("/status").await.json();
    assert_eq!(s["config_reloads"], 1);
    assert_eq!(s["config_reload_failures"], 1);
    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_contributor_down_and_up() {
    let toggle = Arc::new(Toggle {
        up: AtomicBool::new(true),
    });
    let handler = FnHandler::new(Duration::ZERO, |_: &Task, _: &_| Ok::<(), TaskError>(()));
    let mut opts = Opts::new(handler);
    opts.health = vec![toggle.clone()];
    let h = start(opts).await;
    let c = &h.client;
    assert_eq!(c.get("/health/ready").await.status, 200);

    toggle.up.store(false, Ordering::SeqCst);
    let r = c.get("/health/ready").await;
    assert_eq!(r.status, 503, "{}", r.text());
    let body = r.json();
    assert_eq!(body["status"], "down");
    let comp = body["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "toggle")
        .expect("toggle listed")
        .clone();
    assert_eq!(comp["status"], "down");
    assert_eq!(comp["details"]["switch"], "test");
    // Liveness does not care about dependencies; the full view tells the truth.
    assert_eq!(c.get("/health/live").await.status, 200);
    let full = c.get("/health").await;
    assert_eq!(full.status, 503);
    assert_eq!(full.json()["status"], "down");

    toggle.up.store(true, Ordering::SeqCst);
    let r = c.get("/health/ready").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "up");
    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shutdown_stops_the_runtime() {
    let handler = FnHandler::new(Duration::ZERO, |_: &Task, _: &_| Ok::<(), TaskError>(()));
    let h = start(Opts::new(handler)).await;
    let c = h.client.clone();
    let r = c.admin(Method::POST, "/admin/shutdown").await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["status"], "shutting down");
    // What `RuntimeManager::run` does: the request wakes the waiter, which stops.
    tokio::time::timeout(Duration::from_secs(5), h.rt.wait_for_shutdown_request())
        .await
        .expect("shutdown request reached the runtime");
    let report = tokio::time::timeout(Duration::from_secs(15), h.rt.stop())
        .await
        .expect("runtime stops");
    assert!(report.drained);
    assert_eq!(h.handle.state(), RuntimeState::Stopped);
    // The server is gone with it.
    assert!(
        eventually_async(Duration::from_secs(5), || async {
            c.try_send(Method::GET, "/health/live", None, None)
                .await
                .is_err()
        })
        .await,
        "control plane still answers after stop"
    );
}
