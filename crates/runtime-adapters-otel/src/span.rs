//! Spans as plain data: [`OtelSpan`] fills an SDK `SpanData` and hands it to the export
//! queue when it ends.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind as OtelKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanLinks};

use runtime_contracts::{AttributeValue, SpanKind, SpanSpec, TaskSpan, TraceContext};

use crate::pipeline::Sink;

/// Attributes kept per span (the SDK's default limit); more are counted as dropped.
const MAX_ATTRIBUTES: usize = 128;
/// Links kept per span (the SDK's default limit).
const MAX_LINKS: usize = 128;

/// An exporting span. Its ids are exactly the ones its [`TraceContext`] shows, so what
/// travels in `traceparent` headers matches what the collector receives.
pub(crate) struct OtelSpan {
    ctx: TraceContext,
    /// `None` once ended, or from the start when the trace is not sampled.
    data: Mutex<Option<Box<SpanData>>>,
    sink: Arc<Sink>,
}

pub(crate) fn start(
    spec: SpanSpec<'_>,
    scope: &InstrumentationScope,
    sink: &Arc<Sink>,
) -> OtelSpan {
    let ids = RandomIdGenerator::default();
    let span_id = nonzero_span_id(&ids);
    let ctx = match spec.parent {
        Some(parent) => TraceContext {
            trace_id: parent.trace_id,
            span_id,
            sampled: parent.sampled,
            trace_state: parent.trace_state.clone(),
        },
        None => TraceContext {
            trace_id: nonzero_trace_id(&ids),
            span_id,
            sampled: true,
            trace_state: None,
        },
    };
    // Parent-based sampling: an unsampled upstream trace stays unexported, but its
    // context still propagates.
    let data = ctx.sampled.then(|| {
        let mut attributes = Vec::with_capacity(spec.attributes.len().min(MAX_ATTRIBUTES));
        let mut dropped_attributes_count = 0;
        for (key, value) in spec.attributes {
            if !set(&mut attributes, key, value) {
                dropped_attributes_count += 1;
            }
        }
        let mut links = SpanLinks::default();
        links.dropped_count = spec.links.len().saturating_sub(MAX_LINKS) as u32;
        links.links = spec
            .links
            .iter()
            .take(MAX_LINKS)
            .map(|l| Link::with_context(span_context(l, true)))
            .collect();
        Box::new(SpanData {
            span_context: span_context(&ctx, false),
            parent_span_id: spec
                .parent
                .map_or(SpanId::INVALID, |p| SpanId::from(p.span_id)),
            parent_span_is_remote: false,
            span_kind: kind(spec.kind),
            name: Cow::Owned(spec.name.to_owned()),
            start_time: SystemTime::now(),
            end_time: SystemTime::UNIX_EPOCH,
            attributes,
            dropped_attributes_count,
            events: SpanEvents::default(),
            links,
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        })
    });
    OtelSpan {
        ctx,
        data: Mutex::new(data),
        sink: Arc::clone(sink),
    }
}

impl TaskSpan for OtelSpan {
    fn context(&self) -> TraceContext {
        self.ctx.clone()
    }

    fn set_attribute(&self, key: &'static str, value: AttributeValue) {
        if let Ok(mut guard) = self.data.lock()
            && let Some(data) = guard.as_mut()
            && !set(&mut data.attributes, key, value)
        {
            data.dropped_attributes_count += 1;
        }
    }

    fn set_error(&self, message: &str) {
        if let Ok(mut guard) = self.data.lock()
            && let Some(data) = guard.as_mut()
        {
            data.status = Status::error(message.to_owned());
        }
    }

    fn end(&self) {
        let data = match self.data.lock() {
            Ok(mut guard) => guard.take(),
            Err(_) => None,
        };
        if let Some(mut data) = data {
            data.end_time = SystemTime::now();
            self.sink.submit(*data);
        }
    }
}

impl Drop for OtelSpan {
    fn drop(&mut self) {
        self.end();
    }
}

/// Sets or replaces `key`; false when the attribute limit is reached.
fn set(attributes: &mut Vec<KeyValue>, key: &'static str, value: AttributeValue) -> bool {
    let value = match value {
        AttributeValue::Str(s) => Value::from(s),
        AttributeValue::Int(i) => Value::I64(i),
        AttributeValue::Float(f) => Value::F64(f),
        AttributeValue::Bool(b) => Value::Bool(b),
    };
    if let Some(kv) = attributes.iter_mut().find(|kv| kv.key.as_str() == key) {
        kv.value = value;
        return true;
    }
    if attributes.len() >= MAX_ATTRIBUTES {
        return false;
    }
    attributes.push(KeyValue::new(Key::from_static_str(key), value));
    true
}

fn span_context(ctx: &TraceContext, is_remote: bool) -> SpanContext {
    let flags = if ctx.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let state = ctx
        .trace_state
        .as_deref()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    SpanContext::new(
        TraceId::from(ctx.trace_id),
        SpanId::from(ctx.span_id),
        flags,
        is_remote,
        state,
    )
}

fn kind(kind: SpanKind) -> OtelKind {
    match kind {
        SpanKind::Internal => OtelKind::Internal,
        SpanKind::Producer => OtelKind::Producer,
        SpanKind::Consumer => OtelKind::Consumer,
        SpanKind::Client => OtelKind::Client,
        SpanKind::Server => OtelKind::Server,
    }
}

fn nonzero_span_id(ids: &RandomIdGenerator) -> u64 {
    loop {
        let id = u64::from_be_bytes(ids.new_span_id().to_bytes());
        if id != 0 {
            return id;
        }
    }
}

fn nonzero_trace_id(ids: &RandomIdGenerator) -> u128 {
    loop {
        let id = u128::from_be_bytes(ids.new_trace_id().to_bytes());
        if id != 0 {
            return id;
        }
    }
}
