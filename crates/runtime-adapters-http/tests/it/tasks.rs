//! Task controls through HTTP against a real runtime: enqueue by hand, inspect, cancel,
//! and what a careless or hostile caller gets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::Method;
use runtime_contracts::{Task, TaskContext, TaskError, TaskHandler};

use crate::{Opts, TOKEN, eventually_async, start};

/// Route `wait` runs until it is cancelled (then fails, which must not retry it);
/// anything else succeeds at once.
#[derive(Default)]
struct Waits {
    calls: AtomicUsize,
    saw_cancel: AtomicUsize,
}

#[async_trait]
impl TaskHandler for Waits {
    async fn handle(&self, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if task.route != "wait" {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_secs(20), ctx.cancelled()).await {
            Ok(()) => {
                assert!(ctx.is_cancelled());
                self.saw_cancel.fetch_add(1, Ordering::SeqCst);
                Err(TaskError::retry("stopped on request"))
            }
            Err(_) => Ok(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_inspect_and_cancel_a_running_task() {
    let handler = Arc::new(Waits::default());
    let h = start(Opts::new(handler.clone())).await;
    let c = &h.client;

    let body =
        serde_json::json!({"route": "wait", "payload": {"order": 7}, "unique_key": "order-7"});
    let r = c.admin_json("/admin/queues/q/tasks", body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["duplicate"], false);
    let id = v["id"].as_str().unwrap().to_owned();
    // Same unique key: nothing added, the first task's id.
    let r = c.admin_json("/admin/queues/q/tasks", body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"id": id, "duplicate": true}));

    let path = format!("/admin/tasks/{id}");
    assert!(
        eventually_async(Duration::from_secs(5), || async {
            c.admin(Method::GET, &path).await.json()["state"] == "running"
        })
        .await,
        "the task never ran"
    );
    let v = c.admin(Method::GET, &path).await.json();
    assert_eq!(v["queue"], "q");
    assert_eq!(v["route"], "wait");
    assert_eq!(v["attempts"], 0);
    assert_eq!(v["unique_key"], "order-7");
    assert_eq!(v["trace_id"].as_str().map(str::len), Some(32), "{v}");

    let r = c.admin(Method::DELETE, &path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["cancelled"], "signalled");
    assert!(
        eventually_async(Duration::from_secs(5), || async {
            c.admin(Method::GET, &path).await.json()["state"] == "unknown"
        })
        .await,
        "the cancelled task is still in the queue"
    );
    assert_eq!(handler.saw_cancel.load(Ordering::SeqCst), 1);
    // Settled without retry: the handler ran once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
    let s = c.get("/status").await.json();
    assert_eq!(s["queues"][0]["cancelled_total"], 1, "{s}");
    assert_eq!(s["queues"][0]["dead"], 0, "{s}");
    let metrics = c.get("/metrics").await.text();
    assert!(
        metrics.contains("plba_queue_cancelled_total{queue=\"q\",backend=\"memory\"} 1"),
        "{metrics}"
    );
    // Gone: a second cancel is 404; the key is free again.
    c.admin(Method::DELETE, &path).await.assert_error(404);
    let r = c
        .admin_json(
            "/admin/queues/q/tasks",
            serde_json::json!({"route": "x", "unique_key": "order-7"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_task_is_inspected_and_removed() {
    let h = start(Opts::new(Arc::new(Waits::default()))).await;
    let c = &h.client;
    let r = c
        .admin_json(
            "/admin/queues/q/tasks",
            serde_json::json!({"route": "later", "delay": "1h"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/tasks/{id}");
    let v = c.admin(Method::GET, &path).await.json();
    assert_eq!(v["state"], "delayed", "{v}");
    let due = v["not_before_ms"].as_u64().unwrap();
    let now = runtime_contracts::now_millis();
    assert!(due > now + 3_500_000 && due <= now + 3_600_000, "{v}");
    let r = c.admin(Method::DELETE, &path).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["cancelled"], "removed");
    assert_eq!(c.admin(Method::GET, &path).await.json()["state"], "unknown");
    // An id nobody knows: 200 with state unknown (inspect), 404 (cancel).
    let other = format!("/admin/tasks/{}", runtime_contracts::TaskId::new());
    let r = c.admin(Method::GET, &other).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "unknown");
    c.admin(Method::DELETE, &other).await.assert_error(404);
    h.rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_task_requests_get_a_4xx_naming_the_field() {
    let h = start(Opts::new(Arc::new(Waits::default()))).await;
    let c = &h.client;
    let post = |path: &'static str, body: &'static str| async move {
        c.send(
            Method::POST,
            path,
            Some(TOKEN),
            Some(("application/json", body.as_bytes().to_vec())),
        )
        .await
    };
    let m = post("/admin/queues/nope/tasks", r#"{"route":"r"}"#)
        .await
        .assert_error(404);
    assert!(m.contains("nope"), "{m}");
    post("/admin/queues/q/tasks", r#"{"route":"#)
        .await
        .assert_error(400);
    let cases = [
        (r#"{"route":"r","colour":"red"}"#, "colour"),
        (r#"{"route":"r","delay":"-5s"}"#, "delay"),
        (r#"{"route":"r","delay":"soon"}"#, "delay"),
        (r#"{"route":"r","delay":-5}"#, "delay"),
        (r#"{"payload":1}"#, "route"),
        (r#"{"route":""}"#, "route"),
        (r#"{"route":"r","unique_key":5}"#, "unique_key"),
        (r#"[1,2,3]"#, "body"),
    ];
    for (body, field) in cases {
        let m = post("/admin/queues/q/tasks", body).await.assert_error(400);
        assert!(m.starts_with(&format!("{field}:")), "{body}: {m}");
    }
    // Ids: malformed, unicode, 5,000 characters. The answer never echoes the id.
    for id in ["xyz", "%C3%A9%C3%A9", &"a".repeat(5000)] {
        for method in [Method::GET, Method::DELETE] {
            let r = c.admin(method.clone(), &format!("/admin/tasks/{id}")).await;
            let m = r.assert_error(400);
            assert!(m.starts_with("id:") && m.len() < 100, "{method} {m}");
        }
    }
    // A 10 MB payload is over the body limit.
    let big = format!(r#"{{"route":"r","payload":"{}"}}"#, "x".repeat(10 << 20));
    // The server may answer 413 and close before the client wrote it all.
    let r = c
        .try_send(
            Method::POST,
            "/admin/queues/q/tasks",
            Some(TOKEN),
            Some(("application/json", big.into_bytes())),
        )
        .await;
    if let Ok(r) = r {
        r.assert_error(413);
    }
    // No token: refused before anything is parsed.
    let r = c
        .send(
            Method::POST,
            "/admin/queues/q/tasks",
            None,
            Some(("application/json", br#"{"route":"r"}"#.to_vec())),
        )
        .await;
    r.assert_error(401);
    let r = c.send(Method::GET, "/admin/tasks/xyz", None, None).await;
    r.assert_error(401);
    let s = c.get("/status").await.json();
    assert_eq!(s["queues"][0]["published_total"], 0, "{s}");
    h.rt.stop().await;
}
