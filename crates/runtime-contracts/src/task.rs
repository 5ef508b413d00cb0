//! The task envelope and its identity.

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// String headers of a task. A small vector, not a map: tasks carry a handful of
/// headers (the trace context), and a vector costs one allocation instead of a B-tree
/// node per task. Names are usually constants, so they are kept as `Cow<'static, str>`
/// and cost nothing to set or clone.
#[derive(Clone, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Headers(Vec<(Cow<'static, str>, String)>);

impl Headers {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`, replacing an earlier value.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Removes `name` and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.swap_remove(at).1)
    }

    /// True when there is no header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All headers, first set first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
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
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Task {
    /// Unique id.
    pub id: TaskId,
    /// What kind of work this is; pools and handlers are chosen by queue, the route lets
    /// one handler tell kinds apart.
    pub route: Cow<'static, str>,
    /// The body, opaque to the runtime.
    #[serde(with = "payload_serde")]
    pub payload: Vec<u8>,
    /// String headers; the trace context travels as `traceparent` / `tracestate`.
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Failed attempts so far (handler errors, panics, timeouts). Interruptions
    /// (shutdown, lost lease) and outages do not count.
    #[serde(default)]
    pub attempts: u32,
    /// When the task was first published, ms since the epoch.
    pub enqueued_at_ms: u64,
    /// Do not deliver before this time, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// The source item this task stands for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<TaskOrigin>,
}

impl Task {
    /// A new task for `route` with `payload`, enqueued now.
    pub fn new(route: impl Into<Cow<'static, str>>, payload: impl Into<Vec<u8>>) -> Self {
        Task {
            id: TaskId::new(),
            route: route.into(),
            payload: payload.into(),
            headers: Headers::default(),
            attempts: 0,
            enqueued_at_ms: now_millis(),
            not_before_ms: None,
            origin: None,
        }
    }

    /// Marks the source item this task stands for.
    pub fn with_origin(mut self, source: impl Into<String>, key: impl Into<String>) -> Self {
        self.origin = Some(TaskOrigin {
            source: source.into(),
            key: key.into(),
        });
        self
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
        let headers = self.headers.0.capacity()
            * std::mem::size_of::<(Cow<'static, str>, String)>()
            + self
                .headers
                .0
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Cow::Borrowed(_) => 0,
                        Cow::Owned(k) => k.capacity(),
                    };
                    key + v.capacity()
                })
                .sum::<usize>();
        let origin = self
            .origin
            .as_ref()
            .map_or(0, |o| o.source.capacity() + o.key.capacity());
        route + self.payload.capacity() + headers + origin
    }
}

/// Payloads are bytes; in JSON they travel as a UTF-8 string when they are valid UTF-8
/// (readable in `redis-cli` and the control plane) and as an array of bytes otherwise.
mod payload_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
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

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
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
