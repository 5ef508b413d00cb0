//! Spans made in the shape the core makes them arrive with one trace id, the right parents,
//! links, kinds, attributes and status.

use runtime_contracts::{AttributeValue, SpanKind, SpanSpec, Task, TraceContext, TraceFactory};
use runtime_testkit::otlp_receiver::{OtlpReceiver, ReceivedSpan, ReceivedStatus};

use crate::{WAIT, factory};

fn find<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
}

#[tokio::test]
async fn source_publish_process_handler_share_one_trace() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let tracer = factory(&receiver.endpoint());

    // Producer side: source span, publish span, context written into the task.
    let mut task = Task::new("t-1", "x");
    let source = tracer.start_span(
        SpanSpec::new("source inbox")
            .attr("plba.source", "inbox")
            .attr("messaging.message.id", "t-1"),
    );
    let source_ctx = source.context();
    let publish = tracer.start_span(
        SpanSpec::new("publish orders")
            .kind(SpanKind::Producer)
            .parent(Some(&source_ctx))
            .attr("messaging.system", "redis")
            .attr("messaging.destination.name", "orders")
            .attr("messaging.operation.type", "send"),
    );
    task.set_trace_context(&publish.context());
    publish.end();
    source.end();

    // Consumer side (could be another process): parent comes only from the task.
    let parent = task.trace_context().expect("trace context in the task");
    let process = tracer.start_span(
        SpanSpec::new("process orders")
            .kind(SpanKind::Consumer)
            .parent(Some(&parent))
            .attr("messaging.operation.type", "process")
            .attr("messaging.message.delivery_attempt", AttributeValue::Int(1)),
    );
    let process_ctx = process.context();
    // What a handler does through TaskContext::child_span.
    let child = tracer.start_span(SpanSpec::new("parse mail").parent(Some(&process_ctx)));
    child.set_attribute("mail.parts", AttributeValue::Int(3));
    child.set_error("no order number");
    drop(child); // ending on drop
    process.end();

    let spans = receiver.wait_for_spans(|s| s.len() >= 4, WAIT).await?;
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let (s, p, c, h) = (
        find(&spans, "source inbox"),
        find(&spans, "publish orders"),
        find(&spans, "process orders"),
        find(&spans, "parse mail"),
    );
    // One trace, the exact ids the contexts (and so the headers) carried.
    for span in [s, p, c, h] {
        assert_eq!(span.trace_id, source_ctx.trace_id, "{}", span.name);
        assert_eq!(span.service_name.as_deref(), Some("otel-it"));
        assert!(span.end_unix_nano >= span.start_unix_nano);
    }
    assert_eq!(s.span_id, source_ctx.span_id);
    assert_eq!(s.parent_span_id, None);
    assert_eq!(p.parent_span_id, Some(s.span_id));
    assert_eq!(p.span_id, parent.span_id);
    assert_eq!(c.parent_span_id, Some(p.span_id));
    assert_eq!(c.span_id, process_ctx.span_id);
    assert_eq!(h.parent_span_id, Some(c.span_id));
    // Kinds, attributes and status pass through untouched.
    assert_eq!(s.kind, SpanKind::Internal);
    assert_eq!(p.kind, SpanKind::Producer);
    assert_eq!(c.kind, SpanKind::Consumer);
    assert_eq!(p.attr_str("messaging.destination.name"), Some("orders"));
    assert_eq!(p.attr_str("messaging.system"), Some("redis"));
    assert_eq!(
        c.attr("messaging.message.delivery_attempt"),
        Some(&AttributeValue::Int(1))
    );
    assert_eq!(h.attr("mail.parts"), Some(&AttributeValue::Int(3)));
    assert_eq!(h.status, ReceivedStatus::Error("no order number".into()));
    assert_eq!(c.status, ReceivedStatus::Unset);
    assert_eq!(tracer.dropped_spans(), 0);
    Ok(())
}

#[tokio::test]
async fn a_retry_links_to_the_first_attempt() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let tracer = factory(&receiver.endpoint());
    let publish = tracer.start_span(SpanSpec::new("publish q").kind(SpanKind::Producer));
    let parent = publish.context();
    publish.end();

    let first = tracer.start_span(
        SpanSpec::new("process q")
            .kind(SpanKind::Consumer)
            .parent(Some(&parent))
            .attr("messaging.message.delivery_attempt", 1i64),
    );
    first.set_error("smtp down");
    let first_ctx = first.context();
    first.end();
    let links = [first_ctx.clone()];
    let second = tracer.start_span(
        SpanSpec::new("process q")
            .kind(SpanKind::Consumer)
            .parent(Some(&parent))
            .links(&links)
            .attr("messaging.message.delivery_attempt", 2i64),
    );
    let second_ctx = second.context();
    second.end();

    let spans = receiver.wait_for_spans(|s| s.len() >= 3, WAIT).await?;
    let retry = spans
        .iter()
        .find(|s| s.span_id == second_ctx.span_id)
        .expect("second attempt exported");
    assert_eq!(retry.links, vec![(first_ctx.trace_id, first_ctx.span_id)]);
    assert_eq!(retry.parent_span_id, Some(parent.span_id));
    assert_eq!(retry.trace_id, parent.trace_id);
    let attempt_one = spans
        .iter()
        .find(|s| s.span_id == first_ctx.span_id)
        .expect("first attempt exported");
    assert!(attempt_one.links.is_empty());
    assert_eq!(
        attempt_one.status,
        ReceivedStatus::Error("smtp down".into())
    );
    Ok(())
}

#[tokio::test]
async fn an_unsampled_upstream_trace_propagates_but_is_not_exported() -> anyhow::Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let tracer = factory(&receiver.endpoint());
    let upstream =
        TraceContext::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
            .expect("valid traceparent");
    let span = tracer.start_span(SpanSpec::new("unsampled").parent(Some(&upstream)));
    let ctx = span.context();
    assert_eq!(ctx.trace_id, upstream.trace_id);
    assert!(!ctx.sampled);
    span.end();
    let marker = tracer.start_span(SpanSpec::new("marker"));
    marker.end();
    let spans = receiver
        .wait_for_spans(|s| s.iter().any(|s| s.name == "marker"), WAIT)
        .await?;
    assert!(spans.iter().all(|s| s.name != "unsampled"), "{spans:#?}");
    Ok(())
}
