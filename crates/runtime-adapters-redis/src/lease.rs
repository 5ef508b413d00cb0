//! A leader lease in Redis, and [`LeaderSource`]: a task source that runs only while its
//! process holds the lease, so exactly one of several processes reads a shared upstream
//! (one mailbox) while all of them run workers.
//!
//! The lease is one string key: `SET key <holder> NX PX ttl` takes it; Lua scripts renew
//! and release it only while the key still names this holder, so nobody ever extends or
//! deletes someone else's lease. A holder that stops renewing (crashed, cut off) loses the
//! lease when the key expires, and a standby takes it on its next attempt.
//!
//! Key design decision: the leader stops its inner source *before* its lease can expire in
//! Redis. It renews every ttl/3, gives each renewal until 2/3 of the ttl after the last
//! good one to answer, and stops the source at the first renewal that fails or finds
//! another holder. The local deadline is measured from before the renewal was sent, so it
//! is never later than the expiry Redis applies; the last third of the ttl is the inner
//! source's time to stop. No fencing token reaches the upstream: an overlap (an operator
//! deleting the key, a process frozen past its deadline) is absorbed by the queue, which
//! refuses a second live task for the same origin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, FromRedisValue, RedisError, Script};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use runtime_contracts::{
    ComponentHealth, HealthContributor, HealthStatus, QueueError, Secret, SourceAcknowledger,
    SourceError, SourceStatus, StopSignal, TaskSink, TaskSource,
};

use crate::config::RedisQueueConfig;
use crate::conn::Connections;

/// Extends the lease only while it is ours. `ARGV`: holder, ttl ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes the lease only while it is ours. `ARGV`: holder.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

/// Shortest lease accepted: renewals every ttl/3 must stay well above a round trip.
const MIN_TTL: Duration = Duration::from_millis(30);

/// Errors of a [`RedisLease`]. No variant carries the URL's user or password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The URL, key or ttl is unusable.
    #[error("invalid lease: {0}")]
    Invalid(String),
    /// Redis could not be reached or refused the call.
    #[error("redis lease {op} failed on {key}")]
    Unavailable {
        /// What was attempted (`acquire`, `renew`, `release`, `read`).
        op: &'static str,
        /// The lease key.
        key: String,
        /// The cause.
        #[source]
        source: RedisError,
    },
}

/// A lease in Redis that at most one holder has at a time.
///
/// The holder id is `host:pid:random`, with the random part chosen per `RedisLease`, so
/// two leases in one process (tests, two sources) are different holders too.
pub struct RedisLease {
    key: String,
    holder: String,
    ttl: Duration,
    ttl_ms: u64,
    conns: Connections,
    redacted_url: String,
}

