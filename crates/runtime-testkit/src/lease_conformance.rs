//! The leader-lease suite: the semantics of
//! [`LeaderLease`](runtime_contracts::LeaderLease), and of the runtime's
//! [`LeaderSource`] over it, written once and run against every backend that offers one.
//!
//! A backend's test crate implements [`LeaseFactory`] and expands
//! [`lease_conformance_tests!`](crate::lease_conformance_tests), one `#[tokio::test]` per
//! case:
//!
//! ```ignore
//! struct Redis;
//! #[async_trait::async_trait]
//! impl LeaseFactory for Redis {
//!     async fn lease(&self, case: &str, ttl: Duration) -> Arc<dyn LeaderLease> {
//!         // a fresh queue named `case` per call, as another process would open it
//!         queue(case).leader_lease("source:inbox", ttl).unwrap()
//!     }
//! }
//! runtime_testkit::lease_conformance_tests!(Redis);
//! ```
//!
//! Each call of [`LeaseFactory::lease`] is a new holder (another process) contending for
//! the one lease of that case. [`Contender`] runs a [`LeaderSource`] over a recording
//! source, for a backend's own cases (outages).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use async_trait::async_trait;
use runtime_contracts::{
    ComponentHealth, HealthContributor, HealthStatus, LeaderLease, PublishOutcome, QueueError,
    SourceError, SourceStatus, StopSignal, Task, TaskSink, TaskSource,
};
use runtime_core::{LeaderSource, StopToken};
use tokio::task::JoinHandle;

pub use crate::queue_conformance::{CaseError, CaseResult, unique_name};

/// The ttl of the cases: long enough for a loaded machine, short enough for a crash case.
pub const TTL: Duration = Duration::from_secs(1);
/// Generous bound for anything that should happen within about one ttl.
pub const WITHIN: Duration = Duration::from_secs(4);

/// Builds holders of the lease under test.
#[async_trait]
pub trait LeaseFactory: Send + Sync {
    /// A new holder of the one lease of `case` (unique per case), lasting `ttl`: each
    /// call is another contender, as if in another process.
    async fn lease(&self, case: &str, ttl: Duration) -> Arc<dyn LeaderLease>;

    /// Sets the lease of `case` to `holder`, or removes it (`None`), behind the holders'
    /// backs, as an operator could. `false`: the backend cannot, and the case about it
    /// checks nothing.
    async fn overwrite(&self, _case: &str, _holder: Option<&str>) -> bool {
        false
    }

    /// Frees what the case created.
    async fn cleanup(&self, _case: &str) {}
}

/// Expands to one `#[tokio::test]` per lease case, each calling the case with the factory
/// expression (evaluated afresh per test) and a unique case name, then cleaning up.
#[macro_export]
macro_rules! lease_conformance_tests {
    ($factory:expr) => {
        $crate::lease_conformance_tests!(@cases $factory;
            holders_never_renew_or_release_each_others_lease,
            one_leader_at_a_time_and_a_crash_hands_over_within_the_ttl,
            a_graceful_stop_releases_at_once_and_status_and_health_tell_the_roles,
            a_renewal_that_finds_another_holder_or_none_stops_the_source,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() -> ::core::result::Result<(), $crate::lease_conformance::CaseError> {
                use $crate::lease_conformance::LeaseFactory as _;
                let factory = $factory;
                let name = $crate::lease_conformance::unique_name(stringify!($case));
                let result = $crate::lease_conformance::$case(&factory, &name).await;
                factory.cleanup(&name).await;
                result
            }
        )*
    };
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut cond: F) -> CaseResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out after {within:?} waiting for {what}")
}

/// Counts runs across all recorders of a case, to catch two running at once.
#[derive(Debug, Default)]
pub struct Overlap {
    active: AtomicUsize,
    max_active: AtomicUsize,
}

impl Overlap {
    /// The most recorders that ever ran at once.
    pub fn max_active(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }
}

