//! The TraceService: a span per task, context carried in task headers.
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
        let ctx = match spec.parent {
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
        };
        Box::new(NoopSpan(ctx))
    }
}

/// Creates the runtime's spans around tasks and moves their context through headers.
/// Span names and attributes follow OpenTelemetry's messaging conventions.
#[derive(Clone)]
pub struct TraceService {
    factory: Arc<dyn TraceFactory>,
}

impl std::fmt::Debug for TraceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TraceService")
    }
}

/// Header holding the context of a task's first processing attempt, so a retry's span
/// can link to it.
pub const FIRST_ATTEMPT_HEADER: &str = "x-plba-first-attempt";

impl TraceService {
    /// A service over `factory`.
    pub fn new(factory: Arc<dyn TraceFactory>) -> Self {
        TraceService { factory }
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
    ) -> [Box<dyn TaskSpan>; 2] {
        let upstream = TraceContext::extract(&task.headers);
        let recording = self.factory.is_recording();
        let source_name = if recording {
            format!("source {source}")
        } else {
            String::new()
        };
        let mut spec = SpanSpec::new(&source_name)
            .kind(SpanKind::Internal)
            .parent(upstream.as_ref());
        if recording {
            spec = spec
                .attr("plba.source", source)
                .attr("messaging.message.id", task.id.to_string());
        }
        let source_span = self.factory.start_span(spec);
        let source_ctx = source_span.context();
        let publish_name = if recording {
            format!("publish {queue}")
        } else {
            String::new()
        };
        let mut spec = SpanSpec::new(&publish_name)
            .kind(SpanKind::Producer)
            .parent(Some(&source_ctx));
        if recording {
            spec = spec
                .attr("messaging.system", backend)
                .attr("messaging.destination.name", queue)
                .attr("messaging.operation.type", "send")
                .attr("messaging.message.id", task.id.to_string());
        }
        let publish = self.factory.start_span(spec);
        publish.context().inject(&mut task.headers);
        [source_span, publish]
    }

    /// Starts the `process <queue>` span of one delivery: the parent is the context in
    /// the task headers, and a retry links to its first attempt.
    pub fn on_process(
        &self,
        span_name: &str,
        queue: &str,
        backend: &'static str,
        task: &Task,
    ) -> Box<dyn TaskSpan> {
        let parent = TraceContext::extract(&task.headers);
        let first = task
            .headers
            .get(FIRST_ATTEMPT_HEADER)
            .and_then(TraceContext::parse_traceparent);
        let links: Vec<TraceContext> = first.into_iter().collect();
        let mut spec = SpanSpec::new(span_name)
            .kind(SpanKind::Consumer)
            .parent(parent.as_ref())
            .links(&links);
        if self.factory.is_recording() {
            spec = spec
                .attr("messaging.system", backend)
                .attr("messaging.destination.name", queue)
                .attr("messaging.operation.type", "process")
                .attr("messaging.message.id", task.id.to_string())
                .attr(
                    "messaging.message.delivery_attempt",
                    AttributeValue::Int(task.attempts as i64 + 1),
                );
        }
        self.factory.start_span(spec)
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
        assert_eq!(process.context().trace_id, source.context().trace_id);
        assert_eq!(
            TraceContext::extract(&task.headers).map(|c| c.span_id),
            Some(publish.context().span_id)
        );
    }
}
