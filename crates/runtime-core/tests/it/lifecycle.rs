//! Start and stop order, draining, cut-off, status.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use runtime_contracts::{
    ControlEndpoint, ControlPlane, EndpointError, RuntimeState, SourceError, SourceStatus,
    StopSignal, Task, TaskContext, TaskError, TaskHandler, TaskQueue, TaskSink, TaskSource,
};
use runtime_core::RuntimeManager;
use runtime_testkit::fakes::{PartsModule, VecSource, config, memory_queue};
use tokio::sync::Notify;

use crate::{fast_platform, queue, running, runtime_with};

type Events = Arc<Mutex<Vec<String>>>;

fn push(events: &Events, e: &str) {
    events.lock().unwrap().push(e.to_owned());
}

struct EventSource {
    events: Events,
    tasks: Mutex<Vec<Task>>,
}

#[async_trait]
impl TaskSource for EventSource {
    fn name(&self) -> &str {
        "events"
    }
    fn kind(&self) -> &str {
        "test"
    }
    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        push(&self.events, "source:start");
        let tasks: Vec<Task> = self.tasks.lock().unwrap().drain(..).collect();
        for t in tasks {
            sink.publish(t).await?;
        }
        stop.stopped().await;
        push(&self.events, "source:stop");
        Ok(())
    }
    fn status(&self) -> SourceStatus {
        SourceStatus::new("events", "test")
    }
}

struct EventEndpoint {
    events: Events,
}

#[async_trait]
impl ControlEndpoint for EventEndpoint {
    fn name(&self) -> &str {
        "events"
    }
    async fn serve(
        &self,
        _plane: Arc<dyn ControlPlane>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), EndpointError> {
        push(&self.events, "endpoint:start");
        stop.stopped().await;
        push(&self.events, "endpoint:stop");
        Ok(())
    }
}

/// Signals when a task starts, then takes `delay`.
struct SlowHandler {
    events: Events,
    started: AtomicUsize,
    start: Notify,
    delay: Duration,
}

#[async_trait]
impl TaskHandler for SlowHandler {
    async fn handle(&self, _task: &Task, _ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.start.notify_waiters();
        tokio::time::sleep(self.delay).await;
        push(&self.events, "handler:end");
        Ok(())
    }
}

impl SlowHandler {
    fn new(events: Events, delay: Duration) -> Arc<Self> {
        Arc::new(SlowHandler {
            events,
            started: AtomicUsize::new(0),
            start: Notify::new(),
            delay,
        })
    }

