//! What tracing costs the task pipeline: ids only, OTLP to a healthy collector, to a
//! dead one and to a slow one, measured in one run. A collector in trouble must not slow
//! tasks down (the exporter drops and counts instead).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use runtime_adapters_otel::{OtelConfig, OtelTraceFactory};
use runtime_bench::pipeline::runtime_pipeline;
use runtime_bench::print_table;
use runtime_contracts::TraceFactory;
use runtime_testkit::otlp_receiver::OtlpReceiver;

fn main() -> Result<()> {
    let n: u64 = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let workers = 8;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let healthy = OtlpReceiver::start().await?;
        let slow = OtlpReceiver::start().await?;
        slow.set_delay(Duration::from_secs(2));
        let dead = OtlpReceiver::start().await?;
        let dead_url = dead.endpoint();
        dead.stop().await;

        let mut rows = Vec::new();
        let mut base = 0.0;
        for (label, endpoint) in [
            ("ids only (no exporter)", None),
            ("OTLP, healthy collector", Some(healthy.endpoint())),
            ("OTLP, collector down", Some(dead_url.clone())),
            (
                "OTLP, collector slow (2 s per request)",
                Some(slow.endpoint()),
            ),
        ] {
            let factory = match &endpoint {
                Some(url) => Some(Arc::new(
                    OtelTraceFactory::new(OtelConfig::otlp(url.clone())).context("otel")?,
                )),
                None => None,
            };
            let tracer = factory.clone().map(|f| f as Arc<dyn TraceFactory>);
            let rate = runtime_pipeline(n, workers, tracer).await?;
            let dropped = factory.as_ref().map_or(0, |f| f.dropped_spans());
            if endpoint.as_deref() == Some(healthy.endpoint().as_str()) {
                base = rate;
            }
            rows.push((label, rate, dropped));
        }
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(label, rate, dropped)| {
                vec![
                    label.to_string(),
                    format!("{rate:.0}"),
                    if base > 0.0 {
                        format!("{:.2}", rate / base)
                    } else {
                        "-".into()
                    },
                    dropped.to_string(),
                ]
            })
            .collect();
        print_table(
            &format!("tracing cost, {n} tasks, {workers} workers (tasks/s)"),
            &["exporter", "tasks/s", "vs healthy OTLP", "spans dropped"],
            &table,
        );
        Ok(())
    })
}
