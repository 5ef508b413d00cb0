//! Redis queue benchmark: end-to-end throughput (publish -> consume -> no-op -> ack) of
//! `RedisQueue` beside a raw deadpool-redis stream loop of the same shape (the ceiling);
//! the cost per task as the backlog grows; and publish-to-handler latency at low load.
//! Prints tables, asserts nothing. (apalis-redis 1.0 as a peer is still to be added.)
//!
//! `cargo run --release -p runtime-bench --bin redis` (Redis from `PLBA_BENCH_REDIS_URL`,
//! default `redis://127.0.0.1:6379`; keys are deleted afterwards).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use deadpool_redis::redis::{self, AsyncCommands, Value};
use deadpool_redis::{Manager, Pool};

use runtime_adapters_redis::{RedisQueue, RedisQueueConfig};
use runtime_bench::pipeline::{Setup, runtime_pipeline_on};
use runtime_bench::print_table;
use runtime_contracts::{Task, TaskQueue};

const TASKS: usize = 100_000;
const PAYLOAD: &str = r#"{"order":12345,"customer":"c-778","lines":3}"#;

fn url() -> String {
    std::env::var("PLBA_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(tag: &str) -> String {
    format!("bench-{tag}-{}-{}", std::process::id(), fastrand::u32(..))
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0}", n as f64 / d.as_secs_f64())
}

async fn queue(name: &str) -> Result<Arc<RedisQueue>> {
    let config = RedisQueueConfig::new(url(), name);
    Ok(Arc::new(RedisQueue::connect(config).await.with_context(
        || "redis not reachable: start redis-server or set PLBA_BENCH_REDIS_URL",
    )?))
}

fn tasks(n: usize) -> Vec<Task> {
    (0..n).map(|_| Task::new("bench", PAYLOAD)).collect()
}

async fn publish_all(q: &RedisQueue, n: usize) -> Result<Duration> {
    let all = tasks(n);
    let start = Instant::now();
    for chunk in all.chunks(1000) {
        q.publish_batch(chunk.to_vec()).await?;
    }
    Ok(start.elapsed())
}

