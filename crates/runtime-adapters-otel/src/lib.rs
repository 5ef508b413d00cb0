//! # runtime-adapters-otel
//!
//! Exports plba's spans with OpenTelemetry. This is the only crate that knows the
//! opentelemetry crates; everything else speaks the contracts' [`TraceFactory`],
//! [`TaskSpan`] and [`TraceContext`].
//!
//! * [`OtelTraceFactory`] — a [`TraceFactory`] built from an [`OtelConfig`]. Spans carry
//!   exactly the W3C ids of their [`TraceContext`]: a child gets the parent's trace id and
//!   the parent's span id as `parent_span_id`, so the `traceparent` in task headers, the
//!   logs and the collector all agree, across queues and processes.
//! * Exporters: `otlp` (OTLP over HTTP/protobuf, `POST <endpoint>/v1/traces`, plain HTTP
//!   through hyper, configured headers) and `stdout` (one JSON line per span). `none` is
//!   not this crate's job: without an exporter, keep the core's id-only factory and do not
//!   build this adapter ([`OtelTraceFactory::new`] refuses `none`).
//!
//! ## Key design decision: spans are data, export is elsewhere
//!
//! A span is built as the SDK's `SpanData` directly (no global tracer provider, no
//! thread-local "current span"), because our context travels as data. A finished span
//! goes into a **bounded** queue with `try_send`; one dedicated exporter thread with its
//! own single-threaded Tokio runtime batches and exports. So task processing never waits
//! on the collector: when the collector is dead or slow the queue fills, further spans
//! are dropped and counted ([`TraceFactory::dropped_spans`]), memory stays bounded, and
//! nothing panics. A failed export drops its batch and counts it too. At shutdown
//! [`TraceFactory::flush`] exports what is queued within `flush_timeout`.
//!
//! Sampling is parent-based: a root span is sampled, a child follows its parent's flag.
//! Unsampled spans keep propagating their context but are not exported.

mod config;
mod pipeline;
mod span;
mod stdout;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;
use tokio::sync::mpsc;
use tracing::warn;

use runtime_contracts::{SpanSpec, TaskSpan, TraceFactory};

pub use crate::config::{ExporterKind, OtelConfig, OtelSettings};
use crate::pipeline::{Control, Exporter, Pipeline, Sink};
use crate::stdout::StdoutExporter;

/// Why the exporting factory could not be built or flushed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// A configuration value is invalid (header values are never included).
    #[error("invalid tracing config `{field}`: {reason}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `exporter = "none"`: use the core's id-only factory instead.
    #[error("exporter `none` needs no exporting factory: use the id-only trace factory")]
    NoExporter,
    /// The OTLP exporter could not be built.
    #[error("cannot build the otlp exporter: {0}")]
    Exporter(String),
    /// The exporter thread or its runtime could not start.
    #[error("cannot start the span exporter thread")]
    Thread(#[source] std::io::Error),
    /// A flush did not finish in time; what is left stays queued.
    #[error("span flush did not finish within {0:?}")]
    FlushTimeout(Duration),
    /// The exporter thread has stopped.
    #[error("the span exporter has stopped")]
    Stopped,
}

/// Export counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans the collector (or stdout) accepted.
    pub exported: u64,
    /// Spans lost: queue full, export failed or timed out.
    pub dropped: u64,
    /// Export requests that failed.
    pub failed_exports: u64,
    /// Spans accepted and not yet exported or dropped (queued, batched or in flight).
    pub queued: usize,
}

/// The exporting [`TraceFactory`]; see the crate docs.
pub struct OtelTraceFactory {
    sink: Arc<Sink>,
    control: mpsc::UnboundedSender<Control>,
    scope: InstrumentationScope,
    flush_timeout: Duration,
}

