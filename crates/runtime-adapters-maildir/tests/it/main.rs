//! The Maildir source and acknowledger on real temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test code: its `pub` items are shared between the test modules, not an API.
#![allow(missing_docs, unreachable_pub)]

mod ack;
mod conformance;
mod failures;
mod source;
mod support;
