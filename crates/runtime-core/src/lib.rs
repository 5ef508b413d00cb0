//! # runtime-core
//!
//! The long-lived services of the plba runtime. It orchestrates; it knows no business
//! domain and no infrastructure: queues, sources, exporters and the HTTP server arrive
//! as `runtime-contracts` trait objects that the application composes.
//!
//! * [`RuntimeManager`] — the facade: runs the seed's ten-step flow (config, services,
//!   modules, queues, workers, sources, control plane), reports status, and stops in
//!   reverse order on SIGINT/SIGTERM or an admin call; a second signal forces exit.
//! * [`ConfigurationManager`] — layered configuration, typed platform sections, reload.
//! * [`WorkerSupervisor`] — named worker pools: concurrency, per-task timeout, lease
//!   renewal, restart after a panic with backoff, live resizing, drain at shutdown.
//! * [`TraceService`] — a span per task; the context travels with the task (`traceparent`).
//! * [`HealthRegistry`] — liveness (the runtime's own heartbeat), readiness
//!   (running and every readiness contributor up) and the aggregated view.
//! * [`ControlPlaneService`] — status and admin actions as plain calls.
//! * [`ServiceContainer`] — the typed registry of domain services.
//!
//! The key decision: a task's fate is decided in one place, the worker
//! ([`worker`]): handler outcome -> source acknowledgement -> queue settlement, where
//! "interrupted" and "dependency down" hand the task back without using up an attempt.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod control;
pub mod health;
mod inner;
pub mod logging;
pub mod runtime;
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
pub use runtime::{RuntimeBuilder, RuntimeError, RuntimeHandle, RuntimeManager};
pub use signal::StopToken;
pub use supervisor::{ConcurrencyOrigin, DrainReport, PoolSettings, WorkerSupervisor};
pub use trace::{IdTraceFactory, TraceService};

/// The typed registry of domain services. Modules fill it through their
/// `ModuleContext`; it is defined in the contracts so modules need nothing else.
pub type ServiceContainer = runtime_contracts::Services;
