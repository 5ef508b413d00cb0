//! Runtime behaviour against the real in-memory queue: lifecycle, supervision,
//! outcomes, tracing through the queue, live reconfiguration.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test code: its `pub` items are shared between the test modules, not an API.
#![allow(missing_docs, unreachable_pub)]

mod lifecycle;
mod outcomes;
mod settings;
mod signals;
mod status_stats;
mod tracing_ctx;

use std::sync::Arc;
use std::time::Duration;

use runtime_contracts::{PoolSpec, RuntimeState, TaskHandler, TaskQueue, TaskSource};
use runtime_core::{RuntimeHandle, RuntimeManager};
use runtime_testkit::fakes::{MemoryQueue, PartsModule, config, memory_queue};

/// A runtime with one queue `q`, the given sources and one pool `p` running `handler`.
pub async fn runtime_with(
    platform: serde_json::Value,
    queue: Arc<dyn TaskQueue>,
    sources: Vec<Arc<dyn TaskSource>>,
    handler: Arc<dyn TaskHandler>,
    concurrency: usize,
) -> (
    RuntimeManager,
    RuntimeHandle,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let cfg = config(platform).await;
    let task_timeout = cfg.platform().workers.task_timeout;
    let module = PartsModule {
        sources: sources
            .into_iter()
            .map(|s| (s, queue.name().to_owned()))
            .collect(),
        pools: vec![PoolSpec {
            name: "p".into(),
            queue: queue.name().into(),
            handler,
            concurrency,
            task_timeout,
        }],
        ..Default::default()
    };
    let events = module.events.clone();
    let rt = RuntimeManager::builder(cfg)
        .queue(queue)
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    let handle = rt.handle();
    (rt, handle, events)
}

/// Fast retries so tests do not wait on production backoff.
pub fn fast_platform(extra: serde_json::Value) -> serde_json::Value {
    let mut base = serde_json::json!({
        "workers": {"retry_base": "20ms", "retry_max": "100ms", "task_timeout": "5s"},
        "runtime": {"shutdown_timeout": "5s"},
        "queue": {"visibility_timeout": "2s"}
    });
    merge(&mut base, extra);
    base
}

fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

pub fn queue(max_attempts: u32) -> Arc<MemoryQueue> {
    memory_queue("q", 1000, max_attempts, Duration::from_secs(2))
}

/// Waits until `f` holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

pub async fn running(handle: &RuntimeHandle) {
    handle.wait_for(RuntimeState::Running).await;
}
