//! Trace context as data, and the factory that turns it into spans.
//!
//! The context crosses queues inside task headers as W3C `traceparent` / `tracestate`,
//! so it survives Redis and process boundaries. A [`TraceFactory`] starts spans; the core
//! ships one that only makes ids (no export), the OTel adapter one that exports.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Header name of the W3C trace parent.
pub const TRACEPARENT: &str = "traceparent";
/// Header name of the W3C trace state.
pub const TRACESTATE: &str = "tracestate";

/// A W3C trace context: trace id, parent span id, sampled flag and vendor state.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    /// 128-bit trace id (never zero).
    pub trace_id: u128,
    /// 64-bit span id (never zero).
    pub span_id: u64,
    /// Whether the trace is sampled.
    pub sampled: bool,
    /// The `tracestate` header, passed through untouched.
    pub trace_state: Option<String>,
}

/// The ids a task carries typed: what the W3C `traceparent` header holds. `Copy` and
/// 32 bytes, so carrying it through a queue costs no allocation and no string; it becomes
/// the `traceparent` header only where a task is written to the wire (see
/// [`Task`](crate::Task)'s serialization).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// 128-bit trace id (never zero).
    pub trace_id: u128,
    /// 64-bit span id of the parent span (never zero).
    pub span_id: u64,
    /// Whether the trace is sampled.
    pub sampled: bool,
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({})", self.to_header())
    }
}

impl TraceParent {
    /// `00-<trace id>-<span id>-<flags>`.
    pub fn to_header(&self) -> String {
        // Written by hand: `format!` with hex padding costs several times more.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        for i in 0..32 {
            out[3 + i] = HEX[((self.trace_id >> (124 - 4 * i)) & 0xf) as usize];
        }
        out[35] = b'-';
        for i in 0..16 {
            out[36 + i] = HEX[((self.span_id >> (60 - 4 * i)) & 0xf) as usize];
        }
        out[52] = b'-';
        out[53] = b'0';
        out[54] = if self.sampled { b'1' } else { b'0' };
        // Only ASCII was written, so this never fails.
        std::str::from_utf8(&out)
            .map(str::to_owned)
            .unwrap_or_default()
    }

    /// Parses a `traceparent` value; `None` if it is not a valid version-00 header.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        if flags.len() != 2 || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex(version) || !hex(trace) || !hex(span) || !hex(flags) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The full context with `trace_state`.
    pub fn with_state(self, trace_state: Option<String>) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: self.sampled,
            trace_state,
        }
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({})", self.traceparent())
    }
}

impl TraceContext {
    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The typed ids (everything but `trace_state`).
    pub fn parent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            span_id: self.span_id,
            sampled: self.sampled,
        }
    }

    /// `00-<trace id>-<span id>-<flags>`.
    pub fn traceparent(&self) -> String {
        self.parent().to_header()
    }

    /// Parses a `traceparent` value; `None` if it is not a valid version-00 header.
    pub fn parse_traceparent(value: &str) -> Option<TraceContext> {
        TraceParent::parse(value).map(|p| p.with_state(None))
    }
}

/// The role of a span, after OpenTelemetry's span kinds.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// Work inside the process.
    Internal,
    /// Sends a message (publish to a queue).
    Producer,
    /// Receives and processes a message (a worker handling a task).
    Consumer,
    /// Calls a remote service.
    Client,
    /// Serves a remote call.
    Server,
}

/// An attribute value.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// Text.
    Str(String),
    /// Integer.
    Int(i64),
    /// Float.
    Float(f64),
    /// Boolean.
    Bool(bool),
}

impl From<&str> for AttributeValue {
    fn from(v: &str) -> Self {
        AttributeValue::Str(v.to_owned())
    }
}
impl From<String> for AttributeValue {
    fn from(v: String) -> Self {
        AttributeValue::Str(v)
    }
}
impl From<i64> for AttributeValue {
    fn from(v: i64) -> Self {
        AttributeValue::Int(v)
    }
}
impl From<u32> for AttributeValue {
    fn from(v: u32) -> Self {
        AttributeValue::Int(v as i64)
    }
}
impl From<bool> for AttributeValue {
    fn from(v: bool) -> Self {
        AttributeValue::Bool(v)
    }
}
impl From<f64> for AttributeValue {
    fn from(v: f64) -> Self {
        AttributeValue::Float(v)
    }
}