impl std::fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLease")
            .field("url", &self.redacted_url)
            .field("key", &self.key)
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisLease {
    /// A lease on `key` that expires `ttl` after it was last taken or renewed. Does not
    /// talk to Redis: an unreachable Redis shows up later as "not leader".
    ///
    /// Calls time out after ttl/3 (at most 2 s), so a renewal answers before the lease
    /// could run out.
    pub fn new(url: Secret, key: impl Into<String>, ttl: Duration) -> Result<Self, LeaseError> {
        let key = key.into();
        if key.is_empty() {
            return Err(LeaseError::Invalid("key must not be empty".into()));
        }
        if ttl < MIN_TTL {
            return Err(LeaseError::Invalid(format!(
                "ttl must be at least {}ms",
                MIN_TTL.as_millis()
            )));
        }
        let operation_timeout = (ttl / 3).min(Duration::from_secs(2));
        // The queue's connection code, reused: one lazily (re)opened multiplexed
        // connection; the wait pool it also builds stays empty (deadpool is lazy).
        let mut cfg = RedisQueueConfig::new(url.expose(), "lease");
        cfg.connections = 1;
        cfg.wait_pool_size = 1;
        cfg.connect_timeout = operation_timeout;
        cfg.operation_timeout = operation_timeout;
        let scheme_ok = ["redis://", "rediss://"]
            .iter()
            .any(|s| url.expose().starts_with(s));
        if !scheme_ok {
            return Err(LeaseError::Invalid(
                "url must start with redis:// or rediss://".into(),
            ));
        }
        let conns = Connections::new(&cfg).map_err(|e| match e {
            QueueError::Invalid(message) => LeaseError::Invalid(message),
            other => LeaseError::Invalid(other.to_string()),
        })?;
        Ok(RedisLease {
            holder: holder_id(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            ttl,
            key,
            conns,
            redacted_url: cfg.redacted_url(),
        })
    }

    /// The Redis key of the lease.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// This lease's holder id (`host:pid:random`), the value of the key while held.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How long the lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease if it is free (or ours already, then extends it). `Ok(false)`:
    /// another holder has it.
    pub async fn try_acquire(&self) -> Result<bool, LeaseError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&self.key)
            .arg(&self.holder)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms);
        let set: Option<String> = self.query("acquire", &cmd).await?;
        if set.is_some() {
            return Ok(true);
        }
        // Ours already: a renewal whose reply was lost, or a release that failed. Taking
        // it back is safe (nobody else runs) and spares waiting out the ttl.
        self.renew().await
    }

    /// Extends the lease by the ttl if it is still ours. `Ok(false)`: it expired or
    /// another holder has it.
    pub async fn renew(&self) -> Result<bool, LeaseError> {
        let mut inv = RENEW_SCRIPT.prepare_invoke();
        inv.key(&self.key).arg(&self.holder).arg(self.ttl_ms);
        let renewed: i64 = self.eval("renew", &inv).await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up if it is ours, so a standby takes over at once. `Ok(false)`: it
    /// was not ours (expired, or another holder has it).
    pub async fn release(&self) -> Result<bool, LeaseError> {
        let mut inv = RELEASE_SCRIPT.prepare_invoke();
        inv.key(&self.key).arg(&self.holder);
        let deleted: i64 = self.eval("release", &inv).await?;
        Ok(deleted == 1)
    }

    /// Who holds the lease now, if anyone.
    pub async fn current_holder(&self) -> Result<Option<String>, LeaseError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(&self.key);
        self.query("read", &cmd).await
    }

    async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, LeaseError> {
        self.conns
            .with_shared(async |c: &mut MultiplexedConnection| cmd.query_async::<T>(c).await)
            .await
            .map_err(|e| self.error(op, e))
    }

    async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, LeaseError> {
        self.conns
            .with_shared(async |c: &mut MultiplexedConnection| inv.invoke_async::<T>(c).await)
            .await
            .map_err(|e| self.error(op, e))
    }

    fn error(&self, op: &'static str, source: RedisError) -> LeaseError {
        LeaseError::Unavailable {
            op,
            key: self.key.clone(),
            source,
        }
    }
}

/// `host:pid:random`, the random part fresh per call.
fn holder_id() -> String {
    format!(
        "{}:{}:{:08x}",
        crate::host_name(),
        std::process::id(),
        fastrand::u32(..)
    )
}

/// `base` scaled by a random factor in [0.75, 1.25), so standbys do not knock in step.
fn jittered(base: Duration) -> Duration {
    let permille = 750 + fastrand::u64(..500);
    base.mul_f64(permille as f64 / 1000.0)
}

/// What [`LeaderSource`] shares with its health contributor.
struct Shared {
    name: String,
    lease: RedisLease,
    leader: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn set_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = error;
        }
    }

    fn error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// A [`TaskSource`] that runs `inner` only while this process holds a [`RedisLease`].
///
/// While standby it tries to take the lease every ttl/3 (with jitter); once leader it runs
/// `inner` with a stop signal that fires when the runtime stops the source or the lease
/// is lost, renews every ttl/3, and goes back to standby when a renewal fails. A stop
/// releases the lease, so a standby takes over within one attempt interval. Every
/// instance registers the inner source's acknowledger, so every process settles the
/// tasks it handled, leader or not.
pub struct LeaderSource {
    inner: Arc<dyn TaskSource>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LeaderSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderSource")
            .field("name", &self.shared.name)
            .field("lease", &self.shared.lease)
            .field("leader", &self.is_leader())
            .finish_non_exhaustive()
    }
}

/// How a term as leader ended.
enum Term {
    /// The inner source returned while we still held the lease.
    Returned(Result<(), SourceError>),
    /// The lease was lost; the inner source was stopped.
    Lost,
}

impl LeaderSource {
    /// Wraps `inner` so it runs only while `lease` is held.
    pub fn new(inner: Arc<dyn TaskSource>, lease: RedisLease) -> Self {
        LeaderSource {
            shared: Arc::new(Shared {
                name: inner.name().to_owned(),
                lease,
                leader: AtomicBool::new(false),
                last_error: Mutex::new(None),
            }),
            inner,
        }
    }

    /// True while this instance holds the lease and runs the inner source.
    pub fn is_leader(&self) -> bool {
        self.shared.leader.load(Ordering::Acquire)
    }

