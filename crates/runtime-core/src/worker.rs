//! The standard worker: one delivery through trace, handler, source acknowledgement and
//! queue settlement.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use runtime_contracts::{
    Delivery, FinalOutcome, Histogram, NackOutcome, QueueError, SourceAcknowledger, TaskContext,
    TaskError, TaskHandler, TaskQueue, TaskSpan,
};
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::signal::{CancelFlag, StopToken};
use crate::trace::{FIRST_ATTEMPT_HEADER, TraceService};

/// Acknowledgers by source name, shared by every pool of a runtime.
#[derive(Default)]
pub struct Acknowledgers {
    map: RwLock<HashMap<String, Arc<dyn SourceAcknowledger>>>,
}

impl std::fmt::Debug for Acknowledgers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acknowledgers").finish_non_exhaustive()
    }
}

impl Acknowledgers {
    /// Registers the acknowledger of source `name`.
    pub fn insert(&self, name: impl Into<String>, ack: Arc<dyn SourceAcknowledger>) {
        if let Ok(mut map) = self.map.write() {
            map.insert(name.into(), ack);
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn SourceAcknowledger>> {
        self.map.read().ok().and_then(|m| m.get(name).cloned())
    }
}

/// Upper bounds of the task duration histogram, in seconds.
pub const DURATION_BOUNDS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Per-pool counters, lock-free on the hot path.
#[derive(Default)]
pub(crate) struct PoolStats {
    pub busy: AtomicUsize,
    pub processed: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Handler panics (each restarts its worker after a backoff); the pool's status adds
    /// the worker tasks the supervisor replaced.
    pub restarts: AtomicU64,
    pub timeouts: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    buckets: [AtomicU64; DURATION_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
    /// Consecutive "dependency unavailable" results, for the outage backoff.
    pub outage_streak: AtomicU32,
}

impl PoolStats {
    fn observe(&self, elapsed: Duration) {
        self.buckets[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn error(&self, message: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(message.to_owned());
        }
    }

    pub(crate) fn histogram(&self) -> Histogram {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        Histogram {
            bounds: DURATION_BOUNDS.to_vec(),
            count: counts.iter().sum(),
            counts,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Settings a worker reads per task; changeable live.
pub(crate) struct WorkerSettings {
    pub task_timeout_ms: AtomicU64,
    pub retry: Backoff,
    pub lease_renewal: Option<Duration>,
}

/// How one run of the handler ended.
enum Run {
    Done(Result<(), TaskError>),
    Panicked(String),
    TimedOut,
    Interrupted,
}

/// What the supervisor needs to know after a delivery.
pub(crate) struct Processed {
    pub panicked: bool,
    /// Set when a dependency was down: the slot should pause this long.
    pub outage_pause: Option<Duration>,
    /// How long the handler ran.
    pub elapsed: Duration,
    /// The handler succeeded and the source knows: the delivery is to be acked.
    to_ack: bool,
}

/// What a worker slot finished but has not reported yet, flushed once per consumed
/// batch: one `ack_batch` for the successful deliveries (one queue call — one Redis
/// round trip — instead of one per task) and one update of the shared counters (no
/// cache line bouncing between threads per task). A crash before the flush only means
/// those tasks run again, which at-least-once delivery allows; the source was already
/// told of each success, so nothing is lost.
#[derive(Default)]
pub(crate) struct Pending {
    acks: Vec<Delivery>,
    buckets: [u64; DURATION_BOUNDS.len() + 1],
    sum_micros: u64,
}

impl Pending {
    fn observe(&mut self, elapsed: Duration) {
        self.buckets[bucket_of(elapsed)] += 1;
        self.sum_micros += elapsed.as_micros() as u64;
    }
}

fn bucket_of(elapsed: Duration) -> usize {
    let secs = elapsed.as_secs_f64();
    DURATION_BOUNDS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(DURATION_BOUNDS.len())
}

/// The runtime's worker: trace, handler (with timeout, panic capture and lease
/// renewal), then source acknowledgement and queue settlement.
pub struct TaskWorker {
    pool: String,
    queue_name: String,
    span_name: String,
    queue: Arc<dyn TaskQueue>,
    handler: Arc<dyn TaskHandler>,
    trace: TraceService,
    acks: Arc<Acknowledgers>,
    pub(crate) stats: Arc<PoolStats>,
    pub(crate) settings: Arc<WorkerSettings>,
    /// Fired to cut off in-flight work at the end of the shutdown grace period.
    pub(crate) hard_stop: StopToken,
}

impl std::fmt::Debug for TaskWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskWorker")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// The longest a slot pauses after a dependency outage before trying the next task.
const MAX_OUTAGE_PAUSE: Duration = Duration::from_secs(5);
/// Attempts to tell a source about a dead letter before giving up (and logging).
const DEAD_LETTER_ACK_TRIES: u32 = 3;

impl TaskWorker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        pool: String,
        queue: Arc<dyn TaskQueue>,
        handler: Arc<dyn TaskHandler>,
        trace: TraceService,
        acks: Arc<Acknowledgers>,
        stats: Arc<PoolStats>,
        settings: Arc<WorkerSettings>,
        hard_stop: StopToken,
    ) -> Self {
        let queue_name = queue.name().to_owned();
        TaskWorker {
            span_name: format!("process {queue_name}"),
            pool,
            queue_name,
            queue,
            handler,
            trace,
            acks,
            stats,
            settings,
            hard_stop,
        }
    }

    /// Runs one delivery that started at `started` (the caller's clock reading). With
    /// `pending`, a success is acked and counted at the caller's next flush; without, at
    /// once. Returns when the delivery is settled (or queued for the flush) and the time
    /// the next task may take as its start.
    pub(crate) async fn process_one(
        &self,
        delivery: Delivery,
        started: Instant,
        pending: Option<&mut Pending>,
    ) -> (Processed, Instant) {
        let span = self.trace.on_process(
            &self.span_name,
            &self.queue_name,
            self.queue.backend(),
            &delivery.task,
        );
        let span = span.as_span();
        let ctx = span.context();
        let log_span = tracing::info_span!(
            "task",
            pool = %self.pool,
            task_id = %delivery.task.id,
            attempt = delivery.task.attempts + 1,
            trace_id = %format_args!("{:032x}", ctx.trace_id),
            span_id = %format_args!("{:016x}", ctx.span_id),
        );
        let (processed, ended) = if log_span.is_disabled() {
            // No subscriber wants task spans: skip the wrapper (one less move of a
            // large future per task).
            self.run_and_settle(&delivery, span, started).await
        } else {
            self.run_and_settle(&delivery, span, started)
                .instrument(log_span)
                .await
        };
        // Only a success with nothing to tell a source, acked later, awaited nothing after
        // the handler: then its end is the next task's start (one clock reading saved).
        let mut waited = !processed.to_ack || delivery.task.origin.is_some();
        match pending {
            Some(pending) => {
                pending.observe(processed.elapsed);
                if processed.to_ack {
                    pending.acks.push(delivery);
                }
            }
            None => {
                self.stats.observe(processed.elapsed);
                if processed.to_ack {
                    self.ack_now(&delivery).await;
                    waited = true;
                }
            }
        }
        let next = if waited { Instant::now() } else { ended };
        (processed, next)
    }

    /// Acks what `pending` holds and adds its counts to the pool's.
    pub(crate) async fn flush(&self, pending: &mut Pending) {
        if !pending.acks.is_empty() {
            let result = self.queue.ack_batch(&pending.acks).await;
            self.acked(result, pending.acks.len() as u64);
            pending.acks.clear();
        }
        for (i, count) in pending.buckets.iter_mut().enumerate() {
            if *count > 0 {
                self.stats.buckets[i].fetch_add(*count, Ordering::Relaxed);
                *count = 0;
            }
        }
        if pending.sum_micros > 0 {
            self.stats
                .sum_micros
                .fetch_add(pending.sum_micros, Ordering::Relaxed);
            pending.sum_micros = 0;
        }
    }

    async fn ack_now(&self, delivery: &Delivery) {
        let result = self.queue.ack(delivery).await;
        self.acked(result, 1)
    }

    /// Counts `n` handled deliveries whose ack gave `result`.
    fn acked(&self, result: Result<(), QueueError>, n: u64) {
        match result {
            Ok(()) => {
                self.stats.processed.fetch_add(n, Ordering::Relaxed);
            }
            Err(QueueError::LeaseLost(_)) => {
                // Another consumer holds it now; it will run again (idempotently).
                self.stats.processed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!("lease lost before ack; the task will be delivered again");
            }
            Err(error) => unsettled("ack", error),
        }
    }

    async fn run_and_settle(
        &self,
        delivery: &Delivery,
        span: &dyn TaskSpan,
        started: Instant,
    ) -> (Processed, Instant) {
        let tag = Mutex::new(None);
        let cancel = CancelFlag::default();
        let run = {
            let task_ctx = TaskContext {
                span,
                tracer: &**self.trace.factory(),
                pool: &self.pool,
                queue: &self.queue_name,
                tag: &tag,
                cancellation: &cancel,
            };
            let fut =
                AssertUnwindSafe(self.handler.handle(&delivery.task, &task_ctx)).catch_unwind();
            self.drive(fut, delivery, started, &cancel).await
        };
        let ended = Instant::now();
        let elapsed = ended.saturating_duration_since(started);
        let tag = tag.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut processed = if cancel.is_fired() && !matches!(run, Run::Done(Ok(()))) {
            self.cancelled(delivery, run, span).await
        } else {
            self.settle(delivery, run, tag, span).await
        };
        span.end();
        processed.elapsed = elapsed;
        (processed, ended)
    }

    /// Runs the handler future until it finishes, times out, or is cut off, renewing the
    /// lease meanwhile so a long task is not delivered twice, and watching for an
    /// operator's cancel (which fires `cancel` for the handler to see).
    async fn drive<F>(
        &self,
        fut: F,
        delivery: &Delivery,
        started: Instant,
        cancel: &CancelFlag,
    ) -> Run
    where
        F: std::future::Future<
                Output = Result<Result<(), TaskError>, Box<dyn std::any::Any + Send>>,
            >,
    {
        let mut fut = pin!(fut);
        // Most handlers of a busy queue finish on their first poll: take that result
        // before paying for a timer and a cut-off listener. (The select below polled the
        // handler first too, so this changes no outcome.)
        let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(result) = first {
            return match result {
                Ok(r) => Run::Done(r),
                Err(panic) => Run::Panicked(panic_message(&*panic)),
            };
        }
        let timeout = Duration::from_millis(self.settings.task_timeout_ms.load(Ordering::Relaxed));
        // One clock reading per task: the start time the caller already took.
        let start = tokio::time::Instant::from_std(started);
        let deadline = start + timeout;
        let renewal = self.settings.lease_renewal;
        let mut wake = renewal.map_or(deadline, |every| deadline.min(start + every));
        let mut hard = pin!(self.hard_stop.stopped());
        // Only a task still running after its first poll watches for a cancel.
        let controls = self.queue.controls();
        let mut watch = controls.map(|c| c.cancelled(delivery));
        loop {
            tokio::select! {
                biased;
                result = &mut fut => {
                    return match result {
                        Ok(r) => Run::Done(r),
                        Err(panic) => Run::Panicked(panic_message(&*panic)),
                    };
                }
                _ = &mut hard => return Run::Interrupted,
                asked = async {
                    match watch.as_mut() {
                        Some(w) => w.await,
                        None => std::future::pending().await,
                    }
                }, if watch.is_some() => {
                    watch = None;
                    match asked {
                        Ok(()) => {
                            tracing::info!("cancellation requested; the handler is told");
                            cancel.fire();
                        }
                        // Asked again at the next renewal tick.
                        Err(error) => tracing::debug!(%error, "cancel watch failed"),
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Run::TimedOut;
                    }
                    if watch.is_none() && !cancel.is_fired() {
                        watch = controls.map(|c| c.cancelled(delivery));
                    }
                    if let Some(every) = renewal {
                        wake = deadline.min(now + every);
                        // Renew for three periods: one missed renewal is not fatal.
                        if let Err(error) = self.queue.extend_lease(delivery, every * 3).await {
                            tracing::warn!(%error, "lease renewal failed");
                        }
                    }
                }
            }
        }
    }

    async fn settle(
        &self,
        delivery: &Delivery,
        run: Run,
        tag: Option<String>,
        span: &dyn TaskSpan,
    ) -> Processed {
        let retry = self.settings.retry;
        let mut panicked = false;
        let failure = match run {
            // The streak is reset by `succeed`, once the acknowledgement (which may be
            // what is failing) went through too.
            Run::Done(Ok(())) => return self.succeed(delivery, tag, span).await,
            Run::Interrupted => {
                if let Err(error) = self.queue.release(delivery, None).await {
                    unsettled("release", error);
                }
                return processed();
            }
            Run::Done(Err(TaskError::Unavailable { after, reason })) => {
                let streak = self.stats.outage_streak.fetch_add(1, Ordering::Relaxed);
                let delay = after.unwrap_or_else(|| retry.delay(streak));
                tracing::warn!(%reason, retry_in = ?delay, "dependency unavailable, task goes back without counting an attempt");
                self.stats.error(&reason);
                span.set_error(&reason);
                if let Err(error) = self.queue.release(delivery, Some(delay)).await {
                    unsettled("release", error);
                }
                return Processed {
                    outage_pause: Some(delay.min(MAX_OUTAGE_PAUSE)),
                    ..processed()
                };
            }
            Run::Done(Err(TaskError::Reject { reason })) => {
                span.set_error(&reason);
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.stats.error(&reason);
                tracing::warn!(%reason, "task rejected for good, dead-lettering");
                return match self.queue.dead_letter(delivery, &reason).await {
                    Ok(()) => self.dead_lettered(delivery, reason).await,
                    Err(error) => {
                        unsettled("dead-letter", error);
                        processed()
                    }
                };
            }
            Run::Done(Err(TaskError::Retry { after, reason })) => (after, reason),
            Run::Done(Err(other)) => (None, other.to_string()),
            Run::TimedOut => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                (None, "task timed out".to_owned())
            }
            Run::Panicked(message) => {
                panicked = true;
                self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!(panic = %message, "handler panicked; worker restarts");
                (None, format!("handler panicked: {message}"))
            }
        };
        let (after, reason) = failure;
        Processed {
            panicked,
            ..self.failed_attempt(delivery, after, reason, span).await
        }
    }

    /// A task whose cancellation was requested ended without success: the queue removes
    /// it (never retried nor dead-lettered), and its source is told it failed for good
    /// so the item is not produced again.
    async fn cancelled(&self, delivery: &Delivery, run: Run, span: &dyn TaskSpan) -> Processed {
        let panicked = matches!(run, Run::Panicked(_));
        if panicked {
            self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        }
        span.set_error(CANCELLED_REASON);
        match self.queue.nack(delivery, None, CANCELLED_REASON).await {
            Ok(NackOutcome::Cancelled) => {
                tracing::info!("cancelled task removed");
                return Processed {
                    panicked,
                    ..self
                        .told_source(delivery, CANCELLED_REASON.to_owned())
                        .await
                };
            }
            Ok(NackOutcome::Requeued) => {
                tracing::warn!("the queue requeued a task whose cancel was signalled");
            }
            Ok(NackOutcome::DeadLettered) => {
                return Processed {
                    panicked,
                    ..self
                        .dead_lettered(delivery, CANCELLED_REASON.to_owned())
                        .await
                };
            }
            Err(error) => unsettled("nack", error),
        }
        Processed {
            panicked,
            ..processed()
        }
    }

    /// A failed attempt: counts, retries with backoff, dead-letters at the limit.
    async fn failed_attempt(
        &self,
        delivery: &Delivery,
        after: Option<Duration>,
        reason: String,
        span: &dyn TaskSpan,
    ) -> Processed {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        self.stats.error(&reason);
        span.set_error(&reason);
        // Lets the retry's span link to this first attempt. A copy: failures are rare,
        // and the success path then never copies a delivery.
        let recorded;
        let delivery = if delivery.task.headers.get(FIRST_ATTEMPT_HEADER).is_none() {
            let mut copy = delivery.clone();
            let first = span.context().traceparent();
            copy.task.headers.insert(FIRST_ATTEMPT_HEADER, first);
            recorded = copy;
            &recorded
        } else {
            delivery
        };
        let delay = after.unwrap_or_else(|| self.settings.retry.delay(delivery.task.attempts));
        match self.queue.nack(delivery, Some(delay), &reason).await {
            Ok(NackOutcome::Requeued) => {
                tracing::warn!(%reason, retry_in = ?delay, "task failed, will retry");
            }
            Ok(NackOutcome::DeadLettered) => {
                tracing::error!(%reason, "task failed for the last time, dead-lettered");
                return self.dead_lettered(delivery, reason).await;
            }
            Ok(NackOutcome::Cancelled) => {
                tracing::info!(%reason, "cancelled task ended, not retried");
                return self
                    .told_source(delivery, CANCELLED_REASON.to_owned())
                    .await;
            }
            Err(error) => unsettled("nack", error),
        }
        processed()
    }

    fn reset_outage_streak(&self) {
        // Read first: a store on every success would bounce the cache line between the
        // threads of a busy pool.
        if self.stats.outage_streak.load(Ordering::Relaxed) != 0 {
            self.stats.outage_streak.store(0, Ordering::Relaxed);
        }
    }

    async fn succeed(
        &self,
        delivery: &Delivery,
        tag: Option<String>,
        span: &dyn TaskSpan,
    ) -> Processed {
        if let Some(origin) = &delivery.task.origin {
            match self.acks.get(&origin.source) {
                Some(ack) => {
                    let outcome = FinalOutcome::Succeeded { tag };
                    if let Err(error) = ack.acknowledge(&origin.key, &outcome).await {
                        if error.is_permanent() {
                            // Retrying cannot help (a folder the server refuses): a failed
                            // attempt, so the task dead-letters at the limit with the
                            // reason instead of going back for ever. Counting attempts
                            // rather than dead-lettering at once keeps a misjudged refusal
                            // from costing the mail at the first try.
                            let reason = format!(
                                "source {} refused the acknowledgement: {error}",
                                origin.source
                            );
                            tracing::warn!(%reason, "source acknowledgement refused for good");
                            return self.failed_attempt(delivery, None, reason, span).await;
                        }
                        // The handler's effect is done; the source's is not. Hand the task
                        // back (no attempt counted): the idempotent handler runs again and
                        // the acknowledgement is retried, so both happen at least once.
                        let streak = self.stats.outage_streak.fetch_add(1, Ordering::Relaxed);
                        let delay = self.settings.retry.delay(streak);
                        tracing::warn!(%error, source = %origin.source, retry_in = ?delay, "source acknowledgement failed, task goes back");
                        self.stats.error(&error.to_string());
                        if let Err(error) = self.queue.release(delivery, Some(delay)).await {
                            unsettled("release", error);
                        }
                        return Processed {
                            outage_pause: Some(delay.min(MAX_OUTAGE_PAUSE)),
                            ..processed()
                        };
                    }
                }
                None => {
                    // Sources re-find what they never saw acknowledged, so this loses
                    // nothing; it means this process lacks the source's registration.
                    tracing::debug!(source = %origin.source, "no acknowledger registered for source");
                }
            }
        }
        self.reset_outage_streak();
        Processed {
            to_ack: true,
            ..processed()
        }
    }

    async fn dead_lettered(&self, delivery: &Delivery, reason: String) -> Processed {
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.told_source(delivery, reason).await
    }

    /// Tells the task's source that its item failed for good (dead-lettered or
    /// cancelled), so the source flags it and does not produce it again.
    async fn told_source(&self, delivery: &Delivery, reason: String) -> Processed {
        if let Some(origin) = &delivery.task.origin
            && let Some(ack) = self.acks.get(&origin.source)
        {
            let outcome = FinalOutcome::DeadLettered { reason };
            for attempt in 0..DEAD_LETTER_ACK_TRIES {
                match ack.acknowledge(&origin.key, &outcome).await {
                    Ok(()) => break,
                    Err(error) if error.is_permanent() => {
                        // Asking again gets the same answer; the dead letter in the queue
                        // and this error are the visible outcome.
                        self.stats.error(&error.to_string());
                        tracing::error!(%error, source = %origin.source, "source refused to record a dead letter");
                        break;
                    }
                    Err(error) if attempt + 1 == DEAD_LETTER_ACK_TRIES => {
                        tracing::error!(%error, source = %origin.source, "could not tell the source about a dead letter; the item may be produced again");
                    }
                    Err(_) => tokio::time::sleep(self.settings.retry.delay(attempt)).await,
                }
            }
        }
        processed()
    }
}

/// The reason recorded for a task an operator cancelled while it ran.
pub(crate) const CANCELLED_REASON: &str = "cancelled by an operator";

/// A settled delivery with nothing more to report.
fn processed() -> Processed {
    Processed {
        panicked: false,
        outage_pause: None,
        elapsed: Duration::ZERO,
        to_ack: false,
    }
}

/// The queue could not be told: the lease runs out and the task comes back, nothing is lost.
fn unsettled(what: &str, error: QueueError) {
    tracing::warn!(%error, "{what} failed; the task comes back after its lease");
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
