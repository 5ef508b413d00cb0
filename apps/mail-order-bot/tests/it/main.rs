//! Integration tests of mail-order-bot: the parser corpus, the order store on real SQLite
//! and PostgreSQL, and the handler with the real store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod corpus;
mod handler;
mod samples;
mod store;
mod support;
