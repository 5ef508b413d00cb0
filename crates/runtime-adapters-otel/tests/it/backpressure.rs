//! A dead, slow or failing collector never blocks span creation; losses are counted.

use std::time::Duration;

use runtime_adapters_otel::{OtelConfig, OtelTraceFactory};
use runtime_contracts::{SpanKind, SpanSpec, TraceFactory};
use runtime_testkit::otlp_receiver::OtlpReceiver;

use crate::{WAIT, quick};

const SPANS: u64 = 10_000;

fn bounded(endpoint: &str) -> OtelConfig {
    OtelConfig {
        max_queue_size: 1000,
        max_export_batch_size: 200,
        export_timeout: Duration::from_millis(200),
        ..quick(endpoint)
    }
}

/// 10,000 spans in the shape of a task (parent, attributes, link), ended at once.
fn flood(tracer: &OtelTraceFactory) {
    let root = tracer.start_span(SpanSpec::new("root"));
    let root_ctx = root.context();
    let links = [root_ctx.clone()];
    for i in 1..SPANS {
        let span = tracer.start_span(
            SpanSpec::new("process q")
                .kind(SpanKind::Consumer)
                .parent(Some(&root_ctx))
                .links(&links)
                .attr("messaging.destination.name", "q")
                .attr("messaging.message.delivery_attempt", i as i64),
        );
        span.end();
    }
    root.end();
}

/// Everything queued is gone after a flush, and every span is either exported or counted.
async fn assert_accounted(tracer: &OtelTraceFactory) {
    // The flush may report a timeout while the collector misbehaves; the accounting is
    // what must hold once the queue is empty.
    let _ = tracer.flush_async(Duration::from_secs(5)).await;
    let stats = tracer.stats();
    assert_eq!(stats.queued, 0, "{stats:?}");
    assert_eq!(stats.exported + stats.dropped, SPANS, "{stats:?}");
    assert_eq!(tracer.dropped_spans(), stats.dropped);
}

#[tokio::test]
async fn dead_collector_drops_and_counts() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    receiver.stop().await;
    let tracer = OtelTraceFactory::new(bounded(&receiver.endpoint()))?;
    flood(&tracer);
    // Bounded: the queue plus the one batch the exporter holds.
    let stats = tracer.stats();
    assert!(stats.queued <= 1000 + 200, "{stats:?}");
    assert_accounted(&tracer).await;
    let stats = tracer.stats();
    assert_eq!(stats.exported, 0);
    assert_eq!(stats.dropped, SPANS);

    // The collector comes back: export resumes.
    receiver.restart().await?;
    tracer.start_span(SpanSpec::new("after restart")).end();
    receiver
        .wait_for_spans(|s| s.iter().any(|s| s.name == "after restart"), WAIT)
        .await?;
    Ok(())
}

#[tokio::test]
async fn slow_collector_drops_and_counts() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    // Longer than the export timeout: every export in this phase times out.
    receiver.set_delay(Duration::from_secs(2));
    let tracer = OtelTraceFactory::new(bounded(&receiver.endpoint()))?;
    flood(&tracer);
    receiver.set_delay(Duration::ZERO);
    assert_accounted(&tracer).await;
    let stats = tracer.stats();
    assert!(stats.dropped > 0, "{stats:?}");
    // Whatever counted as exported did arrive.
    receiver
        .wait_for_spans(|s| s.len() as u64 >= stats.exported, WAIT)
        .await?;
    Ok(())
}

#[tokio::test]
async fn collector_answering_503_drops_and_counts() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    receiver.set_status(503);
    let tracer = OtelTraceFactory::new(bounded(&receiver.endpoint()))?;
    flood(&tracer);
    assert_accounted(&tracer).await;
    let stats = tracer.stats();
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert!(stats.failed_exports > 0, "{stats:?}");
    assert!(receiver.requests() > 0);
    assert!(receiver.spans().is_empty());
    Ok(())
}

#[tokio::test]
async fn healthy_collector_with_room_receives_everything() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let tracer = OtelTraceFactory::new(OtelConfig {
        max_queue_size: SPANS as usize,
        max_export_batch_size: 1000,
        ..quick(&receiver.endpoint())
    })?;
    flood(&tracer);
    assert_accounted(&tracer).await;
    assert_eq!(tracer.stats().exported, SPANS);
    let spans = receiver
        .wait_for_spans(|s| s.len() as u64 >= SPANS, WAIT)
        .await?;
    assert_eq!(spans.len() as u64, SPANS);
    Ok(())
}
