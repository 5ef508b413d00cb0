//! # Source conformance suite
//!
//! What every [`TaskSource`] does, written once and run against each source (Maildir,
//! IMAP polling, IMAP IDLE, the scheduled source; the webhook source joins the same
//! way). Each case drives the source through the core's real [`SourceRunner`] (start,
//! pause, resume, stop, restart with backoff) into a real bounded memory queue, and plays
//! the worker itself: it takes deliveries, tells the source's acknowledger, acks.
//!
//! | case | what must hold |
//! |---|---|
//! | `start_publishes_and_stop_ends_within_deadline` | an item becomes one task; stop returns within [`STOP_DEADLINE`] |
//! | `pause_holds_and_resume_restarts` | paused: state `paused`, nothing published; resumed: the item arrives |
//! | `backpressure_holds_the_source_when_the_queue_is_full` | a full queue blocks the source's publish (no error, no loss); stop still ends in time |
//! | `one_task_per_item_while_it_is_live` | an item in flight is not published again |
//! | `acknowledged_only_after_success` | publishing or failing does not mark the item done; success does |
//! | `status_names_the_source_and_counts` | name, kind, state, produced, last success age |
//! | `restart_loses_nothing_and_repeats_nothing` | a new source instance over the same upstream publishes what is left, not what was done |
//!
//! ## Adding a source
//!
//! Implement [`SourceFixture`] for it in the adapter's tests and invoke the macro:
//!
//! ```ignore
//! struct MyFixture { /* upstream: a server, a directory, a listener */ }
//!
//! #[async_trait::async_trait]
//! impl runtime_testkit::source_conformance::SourceFixture for MyFixture {
//!     async fn source(&self) -> Arc<dyn TaskSource> { /* a new instance each call */ }
//!     async fn add_item(&self) -> Option<String> { /* make one item upstream, its label */ }
//!     fn item_of(&self, task: &Task) -> String { /* the label a task stands for */ }
//!     async fn is_done(&self, item: &str) -> bool { /* the upstream shows it done */ }
//!     fn latency(&self) -> Duration { /* longest item -> task, with margin */ }
//! }
//!
//! runtime_testkit::source_conformance_tests!(MyFixture::start());  // a future
//! ```
//!
//! - `source()` is called again for the restart case: a new instance over the same
//!   upstream, as after a process restart (same directory, mailbox or state dir).
//! - `add_item()` returns `None` for a source whose items come by themselves (a
//!   schedule's ticks); the cases then wait for the next task instead.
//! - For a webhook source, `add_item` posts a request (from a task, since the post
//!   answers only after publish returns: with a full queue it waits) and the label is
//!   its message id; `is_done` reads what the source's acknowledger recorded.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtime_contracts::{Delivery, FinalOutcome, SourceState, Task, TaskQueue, TaskSource};
use runtime_core::sources::SourceRunner;
use runtime_core::{IdTraceFactory, StopToken, TraceService};
use tokio::task::JoinHandle;

use crate::fakes::memory_queue;

/// How long a source may take to stop once told (the runtime's default
/// `runtime.source_stop_timeout` is 10 s; a source must be far quicker).
pub const STOP_DEADLINE: Duration = Duration::from_secs(3);

/// A failed case: what did not hold.
#[derive(Debug)]
pub struct CaseError(pub String);

impl std::fmt::Display for CaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaseError {}

/// The result of a case.
pub type CaseResult = Result<(), CaseError>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(CaseError(format!($($fmt)+)));
        }
    };
}

/// What the suite needs to know of one source; see the module docs.
#[async_trait]
pub trait SourceFixture: Send + Sync + 'static {
    /// A new source instance over the fixture's upstream.
    async fn source(&self) -> Arc<dyn TaskSource>;
    /// Makes one item upstream and returns its label; `None` when items come by
    /// themselves (ticks).
    async fn add_item(&self) -> Option<String>;
    /// The label of the item `task` stands for.
    fn item_of(&self, task: &Task) -> String;
    /// Whether the upstream shows `item` done.
    async fn is_done(&self, item: &str) -> bool;
    /// The longest the source may take from an item being there to its task, with margin.
    fn latency(&self) -> Duration;
}

/// A source running under the core's runner into a bounded memory queue.
struct Harness {
    queue: Arc<dyn TaskQueue>,
    source: Arc<dyn TaskSource>,
    runner: Arc<SourceRunner>,
    stop: StopToken,
    join: JoinHandle<()>,
}