    async fn wait_started(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.start.notified();
                if self.started.load(Ordering::SeqCst) >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .expect("tasks should start");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_stop_in_order() {
    let events: Events = Arc::default();
    let q = queue(3);
    let handler = SlowHandler::new(events.clone(), Duration::from_millis(300));
    let source = Arc::new(EventSource {
        events: events.clone(),
        tasks: Mutex::new(vec![Task::new("t", "1")]),
    });
    let module = PartsModule {
        sources: vec![(source, "q".into())],
        pools: vec![runtime_contracts::PoolSpec {
            name: "p".into(),
            queue: "q".into(),
            handler: handler.clone(),
            concurrency: 1,
            task_timeout: Duration::from_secs(5),
        }],
        events: events.clone(),
        ..Default::default()
    };
    let rt = RuntimeManager::builder(config(fast_platform(serde_json::json!({}))).await)
        .queue(q.clone())
        .module(Arc::new(module))
        .endpoint(Arc::new(EventEndpoint {
            events: events.clone(),
        }))
        .handle_signals(false)
        .build();
    let handle = rt.handle();
    assert_eq!(handle.state(), RuntimeState::Starting);
    rt.start().await.unwrap();
    assert_eq!(handle.state(), RuntimeState::Running);
    handler.wait_started(1).await;
    let report = rt.stop().await;
    assert!(report.drained);
    assert_eq!(handle.state(), RuntimeState::Stopped);
    let ev = events.lock().unwrap().clone();
    let at = |e: &str| {
        ev.iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e} missing in {ev:?}"))
    };
    assert_eq!(ev[0], "register", "{ev:?}");
    // Stop order: sources, then workers drain, then modules, then the control plane.
    assert!(at("source:stop") < at("handler:end"), "{ev:?}");
    assert!(at("handler:end") < at("stop"), "{ev:?}");
    assert!(at("stop") < at("endpoint:stop"), "{ev:?}");
    assert!(at("source:start") > at("register") && at("endpoint:start") > at("register"));
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.acked_total, stats.pending, stats.in_flight),
        (1, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_drains_in_flight_tasks() {
    let events: Events = Arc::default();
    let q = queue(3);
    let handler = SlowHandler::new(events, Duration::from_millis(300));
    let tasks = (0..4).map(|i| Task::new("t", format!("{i}"))).collect();
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::new("s", tasks)],
        handler.clone(),
        4,
    )
    .await;
    rt.start().await.unwrap();
    running(&handle).await;
    handler.wait_started(4).await;
    let report = rt.stop().await;
    assert!(report.drained);
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.acked_total, 4, "{stats:?}");
    assert_eq!(stats.pending + stats.in_flight + stats.delayed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_cut_off_at_shutdown_go_back_without_an_attempt() {
    let events: Events = Arc::default();
    let q = memory_queue("q", 100, 3, Duration::from_secs(30));
    let handler = SlowHandler::new(events, Duration::from_secs(60));
    let tasks = (0..2).map(|i| Task::new("t", format!("{i}"))).collect();
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({"runtime": {"shutdown_timeout": "200ms"}})),
        q.clone(),
        vec![VecSource::new("s", tasks)],
        handler.clone(),
        2,
    )
    .await;
    rt.start().await.unwrap();
    running(&handle).await;
    handler.wait_started(2).await;
    let report = rt.stop().await;
    assert!(!report.drained);
    assert_eq!(report.cut_off, 2);
    // Nothing lost, no attempt used: both are back in the queue, ready.
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.in_flight), (2, 0), "{stats:?}");
    assert_eq!(
        (stats.released_total, stats.nacked_total),
        (2, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_state_pools_sources_and_queues() {
    let q = queue(3);
    let handler = runtime_testkit::fakes::FnHandler::new(Duration::ZERO, |_, _| Ok(()));
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::new("s", vec![Task::new("t", "x")])],
        handler.clone(),
        3,
    )
    .await;
    rt.start().await.unwrap();
    assert_eq!(handler.wait_calls(1, Duration::from_secs(10)).await, 1);
    let status = handle.status().await;
    assert_eq!(status.state, RuntimeState::Running);
    assert_eq!(status.pools.len(), 1);
    assert_eq!(status.pools[0].concurrency, 3);
    assert_eq!(status.sources[0].name, "s");
    assert_eq!(status.sources[0].produced, 1);
    assert_eq!(status.queues[0].name, "q");
    assert_eq!(status.modules[0].name, "test-module");
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["state"], "running");
    // Readiness follows the state.
    let plane = handle.control_plane();
    assert_eq!(
        plane.readiness().await.status,
        runtime_contracts::HealthStatus::Up
    );
    handle.shutdown();
    rt.wait_for_shutdown_request().await;
    rt.stop().await;
    assert_eq!(
        plane.readiness().await.status,
        runtime_contracts::HealthStatus::Down
    );
    assert_eq!(handle.status().await.state, RuntimeState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_a_source_and_resume_restarts_it() {
    let q = queue(3);
    let handler = runtime_testkit::fakes::FnHandler::new(Duration::ZERO, |_, _| Ok(()));
    let source = VecSource::new("s", vec![Task::new("t", "1")]);
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q,
        vec![source.clone()],
        handler.clone(),
        1,
    )
    .await;
    rt.start().await.unwrap();
    assert_eq!(handler.wait_calls(1, Duration::from_secs(10)).await, 1);
    let plane = handle.control_plane();
    let st = plane.pause_source("s").await.unwrap();
    assert_eq!(st.state, runtime_contracts::SourceState::Paused);
    assert_eq!(source.ended.load(Ordering::SeqCst), 1);
    source.push(Task::new("t", "2"));
    let st = plane.resume_source("s").await.unwrap();
    assert_ne!(st.state, runtime_contracts::SourceState::Paused);
    assert_eq!(handler.wait_calls(2, Duration::from_secs(10)).await, 2);
    assert_eq!(source.runs.load(Ordering::SeqCst), 2);
    assert!(matches!(
        plane.pause_source("nope").await,
        Err(runtime_contracts::AdminError::NotFound(_))
    ));
    rt.stop().await;
}

/// A queue whose `consume` panics while `broken` is set: the runtime's own consume path
/// dies, not a handler.
struct PanickingQueue {
    inner: Arc<dyn TaskQueue>,
    broken: std::sync::atomic::AtomicBool,
    consumes: AtomicUsize,
}

