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
//! * [`TaskControls`] (a capability a queue may offer through [`TaskQueue::controls`])
//!   looks tasks up by id and cancels them; a task's unique key
//!   ([`Task::with_unique_key`]) makes `publish` answer the matched task's id instead of
//!   adding a second one. A running task's handler sees its cancellation through
//!   [`TaskContext::is_cancelled`].
//! * [`TaskHandler`] returns a typed [`TaskError`] that decides ack / nack(delay) /
//!   dead-letter / release. A [`Job`] is a serde payload with its route (JSON on the
//!   wire); a [`Router`] dispatches a pool's tasks by route to typed [`JobHandler`]s.
//! * [`SourceAcknowledger`] is how a source learns the final outcome of each task it
//!   produced, in whichever process the task finished: the task carries its origin (source
//!   name + opaque key) and every process registers the same acknowledgers by name.
//! * [`LeaderLease`]: at most one holder at a time across processes; a queue backend
//!   that spans processes offers one ([`TaskQueue::leader_lease`]), and the runtime runs
//!   an *exclusive* source only while its process holds it.
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
mod controls;
pub mod duration;
mod error;
mod handler;
mod headers;
mod health;
mod job;
mod lease;
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
    AdminError, ControlEndpoint, ControlPlane, DeadLetterEntry, EnqueueReceipt, ModuleStatus,
    PurgedDeadLetters, ReloadReport, RuntimeState, RuntimeStatus,
};
pub use controls::{
    CancelOutcome, LAST_ERROR_HEADER, MAX_LAST_ERROR_BYTES, MAX_UNIQUE_KEY_BYTES, TaskControls,
    TaskInfo, TaskState, UNIQUE_KEY_HEADER,
};
pub use error::{BoxError, EndpointError, ModuleError, SourceError, error_chain};
pub use handler::{TaskContext, TaskError, TaskHandler};
pub use headers::Headers;
pub use health::{ComponentHealth, HealthContributor, HealthReport, HealthStatus};
pub use job::{EncodeError, Job, JobHandler, RouteError, Router};
pub use lease::{LeaderLease, LeaseError};
pub use limits::{KeySlot, LimitError, RATE_SYNTAX, Rate, Reservation, TaskLimiter};
pub use module::{ApplicationModule, ModuleContext, PoolSpec, Probe, Registrations, SourceSpec};
pub use queue::{
    DeadLetter, NackOutcome, PublishOutcome, QueueBackendSettings, QueueError, QueueStats,
    TaskQueue,
};
pub use signal::{NeverStopped, StopSignal};
pub use source::{
    DEFAULT_MAX_MESSAGE_BYTES, FinalOutcome, OVERSIZE_HEADER, REJECTED_TAG, SCHEDULE_KIND,
    SCHEDULE_LOCAL_TICK_HEADER, SCHEDULE_TICK_HEADER, ScheduleStatus, SourceAcknowledger,
    SourceState, SourceStatus, TaskSink, TaskSource,
};
pub use task::{Delivery, Lease, ParseTaskIdError, Task, TaskId, TaskOrigin, now_millis};
pub use trace::{
    AttributeValue, NoopSpan, SpanKind, SpanSpec, TRACEPARENT, TRACESTATE, TaskSpan, TraceContext,
    TraceFactory, TraceParent,
};
pub use worker::{Histogram, PoolLimitsStatus, PoolStatus};
