//! runtime-compose end to end: configuration through core and the adapters' settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod config;
mod limits;
