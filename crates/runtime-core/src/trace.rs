//! The TraceService: a span per task, context carried with the task.
//!
//! Spans come from a [`TraceFactory`]: the OTel adapter's when exporting, otherwise
//! [`IdTraceFactory`], which only makes W3C ids so contexts still propagate (and logs
//! still carry trace ids) when nothing is exported.

use std::sync::Arc;

use runtime_contracts::{
    AttributeValue, NoopSpan, SpanKind, SpanSpec, Task, TaskSpan, TraceContext, TraceFactory,
};

/// Makes ids, exports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdTraceFactory;

fn nonzero_u64() -> u64 {
    loop {
        let v = fastrand::u64(..);
        if v != 0 {
            return v;
        }
    }
}

impl TraceFactory for IdTraceFactory {
    fn is_recording(&self) -> bool {
        false
    }

    fn start_span(&self, spec: SpanSpec<'_>) -> Box<dyn TaskSpan> {
        Box::new(NoopSpan(child_context(spec.parent)))
    }
}

/// Creates the runtime's spans around tasks and moves their context through headers.
/// Span names and attributes follow OpenTelemetry's messaging conventions.
#[derive(Clone)]
pub struct TraceService {
    factory: Arc<dyn TraceFactory>,
    /// Cached `factory.is_recording()`: when false, contexts are made here, with no
    /// allocation per span, which keeps the task hot path cheap.
    recording: bool,
}

impl std::fmt::Debug for TraceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceService")
            .field("recording", &self.recording)
            .finish()
    }
}

/// Header holding the context of a task's first processing attempt, so a retry's span
/// can link to it.
pub const FIRST_ATTEMPT_HEADER: &str = "x-plba-first-attempt";

/// A span the runtime started: either the factory's, or a bare context when nothing
/// records spans.
pub enum SpanHandle {
    /// Ids only.
    Ids(NoopSpan),
    /// A recording span.
    Span(Box<dyn TaskSpan>),
}

impl SpanHandle {
    /// The span as a trait object.
    pub fn as_span(&self) -> &dyn TaskSpan {
        match self {
            SpanHandle::Ids(s) => s,
            SpanHandle::Span(s) => &**s,
        }
    }
}

fn child_context(parent: Option<&TraceContext>) -> TraceContext {
    match parent {
        Some(parent) => TraceContext {
            trace_id: parent.trace_id,
            span_id: nonzero_u64(),
            sampled: parent.sampled,
            trace_state: parent.trace_state.clone(),
        },
        None => TraceContext {
            trace_id: ((nonzero_u64() as u128) << 64) | fastrand::u64(..) as u128,
            span_id: nonzero_u64(),
            sampled: true,
            trace_state: None,
        },
    }
}

impl TraceService {
    /// A service over `factory`.
    pub fn new(factory: Arc<dyn TraceFactory>) -> Self {
        TraceService {
            recording: factory.is_recording(),
            factory,
        }
    }

    /// The factory (handed to handlers).
    pub fn factory(&self) -> &Arc<dyn TraceFactory> {
        &self.factory
    }

    /// Starts the spans for a task a source produced — `source <name>` and its child
    /// `publish <queue>` — and writes the publish span's context into the task headers.
    /// A context the source already put in the headers becomes the parent.
    pub fn on_publish(
        &self,
        source: &str,
        queue: &str,
        backend: &'static str,
        task: &mut Task,
    ) -> [SpanHandle; 2] {
        let upstream = task.trace_context();
        if !self.recording {
            let source_ctx = child_context(upstream.as_ref());
            let publish_ctx = child_context(Some(&source_ctx));
            task.set_trace_context(&publish_ctx);
            return [
                SpanHandle::Ids(NoopSpan(source_ctx)),
                SpanHandle::Ids(NoopSpan(publish_ctx)),
            ];
        }
        let id = task.id.to_string();
        let source_name = format!("source {source}");
        let source_span = self.factory.start_span(
            SpanSpec::new(&source_name)
                .kind(SpanKind::Internal)
                .parent(upstream.as_ref())
                .attr("plba.source", source)
                .attr("messaging.message.id", id.clone()),
        );
        let source_ctx = source_span.context();
        let publish_name = format!("publish {queue}");
        let publish = self.factory.start_span(
            SpanSpec::new(&publish_name)
                .kind(SpanKind::Producer)
                .parent(Some(&source_ctx))
                .attr("messaging.system", backend)
                .attr("messaging.destination.name", queue)
                .attr("messaging.operation.type", "send")
                .attr("messaging.message.id", id),
        );
        task.set_trace_context(&publish.context());
        [SpanHandle::Span(source_span), SpanHandle::Span(publish)]
    }

    /// Starts the `process <queue>` span of one delivery: the parent is the context in
    /// the task headers, and a retry links to its first attempt.
    pub fn on_process(
        &self,
        span_name: &str,
        queue: &str,
        backend: &'static str,
        task: &Task,
    ) -> SpanHandle {
        let parent = task.trace_context();
        if !self.recording {
            return SpanHandle::Ids(NoopSpan(child_context(parent.as_ref())));
        }
        let first = task
            .headers
            .get(FIRST_ATTEMPT_HEADER)
            .and_then(TraceContext::parse_traceparent);
        let links: Vec<TraceContext> = first.into_iter().collect();
        self.factory
            .start_span(
                SpanSpec::new(span_name)
                    .kind(SpanKind::Consumer)
                    .parent(parent.as_ref())
                    .links(&links)
                    .attr("messaging.system", backend)
                    .attr("messaging.destination.name", queue)
                    .attr("messaging.operation.type", "process")
                    .attr("messaging.message.id", task.id.to_string())
                    .attr(
                        "messaging.message.delivery_attempt",
                        AttributeValue::Int(task.attempts as i64 + 1),
                    ),
            )
            .into()
    }
}

impl From<Box<dyn TaskSpan>> for SpanHandle {
    fn from(span: Box<dyn TaskSpan>) -> Self {
        SpanHandle::Span(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_survives_the_headers() {
        let svc = TraceService::new(Arc::new(IdTraceFactory));
        let mut task = Task::new("t", "x");
        let [source, publish] = svc.on_publish("src", "q", "memory", &mut task);
        let process = svc.on_process("process q", "q", "memory", &task);
        assert_eq!(
            process.as_span().context().trace_id,
            source.as_span().context().trace_id
        );
        assert_eq!(
            task.trace_context().map(|c| c.span_id),
            Some(publish.as_span().context().span_id)
        );
    }
}