/// An inner source that records when it runs and when it was told to stop; its health
/// is always down, so a case sees whose health is reported.
#[derive(Debug)]
pub struct Recorder {
    overlap: Arc<Overlap>,
    running: AtomicBool,
    runs: AtomicUsize,
    stops: AtomicUsize,
}

impl Recorder {
    fn new(overlap: &Arc<Overlap>) -> Arc<Self> {
        Arc::new(Recorder {
            overlap: overlap.clone(),
            running: AtomicBool::new(false),
            runs: AtomicUsize::new(0),
            stops: AtomicUsize::new(0),
        })
    }
    /// True while its `run` is going.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }
    /// How often `run` was entered.
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
    /// How often `run` returned because it was told to stop.
    pub fn stops(&self) -> usize {
        self.stops.load(Ordering::SeqCst)
    }
}

/// Marks a run as over even when its future is dropped (a simulated crash).
struct Running<'a>(&'a Recorder);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::SeqCst);
        self.0.overlap.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl TaskSource for Recorder {
    fn name(&self) -> &str {
        "inbox"
    }
    fn kind(&self) -> &str {
        "recording"
    }
    async fn run(
        &self,
        _sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        let now = self.overlap.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.overlap.max_active.fetch_max(now, Ordering::SeqCst);
        self.running.store(true, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
        let _running = Running(self);
        stop.stopped().await;
        self.stops.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn status(&self) -> SourceStatus {
        SourceStatus::new("inbox", "recording")
    }
    fn health(&self) -> Option<Arc<dyn HealthContributor>> {
        Some(Arc::new(DownHealth))
    }
}

struct DownHealth;

#[async_trait]
impl HealthContributor for DownHealth {
    fn name(&self) -> &str {
        "source:inbox"
    }
    async fn check(&self) -> ComponentHealth {
        ComponentHealth::new("source:inbox", HealthStatus::Down)
    }
}

/// A sink nobody publishes to (the recording source produces nothing).
struct NullSink;

#[async_trait]
impl TaskSink for NullSink {
    async fn publish(&self, _task: Task) -> Result<PublishOutcome, QueueError> {
        Ok(PublishOutcome::Enqueued)
    }
    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
        Ok(vec![PublishOutcome::Enqueued; tasks.len()])
    }
}

/// One contender: a [`LeaderSource`] over a [`Recorder`], running on its own task.
pub struct Contender {
    /// The leader source.
    pub source: Arc<LeaderSource>,
    /// Its inner source.
    pub recorder: Arc<Recorder>,
    stop: StopToken,
    run: Option<JoinHandle<Result<(), SourceError>>>,
}

impl std::fmt::Debug for Contender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contender")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Contender {
    /// Starts a leader source over `lease`; needs a Tokio runtime.
    pub fn start(lease: Arc<dyn LeaderLease>, overlap: &Arc<Overlap>) -> Contender {
        let recorder = Recorder::new(overlap);
        let source = Arc::new(LeaderSource::new(recorder.clone(), lease));
        let stop = StopToken::new();
        let run = {
            let (source, stop) = (source.clone(), stop.signal());
            tokio::spawn(async move { source.run(Arc::new(NullSink), stop).await })
        };
        Contender {
            source,
            recorder,
            stop,
            run: Some(run),
        }
    }

    /// The lease's holder id.
    pub fn holder(&self) -> &str {
        self.source.lease().holder()
    }

    /// Graceful stop: fire the stop signal and wait for `run` to return `Ok`.
    pub async fn stop(&mut self) -> CaseResult {
        self.stop.stop();
        let run = self.run.take().context("stopped twice")?;
        tokio::time::timeout(WITHIN, run)
            .await
            .context("run returns after stop")?
            .context("run did not panic")?
            .context("run returns Ok after stop")?;
        Ok(())
    }

    /// A crash: the run future is dropped mid-term, nothing is released.
    pub async fn crash(&mut self) -> CaseResult {
        let run = self.run.take().context("stopped twice")?;
        run.abort();
        ensure!(run.await.is_err_and(|e| e.is_cancelled()));
        Ok(())
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            run.abort();
        }
    }
}

