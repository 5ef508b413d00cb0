//! The scheduled source: the source conformance suite, and restarts after missed ticks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod misfire;
