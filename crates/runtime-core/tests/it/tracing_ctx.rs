//! The trace context travels source -> queue -> worker -> handler; a retry links to the
//! first attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime_contracts::{
    AttributeValue, NoopSpan, SpanKind, SpanSpec, TRACEPARENT, Task, TaskError, TaskSpan,
    TraceContext, TraceFactory,
};
use runtime_core::RuntimeManager;
use runtime_testkit::fakes::{FnHandler, PartsModule, VecSource, config};

use crate::{fast_platform, queue};

#[derive(Clone, Debug)]
struct Recorded {
    name: String,
    kind: SpanKind,
    ctx: TraceContext,
    parent: Option<u64>,
    links: Vec<u64>,
}

/// Records every span started (the contract under test is the propagation).
#[derive(Default)]
struct RecordingFactory {
    spans: Mutex<Vec<Recorded>>,
}

impl TraceFactory for RecordingFactory {
    fn start_span(&self, spec: SpanSpec<'_>) -> Box<dyn TaskSpan> {
        let ctx = TraceContext {
            trace_id: spec
                .parent
                .map_or_else(|| fastrand::u128(1..), |p| p.trace_id),
            span_id: fastrand::u64(1..),
            sampled: true,
            trace_state: None,
        };
        self.spans.lock().unwrap().push(Recorded {
            name: spec.name.to_owned(),
            kind: spec.kind,
            ctx: ctx.clone(),
            parent: spec.parent.map(|p| p.span_id),
            links: spec.links.iter().map(|l| l.span_id).collect(),
        });
        let _ = AttributeValue::Bool(true);
        Box::new(NoopSpan(ctx))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_survives_the_queue_and_retries_link_to_the_first_attempt() {
    let factory = Arc::new(RecordingFactory::default());
    let upstream = TraceContext {
        trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
        span_id: 0x00f067aa0ba902b7,
        sampled: true,
        trace_state: None,
    };
    let mut task = Task::new("t", "x");
    // As a producer outside the runtime would: the W3C header, set by hand.
    task.headers.insert(TRACEPARENT, upstream.traceparent());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let handler = FnHandler::new(Duration::ZERO, move |task, ctx| {
        let child = ctx.child_span("handler work");
        s2.lock()
            .unwrap()
            .push((ctx.span.context(), child.context()));
        if task.attempts == 0 {
            return Err(TaskError::Retry {
                after: Some(Duration::ZERO),
                reason: "again".into(),
            });
        }
        Ok(())
    });
    let q = queue(3);
    let module = PartsModule {
        sources: vec![(VecSource::new("s", vec![task]), "q".into())],
        pools: vec![runtime_contracts::PoolSpec {
            name: "p".into(),
            queue: "q".into(),
            handler: handler.clone(),
            concurrency: 1,
            task_timeout: Duration::from_secs(5),
        }],
        ..Default::default()
    };
    let rt = RuntimeManager::builder(config(fast_platform(serde_json::json!({}))).await)
        .queue(q)
        .tracer(factory.clone())
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    rt.start().await.unwrap();
    assert_eq!(handler.wait_calls(2, Duration::from_secs(10)).await, 2);
    rt.stop().await;

    let spans = factory.spans.lock().unwrap().clone();
    let by_name =
        |n: &str| -> Vec<Recorded> { spans.iter().filter(|s| s.name == n).cloned().collect() };
    let source = &by_name("source s")[0];
    let publish = &by_name("publish q")[0];
    let process = by_name("process q");
    let work = by_name("handler work");
    assert_eq!(process.len(), 2);
    assert!(spans.iter().all(|s| s.ctx.trace_id == upstream.trace_id));
    assert_eq!(source.parent, Some(upstream.span_id));
    assert_eq!(publish.parent, Some(source.ctx.span_id));
    assert_eq!(publish.kind, SpanKind::Producer);
    for p in &process {
        assert_eq!(p.parent, Some(publish.ctx.span_id));
        assert_eq!(p.kind, SpanKind::Consumer);
    }
    assert!(process[0].links.is_empty());
    assert_eq!(process[1].links, vec![process[0].ctx.span_id]);
    for (w, p) in work.iter().zip(&process) {
        assert_eq!(w.parent, Some(p.ctx.span_id));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0.trace_id, upstream.trace_id);
    assert_eq!(seen[0].1.trace_id, upstream.trace_id);
}
