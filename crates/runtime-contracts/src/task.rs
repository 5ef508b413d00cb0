//! The task envelope and its identity.

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::headers::Headers;
use crate::trace::{TRACEPARENT, TRACESTATE, TraceContext, TraceParent};

/// Milliseconds since the Unix epoch, the clock every queue backend agrees on.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A 128-bit task id, unique across processes: 64 random bits chosen once per process
/// and a 64-bit counter. Cheap to make (no syscall per id) and `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u128);

impl TaskId {
    /// A fresh id.
    pub fn new() -> Self {
        static BASE: OnceLock<(u64, u64)> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let (hi, lo) = *BASE.get_or_init(|| {
            // RandomState is seeded from the OS; mixing in pid and time guards against
            // a platform where it is not.
            let mut a = std::collections::hash_map::RandomState::new().build_hasher();
            a.write_u32(std::process::id());
            a.write_u64(now_millis());
            let mut b = std::collections::hash_map::RandomState::new().build_hasher();
            b.write_u64(a.finish());
            (a.finish(), b.finish())
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TaskId(((hi as u128) << 64) | (lo.wrapping_add(n) as u128))
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({self})")
    }
}

/// The text of a task id was not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid task id {0:?}: expected 32 hex digits")]
pub struct ParseTaskIdError(pub String);

impl FromStr for TaskId {
    type Err = ParseTaskIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 {
            return Err(ParseTaskIdError(s.to_owned()));
        }
        u128::from_str_radix(s, 16)
            .map(TaskId)
            .map_err(|_| ParseTaskIdError(s.to_owned()))
    }
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which source produced a task and which item at that source it stands for. The key is
/// opaque to the runtime (for example a folder, its validity epoch and an item number); the source's
/// [`SourceAcknowledger`](crate::SourceAcknowledger) understands it. Queues also use
/// `(source, key)` to refuse a second live task for the same item.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct TaskOrigin {
    /// The registered name of the source.
    pub source: String,
    /// The item at the source.
    pub key: String,
}

/// A unit of work.
///
/// On the wire (JSON in the Redis queue, dead-letter listings) a task is an object with
/// `id`, `route`, `payload`, `headers`, `attempts`, `enqueued_at_ms`, `not_before_ms` and
/// `origin`; the trace context travels as the W3C `traceparent` / `tracestate` headers.
/// In memory the `traceparent` is kept typed in [`Task::trace`], so moving a task
/// through a queue formats and parses no strings; use [`Task::trace_context`] and
/// [`Task::set_trace_context`] rather than the raw headers.
#[derive(Clone, PartialEq, Debug)]
pub struct Task {
    /// Unique id.
    pub id: TaskId,
    /// What kind of work this is; pools and handlers are chosen by queue, the route lets
    /// one handler tell kinds apart.
    pub route: Cow<'static, str>,
    /// The body, opaque to the runtime.
    pub payload: Vec<u8>,
    /// String headers (a `tracestate` among them, when the trace has one).
    pub headers: Headers,
    /// The trace context this task continues (the `traceparent` header on the wire).
    pub trace: Option<TraceParent>,
    /// Failed attempts so far (handler errors, panics, timeouts). Interruptions
    /// (shutdown, lost lease) and outages do not count.
    pub attempts: u32,
    /// When the task was first published, ms since the epoch.
    pub enqueued_at_ms: u64,
    /// Do not deliver before this time, ms since the epoch.
    pub not_before_ms: Option<u64>,
    /// The source item this task stands for, if any. Boxed: most tasks of a busy
    /// in-process queue have none, and a smaller task is cheaper to move and to store.
    pub origin: Option<Box<TaskOrigin>>,
}

impl Task {
    /// A new task for `route` with `payload`, enqueued now.
    pub fn new(route: impl Into<Cow<'static, str>>, payload: impl Into<Vec<u8>>) -> Self {
        Task {
            id: TaskId::new(),
            route: route.into(),
            payload: payload.into(),
            headers: Headers::default(),
            trace: None,
            attempts: 0,
            enqueued_at_ms: now_millis(),
            not_before_ms: None,
            origin: None,
        }
    }

