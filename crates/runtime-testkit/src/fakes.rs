//! Small building blocks for driving a real runtime in tests: a source that publishes a
//! given list of tasks, handlers and acknowledgers that record what happened, a module
//! assembled from parts, and config providers backed by memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
pub use runtime_adapters_memory::{MemoryQueue, MemoryQueueConfig};
use runtime_contracts::{
    ApplicationModule, ConfigError, ConfigLayer, ConfigOrigin, ConfigProvider, FinalOutcome,
    HealthContributor, ModuleContext, ModuleError, PoolSpec, SourceAcknowledger, SourceError,
    SourceState, SourceStatus, StopSignal, Task, TaskContext, TaskError, TaskHandler, TaskSink,
    TaskSource,
};
use runtime_core::ConfigurationManager;
use tokio::sync::Notify;

/// Publishes its tasks once, then waits for stop. Records run starts and ends.
pub struct VecSource {
    name: String,
    tasks: Mutex<Vec<Task>>,
    /// Times `run` was entered.
    pub runs: AtomicUsize,
    /// Times `run` returned.
    pub ended: AtomicUsize,
    /// Notified after each publish.
    pub published: Notify,
    acknowledger: Option<Arc<dyn SourceAcknowledger>>,
}

impl VecSource {
    /// A source named `name` that publishes `tasks`.
    pub fn new(name: &str, tasks: Vec<Task>) -> Arc<Self> {
        Arc::new(VecSource {
            name: name.to_owned(),
            tasks: Mutex::new(tasks),
            runs: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            published: Notify::new(),
            acknowledger: None,
        })
    }

    /// The same, with an acknowledger.
    pub fn with_acknowledger(
        name: &str,
        tasks: Vec<Task>,
        ack: Arc<dyn SourceAcknowledger>,
    ) -> Arc<Self> {
        Arc::new(VecSource {
            name: name.to_owned(),
            tasks: Mutex::new(tasks),
            runs: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            published: Notify::new(),
            acknowledger: Some(ack),
        })
    }

    /// Adds tasks to publish on the next run.
    pub fn push(&self, task: Task) {
        if let Ok(mut t) = self.tasks.lock() {
            t.push(task);
        }
    }
}

#[async_trait]
impl TaskSource for VecSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "vec"
    }

    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        loop {
            let next = self.tasks.lock().ok().and_then(|mut t| {
                if t.is_empty() {
                    None
                } else {
                    Some(t.remove(0))
                }
            });
            let Some(task) = next else { break };
            tokio::select! {
                r = sink.publish(task) => { r?; }
                _ = stop.stopped() => { self.ended.fetch_add(1, Ordering::SeqCst); return Ok(()); }
            }
            self.published.notify_waiters();
        }
        stop.stopped().await;
        self.ended.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn status(&self) -> SourceStatus {
        let mut s = SourceStatus::new(&self.name, "vec");
        s.state = SourceState::Running;
        s
    }

    fn acknowledger(&self) -> Option<Arc<dyn SourceAcknowledger>> {
        self.acknowledger.clone()
    }
}

type HandlerFn = dyn Fn(&Task, &TaskContext<'_>) -> Result<(), TaskError> + Send + Sync;

/// A handler that runs a closure, optionally waits, and records every call.
pub struct FnHandler {
    f: Box<HandlerFn>,
    delay: Duration,
    /// Task ids in call order (one entry per call).
    pub calls: Mutex<Vec<Task>>,
    /// Notified after each call.
    pub called: Notify,
}

impl FnHandler {
    /// A handler running `f` after `delay`.
    pub fn new(
        delay: Duration,
        f: impl Fn(&Task, &TaskContext<'_>) -> Result<(), TaskError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(FnHandler {
            f: Box::new(f),
            delay,
            calls: Mutex::new(Vec::new()),
            called: Notify::new(),
        })
    }

    /// Calls so far.
    pub fn call_count(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Waits until `n` calls happened, or `timeout` passes; returns the count.
    pub async fn wait_calls(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.called.notified();
            let c = self.call_count();
            if c >= n {
                return c;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.call_count();
            }
        }
    }
}

#[async_trait]
impl TaskHandler for FnHandler {
    async fn handle(&self, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Ok(mut c) = self.calls.lock() {
            c.push(task.clone());
        }
        let r = (self.f)(task, ctx);
        self.called.notify_waiters();
        r
    }
}

/// Records acknowledgements; can be told to fail the next `n`.
#[derive(Default)]
pub struct RecordingAcknowledger {
    /// (key, outcome) in call order, successful calls only.
    pub acks: Mutex<Vec<(String, FinalOutcome)>>,
    /// Calls that will fail before calls succeed again.
    pub fail_next: AtomicUsize,
    /// Notified after each call.
    pub called: Notify,
}

