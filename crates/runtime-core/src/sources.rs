//! Running sources: the sink they publish through, pause / resume, restart with backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use runtime_contracts::{
    AdminError, PublishOutcome, QueueError, SourceState, SourceStatus, Task, TaskQueue, TaskSink,
    TaskSource,
};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::signal::StopToken;
use crate::trace::TraceService;

/// The sink a source publishes through: spans and trace headers, counting, backpressure
/// (a bounded queue makes `publish` wait).
pub struct RuntimeSink {
    source: String,
    queue: Arc<dyn TaskQueue>,
    trace: TraceService,
    produced: AtomicU64,
}

impl RuntimeSink {
    /// A sink for `source` into `queue`.
    pub fn new(source: impl Into<String>, queue: Arc<dyn TaskQueue>, trace: TraceService) -> Self {
        RuntimeSink {
            source: source.into(),
            queue,
            trace,
            produced: AtomicU64::new(0),
        }
    }

    /// Tasks enqueued so far.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl TaskSink for RuntimeSink {
    async fn publish(&self, mut task: Task) -> Result<PublishOutcome, QueueError> {
        let spans = self.trace.on_publish(
            &self.source,
            self.queue.name(),
            self.queue.backend(),
            &mut task,
        );
        // The synchronous path first: an in-process queue with room takes the task
        // without an async call.
        let result = match self.queue.try_publish(task) {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(task)) => self.queue.publish(task).await,
            Err(error) => Err(error),
        };
        match &result {
            Ok(PublishOutcome::Enqueued) => {
                self.produced.fetch_add(1, Ordering::Relaxed);
            }
            Ok(PublishOutcome::Duplicate { .. }) => {}
            Err(error) => {
                for s in &spans {
                    s.as_span().set_error(&error.to_string());
                }
            }
        }
        for s in spans.iter().rev() {
            s.as_span().end();
        }
        result
    }

    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
        let mut spans = Vec::with_capacity(tasks.len() * 2);
        let mut prepared = Vec::with_capacity(tasks.len());
        for mut task in tasks {
            spans.extend(self.trace.on_publish(
                &self.source,
                self.queue.name(),
                self.queue.backend(),
                &mut task,
            ));
            prepared.push(task);
        }
        let result = self.queue.publish_batch(prepared).await;
        if let Ok(outcomes) = &result {
            let n = outcomes
                .iter()
                .filter(|o| **o == PublishOutcome::Enqueued)
                .count();
            self.produced.fetch_add(n as u64, Ordering::Relaxed);
        }
        for s in spans.iter().rev() {
            s.as_span().end();
        }
        result
    }
}

/// Runs one source: restarts it with backoff when it fails, pauses and resumes it.
pub struct SourceRunner {
    source: Arc<dyn TaskSource>,
    sink: Arc<RuntimeSink>,
    runtime_stop: StopToken,
    paused: watch::Sender<bool>,
    state: watch::Sender<SourceState>,
    current_run: Mutex<Option<StopToken>>,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    restart: Backoff,
}

impl std::fmt::Debug for SourceRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRunner")
            .field("source", &self.source.name())
            .finish_non_exhaustive()
    }
}

/// How long `pause` waits for a source to stop producing.
const PAUSE_WAIT: Duration = Duration::from_secs(15);

impl SourceRunner {
    /// A runner for `source` publishing into `queue`; it stops when `runtime_stop` fires.
    pub fn new(
        source: Arc<dyn TaskSource>,
        queue: Arc<dyn TaskQueue>,
        trace: TraceService,
        runtime_stop: StopToken,
    ) -> Self {
        let sink = Arc::new(RuntimeSink::new(source.name(), queue, trace));
        SourceRunner {
            source,
            sink,
            runtime_stop,
            paused: watch::channel(false).0,
            state: watch::channel(SourceState::Starting).0,
            current_run: Mutex::new(None),
            errors: AtomicU64::new(0),
            last_error: Mutex::new(None),
            restart: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
        }
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        self.source.name()
    }