    /// Marks the source item this task stands for.
    pub fn with_origin(mut self, source: impl Into<String>, key: impl Into<String>) -> Self {
        self.origin = Some(Box::new(TaskOrigin {
            source: source.into(),
            key: key.into(),
        }));
        self
    }

    /// Gives the task a unique key (see [`UNIQUE_KEY_HEADER`](crate::UNIQUE_KEY_HEADER)):
    /// while a live task with the same key is in the queue, publishing this one adds
    /// nothing and answers the id of that task.
    pub fn with_unique_key(mut self, key: impl Into<String>) -> Self {
        self.headers
            .insert(crate::controls::UNIQUE_KEY_HEADER, key.into());
        self
    }

    /// The task's unique key, if it has one.
    pub fn unique_key(&self) -> Option<&str> {
        if self.headers.is_empty() {
            return None;
        }
        self.headers.get(crate::controls::UNIQUE_KEY_HEADER)
    }

    /// Checks what a publisher set that a queue must refuse: a unique key that is empty
    /// or longer than [`MAX_UNIQUE_KEY_BYTES`](crate::MAX_UNIQUE_KEY_BYTES). Every
    /// backend calls it in `publish`, so they refuse the same tasks.
    pub fn check_publishable(&self) -> Result<(), crate::QueueError> {
        match self.unique_key() {
            Some("") => Err(crate::QueueError::Invalid("unique_key is empty".into())),
            Some(k) if k.len() > crate::controls::MAX_UNIQUE_KEY_BYTES => {
                Err(crate::QueueError::Invalid(format!(
                    "unique_key is {} bytes, the limit is {}",
                    k.len(),
                    crate::controls::MAX_UNIQUE_KEY_BYTES
                )))
            }
            _ => Ok(()),
        }
    }

    /// Records the error of a failed attempt in [`LAST_ERROR_HEADER`](crate::LAST_ERROR_HEADER),
    /// cut to [`MAX_LAST_ERROR_BYTES`](crate::MAX_LAST_ERROR_BYTES). Queues call it in `nack`.
    pub fn record_error(&mut self, error: &str) {
        let mut end = error.len().min(crate::controls::MAX_LAST_ERROR_BYTES);
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        self.headers
            .insert(crate::controls::LAST_ERROR_HEADER, &error[..end]);
    }

    /// Sets a header.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<String>,
    ) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The trace context this task continues: [`Task::trace`] with the `tracestate`
    /// header, or else a `traceparent` header someone set by hand. `None` when there is
    /// none (or it is malformed).
    pub fn trace_context(&self) -> Option<TraceContext> {
        let parent = match self.trace {
            Some(parent) => parent,
            None => TraceParent::parse(self.headers.get(TRACEPARENT)?)?,
        };
        let state = if self.headers.is_empty() {
            None
        } else {
            self.headers.get(TRACESTATE).map(str::to_owned)
        };
        Some(parent.with_state(state))
    }

    /// Makes `ctx` the trace context this task continues (replacing any earlier one,
    /// also one set as headers).
    pub fn set_trace_context(&mut self, ctx: &TraceContext) {
        self.trace = Some(ctx.parent());
        match &ctx.trace_state {
            Some(state) if !state.is_empty() => self.headers.insert(TRACESTATE, state.clone()),
            _ if self.headers.is_empty() => {}
            _ => {
                self.headers.remove(TRACESTATE);
            }
        }
        if !self.headers.is_empty() {
            self.headers.remove(TRACEPARENT);
        }
    }

    /// Delays the first delivery by `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.not_before_ms = Some(now_millis().saturating_add(delay.as_millis() as u64));
        self
    }

    /// Approximate heap bytes held by this task beyond the struct itself (for memory
    /// accounting in stats and benchmarks).
    pub fn heap_bytes(&self) -> usize {
        let route = match &self.route {
            Cow::Borrowed(_) => 0,
            Cow::Owned(s) => s.capacity(),
        };
        let headers = self.headers.heap_bytes();
        let origin = self.origin.as_ref().map_or(0, |o| {
            std::mem::size_of::<TaskOrigin>() + o.source.capacity() + o.key.capacity()
        });
        route + self.payload.capacity() + headers + origin
    }
}