const QUEUE: &str = "conformance";

async fn start_on(queue: Arc<dyn TaskQueue>, source: Arc<dyn TaskSource>) -> Harness {
    let stop = StopToken::new();
    let runner = Arc::new(SourceRunner::new(
        source.clone(),
        queue.clone(),
        TraceService::new(Arc::new(IdTraceFactory)),
        stop.clone(),
    ));
    let join = tokio::spawn(runner.clone().run());
    Harness {
        queue,
        source,
        runner,
        stop,
        join,
    }
}

async fn start<F: SourceFixture>(fixture: &F, capacity: usize) -> Harness {
    let queue: Arc<dyn TaskQueue> = memory_queue(QUEUE, capacity, 3, Duration::from_secs(300));
    start_on(queue, fixture.source().await).await
}

impl Harness {
    /// The next delivery, waiting up to `within`.
    async fn next(&self, within: Duration) -> Result<Option<Delivery>, CaseError> {
        let mut got = self
            .queue
            .consume(1, within)
            .await
            .map_err(|e| CaseError(format!("consume failed: {e}")))?;
        Ok(got.pop())
    }

    /// Like a worker after the handler succeeded: the source's acknowledger, then ack.
    async fn finish(&self, d: &Delivery) -> CaseResult {
        let origin = d
            .task
            .origin
            .as_ref()
            .ok_or_else(|| CaseError(format!("task {} has no origin", d.task.id)))?;
        if let Some(ack) = self.source.acknowledger() {
            ack.acknowledge(&origin.key, &FinalOutcome::Succeeded { tag: None })
                .await
                .map_err(|e| CaseError(format!("acknowledge failed: {e}")))?;
        }
        self.queue
            .ack(d)
            .await
            .map_err(|e| CaseError(format!("ack failed: {e}")))
    }

    /// Stops the runner; an error when it takes longer than [`STOP_DEADLINE`].
    async fn stop(self) -> Result<Arc<dyn TaskQueue>, CaseError> {
        self.stop.stop();
        match tokio::time::timeout(STOP_DEADLINE, self.join).await {
            Ok(_) => Ok(self.queue),
            Err(_) => Err(CaseError(format!(
                "source {:?} did not stop within {STOP_DEADLINE:?}",
                self.source.name()
            ))),
        }
    }

    async fn published(&self) -> u64 {
        self.queue
            .stats()
            .await
            .map(|s| s.published_total)
            .unwrap_or(0)
    }
}

/// Makes an item (or, for items by time, nothing) and waits for the next task.
async fn item_and_task<F: SourceFixture>(
    fixture: &F,
    h: &Harness,
) -> Result<(Option<String>, Delivery), CaseError> {
    let item = fixture.add_item().await;
    let d = h.next(fixture.latency()).await?.ok_or_else(|| {
        CaseError(format!(
            "no task within {:?} for {item:?}",
            fixture.latency()
        ))
    })?;
    if let Some(item) = &item {
        let got = fixture.item_of(&d.task);
        ensure!(&got == item, "expected the task of {item:?}, got {got:?}");
    }
    Ok((item, d))
}