/// `workers` loops of consume(batch) -> no-op -> ack_batch until `n` tasks are acked.
async fn drain(q: &Arc<RedisQueue>, n: usize, workers: usize, batch: usize) -> Result<Duration> {
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (q, done) = (q.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < n {
                let got = q.consume(batch, Duration::from_millis(50)).await?;
                if got.is_empty() {
                    continue;
                }
                q.ack_batch(&got).await?;
                done.fetch_add(got.len(), Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(start.elapsed())
}

struct Run {
    publish: Duration,
    drain: Duration,
}

impl Run {
    fn row(&self, what: &str, workers: usize, n: usize) -> Vec<String> {
        vec![
            what.to_owned(),
            workers.to_string(),
            rate(n, self.publish),
            rate(n, self.drain),
            rate(n, self.publish + self.drain),
        ]
    }
}

async fn ours(workers: usize, batch: usize) -> Result<Run> {
    let name = unique("plba");
    let q = queue(&name).await?;
    let publish = publish_all(&q, TASKS).await?;
    let drain = drain(&q, TASKS, workers, batch).await?;
    q.close().await;
    runtime_bench::delete_redis_keys(&url(), &format!("plba:{{{name}}}*")).await?;
    Ok(Run { publish, drain })
}

fn wait_pool() -> Result<Pool> {
    let manager = Manager::new_with_config(
        url(),
        redis::AsyncConnectionConfig::new().set_response_timeout(None),
    )?;
    Ok(Pool::builder(manager).max_size(64).build()?)
}

/// The ceiling: a stream with a consumer group, XADD in pipelines of 1,000, workers on
/// their own connections doing XREADGROUP COUNT batch, decode, then XACK + XDEL in one
/// pipeline. No leases, attempts, dedupe, delays or stats.
async fn raw_stream(workers: usize, batch: usize) -> Result<Run> {
    let key = format!("bench:{{{}}}:stream", unique("raw"));
    let pool = wait_pool()?;
    let mut c = pool.get().await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await?;
    let all = tasks(TASKS);
    let start = Instant::now();
    for chunk in all.chunks(1000) {
        let mut p = redis::pipe();
        for t in chunk {
            p.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("t")
                .arg(serde_json::to_vec(t)?)
                .ignore();
        }
        let _: () = p.query_async(&mut c).await?;
    }
    let publish = start.elapsed();
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let (pool, done, key) = (pool.clone(), done.clone(), key.clone());
        handles.push(tokio::spawn(async move {
            let mut c = pool.get().await?;
            let consumer = format!("c{w}");
            while done.load(Ordering::Relaxed) < TASKS {
                let reply: Value = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg(&consumer)
                    .arg("COUNT")
                    .arg(batch)
                    .arg("BLOCK")
                    .arg(50)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(">")
                    .query_async(&mut c)
                    .await?;
                let entries = stream_entries(reply);
                if entries.is_empty() {
                    continue;
                }
                let mut ids = Vec::with_capacity(entries.len());
                for (id, json) in entries {
                    let _task: Task = serde_json::from_slice(&json)?;
                    ids.push(id);
                }
                let mut p = redis::pipe();
                p.cmd("XACK").arg(&key).arg("g").arg(&ids).ignore();
                p.cmd("XDEL").arg(&key).arg(&ids).ignore();
                let _: () = p.query_async(&mut c).await?;
                done.fetch_add(ids.len(), Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let drain = start.elapsed();
    let _: () = c.del(&key).await?;
    Ok(Run { publish, drain })
}

/// (id, first field value) of every entry in an XREADGROUP reply.
fn stream_entries(reply: Value) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let streams = match reply {
        Value::Array(s) => s,
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return out,
    };
    for s in streams {
        let Value::Array(mut kv) = s else { continue };
        let Some(Value::Array(entries)) = kv.pop() else {
            continue;
        };
        for e in entries {
            let Value::Array(mut e) = e else { continue };
            let fields = e.pop();
            let id = e.pop();
            if let (Some(Value::BulkString(id)), Some(Value::Array(mut f))) = (id, fields)
                && let Some(Value::BulkString(v)) = f.pop()
            {
                out.push((String::from_utf8_lossy(&id).into_owned(), v));
            }
        }
    }
    out
}

/// Cost per task as the backlog grows: queue `backlog` tasks, then time 16 workers
/// draining the first 20,000.
async fn backlog_row(backlog: usize) -> Result<Vec<String>> {
    let name = unique("backlog");
    let q = queue(&name).await?;
    let publish = publish_all(&q, backlog).await?;
    let sample = backlog.min(20_000);
    let d = drain(&q, sample, 16, 10).await?;
    q.close().await;
    runtime_bench::delete_redis_keys(&url(), &format!("plba:{{{name}}}*")).await?;
    Ok(vec![
        backlog.to_string(),
        rate(backlog, publish),
        rate(sample, d),
        format!("{:.2}", d.as_secs_f64() * 1e6 / sample as f64),
    ])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn latency_row(what: &str, workers: usize, mut lat: Vec<Duration>) -> Vec<String> {
    lat.sort();
    let ms = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1e3);
    vec![
        what.to_owned(),
        workers.to_string(),
        lat.len().to_string(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
    ]
}

const LAT_TASKS: usize = 1000;
const LAT_EVERY: Duration = Duration::from_millis(10);

/// 1,000 tasks at 100/s to idle workers; latency = publish call start -> handler start.
async fn latency_ours(workers: usize) -> Result<Vec<Duration>> {
    let name = unique("lat");
    let q = queue(&name).await?;
    let publisher = queue(&name).await?;
    let origin = Instant::now();
    let seen = Arc::new(std::sync::Mutex::new(Vec::with_capacity(LAT_TASKS)));
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (q, seen) = (q.clone(), seen.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let got = q.consume(10, Duration::from_millis(500)).await?;
                let now = origin.elapsed();
                for d in &got {
                    let sent: u64 = std::str::from_utf8(&d.task.payload)?.parse()?;
                    let mut s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    s.push(now.saturating_sub(Duration::from_nanos(sent)));
                }
                q.ack_batch(&got).await?;
                if seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len() >= LAT_TASKS {
                    return anyhow::Ok(());
                }
            }
        }));
    }
    // Let every worker block first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tick = tokio::time::interval(LAT_EVERY);
    for _ in 0..LAT_TASKS {
        tick.tick().await;
        let sent = origin.elapsed().as_nanos() as u64;
        publisher
            .publish(Task::new("lat", sent.to_string()))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.len() < LAT_TASKS
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for h in handles {
        h.abort();
    }
    q.close().await;
    runtime_bench::delete_redis_keys(&url(), &format!("plba:{{{name}}}*")).await?;
    let out = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok(out)
}

/// The raw floor: LPUSH / BRPOP on a plain list, one idle worker.
async fn latency_raw() -> Result<Vec<Duration>> {
    let key = format!("bench:{{{}}}:list", unique("lat-raw"));
    let pool = wait_pool()?;
    let origin = Instant::now();
    let worker = {
        let (pool, key) = (pool.clone(), key.clone());
        tokio::spawn(async move {
            let mut c = pool.get().await?;
            let mut out = Vec::with_capacity(LAT_TASKS);
            while out.len() < LAT_TASKS {
                let got: Option<(String, String)> = c.brpop(&key, 1.0).await?;
                let now = origin.elapsed();
                if let Some((_, sent)) = got {
                    let sent: u64 = sent.parse()?;
                    out.push(now.saturating_sub(Duration::from_nanos(sent)));
                }
            }
            anyhow::Ok(out)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = pool.get().await?;
    let mut tick = tokio::time::interval(LAT_EVERY);
    for _ in 0..LAT_TASKS {
        tick.tick().await;
        let sent = origin.elapsed().as_nanos() as u64;
        let _: () = c.lpush(&key, sent.to_string()).await?;
    }
    let out = worker.await??;
    let _: () = c.del(&key).await?;
    Ok(out)
}

/// The runtime pipeline (source -> Redis queue -> 16 workers) plain and with per-key
/// limits (1,000 keys, per_key = 1) on the same Redis.
async fn limits_rows() -> Result<()> {
    const N: u64 = 20_000;
    let mut rows = Vec::new();
    for round in 0..2 {
        let setup = |name: &str| Setup {
            queue: serde_json::json!({"backend": "redis", "name": name, "redis_url": url()}),
            ..Setup::default()
        };
        let (a, b) = (unique("plain"), unique("limits"));
        let plain = runtime_pipeline_on(N, 16, None, setup(&a)).await?;
        let limited = runtime_pipeline_on(N, 16, None, setup(&b).per_key(1000)).await?;
        for name in [a, b] {
            runtime_bench::delete_redis_keys(&url(), &format!("plba:{{{name}}}*")).await?;
        }
        rows.push(vec![
            (round + 1).to_string(),
            format!("{plain:.0}"),
            format!("{limited:.0}"),
            format!("{:.1} %", (1.0 - limited / plain) * 100.0),
        ]);
    }
    print_table(
        &format!(
            "runtime pipeline on Redis with per-key limits, {N} tasks, 16 workers, 1,000 keys, per_key = 1 (tasks/s)"
        ),
        &["round", "plain", "per-key limits", "overhead"],
        &rows,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::var_os("BENCH_LIMITS_ONLY").is_some() {
        return limits_rows().await;
    }
    println!("# Redis queue benchmark ({TASKS} tasks queued first, no-op handler)");

    let mut rows = Vec::new();
    for (workers, batch) in [(1, 10), (16, 10), (16, 100)] {
        let label = format!("plba RedisQueue, batch {batch}");
        rows.push(ours(workers, batch).await?.row(&label, workers, TASKS));
        let label = format!("raw stream XREADGROUP, batch {batch}");
        rows.push(
            raw_stream(workers, batch)
                .await?
                .row(&label, workers, TASKS),
        );
    }
    print_table(
        "throughput, tasks/s (publish all, then drain)",
        &[
            "queue",
            "workers",
            "publish/s",
            "consume+ack/s",
            "end-to-end/s",
        ],
        &rows,
    );

    let mut rows = Vec::new();
    for backlog in [1_000, 100_000, 1_000_000] {
        rows.push(backlog_row(backlog).await?);
    }
    print_table(
        "cost per task vs backlog (16 workers, batch 10, first 20,000 drained)",
        &["backlog", "publish/s", "consume+ack/s", "us per task"],
        &rows,
    );

    let mut rows = Vec::new();
    for workers in [1, 16] {
        rows.push(latency_row(
            "plba RedisQueue",
            workers,
            latency_ours(workers).await?,
        ));
    }
    rows.push(latency_row("raw LPUSH/BRPOP", 1, latency_raw().await?));
    print_table(
        "latency at low load: 1,000 tasks at 100/s, publish -> handler start (ms)",
        &["queue", "idle workers", "tasks", "p50", "p99", "max"],
        &rows,
    );
    limits_rows().await
}
