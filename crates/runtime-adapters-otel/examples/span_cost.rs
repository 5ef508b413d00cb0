//! Cost of one task's spans on the calling thread, by collector state.
//!
//! `cargo run --release -p runtime-adapters-otel --example span_cost`
//!
//! Each iteration makes what the core makes per task: a consumer span with messaging
//! attributes and a link, and a handler child span. The table shows that a dead or slow
//! collector does not make span creation slower (spans are dropped, not waited for).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use runtime_adapters_otel::{OtelConfig, OtelTraceFactory};
use runtime_contracts::{AttributeValue, SpanKind, SpanSpec, TraceContext, TraceFactory};
use runtime_testkit::otlp_receiver::OtlpReceiver;

const TASKS: u32 = 200_000;

fn run(tracer: &dyn TraceFactory) -> Duration {
    let parent =
        TraceContext::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
    let links = [parent.clone()];
    let start = Instant::now();
    for i in 0..TASKS {
        let process = tracer.start_span(
            SpanSpec::new("process orders")
                .kind(SpanKind::Consumer)
                .parent(Some(&parent))
                .links(&links)
                .attr("messaging.system", "redis")
                .attr("messaging.destination.name", "orders")
                .attr("messaging.operation.type", "process")
                .attr(
                    "messaging.message.id",
                    "0198c0de-0000-7000-8000-000000000000",
                )
                .attr("messaging.message.delivery_attempt", AttributeValue::Int(2)),
        );
        let ctx = process.context();
        let child = tracer.start_span(SpanSpec::new("handler").parent(Some(&ctx)));
        child.set_attribute("i", AttributeValue::Int(i as i64));
        child.end();
        process.end();
    }
    start.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let cfg = |endpoint: &str| OtelConfig {
        service_name: "span-cost".into(),
        export_timeout: Duration::from_millis(500),
        ..OtelConfig::otlp(endpoint)
    };
    println!("| collector | tasks | ns per task (2 spans) | exported | dropped |");
    println!("|---|---:|---:|---:|---:|");
    for state in ["healthy", "slow (2 s per request)", "503", "dead"] {
        match state {
            "slow (2 s per request)" => receiver.set_delay(Duration::from_secs(2)),
            "503" => {
                receiver.set_delay(Duration::ZERO);
                receiver.set_status(503);
            }
            "dead" => receiver.stop().await,
            _ => {}
        }
        let tracer = OtelTraceFactory::new(cfg(&receiver.endpoint()))?;
        let took = tokio::task::block_in_place(|| run(&tracer));
        let _ = tracer.flush_async(Duration::from_secs(3)).await;
        let stats = tracer.stats();
        println!(
            "| {state} | {TASKS} | {:.0} | {} | {} |",
            took.as_nanos() as f64 / f64::from(TASKS),
            stats.exported,
            stats.dropped
        );
    }
    Ok(())
}