    /// The lease.
    pub fn lease(&self) -> &RedisLease {
        &self.shared.lease
    }

    /// One attempt to take the lease; an unreachable Redis counts as "not leader".
    async fn attempt(&self) -> bool {
        let lease = &self.shared.lease;
        match lease.try_acquire().await {
            Ok(true) => {
                self.shared.set_error(None);
                true
            }
            Ok(false) => {
                self.shared.set_error(None);
                debug!(source = %self.shared.name, lease_key = %lease.key(), "lease held elsewhere; standby");
                false
            }
            Err(error) => {
                let text = error_chain(&error);
                // Warn when the outage starts, not every attempt while it lasts.
                if self.shared.error().as_deref() != Some(text.as_str()) {
                    warn!(source = %self.shared.name, lease_key = %lease.key(), error = %text, "cannot reach redis for the lease; standby");
                }
                self.shared.set_error(Some(text));
                false
            }
        }
    }

    /// Runs the inner source while the lease holds. `acquired_at` is when the call that
    /// took the lease was sent.
    async fn lead(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: &Arc<dyn StopSignal>,
        acquired_at: Instant,
    ) -> Term {
        let child = Arc::new(ChildStop::new(stop.clone()));
        let mut run = self.inner.run(sink, child.clone());
        let watchdog = self.keep_renewing(acquired_at);
        tokio::pin!(watchdog);
        tokio::select! {
            result = &mut run => Term::Returned(result),
            reason = &mut watchdog => {
                warn!(
                    source = %self.shared.name,
                    lease_key = %self.shared.lease.key(),
                    %reason,
                    "lease lost; stopping the source"
                );
                child.fire();
                if let Err(error) = run.await {
                    debug!(source = %self.shared.name, %error, "source ended with an error after the lease was lost");
                }
                Term::Lost
            }
        }
    }

    /// Renews every ttl/3; returns why the lease is lost. Each renewal must answer by
    /// 2/3 of the ttl after the last good one, leaving the last third for the inner
    /// source to stop before the key can expire in Redis.
    async fn keep_renewing(&self, acquired_at: Instant) -> String {
        let lease = &self.shared.lease;
        let every = lease.ttl() / 3;
        let mut last_good = acquired_at;
        loop {
            tokio::time::sleep_until(last_good + every).await;
            let sent = Instant::now();
            let deadline = last_good + 2 * every;
            match tokio::time::timeout_at(deadline, lease.renew()).await {
                Ok(Ok(true)) => last_good = sent,
                Ok(Ok(false)) => return "the lease expired or another holder has it".into(),
                Ok(Err(error)) => {
                    let text = error_chain(&error);
                    self.shared.set_error(Some(text.clone()));
                    return text;
                }
                Err(_) => return "no renewal answered in time".into(),
            }
        }
    }

    async fn release(&self) {
        let lease = &self.shared.lease;
        match lease.release().await {
            Ok(true) => {
                info!(source = %self.shared.name, lease_key = %lease.key(), "lease released")
            }
            Ok(false) => {
                debug!(source = %self.shared.name, lease_key = %lease.key(), "lease was no longer ours")
            }
            Err(error) => {
                warn!(source = %self.shared.name, lease_key = %lease.key(), error = %error_chain(&error), "lease release failed; it expires on its own");
            }
        }
    }
}

#[async_trait]
impl TaskSource for LeaderSource {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &str {
        self.inner.kind()
    }

    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        let lease = &self.shared.lease;
        loop {
            if stop.is_stopped() {
                return Ok(());
            }
            let sent = Instant::now();
            let acquired = tokio::select! {
                acquired = self.attempt() => acquired,
                _ = stop.stopped() => {
                    // The cut-off attempt may have taken the lease: give it back (a
                    // no-op when it did not).
                    self.release().await;
                    return Ok(());
                }
            };
            if acquired {
                info!(source = %self.shared.name, lease_key = %lease.key(), holder = %lease.holder(), "lease acquired; leading");
                self.shared.leader.store(true, Ordering::Release);
                let term = self.lead(sink.clone(), &stop, sent).await;
                self.shared.leader.store(false, Ordering::Release);
                match term {
                    Term::Returned(result) => {
                        // Stopped, finished or failed: in each case let a standby have it.
                        self.release().await;
                        return result;
                    }
                    Term::Lost => {}
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(jittered(lease.ttl() / 3)) => {}
                _ = stop.stopped() => return Ok(()),
            }
        }
    }

