//! Integration tests of the in-memory queue: the shared queue conformance suite and the shared lease suite.
// Test code: its `pub` items are shared between the test modules, not an API.
#![allow(missing_docs, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod lease;
