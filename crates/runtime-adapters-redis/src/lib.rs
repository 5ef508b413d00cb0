//! # runtime-adapters-redis
//!
//! A [`TaskQueue`](runtime_contracts::TaskQueue) in Redis that any number of runtime
//! processes share: [`RedisQueue`], built from a serde [`RedisQueueConfig`].
//!
//! ## Concepts
//!
//! * Every live task is one field of a hash (`tasks`, id -> JSON); where it stands is
//!   kept by index structures: the `ready` list, the `delayed` sorted set (by not-before
//!   time) and the `inflight` sorted set (by lease deadline). Dead letters sit in their own
//!   sorted set and hash. The key layout is in `docs/redis-queue.md`.
//! * A delivery holds a lease: a token from a queue-wide counter, stored with the
//!   consumer's identity (host, pid, random; unique per process) in the `leases` hash.
//!   Settling checks the token, so a consumer whose lease ran out and was reclaimed gets
//!   [`QueueError::LeaseLost`](runtime_contracts::QueueError::LeaseLost).
//! * The queue offers a leader lease per name
//!   ([`TaskQueue::leader_lease`](runtime_contracts::TaskQueue::leader_lease)): a
//!   [`RedisLease`] (one key, `SET NX PX`, renewed and released by holder-checking
//!   scripts), so the runtime can run an exclusive source in one process of many; see
//!   `lease.rs`.
//! * Every change is one Lua script over keys that share the hash tag `{name}`: atomic,
//!   Redis Cluster ready, and O(batch · log n) — a backlog of a million costs per task
//!   what a backlog of a thousand does. Counters live in Redis, so stats hold across
//!   processes.
//! * Task controls ([`TaskControls`](runtime_contracts::TaskControls)): unique keys and
//!   origins are claimed in the publish script; lookup and cancel are scripts too (O(1));
//!   a running task's cancel is a mark its holder polls every [`CANCEL_POLL`] and every
//!   settle but ack honours. See `docs/task-controls.md`.
//!
//! * [`RedisLimiter`] keeps worker pools' key slots (sorted sets of holders that expire)
//!   and rates (a GCRA schedule on Redis's clock) across processes; see `limits.rs`.
//!
//! ## Key design decision: lists and sorted sets plus a doorbell, not streams
//!
//! Leases that can be extended by any amount, attempts that rewrite the task and
//! redelivery without counting an attempt fit a hash plus sorted sets better than a
//! stream's pending-entries list (which cannot push a deadline into the future). Taking
//! work is a non-blocking script; an idle consumer then blocks on `BLPOP` of a `wake`
//! list that every publish rings, so it wakes within a round trip of a publish without
//! polling. Why, and what was measured, is in `docs/redis-queue.md`.

mod config;
mod conn;
mod keys;
pub mod lease;
mod limits;
mod queue;
mod scripts;

pub use config::{FieldProblem, RedisQueueConfig, RedisQueueSettings};
pub use lease::{LeaseError, RedisLease};
pub use limits::RedisLimiter;
pub use queue::{CANCEL_POLL, RedisQueue};

/// This machine's name for consumer and lease-holder ids (`HOSTNAME` where `/proc` has
/// none, e.g. some sandboxes).
fn host_name() -> String {
    // Read once: it is asked for on async paths, and the host does not change.
    static HOST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "host".to_owned())
    });
    HOST.clone()
}
