//! Flush at shutdown delivers what is buffered.

use std::time::Duration;

use runtime_adapters_otel::{OtelConfig, OtelTraceFactory};
use runtime_contracts::{SpanSpec, TraceFactory};
use runtime_testkit::otlp_receiver::OtlpReceiver;

use crate::{WAIT, quick};

/// Never sends on its own: only a flush exports.
fn lazy(endpoint: &str) -> OtelConfig {
    OtelConfig {
        scheduled_delay: Duration::from_secs(3600),
        max_export_batch_size: 1000,
        max_queue_size: 2000,
        ..quick(endpoint)
    }
}

#[tokio::test]
async fn flush_delivers_what_is_buffered() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let tracer = OtelTraceFactory::new(lazy(&receiver.endpoint()))?;
    for i in 0..250 {
        tracer
            .start_span(SpanSpec::new("buffered").attr("i", i as i64))
            .end();
    }
    assert_eq!(tracer.stats().queued, 250);
    assert!(
        receiver.spans().is_empty(),
        "nothing is sent before the flush"
    );

    tracer.flush_async(Duration::from_secs(5)).await?;
    let stats = tracer.stats();
    assert_eq!((stats.exported, stats.dropped, stats.queued), (250, 0, 0));
    let spans = receiver.wait_for_spans(|s| s.len() >= 250, WAIT).await?;
    assert_eq!(spans.len(), 250);
    Ok(())
}

// The blocking trait method, called the way the runtime calls it at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trait_flush_blocks_only_until_delivered() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let tracer: Box<dyn TraceFactory> =
        Box::new(OtelTraceFactory::new(lazy(&receiver.endpoint()))?);
    for _ in 0..10 {
        tracer.start_span(SpanSpec::new("at shutdown")).end();
    }
    tokio::task::block_in_place(|| tracer.flush());
    assert_eq!(receiver.spans().len(), 10);
    assert_eq!(tracer.dropped_spans(), 0);
    Ok(())
}

// No Tokio runtime around: the factory brings its own exporter thread.
#[test]
fn works_without_a_runtime() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let receiver = rt.block_on(OtlpReceiver::start())?;
    let tracer = OtelTraceFactory::new(lazy(&receiver.endpoint()))?;
    tracer.start_span(SpanSpec::new("plain thread")).end();
    tracer.flush_within(Duration::from_secs(5))?;
    let spans = rt.block_on(receiver.wait_for_spans(|s| !s.is_empty(), WAIT))?;
    assert_eq!(spans[0].name, "plain thread");
    Ok(())
}

#[tokio::test]
async fn dropping_the_factory_still_exports_the_rest() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let tracer = OtelTraceFactory::new(lazy(&receiver.endpoint()))?;
    let span = tracer.start_span(SpanSpec::new("last words"));
    span.end();
    drop(tracer);
    receiver
        .wait_for_spans(|s| s.iter().any(|s| s.name == "last words"), WAIT)
        .await?;
    Ok(())
}
