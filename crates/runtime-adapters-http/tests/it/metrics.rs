//! A real scrape, parsed strictly, checked against the runtime's numbers and the docs.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::http::header;
use runtime_contracts::{Task, TaskError, TaskQueue};
use runtime_testkit::fakes::{FnHandler, VecSource};

use crate::{Opts, eventually_async, prom, start};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_parses_and_matches_the_runtime() {
    let handler = FnHandler::new(Duration::from_millis(5), |t: &Task, _: &_| {
        if t.payload == b"bad" {
            Err(TaskError::Reject {
                reason: "bad".into(),
            })
        } else {
            Ok(())
        }
    });
    let tasks = vec![
        Task::new("t", "1"),
        Task::new("t", "2"),
        Task::new("t", "3"),
        Task::new("t", "bad"),
    ];
    let mut opts = Opts::new(handler);
    opts.sources = vec![VecSource::new("src \"quoted\"", tasks)];
    let h = start(opts).await;
    let q = h.queue.clone();
    assert!(
        eventually_async(Duration::from_secs(5), || async {
            let s = q.stats().await.unwrap();
            s.acked_total == 3 && s.dead == 1
        })
        .await
    );

    let r = h.client.get("/metrics").await;
    assert_eq!(r.status, 200);
    let ct = r.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text();
    let m = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let ql = [("queue", "q"), ("backend", "memory")];
    assert_eq!(m.value("plba_queue_published_total", &ql), 4.0);
    assert_eq!(m.value("plba_queue_acked_total", &ql), 3.0);
    assert_eq!(m.value("plba_queue_dead_lettered_total", &ql), 1.0);
    assert_eq!(m.value("plba_queue_dead", &ql), 1.0);
    assert_eq!(m.value("plba_queue_depth", &ql), 0.0);
    assert_eq!(m.value("plba_queue_in_flight", &ql), 0.0);
    assert_eq!(m.value("plba_queue_capacity", &ql), 1000.0);

    let pl = [("pool", "p"), ("queue", "q")];
    assert_eq!(m.value("plba_pool_processed_total", &pl), 3.0);
    assert_eq!(m.value("plba_pool_concurrency", &pl), 2.0);
    assert_eq!(m.value("plba_pool_busy", &pl), 0.0);
    assert_eq!(m.value("plba_pool_dead_lettered_total", &pl), 1.0);
    let count = m.value("plba_pool_task_duration_seconds_count", &pl);
    assert_eq!(count, 4.0, "every handled task is timed");
    let inf = m.value(
        "plba_pool_task_duration_seconds_bucket",
        &[("pool", "p"), ("le", "+Inf")],
    );
    assert_eq!(inf, count);
    // The handler sleeps 5 ms per task.
    assert!(m.value("plba_pool_task_duration_seconds_sum", &pl) >= 4.0 * 0.005);

    // The label with quotes came through escaped and parsed back intact.
    let sl = [("source", "src \"quoted\""), ("kind", "vec")];
    assert_eq!(m.value("plba_source_produced_total", &sl), 4.0);
    assert_eq!(
        m.value(
            "plba_source_state",
            &[("source", "src \"quoted\""), ("state", "running")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "plba_source_state",
            &[("source", "src \"quoted\""), ("state", "paused")]
        ),
        0.0
    );

    assert_eq!(m.value("plba_runtime_state", &[("state", "running")]), 1.0);
    assert_eq!(m.value("plba_runtime_state", &[("state", "stopping")]), 0.0);
    assert!(m.value("plba_runtime_uptime_seconds", &[]) > 0.0);
    assert_eq!(m.value("plba_config_version", &[]), 1.0);
    assert_eq!(
        m.value("plba_config_reloads_total", &[("result", "accepted")]),
        0.0
    );
    assert_eq!(m.value("plba_trace_spans_dropped_total", &[]), 0.0);
    assert!(m.value("plba_process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(m.value("plba_process_cpu_seconds_total", &[]) >= 0.0);
    assert!(m.value("plba_process_open_fds", &[]) >= 3.0);
    assert!(m.value("plba_process_threads", &[]) >= 2.0);

    // Every family follows the conventions.
    for (name, fam) in &m.families {
        assert!(name.starts_with("plba_"), "{name}");
        assert!(!fam.help.is_empty(), "{name}");
        if fam.kind == "counter" {
            assert!(name.ends_with("_total"), "{name}");
        } else {
            assert!(!name.ends_with("_total"), "{name}");
        }
    }
    h.rt.stop().await;
}

/// Metric names in the tables of docs/metrics.md.
fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(DOC).expect("docs/metrics.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .filter(|n| n.starts_with("plba_"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_documented_and_every_documented_metric_exists() {
    let handler = FnHandler::new(Duration::ZERO, |_: &Task, _: &_| Ok::<(), TaskError>(()));
    let mut opts = Opts::new(handler);
    opts.sources = vec![VecSource::new("src", vec![Task::new("t", "1")])];
    let h = start(opts).await;
    let text = h.client.get("/metrics").await.text();
    let m = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let out: BTreeSet<String> = m.families.keys().cloned().collect();
    let doc = documented();
    let undocumented: Vec<_> = out.difference(&doc).collect();
    assert!(
        undocumented.is_empty(),
        "add these to docs/metrics.md: {undocumented:?}"
    );
    let stale: Vec<_> = doc.difference(&out).collect();
    assert!(
        stale.is_empty(),
        "docs/metrics.md lists metrics the scrape lacks: {stale:?}"
    );
    h.rt.stop().await;
}
