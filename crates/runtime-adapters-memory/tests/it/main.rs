//! Integration tests of the in-memory queue: the shared queue conformance suite and the shared lease suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod lease;
