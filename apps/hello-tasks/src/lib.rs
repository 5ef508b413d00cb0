//! # hello-tasks
//!
//! The worked example of `docs/writing-an-app.md`: the smallest complete app on the plba
//! crates. A [`Ticker`] source publishes a [`Greet`] job every `ticker.interval`, the
//! runtime queues it (the in-memory queue by default, Redis by configuration) and a
//! worker pool runs it. The pool's handler is a [`Router`]: it sends each task, by its
//! route, to the typed handler of its job ([`Greet`] or [`Add`], both handled by
//! [`Hello`]). [`HelloModule`] is what the runtime sees: it reads the app's `[ticker]`
//! section and registers the source and the pool. [`enqueue`] is the other side: a
//! process that runs no runtime and only adds jobs (`hello-tasks enqueue ...`).
//!
//! Key decision: the app never starts a task or a loop itself. It only declares a source,
//! handlers and where they meet (a queue name); the runtime owns start-up, backpressure,
//! retries, health and the graceful stop, so the app stays this small.

pub mod enqueue;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use runtime_contracts::{
    ApplicationModule, ConfigError, ConfigIssue, ConfigSnapshot, Job, JobHandler, ModuleContext,
    ModuleError, PoolSpec, Router, SourceError, SourceStatus, StopSignal, Task, TaskContext,
    TaskError, TaskSink, TaskSource,
};
use runtime_core::PlatformConfig;
use runtime_core::config::{issue, section};
use serde::{Deserialize, Serialize};
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

/// A job: say `text`. On the queue it is a task with route `"greet"` and the payload
/// `{"text":"..."}` (JSON), so any program can enqueue one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Greet {
    /// What to print.
    pub text: String,
}

impl Job for Greet {
    const ROUTE: &'static str = "greet";
}

/// A second job on the same pool: print `a + b` (route `"add"`, payload `{"a":2,"b":3}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Add {
    /// The first term.
    pub a: i64,
    /// The second term.
    pub b: i64,
}

impl Job for Add {
    const ROUTE: &'static str = "add";
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
            let text = format!("{} #{n}", self.config.greeting);
            let task = Task::from_job(&Greet { text })
                .map_err(|e| SourceError::Permanent(e.to_string()))?
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

/// The handlers of both jobs: each prints its line and tells `done` once `limit` tasks
/// were handled. The router has already decoded the payload; one that does not decode
/// (or an unknown route) never gets here: it is dead-lettered with the serde error.
pub struct Hello {
    handled: AtomicU64,
    limit: u64,
    done: Arc<Notify>,
}

impl Hello {
    fn print(&self, line: &str, task: &Task, ctx: &TaskContext<'_>) {
        tracing::info!(task = %task.id, route = %task.route, pool = ctx.pool, "handled");
        println!("{line}");
        if self.handled.fetch_add(1, Ordering::SeqCst) + 1 == self.limit {
            self.done.notify_one();
        }
    }
}

#[async_trait]
impl JobHandler<Greet> for Hello {
    async fn handle(
        &self,
        job: Greet,
        task: &Task,
        ctx: &TaskContext<'_>,
    ) -> Result<(), TaskError> {
        self.print(&job.text, task, ctx);
        Ok(())
    }
}

#[async_trait]
impl JobHandler<Add> for Hello {
    async fn handle(&self, job: Add, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        // An overflow can never succeed: reject sends the task to dead letters.
        let sum = job
            .a
            .checked_add(job.b)
            .ok_or_else(|| TaskError::reject("sum overflows"))?;
        self.print(&format!("{} + {} = {sum}", job.a, job.b), task, ctx);
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
        let hello = Arc::new(Hello {
            handled: AtomicU64::new(0),
            limit: self.limit,
            done: self.done.clone(),
        });
        // One pool, two job types: the router dispatches by route.
        let router = Router::new()
            .job::<Greet>(hello.clone())?
            .job::<Add>(hello)?;
        ctx.add_pool(PoolSpec {
            name: "hello".to_owned(),
            queue,
            handler: Arc::new(router),
            concurrency: platform.workers.concurrency,
            task_timeout: platform.workers.task_timeout,
        });
        Ok(())
    }
}
