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
}
