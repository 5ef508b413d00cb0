//! The Maildir source and acknowledger on real temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ack;
mod conformance;
mod failures;
mod source;
mod support;
