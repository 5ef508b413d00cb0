//! `/metrics`: the runtime's status rendered in the Prometheus text format (0.0.4).
//!
//! Everything comes from one [`RuntimeStatus`] snapshot plus `/proc/self`, so a scrape
//! costs one status call and keeps no state here. Every family always has its HELP and
//! TYPE lines (even with no samples), which keeps the documented list checkable.

use std::fmt::Write;

use runtime_contracts::{
    Histogram, PoolStatus, QueueStats, RuntimeState, RuntimeStatus, SourceState, SourceStatus,
};

use crate::process::ProcessStats;

/// The content type of the Prometheus text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Name, help and how to read the value from one item.
type Metric<T> = (&'static str, &'static str, fn(&T) -> Option<f64>);
/// Name, type, help and how to read the value from one item.
type KindedMetric<T> = (
    &'static str,
    &'static str,
    &'static str,
    fn(&T) -> Option<f64>,
);

const RUNTIME_STATES: [(RuntimeState, &str); 4] = [
    (RuntimeState::Starting, "starting"),
    (RuntimeState::Running, "running"),
    (RuntimeState::Stopping, "stopping"),
    (RuntimeState::Stopped, "stopped"),
];

const SOURCE_STATES: [(SourceState, &str); 5] = [
    (SourceState::Starting, "starting"),
    (SourceState::Running, "running"),
    (SourceState::Paused, "paused"),
    (SourceState::Reconnecting, "reconnecting"),
    (SourceState::Stopped, "stopped"),
];

struct Out {
    buf: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.buf, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.buf, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.buf.push_str(name);
        if !labels.is_empty() {
            self.buf.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.buf.push(',');
                }
                let _ = write!(self.buf, "{k}=\"{}\"", escape_label(v));
            }
            self.buf.push('}');
        }
        self.buf.push(' ');
        self.buf.push_str(&fmt_value(value));
        self.buf.push('\n');
    }

    /// A family with one sample per item.
    fn each<T>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        items: &[T],
        labels: impl Fn(&T) -> Vec<(&'static str, String)>,
        value: impl Fn(&T) -> Option<f64>,
    ) {
        self.family(name, kind, help);
        for item in items {
            if let Some(v) = value(item) {
                let owned = labels(item);
                let l: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.sample(name, &l, v);
            }
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0u64;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            let le = fmt_value(*bound);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &l, cumulative as f64);
        }
        cumulative += h.counts.iter().skip(h.bounds.len()).sum::<u64>();
        // +Inf must equal _count; trust the larger if a snapshot was taken mid-update.
        let total = cumulative.max(h.count);
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &l, total as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, total as f64);
    }
}

fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Renders a scrape.
pub(crate) fn render(status: &RuntimeStatus, process: &ProcessStats) -> String {
    let mut o = Out {
        buf: String::with_capacity(8192),
    };

    // Runtime.
    o.family(
        "plba_runtime_uptime_seconds",
        "gauge",
        "Seconds since the runtime started.",
    );
    o.sample("plba_runtime_uptime_seconds", &[], status.uptime_seconds);
    o.family(
        "plba_runtime_state",
        "gauge",
        "1 for the runtime's current life-cycle state, 0 for the others.",
    );
    for (state, label) in RUNTIME_STATES {
        let v = if status.state == state { 1.0 } else { 0.0 };
        o.sample("plba_runtime_state", &[("state", label)], v);
    }
    o.family(
        "plba_config_version",
        "gauge",
        "Version of the configuration in force.",
    );
    o.sample("plba_config_version", &[], status.config_version as f64);
    o.family(
        "plba_config_reloads_total",
        "counter",
        "Configuration reloads by result (accepted or rejected).",
    );
    o.sample(
        "plba_config_reloads_total",
        &[("result", "accepted")],
        status.config_reloads as f64,
    );
    o.sample(
        "plba_config_reloads_total",
        &[("result", "rejected")],
        status.config_reload_failures as f64,
    );
    o.family(
        "plba_trace_spans_dropped_total",
        "counter",
        "Spans the trace exporter dropped.",
    );
    o.sample(
        "plba_trace_spans_dropped_total",
        &[],
        status.dropped_spans as f64,
    );

    // Queues.
    o.family(
        "plba_queue_stats_age_seconds",
        "gauge",
        "Age of the oldest queue statistics in this scrape; they are gathered in the \
         background, so a stalled backend shows its last numbers and a growing age.",
    );
    o.sample(
        "plba_queue_stats_age_seconds",
        &[],
        status.stats_age_ms as f64 / 1000.0,
    );
    let q = &status.queues;
    let ql = |s: &QueueStats| vec![("queue", s.name.clone()), ("backend", s.backend.clone())];
    let gauges: [Metric<QueueStats>; 6] = [
        (
            "plba_queue_depth",
            "Tasks ready to be delivered now (pending).",
            |s| Some(s.pending as f64),
        ),
        (
            "plba_queue_in_flight",
            "Tasks delivered and not yet settled.",
            |s| Some(s.in_flight as f64),
        ),
        (
            "plba_queue_delayed",
            "Tasks waiting for their not-before time.",
            |s| Some(s.delayed as f64),
        ),
        ("plba_queue_dead", "Tasks in the dead-letter set.", |s| {
            Some(s.dead as f64)
        }),
        (
            "plba_queue_capacity",
            "Bound on pending, delayed and in-flight tasks (bounded queues only).",
            |s| s.capacity.map(|c| c as f64),
        ),
        (
            "plba_queue_blocked_publishers",
            "Publishers waiting for room now (backpressure).",
            |s| Some(s.blocked_publishers as f64),
        ),
    ];
    for (name, help, value) in gauges {
        o.each(name, "gauge", help, q, ql, value);
    }
    let counters: [Metric<QueueStats>; 7] = [
        (
            "plba_queue_published_total",
            "Tasks accepted by publish.",
            |s| Some(s.published_total as f64),
        ),
        ("plba_queue_acked_total", "Tasks acknowledged.", |s| {
            Some(s.acked_total as f64)
        }),
        (
            "plba_queue_nacked_total",
            "Failed attempts reported by nack.",
            |s| Some(s.nacked_total as f64),
        ),
        (
            "plba_queue_released_total",
            "Tasks handed back without counting an attempt.",
            |s| Some(s.released_total as f64),
        ),
        (
            "plba_queue_dead_lettered_total",
            "Tasks moved to the dead-letter set.",
            |s| Some(s.dead_lettered_total as f64),
        ),
        (
            "plba_queue_expired_total",
            "Deliveries whose lease ran out and came back.",
            |s| Some(s.expired_total as f64),
        ),
        (
            "plba_queue_cancelled_total",
            "Tasks cancelled by an operator (removed, or signalled while running).",
            |s| Some(s.cancelled_total as f64),
        ),
    ];
    for (name, help, value) in counters {
        o.each(name, "counter", help, q, ql, value);
    }

    // Worker pools.
    let p = &status.pools;
    let pl = |s: &PoolStatus| vec![("pool", s.name.clone()), ("queue", s.queue.clone())];
    let pool: [KindedMetric<PoolStatus>; 11] = [
        (
            "plba_pool_concurrency",
            "gauge",
            "Configured concurrency of the pool.",
            |s| Some(s.concurrency as f64),
        ),
        (
            "plba_pool_busy",
            "gauge",
            "Workers running a task now.",
            |s| Some(s.busy as f64),
        ),
        (
            "plba_pool_processed_total",
            "counter",
            "Tasks finished successfully.",
            |s| Some(s.processed as f64),
        ),
        (
            "plba_pool_failed_total",
            "counter",
            "Failed attempts (errors, panics, timeouts).",
            |s| Some(s.failed as f64),
        ),
        (
            "plba_pool_dead_lettered_total",
            "counter",
            "Tasks dead-lettered by the pool.",
            |s| Some(s.dead_lettered as f64),
        ),
        (
            "plba_pool_restarts_total",
            "counter",
            "Worker restarts after a panic.",
            |s| Some(s.restarts as f64),
        ),
        (
            "plba_pool_timeouts_total",
            "counter",
            "Tasks that hit the per-task timeout.",
            |s| Some(s.timeouts as f64),
        ),
        (
            "plba_pool_key_waits_total",
            "counter",
            "Times a task found every slot of its concurrency key taken and waited (pools with workers.concurrency_key).",
            |s| s.limits.as_ref().map(|l| l.key_waits_total as f64),
        ),
        (
            "plba_pool_rate_waits_total",
            "counter",
            "Times a task found the pool's rate used up and waited (pools with workers.rate).",
            |s| s.limits.as_ref().map(|l| l.rate_waits_total as f64),
        ),
        (
            "plba_pool_limit_waiting",
            "gauge",
            "Tasks of this process waiting for a key slot now.",
            |s| s.limits.as_ref().map(|l| l.waiting as f64),
        ),
        (
            "plba_pool_limit_handed_back_total",
            "counter",
            "Tasks handed back to the queue to wait there for a key or the rate (no attempt counted).",
            |s| s.limits.as_ref().map(|l| l.handed_back_total as f64),
        ),
    ];
    for (name, kind, help, value) in pool {
        o.each(name, kind, help, p, pl, value);
    }
    o.family(
        "plba_pool_task_duration_seconds",
        "histogram",
        "Time handlers took per task, in seconds.",
    );
    for s in p {
        o.histogram(
            "plba_pool_task_duration_seconds",
            &[("pool", &s.name), ("queue", &s.queue)],
            &s.durations,
        );
    }

    // Sources.
    let s = &status.sources;
    o.family(
        "plba_source_state",
        "gauge",
        "1 for the source's current state, 0 for the others.",
    );
    for src in s {
        for (state, label) in SOURCE_STATES {
            let v = if src.state == state { 1.0 } else { 0.0 };
            o.sample(
                "plba_source_state",
                &[("source", &src.name), ("kind", &src.kind), ("state", label)],
                v,
            );
        }
    }
    let sl = |s: &SourceStatus| vec![("source", s.name.clone()), ("kind", s.kind.clone())];
    o.each(
        "plba_source_produced_total",
        "counter",
        "Tasks the source published (duplicates not counted).",
        s,
        sl,
        |s| Some(s.produced as f64),
    );
    o.each(
        "plba_source_errors_total",
        "counter",
        "Errors the source saw (connection losses, failed polls).",
        s,
        sl,
        |s| Some(s.errors as f64),
    );
    o.each(
        "plba_source_last_success_age_seconds",
        "gauge",
        "Seconds since the source last talked to its upstream successfully (when known).",
        s,
        sl,
        |s| s.last_success_age_seconds,
    );
    // A source's own numbers (a Maildir's `failed`, an IMAP acknowledger's `ack_refused`,
    // `idle_wakeups`, ...): the same values /status shows in `details`, one series each.
    o.family(
        "plba_source_detail",
        "gauge",
        "A numeric detail the source reports in /status (`details`), by name.",
    );
    for src in s {
        for (name, value) in &src.details {
            if let Some(v) = value.as_f64() {
                o.sample(
                    "plba_source_detail",
                    &[("source", &src.name), ("kind", &src.kind), ("detail", name)],
                    v,
                );
            }
        }
    }

    // Process.
    let proc_gauges: [(&str, &str, &str, Option<f64>); 4] = [
        (
            "plba_process_resident_memory_bytes",
            "gauge",
            "Resident set size of the process in bytes.",
            process.resident_bytes.map(|v| v as f64),
        ),
        (
            "plba_process_cpu_seconds_total",
            "counter",
            "User and system CPU time the process used, in seconds.",
            process.cpu_seconds,
        ),
        (
            "plba_process_open_fds",
            "gauge",
            "Open file descriptors of the process.",
            process.open_fds.map(|v| v as f64),
        ),
        (
            "plba_process_threads",
            "gauge",
            "Threads of the process.",
            process.threads.map(|v| v as f64),
        ),
    ];
    for (name, kind, help, value) in proc_gauges {
        o.family(name, kind, help);
        if let Some(v) = value {
            o.sample(name, &[], v);
        }
    }
    o.buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> RuntimeStatus {
        let mut src = SourceStatus::new("in\"box\\\n", "imap");
        src.state = SourceState::Paused;
        src.details
            .insert("ack_refused".into(), serde_json::json!(2));
        src.details
            .insert("mailbox".into(), serde_json::json!("INBOX"));
        RuntimeStatus {
            state: RuntimeState::Running,
            uptime_seconds: 1.5,
            config_version: 3,
            config_reloads: 2,
            config_reload_failures: 1,
            modules: vec![],
            sources: vec![src],
            schedules: vec![],
            queues: vec![QueueStats {
                name: "jobs".into(),
                backend: "memory".into(),
                pending: 4,
                capacity: Some(100),
                ..Default::default()
            }],
            pools: vec![PoolStatus {
                name: "p".into(),
                queue: "jobs".into(),
                durations: Histogram {
                    bounds: vec![0.1, 1.0],
                    counts: vec![2, 1, 1],
                    sum: 3.5,
                    count: 4,
                },
                ..Default::default()
            }],
            dropped_spans: 0,
            stats_age_ms: 2500,
        }
    }

    #[test]
    fn renders_and_escapes() {
        let text = render(&status(), &ProcessStats::default());
        assert!(text.contains("plba_queue_depth{queue=\"jobs\",backend=\"memory\"} 4\n"));
        assert!(text.contains("plba_queue_capacity{queue=\"jobs\",backend=\"memory\"} 100\n"));
        assert!(text.contains(
            "plba_source_state{source=\"in\\\"box\\\\\\n\",kind=\"imap\",state=\"paused\"} 1\n"
        ));
        assert!(text.contains("plba_runtime_state{state=\"running\"} 1\n"));
        assert!(text.contains(
            "plba_pool_task_duration_seconds_bucket{pool=\"p\",queue=\"jobs\",le=\"0.1\"} 2\n"
        ));
        assert!(text.contains(
            "plba_pool_task_duration_seconds_bucket{pool=\"p\",queue=\"jobs\",le=\"1\"} 3\n"
        ));
        assert!(text.contains(
            "plba_pool_task_duration_seconds_bucket{pool=\"p\",queue=\"jobs\",le=\"+Inf\"} 4\n"
        ));
        assert!(
            text.contains("plba_pool_task_duration_seconds_count{pool=\"p\",queue=\"jobs\"} 4\n")
        );
        assert!(text.contains("# TYPE plba_process_resident_memory_bytes gauge\n"));
        assert!(!text.contains("\nplba_process_resident_memory_bytes "));
        assert!(text.contains("plba_config_reloads_total{result=\"rejected\"} 1\n"));
        assert!(text.contains("plba_queue_stats_age_seconds 2.5\n"));
        // Numeric source details become series; text ones do not.
        assert!(text.contains(
            "plba_source_detail{source=\"in\\\"box\\\\\\n\",kind=\"imap\",detail=\"ack_refused\"} 2\n"
        ));
        assert!(!text.contains("detail=\"mailbox\""));
    }

    #[test]
    fn values() {
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
        assert_eq!(fmt_value(f64::NAN), "NaN");
        assert_eq!(fmt_value(0.005), "0.005");
        assert_eq!(fmt_value(3.0), "3");
    }
}
