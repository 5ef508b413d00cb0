//! runtime-compose end to end: configuration through core and the adapters' settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test code: its `pub` items are shared between the test modules, not an API.
#![allow(missing_docs, unreachable_pub)]

mod backends;
mod client;
mod config;
mod limits;
mod schedules;
