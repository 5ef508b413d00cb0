//! # mail-order-bot
//!
//! Turns order emails into orders. A source (IMAP polling, IMAP IDLE or a Maildir)
//! publishes each message as a task; a worker runs [`handler::OrderHandler`], which parses
//! the message off the async threads ([`domain`]), decides the outcome, and saves it
//! idempotently ([`store`]); then the source's acknowledger marks the message `\Seen`
//! (or flags it [`config::DEFAULT_FAILED_KEYWORD`] once its task is dead-lettered).
//!
//! * [`domain`]: pure and synchronous. Raw RFC 5322 bytes in, an [`domain::Order`] out
//!   (accepted with priced lines, or rejected with the spec's reason). No I/O.
//! * [`store`]: the `orders` / `order_lines` tables on SQLite or PostgreSQL (picked from the
//!   URL), migrations at start-up, `save` idempotent by message identity in one
//!   transaction, and errors that tell an outage from a failure.
//! * [`handler`]: the runtime's `TaskHandler`. An outage of the store is
//!   `TaskError::Unavailable` (no attempt used); a rejected order is a success tagged
//!   `rejected` so the mailbox files it apart.
//! * [`config`]: the `[mail]` and `[orders]` sections, their validators and the
//!   [`config::config_spec`] (defaults < files < database < `MOB_*` environment).
//! * [`module`]: [`module::MailOrderModule`], what the app registers with the runtime —
//!   the source `mail.source` names, the worker pool, the store's health, the acknowledger.
//!   With the Redis queue the source runs behind a leader lease in that Redis, so several
//!   instances share one mailbox: one reads it, all run workers and acknowledge.
//! * [`customer`]: the `customer` task header (the sender's address), for
//!   `[workers] concurrency_key = "customer"`: one customer's orders one at a time.
//! * [`app`]: composition from configuration (queue backend, tracer, control plane) and
//!   `run`; [`report`] is `orders`; [`demo`] is `demo`.
//!
//! Key decisions: the message identity (Message-ID, else a versioned content hash) is the
//! idempotency key, so any redelivery — after a crash, a lost lease, a failed mailbox
//! update — re-runs the handler safely and never orders twice; and every moving part
//! (source, queue, tracer) is chosen by configuration in exactly one place
//! ([`module::build_source`], [`runtime_compose::plan`]), so switching
//! polling to IDLE to Maildir, or memory to Redis, changes no code path.

pub mod app;
pub mod config;
pub mod customer;
pub mod demo;
pub mod domain;
pub mod handler;
pub mod module;
pub mod replies;
pub mod report;
pub mod store;
pub mod summary;