impl RecordingAcknowledger {
    /// A new recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Successful acknowledgements so far.
    pub fn recorded(&self) -> Vec<(String, FinalOutcome)> {
        self.acks.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Waits until `n` acknowledgements were recorded or `timeout` passes.
    pub async fn wait_acks(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.called.notified();
            let c = self.recorded().len();
            if c >= n {
                return c;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.recorded().len();
            }
        }
    }
}

#[async_trait]
impl SourceAcknowledger for RecordingAcknowledger {
    async fn acknowledge(&self, key: &str, outcome: &FinalOutcome) -> Result<(), SourceError> {
        let fail = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let result = if fail {
            Err(SourceError::Unavailable {
                message: "acknowledger told to fail".into(),
                source: None,
            })
        } else {
            if let Ok(mut a) = self.acks.lock() {
                a.push((key.to_owned(), outcome.clone()));
            }
            Ok(())
        };
        self.called.notify_waiters();
        result
    }
}

/// A module assembled from sources, pools and health contributors.
#[derive(Default)]
pub struct PartsModule {
    /// Sources with the queue each publishes into.
    pub sources: Vec<(Arc<dyn TaskSource>, String)>,
    /// Exclusive sources: queue and lease ttl ([`ModuleContext::add_exclusive_source`]).
    pub exclusive_sources: Vec<(Arc<dyn TaskSource>, String, std::time::Duration)>,
    /// Pools.
    pub pools: Vec<PoolSpec>,
    /// Health contributors.
    pub health: Vec<Arc<dyn HealthContributor>>,
    /// Events: "register", "stop".
    pub events: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl ApplicationModule for PartsModule {
    fn name(&self) -> &str {
        "test-module"
    }

    async fn register(&self, ctx: &mut ModuleContext) -> Result<(), ModuleError> {
        for (s, q) in &self.sources {
            ctx.add_source(s.clone(), q.clone());
        }
        for (s, q, ttl) in &self.exclusive_sources {
            ctx.add_exclusive_source(s.clone(), q.clone(), *ttl);
        }
        for p in &self.pools {
            ctx.add_pool(p.clone());
        }
        for h in &self.health {
            ctx.add_health(h.clone());
        }
        if let Ok(mut e) = self.events.lock() {
            e.push("register".into());
        }
        Ok(())
    }

    async fn stop(&self) {
        if let Ok(mut e) = self.events.lock() {
            e.push("stop".into());
        }
    }
}

/// A config provider over a JSON tree that tests can replace (for reloads). Clones
/// share the tree.
#[derive(Clone)]
pub struct MemoryConfig {
    tree: Arc<Mutex<serde_json::Value>>,
}

impl MemoryConfig {
    /// A provider serving `tree`.
    pub fn new(tree: serde_json::Value) -> Self {
        MemoryConfig {
            tree: Arc::new(Mutex::new(tree)),
        }
    }

    /// Replaces the tree; the next load (reload) sees it.
    pub fn set(&self, tree: serde_json::Value) {
        if let Ok(mut t) = self.tree.lock() {
            *t = tree;
        }
    }
}

#[async_trait]
impl ConfigProvider for MemoryConfig {
    fn describe(&self) -> String {
        "test config".into()
    }

    async fn load(&self) -> Result<ConfigLayer, ConfigError> {
        let tree = self
            .tree
            .lock()
            .map(|t| t.clone())
            .unwrap_or(serde_json::Value::Null);
        Ok(ConfigLayer::from_tree(
            "test config",
            &tree,
            &ConfigOrigin::Other("test".into()),
        ))
    }
}

/// A bounded in-memory queue for runtime tests (the memory adapter, re-exported here
/// because the core may not depend on an adapter, not even for tests).
pub fn memory_queue(
    name: &str,
    capacity: usize,
    max_attempts: u32,
    visibility_timeout: Duration,
) -> Arc<MemoryQueue> {
    Arc::new(MemoryQueue::new(MemoryQueueConfig {
        name: name.to_owned(),
        capacity,
        max_attempts,
        visibility_timeout,
        ..MemoryQueueConfig::default()
    }))
}

/// A configuration manager over one in-memory layer.
pub async fn config(tree: serde_json::Value) -> Arc<ConfigurationManager> {
    let (cfg, _) = reloadable_config(tree).await;
    cfg
}

/// A configuration manager over one in-memory layer, and the layer to change it.
///
/// # Panics
/// When the tree is not a valid platform configuration (a test bug).
#[allow(clippy::expect_used)]
pub async fn reloadable_config(
    tree: serde_json::Value,
) -> (Arc<ConfigurationManager>, MemoryConfig) {
    let source = MemoryConfig::new(tree);
    let cfg = ConfigurationManager::load(vec![Box::new(source.clone())], Vec::new())
        .await
        .expect("test config must be valid");
    (Arc::new(cfg), source)
}
