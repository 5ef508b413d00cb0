//! Key names of one queue. Every key carries the hash tag `{name}`, so all keys of a queue
//! live in one Redis Cluster slot and a Lua script may touch them together.

/// The keys of one queue, in the order the scripts expect them in `KEYS`.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    base: String,
    all: [String; 12],
}

/// Suffixes, in `KEYS` order (see `scripts.rs`).
const SUFFIXES: [&str; 12] = [
    "ready",     // list of ids ready now: LPUSH at the back, RPOP at the front
    "delayed",   // zset id -> not-before ms
    "inflight",  // zset id -> lease deadline ms
    "tasks",     // hash id -> task json (every live task: ready, delayed, in flight)
    "leases",    // hash id -> "<token>|<consumer>" of the current delivery
    "origins",   // hash ["source","key"] -> id of the live task for that origin
    "dead",      // zset id -> sequence number (dead letters, oldest first)
    "dead:data", // hash id -> dead-letter json (task, reason, failed_at_ms)
    "stats",     // hash of *_total counters
    "seq",       // counter for lease tokens and dead-letter order
    "wake",      // list of doorbell tokens idle consumers block on (BLPOP)
    "consumers", // zset consumer id -> last consume ms (for operators)
];

impl Keys {
    /// Keys of queue `name` under `prefix` (for example `plba:{orders}:ready`).
    pub(crate) fn new(prefix: &str, name: &str) -> Self {
        let base = if prefix.is_empty() {
            format!("{{{name}}}")
        } else {
            format!("{prefix}:{{{name}}}")
        };
        Keys {
            all: SUFFIXES.map(|s| format!("{base}:{s}")),
            base,
        }
    }

    /// The key of the leader lease `name` (`plba:{orders}:lease:source:mail`): under the
    /// queue's prefix and hash tag, so processes sharing the queue share the lease, two
    /// queues in one Redis do not, and deleting the queue's keys takes it along.
    pub(crate) fn lease(&self, name: &str) -> String {
        format!("{}:lease:{name}", self.base)
    }

    /// All keys, in script order.
    pub(crate) fn all(&self) -> &[String; 12] {
        &self.all
    }

    /// The doorbell list.
    pub(crate) fn wake(&self) -> &str {
        &self.all[10]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_hash_tag() {
        let k = Keys::new("plba", "orders");
        assert_eq!(k.all()[0], "plba:{orders}:ready");
        assert!(k.all().iter().all(|k| k.starts_with("plba:{orders}:")));
        assert_eq!(k.wake(), "plba:{orders}:wake");
        assert_eq!(Keys::new("", "q").all()[3], "{q}:tasks");
        assert_eq!(k.lease("source:mail"), "plba:{orders}:lease:source:mail");
    }
}