    /// The source.
    pub fn source(&self) -> &Arc<dyn TaskSource> {
        &self.source
    }

    /// Runs until the runtime stops.
    pub async fn run(self: Arc<Self>) {
        let name = self.source.name().to_owned();
        let mut failures = 0u32;
        let mut paused_rx = self.paused.subscribe();
        while !self.runtime_stop.is_stopped() {
            if *paused_rx.borrow_and_update() {
                self.state.send_replace(SourceState::Paused);
                tokio::select! {
                    _ = paused_rx.changed() => {}
                    _ = self.runtime_stop.stopped() => break,
                }
                continue;
            }
            let run_stop = self.runtime_stop.child();
            if let Ok(mut cur) = self.current_run.lock() {
                *cur = Some(run_stop.clone());
            }
            self.state.send_replace(SourceState::Running);
            tracing::info!(source = %name, kind = %self.source.kind(), "source running");
            let sink: Arc<dyn runtime_contracts::TaskSink> = self.sink.clone();
            let result = self.source.run(sink, run_stop.signal()).await;
            match result {
                Ok(()) if run_stop.is_stopped() => {
                    failures = 0;
                }
                Ok(()) => {
                    tracing::info!(source = %name, "source finished");
                    break;
                }
                Err(error) => {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut e) = self.last_error.lock() {
                        *e = Some(error.to_string());
                    }
                    let delay = self.restart.delay(failures);
                    failures = failures.saturating_add(1);
                    if matches!(error, runtime_contracts::SourceError::Config(_)) {
                        tracing::error!(source = %name, %error, "source misconfigured; not restarting");
                        break;
                    }
                    tracing::warn!(source = %name, %error, retry_in = ?delay, "source failed; restarting");
                    self.state.send_replace(SourceState::Reconnecting);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.runtime_stop.stopped() => break,
                        _ = paused_rx.changed() => {}
                    }
                }
            }
        }
        self.state.send_replace(SourceState::Stopped);
    }

    /// Stops producing; returns once the source's run has ended (or after a bound).
    pub async fn pause(&self) -> Result<SourceStatus, AdminError> {
        if self.runtime_stop.is_stopped() {
            return Err(AdminError::Conflict("the runtime is stopping".into()));
        }
        self.paused.send_replace(true);
        if let Some(run) = self.current_run.lock().ok().and_then(|c| c.clone()) {
            run.stop();
        }
        let mut state = self.state.subscribe();
        let wait = state.wait_for(|s| matches!(s, SourceState::Paused | SourceState::Stopped));
        if tokio::time::timeout(PAUSE_WAIT, wait).await.is_err() {
            return Err(AdminError::Unavailable(format!(
                "source {:?} did not stop within {PAUSE_WAIT:?}",
                self.name()
            )));
        }
        tracing::info!(source = %self.name(), "source paused");
        Ok(self.status())
    }

    /// Restarts a paused source.
    pub async fn resume(&self) -> Result<SourceStatus, AdminError> {
        if self.runtime_stop.is_stopped() {
            return Err(AdminError::Conflict("the runtime is stopping".into()));
        }
        self.paused.send_replace(false);
        let mut state = self.state.subscribe();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            state.wait_for(|s| !matches!(s, SourceState::Paused)),
        )
        .await;
        tracing::info!(source = %self.name(), "source resumed");
        Ok(self.status())
    }

    /// Status: the source's own view, with the runner's state and counts.
    pub fn status(&self) -> SourceStatus {
        let mut status = self.source.status();
        let runner = *self.state.borrow();
        status.state = match runner {
            // A running source may know better (it reconnects inside `run`).
            SourceState::Running if status.state == SourceState::Reconnecting => {
                SourceState::Reconnecting
            }
            other => other,
        };
        status.produced = self.sink.produced();
        status.errors = status.errors.max(self.errors.load(Ordering::Relaxed));
        if status.last_error.is_none() {
            status.last_error = self.last_error.lock().ok().and_then(|e| e.clone());
        }
        status
    }
}
