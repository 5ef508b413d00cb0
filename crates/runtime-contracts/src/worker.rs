//! What the control plane shows of worker pools.

use serde::{Deserialize, Serialize};

/// A histogram with fixed upper bounds (Prometheus style, counts not cumulative).
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending, in seconds.
    pub bounds: Vec<f64>,
    /// Observations per bucket; one more than `bounds` (the last is `+Inf`).
    pub counts: Vec<u64>,
    /// Sum of all observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// What the control plane shows of a worker pool.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// The queue it consumes.
    pub queue: String,
    /// Configured concurrency.
    pub concurrency: usize,
    /// Workers running a task now.
    pub busy: usize,
    /// Tasks finished successfully.
    pub processed: u64,
    /// Failed attempts (errors, panics, timeouts).
    pub failed: u64,
    /// Tasks dead-lettered by this pool.
    pub dead_lettered: u64,
    /// Worker restarts after panics: a handler that panicked (its worker backs off and
    /// takes the next task) plus a worker task that died outside the handler (replaced by
    /// the supervisor). Not task retries: those are in `failed`.
    pub restarts: u64,
    /// Tasks that hit the per-task timeout.
    pub timeouts: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Task durations in seconds.
    pub durations: Histogram,
    /// The pool's limits, when it has any (`[workers] concurrency_key`, `rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<PoolLimitsStatus>,
}

/// What a pool with limits shows of them.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct PoolLimitsStatus {
    /// The task header whose value is the concurrency key, if any.
    pub concurrency_key: Option<String>,
    /// Tasks of one key running at once, across processes.
    pub per_key: Option<u32>,
    /// The rate (`"50/s"`), if any.
    pub rate: Option<String>,
    /// Whether the rate holds per key (else for the whole pool).
    pub rate_per_key: bool,
    /// Times a task found its key's slots taken and waited.
    pub key_waits_total: u64,
    /// Times a task found the rate used up and waited.
    pub rate_waits_total: u64,
    /// Tasks of this process waiting for a key slot or the rate now.
    pub waiting: u64,
    /// Tasks handed back to the queue to wait there (this process's waiting list was
    /// full or the wait was long); no attempt counted.
    pub handed_back_total: u64,
}
