//! Exclusive sources: [`LeaderSource`] runs a task source only while its process holds a
//! [`LeaderLease`], so exactly one of several processes reads a shared upstream (one
//! mailbox) while all of them run workers. The runtime wraps every source a module
//! registered with [`ModuleContext::add_exclusive_source`](runtime_contracts::ModuleContext::add_exclusive_source)
//! in the lease its queue backend offers ([`TaskQueue::leader_lease`](runtime_contracts::TaskQueue::leader_lease)).
//!
//! Key design decision: the leader stops its inner source *before* its lease can expire
//! in the backend. It renews every ttl/3, gives each renewal until 2/3 of the ttl after
//! the last good one to answer, and stops the source at the first renewal that fails or
//! finds another holder. The local deadline is measured from before the renewal was
//! sent, so it is never later than the expiry the backend applies; the last third of the
//! ttl is the inner source's time to stop. No fencing token reaches the upstream: an
//! overlap (an operator deleting the key, a process frozen past its deadline) is absorbed
//! by the queue, which refuses a second live task for the same origin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use runtime_contracts::{
    ComponentHealth, HealthContributor, HealthStatus, LeaderLease, SourceAcknowledger, SourceError,
    SourceStatus, StopSignal, TaskSink, TaskSource,
};

use runtime_contracts::error_chain;

use crate::signal::StopToken;

/// `base` scaled by a random factor in [0.75, 1.25), so standbys do not knock in step.
fn jittered(base: Duration) -> Duration {
    let permille = 750 + fastrand::u64(..500);
    base.mul_f64(permille as f64 / 1000.0)
}

/// What [`LeaderSource`] shares with its health contributor.
struct Shared {
    name: String,
    lease: Arc<dyn LeaderLease>,
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

/// A [`TaskSource`] that runs `inner` only while this process holds a [`LeaderLease`].
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
            .field("lease_key", &self.shared.lease.key())
            .field("holder", &self.shared.lease.holder())
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
    pub fn new(inner: Arc<dyn TaskSource>, lease: Arc<dyn LeaderLease>) -> Self {
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
    pub fn lease(&self) -> &Arc<dyn LeaderLease> {
        &self.shared.lease
    }

    /// One attempt to take the lease; an unreachable backend counts as "not leader".
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
                    warn!(source = %self.shared.name, lease_key = %lease.key(), error = %text, "cannot reach the lease backend; standby");
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
        // The inner source's stop: fires when the outer stop does or the lease is lost.
        let child = StopToken::new();
        let inner_run = self.inner.run(sink, child.signal());
        let forward = child.clone();
        let run = async move {
            tokio::pin!(inner_run);
            tokio::select! {
                result = &mut inner_run => return result,
                _ = stop.stopped() => forward.stop(),
            }
            inner_run.await
        };
        tokio::pin!(run);
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
                child.stop();
                if let Err(error) = run.await {
                    debug!(source = %self.shared.name, %error, "source ended with an error after the lease was lost");
                }
                Term::Lost
            }
        }
    }

    /// Renews every ttl/3; returns why the lease is lost. Each renewal must answer by
    /// 2/3 of the ttl after the last good one, leaving the last third for the inner
    /// source to stop before the lease can expire in the backend.
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
/// standby is doing its job; backend outages show on the queue's health).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(750) && d < Duration::from_millis(1250));
        }
    }
}