/// The wire form of a task, borrowed for writing.
#[derive(Serialize)]
struct TaskOut<'a> {
    id: TaskId,
    route: &'a str,
    #[serde(with = "payload_serde")]
    payload: &'a [u8],
    #[serde(skip_serializing_if = "HeadersOut::is_empty")]
    headers: HeadersOut<'a>,
    attempts: u32,
    enqueued_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_before_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a TaskOrigin>,
}

/// The headers as written: the typed trace parent first, as `traceparent`, then the rest
/// (the same shape as [`Headers`]: a list of name/value pairs).
struct HeadersOut<'a> {
    trace: Option<String>,
    headers: &'a Headers,
}

impl HeadersOut<'_> {
    fn is_empty(&self) -> bool {
        self.trace.is_none() && self.headers.is_empty()
    }
}

impl Serialize for HeadersOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        if let Some(trace) = &self.trace {
            seq.serialize_element(&(TRACEPARENT, trace))?;
        }
        for (name, value) in self.headers.iter() {
            if self.trace.is_some() && name == TRACEPARENT {
                continue;
            }
            seq.serialize_element(&(name, value))?;
        }
        seq.end()
    }
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        TaskOut {
            id: self.id,
            route: &self.route,
            payload: &self.payload,
            headers: HeadersOut {
                trace: self.trace.map(|t| t.to_header()),
                headers: &self.headers,
            },
            attempts: self.attempts,
            enqueued_at_ms: self.enqueued_at_ms,
            not_before_ms: self.not_before_ms,
            origin: self.origin.as_deref(),
        }
        .serialize(s)
    }
}

/// The wire form of a task, for reading.
#[derive(Deserialize)]
struct TaskIn {
    id: TaskId,
    route: String,
    #[serde(with = "payload_serde")]
    payload: Vec<u8>,
    #[serde(default)]
    headers: Headers,
    #[serde(default)]
    attempts: u32,
    enqueued_at_ms: u64,
    #[serde(default)]
    not_before_ms: Option<u64>,
    #[serde(default)]
    origin: Option<Box<TaskOrigin>>,
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = TaskIn::deserialize(d)?;
        let mut headers = wire.headers;
        // A valid `traceparent` becomes the typed field; a malformed one stays a header
        // (and is ignored as a trace context, as W3C asks).
        let trace = headers.get(TRACEPARENT).and_then(TraceParent::parse);
        if trace.is_some() {
            headers.remove(TRACEPARENT);
        }
        Ok(Task {
            id: wire.id,
            route: Cow::Owned(wire.route),
            payload: wire.payload,
            headers,
            trace,
            attempts: wire.attempts,
            enqueued_at_ms: wire.enqueued_at_ms,
            not_before_ms: wire.not_before_ms,
            origin: wire.origin,
        })
    }
}

/// Payloads are bytes; in JSON they travel as a UTF-8 string when they are valid UTF-8
/// (readable in `redis-cli` and the control plane) and as an array of bytes otherwise.
mod payload_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    // `&&[u8]` because the writing side borrows the payload.
    #[allow(clippy::ptr_arg)]
    pub(crate) fn serialize<S: Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(v) {
            Ok(text) if s.is_human_readable() => s.serialize_str(text),
            _ => s.serialize_bytes(v),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Text(s) => s.into_bytes(),
            Repr::Bytes(b) => b,
        })
    }
}

/// The proof that a consumer holds a task. Backends check it on ack / nack / release,
/// so a consumer whose lease ran out cannot settle a task that was handed to another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Lease(pub u64);

