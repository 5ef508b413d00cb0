//! The server against a stand-in control plane, for what a healthy runtime cannot be made
//! to do on demand: conflicts, outages, panics, slow answers, an unready liveness.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::Method;
use runtime_adapters_http::{HttpConfig, HttpControlPlane};
use runtime_contracts::{
    AdminError, ComponentHealth, ControlEndpoint, ControlPlane, DeadLetterEntry, EndpointError,
    HealthReport, HealthStatus, PoolStatus, PurgedDeadLetters, ReloadReport, RuntimeState,
    RuntimeStatus, Secret, SourceStatus, TaskId,
};
use runtime_testkit::runtime_core::StopToken;

use crate::{Client, TOKEN};

pub(crate) struct Stub {
    slow: Duration,
    live: AtomicBool,
}

fn err(name: &str) -> AdminError {
    match name {
        "conflict" => AdminError::Conflict("the runtime is stopping".into()),
        "down" => AdminError::Unavailable("queue backend unavailable".into()),
        "bad" => AdminError::Invalid("bad".into()),
        "boom" => panic!("stub told to panic"),
        other => AdminError::NotFound(other.into()),
    }
}

#[async_trait]
impl ControlPlane for Stub {
    async fn status(&self) -> RuntimeStatus {
        tokio::time::sleep(self.slow).await;
        RuntimeStatus {
            state: RuntimeState::Stopping,
            uptime_seconds: 1.0,
            config_version: 1,
            config_reloads: 0,
            config_reload_failures: 0,
            modules: vec![],
            sources: vec![],
            schedules: vec![],
            queues: vec![],
            pools: vec![],
            dropped_spans: 7,
            stats_age_ms: 1500,
        }
    }
    async fn liveness(&self) -> ComponentHealth {
        let s = if self.live.load(Ordering::SeqCst) {
            HealthStatus::Up
        } else {
            HealthStatus::Down
        };
        ComponentHealth::new("runtime", s).with_detail("heartbeat_age_ms", 60_000)
    }
    async fn readiness(&self) -> HealthReport {
        HealthReport::from_components(vec![ComponentHealth::new("x", HealthStatus::Degraded)])
    }
    async fn health(&self) -> HealthReport {
        self.readiness().await
    }
    async fn pause_source(&self, name: &str) -> Result<SourceStatus, AdminError> {
        Err(err(name))
    }
    async fn resume_source(&self, name: &str) -> Result<SourceStatus, AdminError> {
        Err(err(name))
    }
    async fn reload_config(&self) -> Result<ReloadReport, AdminError> {
        Err(AdminError::Conflict("a reload is running".into()))
    }
    async fn dead_letters(
        &self,
        _queue: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<DeadLetterEntry>, AdminError> {
        Err(AdminError::Unavailable("redis down".into()))
    }
    async fn retry_dead_letter(&self, _id: TaskId) -> Result<(), AdminError> {
        Err(AdminError::Unavailable("redis down".into()))
    }
    async fn delete_dead_letter(&self, _id: TaskId) -> Result<(), AdminError> {
        Err(AdminError::Unavailable("redis down".into()))
    }
    /// All queues: two with letters; one named: that name picks the error.
    async fn purge_dead_letters(
        &self,
        queue: Option<&str>,
    ) -> Result<Vec<PurgedDeadLetters>, AdminError> {
        match queue {
            None => Ok(vec![
                PurgedDeadLetters {
                    queue: "a".into(),
                    purged: 2,
                },
                PurgedDeadLetters {
                    queue: "b".into(),
                    purged: 3,
                },
            ]),
            Some(name) => Err(err(name)),
        }
    }
    async fn set_concurrency(&self, pool: &str, _c: usize) -> Result<PoolStatus, AdminError> {
        Err(err(pool))
    }
    async fn shutdown(&self) -> Result<(), AdminError> {
        Err(AdminError::Conflict("already stopping".into()))
    }
}

async fn serve_stub(
    slow: Duration,
    timeout: Duration,
) -> (
    Arc<HttpControlPlane>,
    Arc<Stub>,
    StopToken,
    tokio::task::JoinHandle<Result<(), EndpointError>>,
    Client,
) {
    serve_stub_with(
        slow,
        HttpConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            token: Some(Secret::new(TOKEN)),
            request_timeout: timeout,
            ..HttpConfig::default()
        },
    )
    .await
}