#[async_trait]
impl TaskQueue for PanickingQueue {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn backend(&self) -> &'static str {
        "panicking"
    }
    async fn publish(
        &self,
        task: Task,
    ) -> Result<runtime_contracts::PublishOutcome, runtime_contracts::QueueError> {
        self.inner.publish(task).await
    }
    async fn consume(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<runtime_contracts::Delivery>, runtime_contracts::QueueError> {
        self.consumes.fetch_add(1, Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            panic!("overflow when adding duration to instant");
        }
        self.inner.consume(max, wait).await
    }
    async fn ack(
        &self,
        d: &runtime_contracts::Delivery,
    ) -> Result<(), runtime_contracts::QueueError> {
        self.inner.ack(d).await
    }
    async fn nack(
        &self,
        d: &runtime_contracts::Delivery,
        delay: Option<Duration>,
        error: &str,
    ) -> Result<runtime_contracts::NackOutcome, runtime_contracts::QueueError> {
        self.inner.nack(d, delay, error).await
    }
    async fn release(
        &self,
        d: &runtime_contracts::Delivery,
        delay: Option<Duration>,
    ) -> Result<(), runtime_contracts::QueueError> {
        self.inner.release(d, delay).await
    }
    async fn dead_letter(
        &self,
        d: &runtime_contracts::Delivery,
        reason: &str,
    ) -> Result<(), runtime_contracts::QueueError> {
        self.inner.dead_letter(d, reason).await
    }
    async fn extend_lease(
        &self,
        d: &runtime_contracts::Delivery,
        by: Duration,
    ) -> Result<(), runtime_contracts::QueueError> {
        self.inner.extend_lease(d, by).await
    }
    async fn stats(&self) -> Result<runtime_contracts::QueueStats, runtime_contracts::QueueError> {
        self.inner.stats().await
    }
    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<runtime_contracts::DeadLetter>, runtime_contracts::QueueError> {
        self.inner.dead_letters(limit).await
    }
    async fn retry_dead_letter(
        &self,
        id: runtime_contracts::TaskId,
    ) -> Result<bool, runtime_contracts::QueueError> {
        self.inner.retry_dead_letter(id).await
    }
    async fn delete_dead_letter(
        &self,
        id: runtime_contracts::TaskId,
    ) -> Result<bool, runtime_contracts::QueueError> {
        self.inner.delete_dead_letter(id).await
    }
    async fn purge_dead_letters(&self) -> Result<u64, runtime_contracts::QueueError> {
        self.inner.purge_dead_letters().await
    }
    async fn ping(&self) -> Result<(), runtime_contracts::QueueError> {
        self.inner.ping().await
    }
}

/// Polls readiness until `want`, for at most `within`.
async fn readiness_becomes(
    plane: &Arc<dyn ControlPlane>,
    want: runtime_contracts::HealthStatus,
    within: Duration,
) -> runtime_contracts::HealthReport {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let report = plane.readiness().await;
        if report.status == want || tokio::time::Instant::now() >= deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_crash_loop_backs_off_and_makes_readiness_false_until_it_ends() {
    let q = Arc::new(PanickingQueue {
        inner: queue(10),
        broken: true.into(),
        consumes: AtomicUsize::new(0),
    });
    let handler = runtime_testkit::fakes::FnHandler::new(Duration::ZERO, |_, _| Ok(()));
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::new("s", vec![Task::new("t", "x")])],
        handler.clone(),
        4,
    )
    .await;
    rt.start().await.unwrap();
    let plane = handle.control_plane();
    let report = readiness_becomes(
        &plane,
        runtime_contracts::HealthStatus::Down,
        Duration::from_secs(10),
    )
    .await;
    let workers = report
        .components
        .iter()
        .find(|c| c.name == "workers")
        .expect("a workers component");
    assert_eq!(
        workers.status,
        runtime_contracts::HealthStatus::Down,
        "{report:?}"
    );
    // Restarts back off: without it every monitor tick (250 ms) replaced all 4 workers.
    let before = q.consumes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = q.consumes.load(Ordering::SeqCst) - before;
    assert!(
        during <= 20,
        "{during} consume panics in 2 s: restarts do not back off"
    );

    // The cause goes away: a worker gets through and readiness comes back by itself.
    q.broken.store(false, Ordering::SeqCst);
    let report = readiness_becomes(
        &plane,
        runtime_contracts::HealthStatus::Up,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        report.status,
        runtime_contracts::HealthStatus::Up,
        "{report:?}"
    );
    assert_eq!(handler.wait_calls(1, Duration::from_secs(10)).await, 1);
    handle.shutdown();
    rt.wait_for_shutdown_request().await;
    rt.stop().await;
}

/// A module whose config check refuses `greeter.name = "nobody"`; counts registrations.
struct CheckedModule {
    registered: Arc<AtomicUsize>,
}

