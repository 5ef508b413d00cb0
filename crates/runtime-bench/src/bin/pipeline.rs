//! The in-memory pipeline: source -> memory queue -> worker pool -> no-op handler,
//! beside a raw tokio bounded mpsc channel with the same producer/consumer shape, in one
//! run. Also the queue's memory cost per waiting task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use runtime_adapters_memory::{MemoryQueue, MemoryQueueConfig};
use runtime_bench::pipeline::{CAPACITY, Setup, runtime_pipeline, runtime_pipeline_on};
use runtime_bench::{peak_rss_bytes, print_table, rss_bytes};
use runtime_contracts::{Task, TaskQueue};
use tokio::sync::Notify;

fn tasks_from_env() -> u64 {
    std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

async fn raw_channel(n: u64, workers: usize) -> Result<f64> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Task>(CAPACITY);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(Notify::new());
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let rx = rx.clone();
        let done = done.clone();
        let finished = finished.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let task = rx.lock().await.recv().await;
                match task {
                    Some(task) => {
                        std::hint::black_box(&task);
                        if done.fetch_add(1, Ordering::Relaxed) + 1 == n {
                            finished.notify_one();
                        }
                    }
                    None => break,
                }
            }
        }));
    }
    let fin = finished.notified();
    tokio::spawn(async move {
        for i in 0..n {
            if tx
                .send(Task::new("bench", i.to_le_bytes().to_vec()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    fin.await;
    let elapsed = started.elapsed();
    for h in handles {
        h.abort();
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Bytes of memory per waiting task beyond its payload: fill a queue, compare RSS.
async fn queue_bytes_per_task(n: usize) -> Result<(f64, usize)> {
    let queue = MemoryQueue::new(MemoryQueueConfig {
        name: "mem".into(),
        capacity: n + 1,
        max_attempts: 5,
        visibility_timeout: Duration::from_secs(60),
        ..MemoryQueueConfig::default()
    });
    let payload = 64usize;
    let before = rss_bytes().unwrap_or(0);
    for i in 0..n {
        let mut p = vec![0u8; payload];
        p[..8].copy_from_slice(&(i as u64).to_le_bytes());
        queue
            .publish(Task::new("bench", p))
            .await
            .context("publish")?;
    }
    let after = rss_bytes().unwrap_or(0);
    let per_task = after.saturating_sub(before) as f64 / n as f64;
    std::hint::black_box(&queue);
    Ok((per_task - payload as f64, payload))
}

fn main() -> Result<()> {
    let n = tasks_from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        if std::env::var_os("BENCH_RUNTIME_ONLY").is_some() {
            // For profilers: only the runtime pipeline with 8 workers.
            let ours = runtime_pipeline(n, 8, None).await?;
            println!("plba runtime, 8 workers: {ours:.0} tasks/s");
            return Ok(());
        }
        if std::env::var_os("BENCH_LIMITS_ONLY").is_none() {
            plain_rows(n).await?;
        }
        let mut rows = Vec::new();
        for round in 0..2 {
            // Alternate to spread machine noise over both.
            let plain = runtime_pipeline_on(n, 16, None, Setup::default()).await?;
            let limited = runtime_pipeline_on(n, 16, None, Setup::default().per_key(1000)).await?;
            rows.push(vec![
                (round + 1).to_string(),
                format!("{plain:.0}"),
                format!("{limited:.0}"),
                format!("{:.1} %", (1.0 - limited / plain) * 100.0),
            ]);
        }
        print_table(
            &format!("memory pipeline with per-key limits, {n} tasks, 16 workers, 1,000 keys, per_key = 1 (tasks/s)"),
            &["round", "plain", "per-key limits", "overhead"],
            &rows,
        );
        Ok(())
    })
}

async fn plain_rows(n: u64) -> Result<()> {
    {
        let mut rows = Vec::new();
        for workers in [1usize, 8] {
            // Alternate to spread machine noise over both.
            let raw = raw_channel(n, workers).await?;
            let ours = runtime_pipeline(n, workers, None).await?;
            rows.push(vec![
                workers.to_string(),
                format!("{:.0}", raw),
                format!("{:.0}", ours),
                format!("{:.2}", ours / raw),
            ]);
        }
        print_table(
            &format!("in-memory pipeline, {n} tasks (tasks/s)"),
            &["workers", "raw tokio mpsc", "plba runtime", "ratio"],
            &rows,
        );
        let (overhead, payload) = queue_bytes_per_task(1_000_000).await?;
        print_table(
            "memory queue cost per waiting task (1,000,000 tasks)",
            &[
                "payload bytes",
                "bytes per task beyond payload",
                "peak RSS of this run (MiB)",
            ],
            &[vec![
                payload.to_string(),
                format!("{overhead:.0}"),
                format!(
                    "{:.0}",
                    peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
                ),
            ]],
        );
        Ok(())
    }
}
