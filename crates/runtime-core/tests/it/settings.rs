//! Per-component settings: stop-sequence timeouts from config, and a reload of
//! `workers.concurrency` that leaves module- and admin-sized pools alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_contracts::{
    ControlEndpoint, ControlPlane, EndpointError, PoolSpec, SourceError, SourceStatus, StopSignal,
    TaskSink, TaskSource,
};
use runtime_core::RuntimeManager;
use runtime_testkit::fakes::{FnHandler, PartsModule, config, memory_queue, reloadable_config};

use crate::{eventually, fast_platform};

/// A source that never stops producing (ignores its stop signal).
#[derive(Default)]
struct StuckSource {
    running: AtomicBool,
}

#[async_trait]
impl TaskSource for StuckSource {
    fn name(&self) -> &str {
        "stuck"
    }
    fn kind(&self) -> &str {
        "test"
    }
    async fn run(
        &self,
        _sink: Arc<dyn TaskSink>,
        _stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        self.running.store(true, Ordering::SeqCst);
        std::future::pending().await
    }
    fn status(&self) -> SourceStatus {
        SourceStatus::new("stuck", "test")
    }
}

/// A control endpoint that never returns from `serve`.
struct StuckEndpoint;

#[async_trait]
impl ControlEndpoint for StuckEndpoint {
    fn name(&self) -> &str {
        "stuck"
    }
    async fn serve(
        &self,
        _plane: Arc<dyn ControlPlane>,
        _stop: Arc<dyn StopSignal>,
    ) -> Result<(), EndpointError> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_waits_for_sources_and_endpoints_only_as_long_as_configured() {
    let cfg = config(fast_platform(serde_json::json!({
        "runtime": {"source_stop_timeout": "200ms", "control_stop_timeout": "200ms"}
    })))
    .await;
    assert_eq!(
        cfg.platform().runtime.source_stop_timeout,
        Duration::from_millis(200)
    );
    let q = memory_queue("q", 100, 3, Duration::from_secs(2));
    let source = Arc::new(StuckSource::default());
    let module = PartsModule {
        sources: vec![(source.clone() as Arc<dyn TaskSource>, "q".into())],
        ..Default::default()
    };
    let rt = RuntimeManager::builder(cfg)
        .queue(q)
        .module(Arc::new(module))
        .endpoint(Arc::new(StuckEndpoint))
        .handle_signals(false)
        .build();
    rt.start().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || source
            .running
            .load(Ordering::SeqCst))
        .await
    );
    let began = Instant::now();
    rt.stop().await;
    // The built-in budgets (10 s + 5 s) would take 15 s here.
    let took = began.elapsed();
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
}

fn pool(name: &str, concurrency: usize) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        queue: "q".into(),
        handler: FnHandler::new(Duration::ZERO, |_, _| Ok(())),
        concurrency,
        task_timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_reload_resizes_only_the_pools_sized_by_the_config() {
    let platform = fast_platform(serde_json::json!({"workers": {"concurrency": 2}}));
    let (cfg, layer) = reloadable_config(platform.clone()).await;
    let q = memory_queue("q", 100, 3, Duration::from_secs(2));
    let module = PartsModule {
        pools: vec![
            // Takes the configured value: follows reloads.
            pool("from-config", 2),
            // Chooses its own number: keeps it.
            pool("from-module", 3),
            // Configured, then resized by an admin call: keeps the admin's number.
            pool("from-admin", 2),
        ],
        ..Default::default()
    };
    let rt = RuntimeManager::builder(cfg.clone())
        .queue(q)
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    let handle = rt.handle();
    rt.start().await.unwrap();
    handle
        .supervisor()
        .set_concurrency("from-admin", 5)
        .unwrap();

    let mut changed = platform;
    changed["workers"]["concurrency"] = serde_json::json!(7);
    layer.set(changed);
    let report = cfg.reload().await;
    assert!(report.accepted, "{report:?}");
    let sizes = || {
        let mut s: Vec<(String, usize)> = handle
            .supervisor()
            .status()
            .into_iter()
            .map(|p| (p.name, p.concurrency))
            .collect();
        s.sort();
        s
    };
    assert!(
        eventually(Duration::from_secs(5), || sizes()
            .iter()
            .any(|(n, c)| n == "from-config" && *c == 7))
        .await,
        "{:?}",
        sizes()
    );
    assert_eq!(
        sizes(),
        vec![
            ("from-admin".to_owned(), 5),
            ("from-config".to_owned(), 7),
            ("from-module".to_owned(), 3),
        ]
    );
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_lease_renewal_sets_how_often_a_running_task_keeps_its_lease() {
    // The queue hands a delivery back after 300 ms. The config's visibility timeout
    // (5 s) would renew every 1.7 s, too late; `workers.lease_renewal` renews in time.
    let q = memory_queue("q", 100, 3, Duration::from_millis(300));
    let cfg = config(fast_platform(serde_json::json!({
        "queue": {"visibility_timeout": "5s"},
        "workers": {"lease_renewal": "100ms"}
    })))
    .await;
    let handler = FnHandler::new(Duration::from_millis(1000), |_, _| Ok(()));
    let module = PartsModule {
        sources: vec![(
            runtime_testkit::fakes::VecSource::new(
                "s",
                vec![runtime_contracts::Task::new("t", "1")],
            ) as Arc<dyn TaskSource>,
            "q".into(),
        )],
        pools: vec![PoolSpec {
            handler: handler.clone(),
            ..pool("p", 2)
        }],
        ..Default::default()
    };
    let rt = RuntimeManager::builder(cfg)
        .queue(q.clone())
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    rt.start().await.unwrap();
    let q2 = q.clone();
    let settled = || {
        let q = q2.clone();
        async move {
            let s = runtime_contracts::TaskQueue::stats(q.as_ref())
                .await
                .unwrap();
            s.acked_total == 1 && s.in_flight == 0 && s.pending == 0
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !settled().await {
        assert!(Instant::now() < deadline, "the task never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.stop().await;
    assert_eq!(
        handler.call_count(),
        1,
        "the lease ran out while the task ran"
    );
}
