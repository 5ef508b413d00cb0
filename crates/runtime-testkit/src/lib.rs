//! # runtime-testkit
//!
//! Test support for plba, used only as a dev-dependency:
//!
//! * [`queue_conformance`] — the queue conformance suite, written once and run against
//!   every [`TaskQueue`](runtime_contracts::TaskQueue) backend.
//! * [`source_conformance`] — the source conformance suite, written once and run against
//!   every [`TaskSource`](runtime_contracts::TaskSource) through a small per-source
//!   fixture ([`source_conformance::SourceFixture`]).
//! * [`lease_conformance`] — the leader-lease suite, run against every backend whose
//!   queue offers a [`LeaderLease`](runtime_contracts::LeaderLease).
//! * [`example_backend`] — a queue backend written as a new one is, plugged into
//!   composition with one line (the proof that adding a backend touches nothing else).
//! * [`dovecot`] — a real IMAP server (Dovecot) per test, on a free loopback port with its
//!   own temporary directory.
//! * [`otlp_receiver`] — an in-test OTLP/HTTP collector that decodes and keeps spans,
//!   and can be made slow, failing or dead.
//!
//! * [`fakes`] — small sources, handlers, acknowledgers, modules and config providers for
//!   driving a real runtime in tests (stand-ins only where the contract itself is under test).
//!
//! Fixtures that need a server fail loudly, naming what is missing and how to get it.

pub mod dovecot;
pub mod example_backend;
pub mod fakes;
pub mod lease_conformance;
pub mod otlp_receiver;
pub mod queue_conformance;
pub mod source_conformance;

pub use runtime_core;
