//! The scheduled source: the source conformance suite, and restarts after missed ticks.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test modules share helpers; they are no public API.
#![allow(missing_docs, unreachable_pub)]

mod conformance;
mod misfire;