/// What a new span should be.
#[derive(Clone, Debug)]
pub struct SpanSpec<'a> {
    /// Span name (OpenTelemetry messaging style: `"<operation> <destination>"`).
    pub name: &'a str,
    /// Span kind.
    pub kind: SpanKind,
    /// The parent; `None` starts a new trace.
    pub parent: Option<&'a TraceContext>,
    /// Linked contexts (a retry links to the earlier attempt).
    pub links: &'a [TraceContext],
    /// Initial attributes.
    pub attributes: Vec<(&'static str, AttributeValue)>,
}

impl<'a> SpanSpec<'a> {
    /// An internal span with no parent, links or attributes.
    pub fn new(name: &'a str) -> Self {
        SpanSpec {
            name,
            kind: SpanKind::Internal,
            parent: None,
            links: &[],
            attributes: Vec::new(),
        }
    }

    /// Sets the kind.
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the parent.
    pub fn parent(mut self, parent: Option<&'a TraceContext>) -> Self {
        self.parent = parent;
        self
    }

    /// Sets the links.
    pub fn links(mut self, links: &'a [TraceContext]) -> Self {
        self.links = links;
        self
    }

    /// Adds an attribute.
    pub fn attr(mut self, key: &'static str, value: impl Into<AttributeValue>) -> Self {
        self.attributes.push((key, value.into()));
        self
    }
}

/// A started span. It ends on [`TaskSpan::end`] or when dropped.
pub trait TaskSpan: Send + Sync {
    /// This span's context (its span id is the parent id of its children).
    fn context(&self) -> TraceContext;
    /// Sets an attribute.
    fn set_attribute(&self, key: &'static str, value: AttributeValue);
    /// Marks the span as failed.
    fn set_error(&self, message: &str);
    /// Ends the span now; later calls do nothing.
    fn end(&self);
}

/// Makes spans. Object safe; the runtime passes one to handlers through
/// [`TaskContext`](crate::TaskContext), so a handler opens its own spans without knowing
/// which exporter (if any) is behind it.
pub trait TraceFactory: Send + Sync + 'static {
    /// Starts a span.
    fn start_span(&self, spec: SpanSpec<'_>) -> Box<dyn TaskSpan>;

    /// False when spans are not recorded anywhere (ids only): callers may then skip
    /// building attributes, which keeps the hot path cheap.
    fn is_recording(&self) -> bool {
        true
    }

    /// Exports what is buffered; called once at shutdown. Must not block for long.
    fn flush(&self) {}

    /// Spans dropped because the export buffer was full or the collector failed.
    fn dropped_spans(&self) -> u64 {
        0
    }
}

impl<T: TraceFactory + ?Sized> TraceFactory for Arc<T> {
    fn start_span(&self, spec: SpanSpec<'_>) -> Box<dyn TaskSpan> {
        (**self).start_span(spec)
    }
    fn is_recording(&self) -> bool {
        (**self).is_recording()
    }
    fn flush(&self) {
        (**self).flush()
    }
    fn dropped_spans(&self) -> u64 {
        (**self).dropped_spans()
    }
}

/// A span that records nothing and carries a fixed context.
#[derive(Debug, Clone)]
pub struct NoopSpan(pub TraceContext);

impl TaskSpan for NoopSpan {
    fn context(&self) -> TraceContext {
        self.0.clone()
    }
    fn set_attribute(&self, _key: &'static str, _value: AttributeValue) {}
    fn set_error(&self, _message: &str) {}
    fn end(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip() {
        let ctx = TraceContext {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            sampled: true,
            trace_state: Some("congo=t61rcWkgMzE".into()),
        };
        assert_eq!(
            ctx.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        // A task is how a context travels: it keeps the parent typed, the state a header.
        let mut task = crate::Task::new("t", "x");
        task.set_trace_context(&ctx);
        assert_eq!(task.trace_context(), Some(ctx));
    }

    #[test]
    fn malformed_traceparent_is_ignored() {
        for bad in [
            "",
            "00-0000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceContext::parse_traceparent(bad), None, "{bad}");
        }
    }
}
