//! The peer in the Redis queue benchmark: apalis 1.0 with apalis-redis 1.0 on the workload
//! of `redis.rs` (100,000 tasks queued first in chunks of 1,000, then 1 or 16 workers drain
//! them with a no-op handler). Two configurations: apalis defaults, and tuned for speed (no
//! task locks, no result persistence, no pub/sub events, fetch batches of 100). Each drain is
//! capped at 60 s because the default configuration slows as the backlog grows; a capped run
//! reports how many tasks completed and the rate over the cap. Prints tables, asserts nothing.
//!
//! "Completed" counts handler runs: apalis acknowledges in the background after the handler
//! returns, so the clock stops when the last handler has run, not when Redis holds the last ack.
//!
//! `cargo run --release -p runtime-bench --bin redis_apalis` (Redis from `PLBA_BENCH_REDIS_URL`,
//! default `redis://127.0.0.1:6379`; every key of a run shares the run's queue-name prefix and
//! is deleted afterwards).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use apalis::prelude::{BoxDynError, Data, TaskSink, WorkerBuilder, WorkerError};
use apalis_redis::{Config, RedisStorage};
use deadpool_redis::redis::{self, AsyncCommands};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use runtime_bench::print_table;

const TASKS: usize = 100_000;
const CHUNK: usize = 1_000;
const CAP: Duration = Duration::from_secs(60);

/// The same shape as the payload of `redis.rs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    order: u64,
    customer: String,
    lines: u32,
}

fn url() -> String {
    std::env::var("PLBA_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(tag: &str) -> String {
    format!("bench-apalis-{tag}-{}-{}", std::process::id(), fastrand::u32(..))
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0}", n as f64 / d.as_secs_f64())
}

async fn delete_pattern(pattern: &str) -> Result<()> {
    // No response timeout: unlinking 100,000 keys takes a while.
    let mut c = redis::Client::open(url())?
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

#[derive(Clone, Copy)]
enum Tuning {
    Defaults,
    Fast,
}

impl Tuning {
    fn label(self) -> &'static str {
        match self {
            Tuning::Defaults => "apalis-redis defaults (batch 10)",
            Tuning::Fast => "apalis-redis tuned (no lock/persist/events, batch 100)",
        }
    }

    fn config(self, queue: &str) -> Config {
        let base = Config::default().queue(queue);
        match self {
            Tuning::Defaults => base,
            Tuning::Fast => base
                .batch_size(100)
                .lock_tasks(false)
                .persist_results(false)
                .emit_events(false),
        }
    }
}

/// Shared by every worker of one run: how many handlers ran, and a signal at `target`.
struct Progress {
    done: AtomicUsize,
    target: usize,
    finished: watch::Sender<bool>,
}

async fn noop(_order: Order, progress: Data<Arc<Progress>>) -> Result<(), BoxDynError> {
    if progress.done.fetch_add(1, Ordering::Relaxed) + 1 == progress.target {
        progress.finished.send_replace(true);
    }
    Ok(())
}

async fn storage(config: Config) -> Result<RedisStorage<Order>> {
    let conn = apalis_redis::connect(url())
        .await
        .context("redis not reachable: start redis-server or set PLBA_BENCH_REDIS_URL")?;
    Ok(RedisStorage::new(conn).with_config(config))
}

struct Run {
    publish: Duration,
    drain: Duration,
    completed: usize,
    capped: bool,
}

async fn run(tuning: Tuning, workers: usize) -> Result<Run> {
    let queue = unique(&format!("w{workers}"));
    let config = tuning.config(&queue);
    let result = run_in(&queue, config, workers).await;
    // Clean up even after a failed run: every key of the run starts with the queue name.
    delete_pattern(&format!("{queue}*")).await?;
    result
}

async fn run_in(queue: &str, config: Config, workers: usize) -> Result<Run> {
    let mut producer = storage(config.clone()).await?;
    let orders: Vec<Order> = (0..TASKS as u64)
        .map(|i| Order {
            order: i,
            customer: "c-778".into(),
            lines: 3,
        })
        .collect();
    let start = Instant::now();
    for chunk in orders.chunks(CHUNK) {
        producer
            .push_bulk(chunk.to_vec())
            .await
            .map_err(|e| anyhow!("apalis push_bulk failed: {e}"))?;
    }
    let publish = start.elapsed();

    let (finished, _) = watch::channel(false);
    let progress = Arc::new(Progress {
        done: AtomicUsize::new(0),
        target: TASKS,
        finished,
    });
    // One storage (own Redis connection) per worker, as the raw loop in `redis.rs` has.
    let mut backends = Vec::with_capacity(workers);
    for _ in 0..workers {
        backends.push(storage(config.clone()).await?);
    }
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + CAP;
    let mut handles = Vec::with_capacity(workers);
    for (w, backend) in backends.into_iter().enumerate() {
        let mut finished = progress.finished.subscribe();
        let worker = WorkerBuilder::new(format!("{queue}-worker-{w}"))
            .backend(backend)
            .data(progress.clone())
            .build(noop);
        handles.push(tokio::spawn(worker.run_until(async move {
            // Stop at the last task or at the cap, whichever comes first.
            let _ = tokio::time::timeout_at(deadline, finished.wait_for(|f| *f)).await;
            Ok::<(), WorkerError>(())
        })));
    }
    let mut finished = progress.finished.subscribe();
    let capped = tokio::time::timeout_at(deadline, finished.wait_for(|f| *f))
        .await
        .is_err();
    let drain = start.elapsed();
    let completed = progress.done.load(Ordering::Relaxed);
    for h in handles {
        h.await?.map_err(|e| anyhow!("apalis worker failed: {e}"))?;
    }
    Ok(Run {
        publish,
        drain,
        completed,
        capped,
    })
}

impl Run {
    fn row(&self, tuning: Tuning, workers: usize) -> Vec<String> {
        let end_to_end = if self.capped {
            "-".to_owned()
        } else {
            rate(TASKS, self.publish + self.drain)
        };
        vec![
            tuning.label().to_owned(),
            workers.to_string(),
            rate(TASKS, self.publish),
            rate(self.completed, self.drain),
            end_to_end,
            self.completed.to_string(),
            if self.capped {
                format!("capped at {} s", CAP.as_secs())
            } else {
                format!("{:.1} s", self.drain.as_secs_f64())
            },
        ]
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    println!(
        "# apalis-redis 1.0 as the peer ({TASKS} tasks queued first in chunks of {CHUNK}, \
         no-op handler, drain capped at {} s)",
        CAP.as_secs()
    );
    let mut rows = Vec::new();
    for tuning in [Tuning::Defaults, Tuning::Fast] {
        for workers in [1, 16] {
            let r = run(tuning, workers).await?;
            rows.push(r.row(tuning, workers));
        }
    }
    print_table(
        "throughput, tasks/s (publish all, then drain)",
        &[
            "queue",
            "workers",
            "publish/s",
            "consume+ack/s",
            "end-to-end/s",
            "completed",
            "drain time",
        ],
        &rows,
    );
    Ok(())
}