/// Waits until `cond` holds (checked every 20 ms) or `within` passes.
async fn eventually<Fut: std::future::Future<Output = bool>>(
    within: Duration,
    mut cond: impl FnMut() -> Fut,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An item becomes one task; stop ends the source within [`STOP_DEADLINE`].
pub async fn start_publishes_and_stop_ends_within_deadline<F: SourceFixture>(
    fixture: &F,
) -> CaseResult {
    let h = start(fixture, 100).await;
    let (_, d) = item_and_task(fixture, &h).await?;
    ensure!(
        d.task.origin.is_some(),
        "a source's task carries its origin"
    );
    ensure!(
        h.runner.status().state == SourceState::Running,
        "state {:?}, expected running",
        h.runner.status().state
    );
    let runner = h.runner.clone();
    h.stop().await?;
    ensure!(
        runner.status().state == SourceState::Stopped,
        "state {:?} after stop",
        runner.status().state
    );
    Ok(())
}

/// Paused: nothing is published; resumed: the waiting item arrives.
pub async fn pause_holds_and_resume_restarts<F: SourceFixture>(fixture: &F) -> CaseResult {
    let h = start(fixture, 100).await;
    let (_, first) = item_and_task(fixture, &h).await?;
    h.finish(&first).await?;
    let status = h
        .runner
        .pause()
        .await
        .map_err(|e| CaseError(format!("pause failed: {e}")))?;
    ensure!(
        status.state == SourceState::Paused,
        "state {:?} after pause",
        status.state
    );
    let before = h.published().await;
    let item = fixture.add_item().await;
    let during = h.next(fixture.latency()).await?;
    ensure!(
        during.is_none(),
        "a paused source published {:?}",
        during.map(|d| fixture.item_of(&d.task))
    );
    ensure!(h.published().await == before, "a paused source published");
    h.runner
        .resume()
        .await
        .map_err(|e| CaseError(format!("resume failed: {e}")))?;
    let after = h
        .next(fixture.latency() * 2)
        .await?
        .ok_or_else(|| CaseError("nothing published after resume".into()))?;
    if let Some(item) = item {
        ensure!(
            fixture.item_of(&after.task) == item,
            "resumed with the wrong item"
        );
    }
    ensure!(
        h.runner.status().state == SourceState::Running,
        "state {:?} after resume",
        h.runner.status().state
    );
    h.stop().await?;
    Ok(())
}

/// A full queue makes the source wait in publish (no error, nothing lost), and stop still
/// ends it in time.
pub async fn backpressure_holds_the_source_when_the_queue_is_full<F: SourceFixture>(
    fixture: &F,
) -> CaseResult {
    let h = start(fixture, 1).await;
    let mut items = Vec::new();
    for _ in 0..3 {
        items.extend(fixture.add_item().await);
    }
    let queue = h.queue.clone();
    let blocked = eventually(fixture.latency() * 3, || {
        let queue = queue.clone();
        async move {
            queue
                .stats()
                .await
                .map(|s| s.blocked_publishers >= 1 && s.pending + s.in_flight == 1)
                .unwrap_or(false)
        }
    })
    .await;
    ensure!(
        blocked,
        "the source never waited on the full queue: {:?}",
        h.queue.stats().await.ok()
    );
    ensure!(
        h.runner.status().errors == 0,
        "a full queue is not an error: {:?}",
        h.runner.status()
    );
    // Room again: the source goes on with the next item.
    let d = h
        .next(fixture.latency())
        .await?
        .ok_or_else(|| CaseError("no first task".into()))?;
    h.finish(&d).await?;
    let d2 = h
        .next(fixture.latency() * 2)
        .await?
        .ok_or_else(|| CaseError("nothing after room was made".into()))?;
    ensure!(
        fixture.item_of(&d2.task) != fixture.item_of(&d.task),
        "the same item twice"
    );
    // Blocked again (a third item or the next tick waits): stop must still end it.
    h.stop().await?;
    Ok(())
}

/// An item whose task is in flight is not published again, however often the source
/// looks.
pub async fn one_task_per_item_while_it_is_live<F: SourceFixture>(fixture: &F) -> CaseResult {
    let h = start(fixture, 100).await;
    let (_, held) = item_and_task(fixture, &h).await?;
    let held_item = fixture.item_of(&held.task);
    // Several polls or ticks go by with the task in flight.
    tokio::time::sleep(fixture.latency() * 2).await;
    let mut seen = BTreeSet::from([held_item.clone()]);
    while let Some(d) = h.next(Duration::from_millis(50)).await? {
        let item = fixture.item_of(&d.task);
        ensure!(
            seen.insert(item.clone()),
            "item {item:?} published twice while live"
        );
    }
    let published = h.published().await;
    ensure!(
        published == seen.len() as u64,
        "{published} tasks for {} items",
        seen.len()
    );
    h.stop().await?;
    Ok(())
}

/// Publishing and failing leave the item not done; only success marks it.
pub async fn acknowledged_only_after_success<F: SourceFixture>(fixture: &F) -> CaseResult {
    let h = start(fixture, 100).await;
    let (_, d) = item_and_task(fixture, &h).await?;
    let item = fixture.item_of(&d.task);
    ensure!(!fixture.is_done(&item).await, "{item:?} done at publish");
    h.queue
        .nack(&d, None, "handler failed")
        .await
        .map_err(|e| CaseError(format!("nack failed: {e}")))?;
    ensure!(
        !fixture.is_done(&item).await,
        "{item:?} done after a failure"
    );
    // The redelivery of the same task (later ticks may be queued before it).
    let mut again = None;
    for _ in 0..10 {
        match h.next(fixture.latency()).await? {
            Some(d) if fixture.item_of(&d.task) == item => {
                again = Some(d);
                break;
            }
            Some(other) => h.finish(&other).await?,
            None => break,
        }
    }
    let again = again.ok_or_else(|| CaseError(format!("{item:?} was not redelivered")))?;
    h.finish(&again).await?;
    let done = eventually(fixture.latency(), || fixture.is_done(&item)).await;
    ensure!(done, "{item:?} not done after success");
    h.stop().await?;
    Ok(())
}

/// Status: name, kind, state and counts.
pub async fn status_names_the_source_and_counts<F: SourceFixture>(fixture: &F) -> CaseResult {
    let h = start(fixture, 100).await;
    let (_, d) = item_and_task(fixture, &h).await?;
    // The counts follow the publish call's return, a moment after the task is in.
    let runner = h.runner.clone();
    eventually(fixture.latency(), || {
        let s = runner.status();
        async move { s.produced >= 1 && s.last_success_age_seconds.is_some() }
    })
    .await;
    let s = h.runner.status();
    ensure!(s.name == h.source.name(), "status names {:?}", s.name);
    ensure!(!s.kind.is_empty(), "status has no kind");
    ensure!(s.state == SourceState::Running, "state {:?}", s.state);
    ensure!(s.produced >= 1, "produced {} after a task", s.produced);
    ensure!(
        s.errors == 0,
        "errors {} in a clean run: {:?}",
        s.errors,
        s.last_error
    );
    ensure!(
        s.last_success_age_seconds.is_some(),
        "no last success age after a task: {s:?}"
    );
    ensure!(
        serde_json::to_value(&s).is_ok(),
        "status does not serialize"
    );
    h.finish(&d).await?;
    h.stop().await?;
    Ok(())
}

/// A new instance over the same upstream (a process restart) publishes what is left and
/// not what was done; an item still in flight is refused by the queue as a duplicate.
pub async fn restart_loses_nothing_and_repeats_nothing<F: SourceFixture>(
    fixture: &F,
) -> CaseResult {
    let h = start(fixture, 100).await;
    let (_, done) = item_and_task(fixture, &h).await?;
    h.finish(&done).await?;
    let done_item = fixture.item_of(&done.task);
    let (_, live) = item_and_task(fixture, &h).await?;
    let live_item = fixture.item_of(&live.task);
    let queue = h.stop().await?;
    let before = queue.stats().await.map(|s| s.published_total).unwrap_or(0);
    let added = fixture.add_item().await;
    let h = start_on(queue, fixture.source().await).await;
    let next = h
        .next(fixture.latency() * 2)
        .await?
        .ok_or_else(|| CaseError("nothing published after the restart".into()))?;
    let next_item = fixture.item_of(&next.task);
    ensure!(
        next_item != done_item,
        "{done_item:?} published again after it was done"
    );
    ensure!(
        next_item != live_item,
        "{live_item:?} published again while live"
    );
    if let Some(added) = added {
        ensure!(
            next_item == added,
            "expected {added:?} after the restart, got {next_item:?}"
        );
    }
    ensure!(
        h.published().await == before + 1,
        "the restart published {} tasks, expected 1",
        h.published().await - before
    );
    h.finish(&live).await?;
    h.finish(&next).await?;
    ensure!(
        eventually(fixture.latency(), || fixture.is_done(&live_item)).await,
        "{live_item:?} published before the restart is not done after it"
    );
    h.stop().await?;
    Ok(())
}

/// One `#[tokio::test]` per case over the fixture `$make` (a future giving the fixture).
#[macro_export]
macro_rules! source_conformance_tests {
    ($make:expr) => {
        $crate::source_conformance_tests!(@cases $make;
            start_publishes_and_stop_ends_within_deadline,
            pause_holds_and_resume_restarts,
            backpressure_holds_the_source_when_the_queue_is_full,
            one_task_per_item_while_it_is_live,
            acknowledged_only_after_success,
            status_names_the_source_and_counts,
            restart_loses_nothing_and_repeats_nothing,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() -> ::core::result::Result<(), $crate::source_conformance::CaseError> {
                let fixture = $make.await;
                $crate::source_conformance::$case(&fixture).await
            }
        )*
    };
}
