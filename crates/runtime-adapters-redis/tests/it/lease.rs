//! The leader lease: one of several `LeaderSource`s over one key runs its inner source;
//! a crash hands over within the ttl, a stop at once; a lost renewal stops the source;
//! without Redis nobody leads. Each test uses its own key (`test:{name}:lease`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use runtime_adapters_redis::{LeaderSource, RedisLease};
use runtime_contracts::{
    ComponentHealth, HealthContributor, HealthStatus, PublishOutcome, QueueError, Secret,
    SourceError, SourceStatus, StopSignal, Task, TaskSink, TaskSource,
};

use crate::common::{self, Cleanup, RedisServer, URL, eventually, unique};

const TTL: Duration = Duration::from_secs(1);
/// Generous bound for anything that should happen within about one ttl.
const WITHIN: Duration = Duration::from_secs(4);

/// A stop signal the test fires.
struct TestStop(watch::Sender<bool>);

impl TestStop {
    fn new() -> Arc<Self> {
        Arc::new(TestStop(watch::Sender::new(false)))
    }
    fn fire(&self) {
        self.0.send_replace(true);
    }
}

#[async_trait]
impl StopSignal for TestStop {
    fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
    async fn stopped(&self) {
        let _ = self.0.subscribe().wait_for(|s| *s).await;
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

/// Counts runs across all recorders of a test, to catch two running at once.
#[derive(Default)]
struct Overlap {
    active: AtomicUsize,
    max_active: AtomicUsize,
}

/// An inner source that records when it runs and when it was told to stop.
struct Recorder {
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
    fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
    fn stops(&self) -> usize {
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

/// The inner source's health: always down, so a test sees whose health is reported.
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

/// One contender: a leader source over a recorder, running on its own task.
struct Contender {
    source: Arc<LeaderSource>,
    recorder: Arc<Recorder>,
    stop: Arc<TestStop>,
    run: Option<JoinHandle<Result<(), SourceError>>>,
}

impl Contender {
    fn start(url: &str, key: &str, ttl: Duration, overlap: &Arc<Overlap>) -> Contender {
        let recorder = Recorder::new(overlap);
        let lease = RedisLease::new(Secret::new(url), key, ttl).unwrap();
        let source = Arc::new(LeaderSource::new(recorder.clone(), lease));
        let stop = TestStop::new();
        let run = {
            let (source, stop) = (source.clone(), stop.clone());
            tokio::spawn(async move { source.run(Arc::new(NullSink), stop).await })
        };
        Contender {
            source,
            recorder,
            stop,
            run: Some(run),
        }
    }

    fn holder(&self) -> &str {
        self.source.lease().holder()
    }

    /// Graceful stop: fire the stop signal and wait for `run` to return.
    async fn stop(&mut self) {
        self.stop.fire();
        let run = self.run.take().unwrap();
        tokio::time::timeout(WITHIN, run)
            .await
            .expect("run returns after stop")
            .expect("run did not panic")
            .expect("run returns Ok after stop");
    }

    /// A crash: the run future is dropped mid-term, nothing is released.
    async fn crash(&mut self) {
        let run = self.run.take().unwrap();
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());
    }
}

fn key_for(name: &str) -> String {
    format!("test:{{{name}}}:lease")
}

async fn holder_of(key: &str) -> Option<String> {
    let mut c = common::client(URL).await;
    c.get(key).await.unwrap()
}

#[tokio::test]
async fn release_and_renew_never_touch_another_holders_lease() {
    let name = unique("lease-own");
    let _cleanup = Cleanup(name.clone());
    let key = key_for(&name);
    let a = RedisLease::new(Secret::new(URL), key.clone(), TTL).unwrap();
    let b = RedisLease::new(Secret::new(URL), key.clone(), TTL).unwrap();
    assert_ne!(a.holder(), b.holder());

    assert!(a.try_acquire().await.unwrap(), "free lease is taken");
    assert!(a.try_acquire().await.unwrap(), "own lease is taken again");
    assert!(!b.try_acquire().await.unwrap(), "held lease is refused");
    assert!(!b.renew().await.unwrap(), "b cannot renew a's lease");
    assert!(!b.release().await.unwrap(), "b cannot release a's lease");
    assert_eq!(
        b.current_holder().await.unwrap().as_deref(),
        Some(a.holder())
    );
    let pttl: i64 = common::client(URL).await.pttl(&key).await.unwrap();
    assert!(
        pttl > 0 && pttl <= 1000,
        "the key expires on its own: {pttl}"
    );

    assert!(a.renew().await.unwrap());
    assert!(a.release().await.unwrap());
    assert_eq!(holder_of(&key).await, None);
    assert!(
        !a.renew().await.unwrap(),
        "a released lease is not renewed back"
    );
    assert!(b.try_acquire().await.unwrap());
    assert!(!a.release().await.unwrap());
    assert_eq!(holder_of(&key).await.as_deref(), Some(b.holder()));
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_crashed_leader_is_replaced_within_the_ttl() {
    let name = unique("lease-crash");
    let _cleanup = Cleanup(name.clone());
    let key = key_for(&name);
    let overlap = Arc::new(Overlap::default());
    let mut contenders = [
        Contender::start(URL, &key, TTL, &overlap),
        Contender::start(URL, &key, TTL, &overlap),
    ];

    eventually("a leader", WITHIN, || async {
        contenders.iter().any(|c| c.recorder.running())
    })
    .await
    .unwrap();
    // Watch both for a while (several renewal and standby rounds): one leads throughout.
    let watch_until = Instant::now() + TTL;
    while Instant::now() < watch_until {
        let running = contenders.iter().filter(|c| c.recorder.running()).count();
        assert_eq!(running, 1, "exactly one runs the source");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = contenders
        .iter()
        .position(|c| c.recorder.running())
        .unwrap();
    let standby = 1 - leader;
    assert_eq!(
        holder_of(&key).await.as_deref(),
        Some(contenders[leader].holder())
    );
    assert!(contenders[leader].source.is_leader());
    assert!(!contenders[standby].source.is_leader());
    assert_eq!(contenders[standby].recorder.runs(), 0);

    let crashed_at = Instant::now();
    contenders[leader].crash().await;
    assert_eq!(
        holder_of(&key).await.as_deref(),
        Some(contenders[leader].holder()),
        "a crash releases nothing"
    );
    eventually("the standby takes over", WITHIN, || async {
        contenders[standby].recorder.running()
    })
    .await
    .unwrap();
    println!(
        "takeover after a crash took {:?} (ttl {TTL:?})",
        crashed_at.elapsed()
    );
    assert_eq!(
        holder_of(&key).await.as_deref(),
        Some(contenders[standby].holder())
    );
    assert_eq!(
        overlap.max_active.load(Ordering::SeqCst),
        1,
        "never two at once"
    );

    contenders[standby].stop().await;
    assert_eq!(contenders[standby].recorder.stops(), 1);
    assert_eq!(holder_of(&key).await, None);
}

#[tokio::test]
async fn a_graceful_stop_releases_at_once_and_status_and_health_tell_the_roles() {
    let name = unique("lease-stop");
    let _cleanup = Cleanup(name.clone());
    let key = key_for(&name);
    let overlap = Arc::new(Overlap::default());
    let mut a = Contender::start(URL, &key, TTL, &overlap);
    eventually("a leads", WITHIN, || async { a.recorder.running() })
        .await
        .unwrap();
    let mut b = Contender::start(URL, &key, TTL, &overlap);

    // Roles as the control plane shows them.
    let a_status = a.source.status();
    assert_eq!(a_status.name, "inbox");
    assert_eq!(a_status.kind, "recording");
    assert_eq!(a_status.details["leader"], true);
    assert_eq!(a_status.details["lease_key"], key.as_str());
    assert_eq!(a_status.details["holder"], a.holder());
    let a_health = a.source.health().unwrap();
    assert_eq!(a_health.name(), "source:inbox");
    assert_eq!(
        a_health.check().await.status,
        HealthStatus::Down,
        "the leader reports its inner source's health"
    );
    let b_health = b.source.health().unwrap().check().await;
    assert_eq!(b_health.status, HealthStatus::Up, "a standby is healthy");
    assert_eq!(b_health.details["role"], "standby");
    assert_eq!(b.source.status().details["leader"], false);
    assert_eq!(b.recorder.runs(), 0);

    a.stop().await;
    assert_eq!(a.recorder.stops(), 1);
    assert!(!a.source.is_leader());
    let holder = holder_of(&key).await;
    assert_ne!(
        holder.as_deref(),
        Some(a.holder()),
        "a stop releases the lease at once"
    );
    eventually("b takes over", WITHIN, || async { b.recorder.running() })
        .await
        .unwrap();
    assert!(b.source.is_leader());
    assert_eq!(overlap.max_active.load(Ordering::SeqCst), 1);
    b.stop().await;
    assert_eq!(holder_of(&key).await, None);
}

#[tokio::test]
async fn a_renewal_that_finds_another_holder_or_no_key_stops_the_source() {
    let name = unique("lease-lost");
    let _cleanup = Cleanup(name.clone());
    let key = key_for(&name);
    let overlap = Arc::new(Overlap::default());
    let mut c = Contender::start(URL, &key, TTL, &overlap);
    eventually("leading", WITHIN, || async { c.recorder.running() })
        .await
        .unwrap();

    // Another holder: the source stops and the foreign lease is left alone.
    let mut r = common::client(URL).await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("someone-else")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut r)
        .await
        .unwrap();
    eventually("the source stops", WITHIN, || async {
        c.recorder.stops() == 1 && !c.recorder.running() && !c.source.is_leader()
    })
    .await
    .unwrap();
    assert_eq!(holder_of(&key).await.as_deref(), Some("someone-else"));
    assert_eq!(c.recorder.runs(), 1, "no run while another holds the lease");

    // The foreign lease goes: leads again. Then the key vanishes under it: stops again
    // and, the lease being free, leads once more.
    let _: () = r.del(&key).await.unwrap();
    eventually("leading again", WITHIN, || async { c.recorder.runs() == 2 })
        .await
        .unwrap();
    let _: () = r.del(&key).await.unwrap();
    eventually("stopped and leading a third time", WITHIN, || async {
        c.recorder.stops() == 2 && c.recorder.runs() == 3
    })
    .await
    .unwrap();
    assert_eq!(overlap.max_active.load(Ordering::SeqCst), 1);
    c.stop().await;
}

#[tokio::test]
async fn losing_redis_stops_the_leader_and_it_leads_again_when_redis_is_back() {
    let mut server = RedisServer::start(&[]).unwrap();
    let url = server.url();
    let overlap = Arc::new(Overlap::default());
    let mut c = Contender::start(&url, "lease", TTL, &overlap);
    eventually("leading", WITHIN, || async { c.recorder.running() })
        .await
        .unwrap();

    server.stop().unwrap();
    eventually("the source stops", WITHIN, || async {
        c.recorder.stops() == 1 && !c.source.is_leader()
    })
    .await
    .unwrap();
    assert!(c.source.status().details.contains_key("lease_error"));
    let health = c.source.health().unwrap().check().await;
    assert_eq!(health.status, HealthStatus::Up, "a standby is healthy");

    server.restart().unwrap();
    eventually("leading again", WITHIN, || async { c.recorder.runs() == 2 })
        .await
        .unwrap();
    assert!(!c.source.status().details.contains_key("lease_error"));
    c.stop().await;
}

#[tokio::test]
async fn without_redis_nobody_leads_and_nothing_panics() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let overlap = Arc::new(Overlap::default());
    let mut contenders = [
        Contender::start(&url, "lease", TTL, &overlap),
        Contender::start(&url, "lease", TTL, &overlap),
    ];
    // Two failed attempts each: the standby loop keeps going after an error.
    eventually("both saw redis down", WITHIN, || async {
        contenders
            .iter()
            .all(|c| c.source.status().details.contains_key("lease_error"))
    })
    .await
    .unwrap();
    let error = contenders[0].source.status().details["lease_error"].clone();
    assert!(
        error.as_str().is_some_and(|e| e.contains("acquire")),
        "{error}"
    );
    for c in &contenders {
        assert!(!c.source.is_leader());
        assert_eq!(c.recorder.runs(), 0);
        assert_eq!(
            c.source.health().unwrap().check().await.status,
            HealthStatus::Up
        );
    }
    for c in &mut contenders {
        c.stop().await;
    }
    assert_eq!(overlap.max_active.load(Ordering::SeqCst), 0);
}