    fn status(&self) -> SourceStatus {
        let mut status = self.inner.status();
        let lease = &self.shared.lease;
        let d = &mut status.details;
        d.insert("leader".into(), self.is_leader().into());
        d.insert("lease_key".into(), lease.key().into());
        d.insert("holder".into(), lease.holder().into());
        d.insert(
            "lease_ttl_ms".into(),
            u64::try_from(lease.ttl().as_millis())
                .unwrap_or(u64::MAX)
                .into(),
        );
        if let Some(error) = self.shared.error() {
            d.insert("lease_error".into(), error.into());
        }
        status
    }

    fn health(&self) -> Option<Arc<dyn HealthContributor>> {
        let inner = self.inner.health();
        Some(Arc::new(LeaderHealth {
            name: inner.as_ref().map_or_else(
                || format!("source:{}", self.shared.name),
                |h| h.name().to_owned(),
            ),
            inner,
            shared: self.shared.clone(),
        }))
    }

    fn acknowledger(&self) -> Option<Arc<dyn SourceAcknowledger>> {
        self.inner.acknowledger()
    }
}

/// Health of a [`LeaderSource`]: the inner source's while leader; up while standby (a
/// standby is doing its job; Redis outages show on the queue's health).
struct LeaderHealth {
    name: String,
    inner: Option<Arc<dyn HealthContributor>>,
    shared: Arc<Shared>,
}

#[async_trait]
impl HealthContributor for LeaderHealth {
    fn name(&self) -> &str {
        &self.name
    }

    fn readiness(&self) -> bool {
        self.inner.as_ref().is_none_or(|h| h.readiness())
    }

    async fn check(&self) -> ComponentHealth {
        let lease = &self.shared.lease;
        if self.shared.leader.load(Ordering::Acquire) {
            let health = match &self.inner {
                Some(inner) => inner.check().await,
                None => ComponentHealth::new(self.name.clone(), HealthStatus::Up),
            };
            return health
                .with_detail("leader", true)
                .with_detail("lease_key", lease.key());
        }
        let mut health = ComponentHealth::new(self.name.clone(), HealthStatus::Up)
            .with_detail("leader", false)
            .with_detail("role", "standby")
            .with_detail("lease_key", lease.key())
            .with_detail("holder", lease.holder());
        health.readiness = self.readiness();
        if let Some(error) = self.shared.error() {
            health = health.with_detail("lease_error", error);
        }
        health
    }
}

/// The inner source's stop: fires when the outer stop does or when the lease is lost.
struct ChildStop {
    parent: Arc<dyn StopSignal>,
    lost: watch::Sender<bool>,
}

impl ChildStop {
    fn new(parent: Arc<dyn StopSignal>) -> Self {
        ChildStop {
            parent,
            lost: watch::Sender::new(false),
        }
    }

    fn fire(&self) {
        self.lost.send_replace(true);
    }
}

#[async_trait]
impl StopSignal for ChildStop {
    fn is_stopped(&self) -> bool {
        *self.lost.borrow() || self.parent.is_stopped()
    }

    async fn stopped(&self) {
        let mut lost = self.lost.subscribe();
        tokio::select! {
            // The sender lives in `self`, so `wait_for` only returns once it fired.
            _ = lost.wait_for(|l| *l) => {}
            _ = self.parent.stopped() => {}
        }
    }
}

/// An error with its causes, `: `-joined (a redis error says more than the wrapper).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_differ_and_name_the_process() {
        let a = holder_id();
        let b = holder_id();
        assert_ne!(a, b);
        assert!(a.contains(&format!(":{}:", std::process::id())), "{a}");
        assert!(a.starts_with(&format!("{}:", crate::host_name())), "{a}");
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(750) && d < Duration::from_millis(1250));
        }
    }

    #[test]
    fn bad_settings_are_errors_and_never_show_the_password() {
        let url = Secret::new("redis://u:hunter2@127.0.0.1:6379");
        assert!(RedisLease::new(url.clone(), "", Duration::from_secs(1)).is_err());
        assert!(RedisLease::new(url.clone(), "k", Duration::from_millis(1)).is_err());
        let bad = RedisLease::new(
            Secret::new("http://u:hunter2@h"),
            "k",
            Duration::from_secs(1),
        );
        assert!(bad.is_err_and(|e| !e.to_string().contains("hunter2")));
        let ok = RedisLease::new(url, "k", Duration::from_secs(1));
        assert!(ok.is_ok_and(|l| !format!("{l:?}").contains("hunter2")));
    }
}
