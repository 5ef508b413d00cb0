//! # runtime-core
//!
//! The long-lived services of the plba runtime. It orchestrates; it knows no business
//! domain and no infrastructure: queues, sources, exporters and the HTTP server arrive
//! as `runtime-contracts` trait objects that the application composes.
//!
//! * [`RuntimeManager`] — the facade: runs the seed's ten-step flow (config,
//!   modules, queues, workers, sources, control plane), reports status, and stops in
//!   reverse order on SIGINT/SIGTERM or an admin call; a second signal ends `run` at once
//!   with [`RuntimeError::Interrupted`] and the binary picks the exit code.
//! * [`ConfigurationManager`] — layered configuration, typed platform sections, reload.
//! * [`WorkerSupervisor`] — named worker pools: concurrency, per-task timeout, lease
//!   renewal, restart after a panic with backoff, live resizing, drain at shutdown.
//! * [`LeaderSource`] — an exclusive source: runs only while this process holds the
//!   queue backend's [`LeaderLease`](runtime_contracts::LeaderLease).
//! * [`TraceService`] — a span per task; the context travels with the task (`traceparent`).
//! * [`HealthRegistry`] — liveness (the runtime's own heartbeat), readiness
//!   (running and every readiness contributor up) and the aggregated view.
//! * [`ControlPlaneService`] — status and admin actions as plain calls.
//!
//! The key decision: a task's fate is decided in one place, the worker
//! ([`worker`]): handler outcome -> source acknowledgement -> queue settlement, where
//! "interrupted" and "dependency down" hand the task back without using up an attempt.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod control;
pub mod health;
pub mod leader;
pub mod limits;
pub mod logging;
pub mod runtime;
mod shared;
pub mod signal;
pub mod sources;
mod stats;
pub mod supervisor;
pub mod trace;
pub mod worker;

pub use backoff::Backoff;
pub use config::{ConfigurationManager, PlatformConfig};
pub use control::ControlPlaneService;
pub use health::HealthRegistry;
pub use leader::LeaderSource;
pub use runtime::{RuntimeBuilder, RuntimeError, RuntimeHandle, RuntimeManager};
pub use signal::StopToken;
pub use supervisor::{ConcurrencyOrigin, DrainReport, PoolSettings, WorkerSupervisor};
pub use trace::{IdTraceFactory, TraceService};
