//! Construction errors name the problem and never leak header values.

use runtime_adapters_otel::{ExporterKind, OtelConfig, OtelError, OtelTraceFactory};
use runtime_contracts::{Secret, SpanSpec, TraceFactory};
use runtime_testkit::otlp_receiver::OtlpReceiver;

use crate::{WAIT, quick};

#[test]
fn none_is_refused() {
    let err = OtelTraceFactory::new(OtelConfig::default()).err();
    assert!(matches!(err, Some(OtelError::NoExporter)), "{err:?}");
}

#[test]
fn https_and_bad_values_are_refused() {
    let err = OtelTraceFactory::new(OtelConfig::otlp("https://collector:4318")).err();
    assert!(
        matches!(
            err,
            Some(OtelError::Config {
                field: "otlp_endpoint",
                ..
            })
        ),
        "{err:?}"
    );
    let err = OtelTraceFactory::new(OtelConfig {
        max_queue_size: 0,
        ..OtelConfig::otlp("http://127.0.0.1:4318")
    })
    .err();
    assert!(
        matches!(
            err,
            Some(OtelError::Config {
                field: "max_queue_size",
                ..
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn configured_headers_reach_the_collector_path_and_stdout_builds() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let mut cfg = quick(&receiver.traces_url());
    cfg.headers
        .insert("x-api-key".into(), Secret::new("not-for-logs"));
    assert!(!format!("{cfg:?}").contains("not-for-logs"));
    let tracer = OtelTraceFactory::new(cfg)?;
    tracer.start_span(SpanSpec::new("with headers")).end();
    receiver.wait_for_spans(|s| !s.is_empty(), WAIT).await?;

    let stdout = OtelTraceFactory::new(OtelConfig {
        exporter: ExporterKind::Stdout,
        ..OtelConfig::default()
    })?;
    stdout.start_span(SpanSpec::new("stdout smoke")).end();
    stdout
        .flush_async(std::time::Duration::from_secs(5))
        .await?;
    assert_eq!((stdout.exported_spans(), stdout.dropped_spans()), (1, 0));
    Ok(())
}
