//! # runtime-core
//!
//! The long-lived services of the plba runtime. It orchestrates; it knows no business
//! domain and no infrastructure: queues, sources, exporters and the HTTP server arrive
//! as `runtime-contracts` trait objects that the application composes.
//!
//! * [`RuntimeManager`] — the facade: runs the ten-step flow (config, services, modules,
//!   queues, workers, sources, control plane), reports [`RuntimeStatus`], stops in
//!   reverse order on SIGINT/SIGTERM or an admin call.
//! * [`ConfigurationManager`] — layered configuration, typed platform sections, reload.
//! * [`WorkerSupervisor`] — named worker pools, restart after panics, per-task timeout.
//! * [`TraceService`] — a span per task, trace context carried in task headers.
//! * [`HealthRegistry`] — liveness, readiness and the aggregated health view.
//! * [`ControlPlaneService`] — status and admin actions as plain calls.
//! * [`ServiceContainer`] — the typed registry of domain services.
//!
//! [`RuntimeStatus`]: runtime_contracts::RuntimeStatus

pub mod cli;
pub mod config;

pub use config::{ConfigurationManager, PlatformConfig};
