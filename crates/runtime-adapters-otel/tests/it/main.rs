//! Integration tests of the exporting trace factory against a real OTLP/HTTP receiver
//! (`runtime_testkit::otlp_receiver`).
// Test code: its `pub` items are shared between the test modules, not an API.
#![allow(missing_docs, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backpressure;
mod config;
mod flush;
mod shape;

use std::time::Duration;

use runtime_adapters_otel::{OtelConfig, OtelTraceFactory};

/// How long a test waits for spans to arrive before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// An OTLP factory for `endpoint` that exports quickly (tests wait on arrival, not on time).
pub fn factory(endpoint: &str) -> OtelTraceFactory {
    OtelTraceFactory::new(quick(endpoint)).expect("otlp factory")
}

/// Test settings: batches sent every 20 ms; a generous export timeout so a loaded CI
/// machine does not turn a healthy export into a drop.
pub fn quick(endpoint: &str) -> OtelConfig {
    OtelConfig {
        service_name: "otel-it".to_owned(),
        scheduled_delay: Duration::from_millis(20),
        export_timeout: Duration::from_secs(5),
        flush_timeout: Duration::from_secs(10),
        ..OtelConfig::otlp(endpoint)
    }
}
