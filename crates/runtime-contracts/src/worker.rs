//! The worker contract and per-pool status.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::task::Delivery;

/// How a worker settled a delivery.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "disposition")]
pub enum Disposition {
    /// Done and acknowledged.
    Acked,
    /// Failed; will be retried.
    Retried {
        /// The error.
        reason: String,
    },
    /// Failed for good; in the dead-letter set.
    DeadLettered {
        /// The error.
        reason: String,
    },
    /// Handed back without counting an attempt (outage, shutdown).
    Released {
        /// Why.
        reason: String,
    },
    /// The queue could not be told; the lease will run out and the task comes back.
    Unsettled {
        /// The queue error.
        reason: String,
    },
}

/// Takes one delivery through its whole life: resume the trace, call the handler, tell
/// the source and settle with the queue. The core's supervisor runs workers in pools; a
/// custom worker (for example one that batches) implements this.
#[async_trait]
pub trait Worker: Send + Sync + 'static {
    /// Processes one delivery.
    async fn process(&self, delivery: Delivery) -> Disposition;
}

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
    /// Worker restarts after a panic.
    pub restarts: u64,
    /// Tasks that hit the per-task timeout.
    pub timeouts: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Task durations in seconds.
    pub durations: Histogram,
}