pub(crate) async fn serve_stub_with(
    slow: Duration,
    config: HttpConfig,
) -> (
    Arc<HttpControlPlane>,
    Arc<Stub>,
    StopToken,
    tokio::task::JoinHandle<Result<(), EndpointError>>,
    Client,
) {
    let http = Arc::new(HttpControlPlane::bind(config).await.unwrap());
    let stub = Arc::new(Stub {
        slow,
        live: AtomicBool::new(true),
    });
    let stop = StopToken::new();
    let server = {
        let http = http.clone();
        let plane: Arc<dyn ControlPlane> = stub.clone();
        let signal = stop.signal();
        tokio::spawn(async move { http.serve(plane, signal).await })
    };
    let client = Client::new(http.local_addr());
    (http, stub, stop, server, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_errors_map_to_status_codes_and_panics_do_not_kill_the_server() {
    let (http, stub, stop, server, c) = serve_stub(Duration::ZERO, Duration::from_secs(5)).await;

    c.admin(Method::POST, "/admin/sources/conflict/pause")
        .await
        .assert_error(409);
    c.admin(Method::POST, "/admin/sources/down/resume")
        .await
        .assert_error(503);
    c.admin(Method::POST, "/admin/sources/bad/pause")
        .await
        .assert_error(400);
    c.admin(Method::POST, "/admin/sources/ghost/pause")
        .await
        .assert_error(404);
    c.admin(Method::POST, "/admin/config/reload")
        .await
        .assert_error(409);
    c.admin(Method::GET, "/admin/dead-letters")
        .await
        .assert_error(503);
    c.admin(
        Method::POST,
        "/admin/dead-letters/0123456789abcdef0123456789abcdef/retry",
    )
    .await
    .assert_error(503);
    c.admin(Method::POST, "/admin/shutdown")
        .await
        .assert_error(409);
    // A panicking control plane is a server fault (500, JSON), and the server goes on.
    let m = c
        .admin(Method::POST, "/admin/sources/boom/pause")
        .await
        .assert_error(500);
    assert!(!m.contains("stub told"), "panic text is not leaked: {m}");
    assert_eq!(c.get("/health/live").await.status, 200);

    // Degraded is not ready (503), but /health shows it as working (200).
    assert_eq!(c.get("/health/ready").await.status, 503);
    let full = c.get("/health").await;
    assert_eq!(full.status, 200);
    assert_eq!(full.json()["status"], "degraded");

    // A stalled runtime loop: liveness answers 503 with its details.
    stub.live.store(false, Ordering::SeqCst);
    let live = c.get("/health/live").await;
    assert_eq!(live.status, 503);
    assert_eq!(live.json()["status"], "down");
    assert_eq!(live.json()["details"]["heartbeat_age_ms"], 60_000);

    // Metrics render whatever the state.
    let text = c.get("/metrics").await.text();
    let m = crate::prom::parse(&text).unwrap();
    assert_eq!(m.value("plba_runtime_state", &[("state", "stopping")]), 1.0);
    assert_eq!(m.value("plba_trace_spans_dropped_total", &[]), 7.0);
    // How old the queue stats are, in both views.
    assert_eq!(m.value("plba_queue_stats_age_seconds", &[]), 1.5);
    assert_eq!(c.get("/status").await.json()["stats_age_ms"], 1500);

    // It serves once; stop ends it promptly.
    let again = http
        .serve(stub.clone(), StopToken::new().signal())
        .await
        .unwrap_err();
    assert!(matches!(again, EndpointError::Config(_)), "{again:?}");
    stop.stop();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after stop")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_dead_letters_answers_the_total_and_each_queue() {
    let (_http, _stub, stop, server, c) = serve_stub(Duration::ZERO, Duration::from_secs(5)).await;
    let r = c.admin(Method::DELETE, "/admin/dead-letters").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"purged": 5, "queues": [
            {"queue": "a", "purged": 2},
            {"queue": "b", "purged": 3},
        ]})
    );
    c.admin(Method::DELETE, "/admin/dead-letters?queue=down")
        .await
        .assert_error(503);
    c.admin(Method::DELETE, "/admin/dead-letters?queue=conflict")
        .await
        .assert_error(409);
    let m = c
        .admin(Method::DELETE, "/admin/dead-letters?queue=ghost")
        .await
        .assert_error(404);
    assert!(m.contains("ghost"), "{m}");
    // A parameter purge does not take is refused, not ignored (that would purge all).
    c.admin(Method::DELETE, "/admin/dead-letters?limit=1")
        .await
        .assert_error(400);
    stop.stop();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_with_503() {
    let (_http, _stub, stop, server, c) =
        serve_stub(Duration::from_secs(30), Duration::from_millis(200)).await;
    let m = c.get("/status").await.assert_error(503);
    assert!(m.contains("timed out"), "{m}");
    c.get("/metrics").await.assert_error(503);
    // Fast routes are unaffected.
    assert_eq!(c.get("/health/live").await.status, 200);
    stop.stop();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A control plane without task controls (the trait's defaults): the task routes answer
/// 501, not a panic or a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_routes_answer_501_when_the_plane_lacks_task_controls() {
    let (_http, _stub, stop, server, c) = serve_stub(Duration::ZERO, Duration::from_secs(5)).await;
    let id = "0123456789abcdef0123456789abcdef";
    c.admin(Method::GET, &format!("/admin/tasks/{id}"))
        .await
        .assert_error(501);
    c.admin(Method::DELETE, &format!("/admin/tasks/{id}"))
        .await
        .assert_error(501);
    c.admin_json("/admin/queues/q/tasks", serde_json::json!({"route": "r"}))
        .await
        .assert_error(501);
    stop.stop();
    server.await.unwrap().unwrap();
}
