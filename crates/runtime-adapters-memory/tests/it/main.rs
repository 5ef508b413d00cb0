//! Integration tests of the in-memory queue: the shared queue conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
