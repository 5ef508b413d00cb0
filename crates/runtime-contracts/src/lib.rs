//! # runtime-contracts
//!
//! The small, domain-free vocabulary shared by the plba runtime (`runtime-core`), its
//! adapters (`runtime-adapters-*`) and the applications built on them. It has no async
//! runtime and no I/O stack: anyone can implement these traits, and a library author can
//! depend on this crate alone (as `axum-core` is to `axum`).
//!
//! ## The flow
//!
//! ```text
//! TaskSource --TaskSink--> TaskQueue --consume--> (worker) --> TaskHandler
//!     ^                                              |
//!     +------------- SourceAcknowledger <------------+  (final outcome: done / dead-lettered)
//! ```
//!
//! * [`Task`] is the envelope: id, route, payload, string headers, the W3C trace parent
//!   (typed in memory, the `traceparent` header on the wire), attempts, timestamps and the
//!   [`TaskOrigin`] that names the source and the item at the source that produced it.
//! * [`TaskQueue`] delivers at least once: a task leaves the queue only by `ack`. A
//!   [`Delivery`] carries a lease; `nack` counts an attempt and dead-letters past the
//!   limit, `release` hands a task back without counting one (shutdown, outages).
//! * [`TaskHandler`] returns a typed [`TaskError`] that decides ack / nack(delay) /
//!   dead-letter / release.
//! * [`SourceAcknowledger`] is how a source learns the final outcome of each task it
//!   produced, in whichever process the task finished: the task carries its origin (source
//!   name + opaque key) and every process registers the same acknowledgers by name.
//! * [`ApplicationModule`] checks its config sections and registers sources, pools,
//!   acknowledgers and health contributors into a [`ModuleContext`]; the core turns those registrations into running
//!   components.
//! * [`ConfigProvider`] loads one configuration layer; [`ConfigSnapshot`] is the merged,
//!   validated result that modules read typed sections from.
//! * [`TaskLimiter`] is a backend's optional capability for pool limits: key slots that
//!   expire with their holder and rates booked as a schedule, held across processes.
//! * [`HealthContributor`], [`TraceFactory`] and [`ControlPlane`] expose health, traces and
//!   administration as plain data, so only the HTTP adapter knows HTTP and only the OTel
//!   adapter knows OpenTelemetry.
//!
//! Types that cross a boundary (stats, status, health) are plain serializable structs with
//! public fields. Traits are object safe (`Arc<dyn …>`), because components are chosen by
//! configuration at run time.

mod backoff;
mod config;
mod control;
pub mod duration;
mod error;
mod handler;
mod headers;
mod health;
mod limits;
mod module;
mod queue;
mod signal;
mod source;
mod task;
mod trace;
mod worker;

pub use backoff::Backoff;
pub use config::{
    ConfigChange, ConfigEntry, ConfigError, ConfigIssue, ConfigLayer, ConfigOrigin, ConfigProvider,
    ConfigSnapshot, ConfigSubscriber, MAX_SECRET_FILE_BYTES, QueueShared, REDACTED, Secret,
    is_secret_key, parse_value, read_secret_file, redact_url, toml_to_json,
};
pub use control::{
    AdminError, ControlEndpoint, ControlPlane, DeadLetterEntry, ModuleStatus, PurgedDeadLetters,
    ReloadReport, RuntimeState, RuntimeStatus,
};
pub use error::{BoxError, EndpointError, ModuleError, SourceError};
pub use handler::{TaskContext, TaskError, TaskHandler};
pub use headers::Headers;
pub use health::{ComponentHealth, HealthContributor, HealthReport, HealthStatus};
pub use limits::{KeySlot, LimitError, RATE_SYNTAX, Rate, Reservation, TaskLimiter};
pub use module::{ApplicationModule, ModuleContext, PoolSpec, Registrations, SourceSpec};
pub use queue::{DeadLetter, NackOutcome, PublishOutcome, QueueError, QueueStats, TaskQueue};
pub use signal::StopSignal;
pub use source::{
    DEFAULT_MAX_MESSAGE_BYTES, FinalOutcome, OVERSIZE_HEADER, REJECTED_TAG, SourceAcknowledger,
    SourceState, SourceStatus, TaskSink, TaskSource,
};
pub use task::{Delivery, Lease, ParseTaskIdError, Task, TaskId, TaskOrigin, now_millis};
pub use trace::{
    AttributeValue, NoopSpan, SpanKind, SpanSpec, TRACEPARENT, TRACESTATE, TaskSpan, TraceContext,
    TraceFactory, TraceParent,
};
pub use worker::{Histogram, PoolLimitsStatus, PoolStatus};
