//! # runtime-testkit
//!
//! Test support for plba, used only as a dev-dependency:
//!
//! * [`queue_conformance`] — the queue conformance suite, written once and run against
//!   every [`TaskQueue`](runtime_contracts::TaskQueue) backend.
//! * [`dovecot`] — a real IMAP server (Dovecot) per test, on a free loopback port with its
//!   own temporary directory.
//!
//! Fixtures that need a server fail loudly, naming what is missing and how to get it.

pub mod dovecot;
pub mod queue_conformance;