#[async_trait]
impl runtime_contracts::ApplicationModule for CheckedModule {
    fn name(&self) -> &str {
        "checked"
    }
    fn validate(
        &self,
        config: &runtime_contracts::ConfigSnapshot,
    ) -> Vec<runtime_contracts::ConfigIssue> {
        match config.get("greeter.name").and_then(|v| v.as_str()) {
            Some("nobody") => vec![runtime_contracts::ConfigIssue {
                key: "greeter.name".into(),
                origin: None,
                value: None,
                message: "must name somebody".into(),
            }],
            _ => Vec::new(),
        }
    }
    async fn register(
        &self,
        _ctx: &mut runtime_contracts::ModuleContext,
    ) -> Result<(), runtime_contracts::ModuleError> {
        self.registered.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_module_config_problem_fails_the_start_before_anything_registers() {
    let registered = Arc::new(AtomicUsize::new(0));
    let cfg = config(fast_platform(
        serde_json::json!({"greeter": {"name": "nobody"}}),
    ))
    .await;
    let rt = RuntimeManager::builder(cfg)
        .queue(queue(3))
        .module(Arc::new(CheckedModule {
            registered: registered.clone(),
        }))
        .handle_signals(false)
        .build();
    let result = rt.start().await;
    rt.stop().await;
    let error = result.unwrap_err();
    let runtime_core::RuntimeError::Config(runtime_contracts::ConfigError::Invalid(issues)) =
        &error
    else {
        panic!("not a configuration error: {error:?}");
    };
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].key, "greeter.name");
    // The manager filled in the value, as for its own checks.
    assert_eq!(issues[0].value.as_deref(), Some("\"nobody\""), "{issues:?}");
    assert_eq!(registered.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_reload_the_module_check_refuses_keeps_the_old_config() {
    let platform = fast_platform(serde_json::json!({"greeter": {"name": "alice"}}));
    let (cfg, layer) = runtime_testkit::fakes::reloadable_config(platform.clone()).await;
    let rt = RuntimeManager::builder(cfg.clone())
        .queue(queue(3))
        .module(Arc::new(CheckedModule {
            registered: Arc::default(),
        }))
        .handle_signals(false)
        .build();
    rt.start().await.unwrap();
    let mut changed = platform;
    changed["greeter"]["name"] = serde_json::json!("nobody");
    layer.set(changed);
    let report = cfg.reload().await;
    assert!(!report.accepted, "{report:?}");
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert_eq!(report.errors[0].key, "greeter.name");
    assert_eq!(
        cfg.current().get("greeter.name"),
        Some(&serde_json::json!("alice"))
    );
    rt.stop().await;
}

/// A module's exclusive source runs behind the queue's leader lease (`source:<name>`):
/// the memory queue's process-local one here; status shows the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_source_runs_behind_the_queues_lease() {
    let q = queue(3);
    let handler = runtime_testkit::fakes::FnHandler::new(Duration::ZERO, |_, _| Ok(()));
    let cfg = config(fast_platform(serde_json::json!({}))).await;
    let module = PartsModule {
        exclusive_sources: vec![(
            VecSource::new("s", vec![Task::new("t", "x")]),
            "q".into(),
            Duration::from_secs(3),
        )],
        pools: vec![runtime_contracts::PoolSpec {
            name: "p".into(),
            queue: "q".into(),
            handler: handler.clone(),
            concurrency: 1,
            task_timeout: Duration::from_secs(5),
        }],
        ..Default::default()
    };
    let rt = RuntimeManager::builder(cfg)
        .queue(q.clone())
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    let handle = rt.handle();
    rt.start().await.unwrap();
    assert_eq!(handler.wait_calls(1, Duration::from_secs(10)).await, 1);
    let status = handle.status().await;
    let details = &status.sources[0].details;
    assert_eq!(status.sources[0].name, "s");
    assert_eq!(details["leader"], true, "{details:?}");
    assert_eq!(details["lease_key"], "source:s");
    assert_eq!(details["lease_ttl_ms"], 3000);
    // The lease is the queue's: another holder of it is refused while the source leads.
    let other = q.leader_lease("source:s", Duration::from_secs(3)).unwrap();
    assert!(!other.try_acquire().await.unwrap());
    rt.stop().await;
    assert!(
        other.try_acquire().await.unwrap(),
        "the stop released the lease"
    );
}

/// A queue that offers no lease cannot run an exclusive source: the start fails naming
/// the source, before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_source_on_a_queue_without_a_lease_fails_the_start() {
    let q = Arc::new(PanickingQueue {
        inner: queue(3),
        broken: false.into(),
        consumes: AtomicUsize::new(0),
    });
    let cfg = config(fast_platform(serde_json::json!({}))).await;
    let module = PartsModule {
        exclusive_sources: vec![(
            VecSource::new("s", vec![]),
            "q".into(),
            Duration::from_secs(3),
        )],
        ..Default::default()
    };
    let rt = RuntimeManager::builder(cfg)
        .queue(q)
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    let error = rt.start().await.unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, runtime_core::RuntimeError::Lease { .. }),
        "{text}"
    );
    assert!(text.contains("\"s\""), "{text}");
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("panicking"), "{cause}");
}
