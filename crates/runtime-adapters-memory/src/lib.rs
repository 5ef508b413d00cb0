//! # runtime-adapters-memory
//!
//! A bounded, in-process [`TaskQueue`](runtime_contracts::TaskQueue): [`MemoryQueue`],
//! built from a serde [`MemoryQueueConfig`]. It keeps every semantic of the contract —
//! at-least-once delivery with leases and a visibility timeout, attempts and a
//! dead-letter set, `release` without an attempt, origin dedupe, scheduled tasks — and it
//! is bounded: `publish` waits while pending + delayed + in-flight tasks fill the
//! capacity (a count) or their payloads fill `capacity_bytes`, so backpressure reaches
//! the source (`stats().blocked_publishers` shows it).
//! Tasks live only as long as the process; use the Redis queue for durability.
//! [`MemoryLimiter`] is its pool limits capability (key slots, rates) in one process.
//!
//! ## How it is built
//!
//! One `std::sync::Mutex` guards a compact [`state`] that is plain synchronous code:
//!
//! * `ready`: a `VecDeque<Task>`, oldest first (grown by a quarter, not doubled, so a
//!   big queue does not hold twice the memory it needs);
//! * `delayed`: a min-heap on the not-before time (delayed nacks, scheduled tasks);
//! * in flight: a slab indexed by the lease, whose generation half changes on every
//!   settle — a stale lease fails with `LeaseLost` without any hashing;
//! * lease deadlines: a FIFO (deadlines given by `consume` only grow) plus a heap for
//!   extended leases; stale entries are dropped lazily or by an amortised compaction;
//! * an origin index (`HashMap<TaskOrigin, (count, id)>`) and a unique-key index
//!   (`HashMap<key, id>`, held through the dead-letter set) for
//!   `PublishOutcome::Duplicate { existing }`;
//! * task controls ([`TaskControls`](runtime_contracts::TaskControls)): lookup and cancel
//!   scan these structures under the lock (operators only; no per-task index to pay
//!   for), a running task's cancel is a flag in its slab entry, and its holder is woken
//!   through a third `Notify`.
//!
//! **Key decision: no timers and no background task.** Due delayed tasks and expired
//! leases are moved back to `ready` lazily, whenever `consume` or `stats` takes the
//! lock. A consumer that has to wait sleeps on a `tokio::sync::Notify` with a timer set
//! to the earliest of its own deadline, the next lease deadline and the next due time;
//! when something earlier appears while consumers sleep, one of them is woken to re-arm.
//! Publishers blocked on a full queue wait on a second `Notify` that settles signal.
//! Nothing is spawned and nothing is allocated per task beyond the copy handed to the
//! consumer (the queue must keep its own copy until the ack).
//!
//! Its leader lease ([`LocalLease`]) is a table in process memory: one process is all
//! the queue spans.
//!
//! [`MemoryQueue::memory_usage`] reports the bytes held per live task, with
//! [`Task::heap_bytes`](runtime_contracts::Task::heap_bytes) for the payload side.

mod config;
mod lease;
mod limits;
mod queue;
mod state;

pub use config::{DEFAULT_CAPACITY_BYTES, InvalidConfig, MemoryQueueConfig, MemoryQueueSettings};
pub use lease::LocalLease;
pub use limits::MemoryLimiter;
pub use queue::MemoryQueue;
pub use state::MemoryUsage;

#[cfg(test)]
mod tests;
