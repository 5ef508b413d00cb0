//! Integration tests of the Redis queue against real servers: the shared Redis on
//! 127.0.0.1:6379 (each test under its own queue name, deleted afterwards) and private
//! `redis-server` processes started by the tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test code: its `pub` items are shared between the test modules, not an API.
#![allow(missing_docs, unreachable_pub)]

mod common;
mod conformance;
mod lease;
mod processes;
mod resilience;
mod semantics;
