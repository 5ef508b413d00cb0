//! Integration tests of mail-order-bot: the parser corpus, the order store on real SQLite
//! and PostgreSQL, the handler with the real store, and the whole bot end to end against
//! Dovecot, Maildir, Redis, SQLite and PostgreSQL (including the real binary, and two
//! instances of it sharing one mailbox).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test code: its `pub` items are shared between the test modules, not an API.
#![allow(missing_docs, unreachable_pub)]

mod cli;
mod compose_verdicts;
mod connect;
mod control_config;
mod corpus;
mod e2e;
mod failures;
mod handler;
mod harness;
mod instances;
mod readiness;
mod readonly;
mod samples;
mod store;
mod summary;
mod support;
mod tracing;
