//! The peer in the Redis queue benchmark: apalis 1.0 with apalis-redis 1.0 on the workload
//! of `redis.rs` (100,000 tasks queued first in chunks of 1,000, then 1 or 16 workers drain
//! them with a no-op handler). Two configurations: apalis defaults, and tuned for speed (no
//! task locks, no result persistence, no pub/sub events, fetch batches of 100). Each drain is
//! capped at 60 s because the default configuration slows as the backlog grows; a capped run
//! reports how many tasks completed and the rate over the cap. Prints tables, asserts nothing.
//!
//! apalis-redis 1.0 stores every pushed task in its scheduled set (`run_at` defaults to now),
//! and the first fetch promotes all due tasks with one Lua `unpack`, which fails outright with
//! "too many results to unpack" once about 8,000 wait. So the main rows promote each pushed
//! chunk of 1,000 into the active list right after the push (`promote`, the same three commands
//! apalis's `fetch_next.lua` runs, in slices of 1,000) — the state apalis reaches when a worker
//! runs during publishing. One row runs apalis untouched to show the failure.
//!
//! Read the tuned rows with care: in apalis-core 1.0 `persist_results(false)` also turns off
//! the completion event (`persistence/service.rs`: `should_ack = persist_results`), so tuned
//! apalis never acks — handled tasks stay in the worker's inflight set and data hash.
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
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use runtime_bench::print_table;

const TASKS: usize = 100_000;
const CHUNK: usize = 1_000;
const CAP: Duration = Duration::from_secs(60);

/// What apalis's `fetch_next.lua` does to due scheduled tasks, a slice at a time.
const PROMOTE: &str = r"
local ids = redis.call('zrangebyscore', KEYS[1], '-inf', '+inf', 'LIMIT', 0, 1000)
if #ids > 0 then
    redis.call('rpush', KEYS[2], unpack(ids))
    redis.call('zrem', KEYS[1], unpack(ids))
    redis.call('del', KEYS[3])
    redis.call('lpush', KEYS[3], 1)
end
return #ids
";

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
    format!(
        "bench-apalis-{tag}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    )
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0}", n as f64 / d.as_secs_f64())
}

/// Moves every scheduled task of the queue to its active list, 1,000 per script call.
async fn promote(c: &mut redis::aio::MultiplexedConnection, config: &Config) -> Result<()> {
    let script = redis::Script::new(PROMOTE);
    loop {
        let moved: usize = script
            .key(config.scheduled_jobs_set())
            .key(config.active_jobs_list())
            .key(config.signal_list())
            .invoke_async(c)
            .await?;
        if moved == 0 {
            return Ok(());
        }
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

async fn run(tuning: Tuning, workers: usize, workaround: bool) -> Result<Run> {
    let queue = unique(&format!("w{workers}"));
    let config = tuning.config(&queue);
    let result = run_in(&queue, config, workers, workaround).await;
    // Clean up even after a failed run: every key of the run starts with the queue name.
    runtime_bench::delete_redis_keys(&url(), &format!("{queue}*")).await?;
    // apalis also registers every queue in a shared sorted set; take ours out again.
    let mut c = redis::Client::open(url())?
        .get_multiplexed_async_connection()
        .await?;
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg("core:apalis:queues:list")
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await?;
    let ours: Vec<String> = members
        .into_iter()
        .filter(|m| m.starts_with(queue.as_str()))
        .collect();
    if !ours.is_empty() {
        let _: () = redis::cmd("ZREM")
            .arg("core:apalis:queues:list")
            .arg(ours)
            .query_async(&mut c)
            .await?;
    }
    result
}

async fn run_in(queue: &str, config: Config, workers: usize, workaround: bool) -> Result<Run> {
    let mut producer = storage(config.clone()).await?;
    let mut plain = redis::Client::open(url())?
        .get_multiplexed_async_connection()
        .await?;
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
        if workaround {
            promote(&mut plain, &config).await?;
        }
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
    let mut set = tokio::task::JoinSet::new();
    for (w, backend) in backends.into_iter().enumerate() {
        let mut finished = progress.finished.subscribe();
        let worker = WorkerBuilder::new(format!("{queue}-worker-{w}"))
            .backend(backend)
            .data(progress.clone())
            .build(noop);
        set.spawn(worker.run_until(async move {
            // Stop at the last task or at the cap, whichever comes first.
            let _ = tokio::time::timeout_at(deadline, finished.wait_for(|f| *f)).await;
            Ok::<(), WorkerError>(())
        }));
    }
    let mut finished = progress.finished.subscribe();
    // A worker that ends before the signal has failed: stop the others and report it.
    let capped = tokio::select! {
        r = tokio::time::timeout_at(deadline, finished.wait_for(|f| *f)) => r.is_err(),
        Some(r) = set.join_next() => {
            set.abort_all();
            r?.map_err(|e| anyhow!("apalis worker failed: {e}"))?;
            anyhow::bail!("apalis worker stopped before the queue was drained");
        }
    };
    let drain = start.elapsed();
    let completed = progress.done.load(Ordering::Relaxed);
    while let Some(r) = set.join_next().await {
        r?.map_err(|e| anyhow!("apalis worker failed: {e}"))?;
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
    // Untouched apalis: expected to fail on its first fetch (see the crate doc above).
    match run(Tuning::Defaults, 16, false).await {
        Ok(r) => rows.push(r.row(Tuning::Defaults, 16)),
        Err(e) => {
            let msg = e.to_string();
            let msg = msg.split(" script:").next().unwrap_or(&msg).to_owned();
            rows.push(vec![
                format!("{}, no promote workaround", Tuning::Defaults.label()),
                "16".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "0".into(),
                format!("failed: {msg}"),
            ]);
        }
    }
    for tuning in [Tuning::Defaults, Tuning::Fast] {
        for workers in [1, 16] {
            let r = run(tuning, workers, true).await?;
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
