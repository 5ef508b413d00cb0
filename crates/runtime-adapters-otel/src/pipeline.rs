//! The export pipeline: a bounded queue that spans enter without waiting, and one
//! exporter thread with its own small Tokio runtime that batches and sends them.
//!
//! Task processing only ever does a `try_send`: a full queue (a dead or slow collector)
//! drops the span and counts it; it never blocks and never grows memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::stdout::StdoutExporter;

/// Where the exporter thread sends batches.
pub(crate) enum Exporter {
    Otlp(Box<opentelemetry_otlp::SpanExporter>),
    Stdout(StdoutExporter),
}

impl Exporter {
    async fn export(&self, batch: Vec<SpanData>) -> Result<(), String> {
        match self {
            Exporter::Otlp(exporter) => exporter.export(batch).await.map_err(|e| e.to_string()),
            Exporter::Stdout(exporter) => exporter.export(&batch).map_err(|e| e.to_string()),
        }
    }
}

/// The producer side, shared by the factory and every live span.
#[derive(Debug)]
pub(crate) struct Sink {
    tx: mpsc::Sender<SpanData>,
    pub(crate) counters: Counters,
}

/// Export accounting, readable from any thread.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Spans that entered the queue.
    pub(crate) accepted: AtomicU64,
    pub(crate) exported: AtomicU64,
    /// All lost spans: queue full plus failed exports.
    pub(crate) dropped: AtomicU64,
    /// Spans lost by failed exports (they had been accepted).
    pub(crate) export_dropped: AtomicU64,
    pub(crate) failed_exports: AtomicU64,
}

impl Sink {
    /// Queues a finished span; drops and counts it when the queue is full or closed.
    pub(crate) fn submit(&self, span: SpanData) {
        if self.tx.try_send(span).is_ok() {
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans accepted but not yet exported or lost: in the queue, in the exporter's
    /// partial batch or in flight.
    pub(crate) fn queued(&self) -> usize {
        let c = &self.counters;
        // Done counters first: they only grow after `accepted` did for the same span.
        let done = c.exported.load(Ordering::Relaxed) + c.export_dropped.load(Ordering::Relaxed);
        c.accepted.load(Ordering::Relaxed).saturating_sub(done) as usize
    }
}

/// What the factory asks of the exporter thread.
pub(crate) enum Control {
    /// Export everything queued before `deadline`, then call `reply` with whether all of
    /// it was handed to the exporter in time.
    Flush {
        deadline: Instant,
        reply: Box<dyn FnOnce(bool) + Send>,
    },
    /// Flush once more, then stop the thread.
    Shutdown { deadline: Instant },
}

pub(crate) struct Worker {
    rx: mpsc::Receiver<SpanData>,
    control: mpsc::UnboundedReceiver<Control>,
    exporter: Exporter,
    sink: Arc<Sink>,
    max_batch: usize,
    scheduled_delay: Duration,
    export_timeout: Duration,
    /// Whether the last export failed; failures are logged on change, not per batch.
    failing: AtomicBool,
}

pub(crate) struct Pipeline {
    pub(crate) sink: Arc<Sink>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) worker: Worker,
}

impl Pipeline {
    pub(crate) fn new(
        exporter: Exporter,
        max_queue_size: usize,
        max_batch: usize,
        scheduled_delay: Duration,
        export_timeout: Duration,
    ) -> Pipeline {
        let (tx, rx) = mpsc::channel(max_queue_size);
        let (control, control_rx) = mpsc::unbounded_channel();
        let sink = Arc::new(Sink {
            tx,
            counters: Counters::default(),
        });
        Pipeline {
            sink: Arc::clone(&sink),
            control,
            worker: Worker {
                rx,
                control: control_rx,
                exporter,
                sink,
                max_batch: max_batch.min(max_queue_size),
                scheduled_delay,
                export_timeout,
                failing: AtomicBool::new(false),
            },
        }
    }
}

impl Worker {
    pub(crate) async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut tick = tokio::time::interval(self.scheduled_delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.max_batch - batch.len();
            tokio::select! {
                biased;
                control = self.control.recv() => match control {
                    Some(Control::Flush { deadline, reply }) => {
                        let complete = self.drain(&mut batch, deadline).await;
                        reply(complete);
                    }
                    Some(Control::Shutdown { deadline }) => {
                        self.drain(&mut batch, deadline).await;
                        break;
                    }
                    // The factory is gone without a shutdown request: nothing to flush for.
                    None => break,
                },
                received = self.rx.recv_many(&mut batch, room) => {
                    if received == 0 {
                        // Every sender is gone: export the rest and stop.
                        let deadline = Instant::now() + self.export_timeout;
                        self.drain(&mut batch, deadline).await;
                        break;
                    }
                    if batch.len() >= self.max_batch {
                        self.export(std::mem::take(&mut batch), None).await;
                        tick.reset();
                    }
                }
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.export(std::mem::take(&mut batch), None).await;
                    }
                }
            }
        }
    }

    /// Exports the partial batch and everything queued now, until `deadline`. True when
    /// nothing was left behind.
    async fn drain(&mut self, batch: &mut Vec<SpanData>, deadline: Instant) -> bool {
        loop {
            while batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.export(std::mem::take(batch), Some(deadline)).await;
        }
    }

    async fn export(&self, batch: Vec<SpanData>, deadline: Option<Instant>) {
        let n = batch.len() as u64;
        let mut until = Instant::now() + self.export_timeout;
        if let Some(deadline) = deadline {
            until = until.min(deadline);
        }
        let result = match tokio::time::timeout_at(until, self.exporter.export(batch)).await {
            Ok(result) => result,
            Err(_) => Err("export timed out".to_owned()),
        };
        let counters = &self.sink.counters;
        match result {
            Ok(()) => {
                counters.exported.fetch_add(n, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!("span export recovered");
                }
            }
            Err(error) => {
                counters.export_dropped.fetch_add(n, Ordering::Relaxed);
                counters.dropped.fetch_add(n, Ordering::Relaxed);
                counters.failed_exports.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!(spans = n, %error, "span export failed, dropping spans until it recovers");
                }
            }
        }
    }
}

#[cfg(test)]
impl Worker {
    pub(crate) fn try_recv_for_test(&mut self) -> Option<SpanData> {
        self.rx.try_recv().ok()
    }
}
