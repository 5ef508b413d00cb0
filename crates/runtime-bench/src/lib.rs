//! # runtime-bench
//!
//! Benchmark programs (`src/bin/*.rs`), run in release mode by `cargo xtask bench`. Each
//! prints a table; none asserts a timing. Shared helpers live here: table printing and
//! peak-memory readings.

pub mod mailbox;

/// Deletes every Redis key matching `pattern` (SCAN + UNLINK), for bench clean-up.
pub async fn delete_redis_keys(url: &str, pattern: &str) -> anyhow::Result<()> {
    use deadpool_redis::redis::{self, AsyncCommands};
    // No response timeout: unlinking a million-field hash takes a while.
    let mut c = redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(None),
        )
        .await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await?;
        if !keys.is_empty() {
            let _: () = c.unlink(keys).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Peak resident memory of this process so far, in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Current resident memory of this process, in bytes (Linux `VmRSS`), if known.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Prints a Markdown table: a header row and data rows, columns padded.
pub fn print_table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.len());
            }
        }
    }
    println!("\n### {title}\n");
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.iter().map(|h| h.to_string()).collect());
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in rows {
        line(row.clone());
    }
}

/// The runtime pipeline used by several benches: a source publishing `n` tasks one by
/// one -> memory queue -> a pool of `workers` -> a no-op handler.
pub mod pipeline {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result};
    use async_trait::async_trait;
    use runtime_contracts::{
        ApplicationModule, ConfigError, ConfigLayer, ConfigOrigin, ConfigProvider, ModuleContext,
        ModuleError, PoolSpec, SourceError, SourceStatus, StopSignal, Task, TaskContext, TaskError,
        TaskHandler, TaskSink, TaskSource, TraceFactory,
    };
    use runtime_core::{ConfigurationManager, RuntimeManager};
    use tokio::sync::Notify;

    /// Bound of the memory queue.
    pub const CAPACITY: usize = 10_000;

    struct Counter {
        done: AtomicU64,
        target: u64,
        finished: Notify,
    }

    #[async_trait]
    impl TaskHandler for Counter {
        async fn handle(&self, _task: &Task, _ctx: &TaskContext<'_>) -> Result<(), TaskError> {
            if self.done.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
                self.finished.notify_one();
            }
            Ok(())
        }
    }

    struct CountSource {
        n: u64,
        /// Tag task `i` with header `k` = `i % keys` (for per-key limits).
        keys: Option<u64>,
    }

    #[async_trait]
    impl TaskSource for CountSource {
        fn name(&self) -> &str {
            "bench"
        }
        fn kind(&self) -> &str {
            "bench"
        }
        async fn run(
            &self,
            sink: Arc<dyn TaskSink>,
            stop: Arc<dyn StopSignal>,
        ) -> Result<(), SourceError> {
            for i in 0..self.n {
                let mut task = Task::new("bench", i.to_le_bytes().to_vec());
                if let Some(keys) = self.keys {
                    task = task.with_header("k", (i % keys).to_string());
                }
                sink.publish(task).await?;
            }
            stop.stopped().await;
            Ok(())
        }
        fn status(&self) -> SourceStatus {
            SourceStatus::new("bench", "bench")
        }
    }

    struct BenchModule {
        n: u64,
        workers: usize,
        keys: Option<u64>,
        queue: String,
        handler: Arc<Counter>,
    }

    #[async_trait]
    impl ApplicationModule for BenchModule {
        fn name(&self) -> &str {
            "bench"
        }
        async fn register(&self, ctx: &mut ModuleContext) -> Result<(), ModuleError> {
            let source = CountSource {
                n: self.n,
                keys: self.keys,
            };
            ctx.add_source(Arc::new(source), self.queue.clone());
            ctx.add_pool(PoolSpec {
                name: "bench".into(),
                queue: self.queue.clone(),
                handler: self.handler.clone(),
                concurrency: self.workers,
                task_timeout: Duration::from_secs(30),
            });
            Ok(())
        }
    }

    /// What a pipeline run is built on: `[queue]` and `[workers]` as JSON, and how many
    /// distinct values of the `k` header the tasks carry.
    #[derive(Clone, Debug)]
    pub struct Setup {
        /// The `[queue]` section (default: the memory queue `bench`).
        pub queue: serde_json::Value,
        /// The `[workers]` section (default: none).
        pub workers: serde_json::Value,
        /// Tasks carry `k` = `i % keys`.
        pub keys: Option<u64>,
    }

    impl Default for Setup {
        fn default() -> Self {
            Setup {
                queue: serde_json::json!({
                    "backend": "memory",
                    "name": "bench",
                    "capacity": CAPACITY,
                    "max_attempts": 5,
                    "visibility_timeout": "60s",
                }),
                workers: serde_json::json!({}),
                keys: None,
            }
        }
    }

    impl Setup {
        /// Per-key concurrency on: `per_key` = 1 over `keys` keys of header `k`.
        pub fn per_key(mut self, keys: u64) -> Self {
            self.workers = serde_json::json!({"concurrency_key": "k", "per_key": 1});
            self.keys = Some(keys);
            self
        }
    }

    struct Defaults(Setup);

    #[async_trait]
    impl ConfigProvider for Defaults {
        fn describe(&self) -> String {
            "bench defaults".into()
        }
        async fn load(&self) -> Result<ConfigLayer, ConfigError> {
            Ok(ConfigLayer::from_tree(
                "bench",
                &serde_json::json!({
                    "tracing": {"level": "warn"},
                    // Built by runtime-compose, as the apps build theirs.
                    "queue": self.0.queue,
                    "workers": self.0.workers,
                }),
                &ConfigOrigin::Default,
            ))
        }
    }

    /// Tasks per second through the runtime, with `tracer` (ids only when `None`).
    pub async fn runtime_pipeline(
        n: u64,
        workers: usize,
        tracer: Option<Arc<dyn TraceFactory>>,
    ) -> Result<f64> {
        runtime_pipeline_on(n, workers, tracer, Setup::default()).await
    }

    /// Tasks per second through the runtime built on `setup` (queue backend, limits).
    pub async fn runtime_pipeline_on(
        n: u64,
        workers: usize,
        tracer: Option<Arc<dyn TraceFactory>>,
        setup: Setup,
    ) -> Result<f64> {
        let keys = setup.keys;
        let config = Arc::new(
            ConfigurationManager::load(vec![Box::new(Defaults(setup))], Vec::new())
                .await
                .context("bench config")?,
        );
        let plan = runtime_compose::plan(&config.current(), "runtime-bench")?;
        let queue = plan.build_queue()?;
        let queue_name = queue.name().to_owned();
        let handler = Arc::new(Counter {
            done: AtomicU64::new(0),
            target: n,
            finished: Notify::new(),
        });
        let mut builder = RuntimeManager::builder(config);
        if let Some(tracer) = tracer {
            builder = builder.tracer(tracer);
        }
        let rt = builder
            .queue(queue)
            .limiter(plan.build_limiter()?)
            .module(Arc::new(BenchModule {
                n,
                workers,
                keys,
                queue: queue_name,
                handler: handler.clone(),
            }))
            .handle_signals(false)
            .build();
        let finished = handler.finished.notified();
        let started = Instant::now();
        rt.start().await.context("start")?;
        finished.await;
        let elapsed = started.elapsed();
        rt.stop().await;
        Ok(n as f64 / elapsed.as_secs_f64())
    }
}
