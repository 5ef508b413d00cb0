//! hello-tasks end to end: the real binary, run to completion, stopped by SIGINT, given a
//! bad configuration; and the tutorial's code is this crate's code.
// Test code: its `pub` items are shared between the test modules, not an API.
#![allow(missing_docs, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod enqueue;
mod run;
mod tutorial;