async fn holder_of(lease: &dyn LeaderLease) -> Result<Option<String>, CaseError> {
    Ok(lease.current_holder().await?)
}

/// Renew and release act only for the holder; a held lease is refused to others.
pub async fn holders_never_renew_or_release_each_others_lease<F: LeaseFactory>(
    factory: &F,
    case: &str,
) -> CaseResult {
    let a = factory.lease(case, TTL).await;
    let b = factory.lease(case, TTL).await;
    ensure!(a.holder() != b.holder(), "two leases are two holders");
    ensure!(a.key() == b.key(), "one case, one key");
    ensure!(a.ttl() == TTL);

    ensure!(a.try_acquire().await?, "free lease is taken");
    ensure!(a.try_acquire().await?, "own lease is taken again");
    ensure!(!b.try_acquire().await?, "held lease is refused");
    ensure!(!b.renew().await?, "b cannot renew a's lease");
    ensure!(!b.release().await?, "b cannot release a's lease");
    ensure!(holder_of(&*b).await?.as_deref() == Some(a.holder()));

    ensure!(a.renew().await?);
    ensure!(a.release().await?);
    ensure!(holder_of(&*a).await?.is_none(), "released lease is free");
    ensure!(!a.renew().await?, "a released lease is not renewed back");
    ensure!(b.try_acquire().await?);
    ensure!(!a.release().await?);
    ensure!(holder_of(&*a).await?.as_deref() == Some(b.holder()));

    // Nobody renews: the lease expires on its own and is free for the other.
    let deadline = Instant::now() + WITHIN;
    while !a.try_acquire().await? {
        ensure!(
            Instant::now() < deadline,
            "an unrenewed lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ensure!(!b.renew().await?, "an expired lease is not renewed back");
    ensure!(a.release().await?);
    Ok(())
}

/// Of two contenders exactly one runs its source; a crashed leader releases nothing and
/// the standby takes over within about the ttl.
pub async fn one_leader_at_a_time_and_a_crash_hands_over_within_the_ttl<F: LeaseFactory>(
    factory: &F,
    case: &str,
) -> CaseResult {
    let overlap = Arc::new(Overlap::default());
    let mut contenders = [
        Contender::start(factory.lease(case, TTL).await, &overlap),
        Contender::start(factory.lease(case, TTL).await, &overlap),
    ];
    let probe = factory.lease(case, TTL).await;

    eventually("a leader", WITHIN, || async {
        contenders.iter().any(|c| c.recorder.running())
    })
    .await?;
    // Watch both for a while (several renewal and standby rounds): one leads throughout.
    let watch_until = Instant::now() + TTL;
    while Instant::now() < watch_until {
        let running = contenders.iter().filter(|c| c.recorder.running()).count();
        ensure!(running == 1, "exactly one runs the source, not {running}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = contenders
        .iter()
        .position(|c| c.recorder.running())
        .context("a leader")?;
    let standby = 1 - leader;
    ensure!(holder_of(&*probe).await?.as_deref() == Some(contenders[leader].holder()));
    ensure!(contenders[leader].source.is_leader());
    ensure!(!contenders[standby].source.is_leader());
    ensure!(contenders[standby].recorder.runs() == 0);

    contenders[leader].crash().await?;
    ensure!(
        holder_of(&*probe).await?.as_deref() == Some(contenders[leader].holder()),
        "a crash releases nothing"
    );
    eventually("the standby takes over", WITHIN, || async {
        contenders[standby].recorder.running()
    })
    .await?;
    ensure!(holder_of(&*probe).await?.as_deref() == Some(contenders[standby].holder()));
    ensure!(overlap.max_active() == 1, "never two at once");

    contenders[standby].stop().await?;
    ensure!(contenders[standby].recorder.stops() == 1);
    ensure!(holder_of(&*probe).await?.is_none(), "a stop releases");
    Ok(())
}

/// A stop releases at once (the standby leads without waiting out the ttl); status and
/// health show who leads and who stands by.
pub async fn a_graceful_stop_releases_at_once_and_status_and_health_tell_the_roles<
    F: LeaseFactory,
>(
    factory: &F,
    case: &str,
) -> CaseResult {
    let overlap = Arc::new(Overlap::default());
    let mut a = Contender::start(factory.lease(case, TTL).await, &overlap);
    eventually("a leads", WITHIN, || async { a.recorder.running() }).await?;
    let mut b = Contender::start(factory.lease(case, TTL).await, &overlap);
    let probe = factory.lease(case, TTL).await;

    let a_status = a.source.status();
    ensure!(a_status.name == "inbox" && a_status.kind == "recording");
    ensure!(a_status.details["leader"] == true);
    ensure!(a_status.details["lease_key"] == a.source.lease().key());
    ensure!(a_status.details["holder"] == a.holder());
    let a_health = a.source.health().context("a health contributor")?;
    ensure!(a_health.name() == "source:inbox");
    ensure!(
        a_health.check().await.status == HealthStatus::Down,
        "the leader reports its inner source's health"
    );
    let b_health = b
        .source
        .health()
        .context("a health contributor")?
        .check()
        .await;
    ensure!(b_health.status == HealthStatus::Up, "a standby is healthy");
    ensure!(b_health.details["role"] == "standby");
    ensure!(b.source.status().details["leader"] == false);
    ensure!(b.recorder.runs() == 0);

    a.stop().await?;
    ensure!(a.recorder.stops() == 1);
    ensure!(!a.source.is_leader());
    ensure!(
        holder_of(&*probe).await?.as_deref() != Some(a.holder()),
        "a stop releases the lease at once"
    );
    eventually("b takes over", WITHIN, || async { b.recorder.running() }).await?;
    ensure!(b.source.is_leader());
    ensure!(overlap.max_active() == 1);
    b.stop().await?;
    ensure!(holder_of(&*probe).await?.is_none());
    Ok(())
}

/// A renewal that finds another holder, or no lease at all, stops the source; the
/// foreign lease is left alone, and the source leads again once the lease is free.
pub async fn a_renewal_that_finds_another_holder_or_none_stops_the_source<F: LeaseFactory>(
    factory: &F,
    case: &str,
) -> CaseResult {
    let overlap = Arc::new(Overlap::default());
    let mut c = Contender::start(factory.lease(case, TTL).await, &overlap);
    let probe = factory.lease(case, TTL).await;
    eventually("leading", WITHIN, || async { c.recorder.running() }).await?;

    if !factory.overwrite(case, Some("someone-else")).await {
        return c.stop().await;
    }
    eventually("the source stops", WITHIN, || async {
        c.recorder.stops() == 1 && !c.recorder.running() && !c.source.is_leader()
    })
    .await?;
    ensure!(holder_of(&*probe).await?.as_deref() == Some("someone-else"));
    ensure!(
        c.recorder.runs() == 1,
        "no run while another holds the lease"
    );

    // The foreign lease goes: leads again. Then the lease vanishes under it: stops again
    // and, the lease being free, leads once more.
    factory.overwrite(case, None).await;
    eventually("leading again", WITHIN, || async { c.recorder.runs() == 2 }).await?;
    factory.overwrite(case, None).await;
    eventually("stopped and leading a third time", WITHIN, || async {
        c.recorder.stops() == 2 && c.recorder.runs() == 3
    })
    .await?;
    ensure!(overlap.max_active() == 1);
    c.stop().await
}
