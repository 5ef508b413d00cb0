//! # hello-tasks
//!
//! The worked example of `docs/writing-an-app.md`: the smallest complete app on the plba
//! crates. A [`Ticker`] source publishes a greeting task every `ticker.interval`, the
//! runtime queues it (the in-memory queue here, Redis by configuration elsewhere) and a
//! worker pool runs [`Greeter`] on each one. [`HelloModule`] is what the runtime sees: it
//! reads the app's `[ticker]` section and registers the source and the pool.
//!
//! Key decision: the app never starts a task or a loop itself. It only declares a source,
//! a handler and where they meet (a queue name); the runtime owns start-up, backpressure,
//! retries, health and the graceful stop, so the app stays this small.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use runtime_contracts::{
    ApplicationModule, ConfigError, ConfigIssue, ConfigSnapshot, ModuleContext, ModuleError,
    PoolSpec, SourceError, SourceStatus, StopSignal, Task, TaskContext, TaskError, TaskHandler,
    TaskSink, TaskSource,
};
use runtime_core::PlatformConfig;
use runtime_core::config::{issue, section};
use serde::Deserialize;
use tokio::sync::Notify;

/// The built-in defaults: the lowest configuration layer.
pub const DEFAULTS: &str = r#"
[ticker]
interval = "1s"
greeting = "hello"

# Pool limits: one task per visitor at a time and at most 20 starts a second, held
# across every process that shares the queue.
[workers]
concurrency_key = "visitor"
per_key = 1
rate = "20/s"
"#;

/// The app's own section, `[ticker]`. Unknown keys are errors, so a typo fails start-up.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TickerConfig {
    /// Time between two tasks.
    #[serde(with = "runtime_contracts::duration")]
    pub interval: Duration,
    /// The text each task carries.
    pub greeting: String,
}

/// Checks `[ticker]`, at start-up and before every reload: types, unknown keys, values.
pub fn validate(snapshot: &ConfigSnapshot) -> Vec<ConfigIssue> {
    match section::<TickerConfig>(snapshot, "ticker") {
        Ok(c) if c.interval.is_zero() => {
            vec![issue(snapshot, "ticker.interval", "must be above zero")]
        }
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(issues)) => issues,
        Err(other) => vec![issue(snapshot, "ticker", other.to_string())],
    }
}

/// A source: one task per tick, numbered, up to `limit`.
pub struct Ticker {
    config: TickerConfig,
    limit: u64,
    /// Kept across restarts: the runtime calls `run` again after a failure or a resume.
    next: AtomicU64,
}

#[async_trait]
impl TaskSource for Ticker {
    fn name(&self) -> &str {
        "ticker"
    }

    fn kind(&self) -> &str {
        "interval"
    }

    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        let mut tick = tokio::time::interval(self.config.interval);
        while self.next.load(Ordering::SeqCst) <= self.limit {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.stopped() => return Ok(()),
            }
            let n = self.next.load(Ordering::SeqCst);
            // Three visitors take turns; `[workers] concurrency_key` names this header.
            let task = Task::new("greet", format!("{} #{n}", self.config.greeting))
                .with_header("visitor", format!("visitor-{}", n % 3));
            // Waits while the queue is full: backpressure reaches the source.
            sink.publish(task).await?;
            self.next.store(n + 1, Ordering::SeqCst);
        }
        Ok(()) // returning Ok before a stop means "finished"
    }

    fn status(&self) -> SourceStatus {
        SourceStatus::new(self.name(), self.kind())
    }
}

/// The handler: prints the greeting and tells `done` once `limit` tasks were handled.
pub struct Greeter {
    handled: AtomicU64,
    limit: u64,
    done: Arc<Notify>,
}

#[async_trait]
impl TaskHandler for Greeter {
    async fn handle(&self, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        // A payload that is not text can never succeed: reject sends it to dead letters.
        let text = std::str::from_utf8(&task.payload).map_err(TaskError::reject)?;
        tracing::info!(task = %task.id, pool = ctx.pool, "greeting");
        println!("{text}");
        if self.handled.fetch_add(1, Ordering::SeqCst) + 1 == self.limit {
            self.done.notify_one();
        }
        Ok(())
    }
}

/// What the runtime sees of the app.
pub struct HelloModule {
    /// Stop producing after this many tasks (`u64::MAX`: never).
    pub limit: u64,
    /// Notified when `limit` tasks were handled.
    pub done: Arc<Notify>,
}

#[async_trait]
impl ApplicationModule for HelloModule {
    fn name(&self) -> &str {
        "hello"
    }

    async fn register(&self, ctx: &mut ModuleContext) -> Result<(), ModuleError> {
        let config: TickerConfig = section(ctx.config(), "ticker")?;
        // The platform sections say which queue to use and how many workers to run.
        let platform = PlatformConfig::from_snapshot(ctx.config())?;
        let queue = platform.queue.name.clone();
        let ticker = Ticker {
            config,
            limit: self.limit,
            next: AtomicU64::new(1),
        };
        ctx.add_source(Arc::new(ticker), queue.clone());
        let greeter = Greeter {
            handled: AtomicU64::new(0),
            limit: self.limit,
            done: self.done.clone(),
        };
        ctx.add_pool(PoolSpec {
            name: "greeters".to_owned(),
            queue,
            handler: Arc::new(greeter),
            concurrency: platform.workers.concurrency,
            task_timeout: platform.workers.task_timeout,
        });
        Ok(())
    }
}