/// A task handed to a consumer.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The task as delivered (`attempts` = failures before this delivery).
    pub task: Task,
    /// This delivery's lease.
    pub lease: Lease,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_stays_small() {
        // Tasks are moved through queues and futures many times; keep them compact.
        assert!(
            std::mem::size_of::<Task>() <= 160,
            "{}",
            std::mem::size_of::<Task>()
        );
    }

    #[test]
    fn task_ids_are_unique_and_round_trip() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<TaskId>(), Ok(a));
        assert!("xyz".parse::<TaskId>().is_err());
    }

    #[test]
    fn headers_replace_and_remove() {
        let mut h = Headers::default();
        h.insert("a", "1");
        h.insert("a", "2");
        assert_eq!(h.get("a"), Some("2"));
        assert_eq!(h.remove("a"), Some("2".to_owned()));
        assert!(h.is_empty());
    }

    #[test]
    fn trace_parent_travels_as_a_header_on_the_wire() {
        let ctx = TraceContext {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            sampled: true,
            trace_state: Some("congo=t61rcWkgMzE".into()),
        };
        let mut t = Task::new("r", "x").with_header("a", "1");
        t.set_trace_context(&ctx);
        assert_eq!(t.headers.get(TRACEPARENT), None, "typed in memory");
        let json = serde_json::to_value(&t).unwrap_or_default();
        assert_eq!(
            json["headers"],
            serde_json::json!([
                [
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                ],
                ["a", "1"],
                ["tracestate", "congo=t61rcWkgMzE"]
            ])
        );
        let back: Task = serde_json::from_value(json).unwrap_or_else(|_| Task::new("x", ""));
        assert_eq!(back, t);
        assert_eq!(back.trace_context(), Some(ctx));
    }

    #[test]
    fn a_traceparent_header_set_by_hand_is_the_context() {
        let t = Task::new("r", "x").with_header(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        );
        let ctx = t.trace_context();
        assert_eq!(ctx.as_ref().map(|c| c.span_id), Some(0x00f067aa0ba902b7));
        assert_eq!(ctx.map(|c| c.sampled), Some(false));
        let mut t = t;
        t.set_trace_context(&TraceContext {
            trace_id: 1,
            span_id: 2,
            sampled: true,
            trace_state: None,
        });
        assert_eq!(t.headers.get(TRACEPARENT), None, "one truth");
        assert_eq!(t.trace_context().map(|c| c.span_id), Some(2));
    }

    #[test]
    fn unique_key_and_last_error_travel_as_headers() {
        let mut t = Task::new("r", "x").with_unique_key("job-7");
        assert_eq!(t.unique_key(), Some("job-7"));
        assert!(t.check_publishable().is_ok());
        t.record_error(&"é".repeat(1000));
        let kept = t.headers.get(crate::LAST_ERROR_HEADER).unwrap_or_default();
        assert!(kept.len() <= crate::MAX_LAST_ERROR_BYTES && kept.starts_with('é'));
        let json = serde_json::to_string(&t).unwrap_or_default();
        let back: Task = serde_json::from_str(&json).unwrap_or_else(|_| Task::new("x", ""));
        assert_eq!(back.unique_key(), Some("job-7"));
        assert!(
            Task::new("r", "")
                .with_unique_key("")
                .check_publishable()
                .is_err()
        );
        let long = "k".repeat(crate::MAX_UNIQUE_KEY_BYTES + 1);
        assert!(
            Task::new("r", "")
                .with_unique_key(long)
                .check_publishable()
                .is_err()
        );
        assert_eq!(Task::new("r", "").unique_key(), None);
    }

    #[test]
    fn task_json_round_trip_keeps_binary_payload() {
        let t = Task::new("r", vec![0xff, 0x00]).with_origin("s", "k");
        let json = serde_json::to_string(&t).unwrap_or_default();
        let back: Task = serde_json::from_str(&json).unwrap_or_else(|_| Task::new("x", ""));
        assert_eq!(back, t);
        let text = Task::new("r", "hello");
        let json = serde_json::to_string(&text).unwrap_or_default();
        assert!(json.contains("\"hello\""));
    }
}