impl std::fmt::Debug for OtelTraceFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelTraceFactory")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl OtelTraceFactory {
    /// Validates `config`, builds the exporter and starts the exporter thread. Works with
    /// or without a surrounding Tokio runtime.
    pub fn new(config: OtelConfig) -> Result<OtelTraceFactory, OtelError> {
        config.validate()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OtelError::Thread)?;
        let exporter = match config.exporter {
            ExporterKind::None => return Err(OtelError::NoExporter),
            ExporterKind::Stdout => {
                Exporter::Stdout(StdoutExporter::new(config.service_name.clone()))
            }
            ExporterKind::Otlp => {
                let _guard = runtime.enter();
                let headers = config
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect();
                let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_endpoint(config.traces_url()?)
                    .with_timeout(config.export_timeout)
                    .with_headers(headers)
                    .build()
                    .map_err(|e| OtelError::Exporter(e.to_string()))?;
                exporter.set_resource(
                    &Resource::builder()
                        .with_service_name(config.service_name.clone())
                        .build(),
                );
                Exporter::Otlp(Box::new(exporter))
            }
        };
        let pipeline = Pipeline::new(
            exporter,
            config.max_queue_size,
            config.max_export_batch_size,
            config.scheduled_delay,
            config.export_timeout,
        );
        let worker = pipeline.worker;
        std::thread::Builder::new()
            .name("plba-span-export".to_owned())
            .spawn(move || runtime.block_on(worker.run()))
            .map_err(OtelError::Thread)?;
        Ok(OtelTraceFactory {
            sink: pipeline.sink,
            control: pipeline.control,
            scope: InstrumentationScope::builder("plba")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            flush_timeout: config.flush_timeout,
        })
    }

    /// Export counters.
    pub fn stats(&self) -> ExportStats {
        let c = &self.sink.counters;
        ExportStats {
            exported: c.exported.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed_exports: c.failed_exports.load(Ordering::Relaxed),
            queued: self.sink.queued(),
        }
    }

    /// Spans the collector accepted.
    pub fn exported_spans(&self) -> u64 {
        self.stats().exported
    }

    /// Exports everything queued now, waiting at most `timeout` (blocking the calling
    /// thread; from async code prefer [`OtelTraceFactory::flush_async`]).
    pub fn flush_within(&self, timeout: Duration) -> Result<(), OtelError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.request_flush(timeout, move |done| {
            let _ = tx.send(done);
        })?;
        // A little slack: the worker itself stops at the deadline.
        match rx.recv_timeout(timeout + Duration::from_millis(200)) {
            Ok(true) => Ok(()),
            Ok(false) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(OtelError::FlushTimeout(timeout))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(OtelError::Stopped),
        }
    }

    /// Like [`OtelTraceFactory::flush_within`], without blocking a runtime thread.
    pub async fn flush_async(&self, timeout: Duration) -> Result<(), OtelError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.request_flush(timeout, move |done| {
            let _ = tx.send(done);
        })?;
        match tokio::time::timeout(timeout + Duration::from_millis(200), rx).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) | Err(_) => Err(OtelError::FlushTimeout(timeout)),
            Ok(Err(_)) => Err(OtelError::Stopped),
        }
    }

    fn request_flush(
        &self,
        timeout: Duration,
        reply: impl FnOnce(bool) + Send + 'static,
    ) -> Result<(), OtelError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.control
            .send(Control::Flush {
                deadline,
                reply: Box::new(reply),
            })
            .map_err(|_| OtelError::Stopped)
    }
}

impl TraceFactory for OtelTraceFactory {
    fn start_span(&self, spec: SpanSpec<'_>) -> Box<dyn TaskSpan> {
        Box::new(span::start(spec, &self.scope, &self.sink))
    }

    fn flush(&self) {
        if let Err(error) = self.flush_within(self.flush_timeout) {
            let stats = self.stats();
            warn!(%error, queued = stats.queued, dropped = stats.dropped, "span flush incomplete");
        }
    }

    fn dropped_spans(&self) -> u64 {
        self.stats().dropped
    }
}

impl Drop for OtelTraceFactory {
    /// Asks the exporter thread to export what is left and stop, without waiting for it.
    fn drop(&mut self) {
        let deadline = tokio::time::Instant::now() + self.flush_timeout;
        let _ = self.control.send(Control::Shutdown { deadline });
    }
}
