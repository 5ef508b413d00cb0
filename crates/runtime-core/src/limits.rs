//! Pool limits: per-key concurrency and rates, kept by a backend's [`TaskLimiter`] so
//! they hold across every process sharing it.
//!
//! A pool with limits puts a [`Gate`] in front of its handler. A delivered task whose key
//! (`workers.concurrency_key`, a task header) has all its slots taken does not hold a
//! worker: it joins this process's waiting list for that key and the worker takes the
//! next task. Waiting is event-driven, never polled in a loop over tasks:
//!
//! * when a task of this process finishes, its slot passes straight to the next waiting
//!   task of the same key (no backend call, no gap);
//! * a key whose slots are all held by other processes is tried again by one background
//!   task per pool, per key (not per task), backing off from 50 ms to 1 s; a task that
//!   gets a slot that way is run by the next worker that looks for work;
//! * the waiting tasks' queue leases and the slots this process holds are renewed
//!   together every lease-renewal period, so a waiting task is not redelivered and a
//!   slot of a killed process expires within `3 x workers.lease_renewal`.
//!
//! The waiting list is bounded ([`MAX_WAITING`] per pool); past it, and for a per-key
//! rate that is used up, a task goes back to the queue with a delay (`release`: never an
//! attempt). A pool-wide rate books each task's start (the limiter's schedule) and the
//! worker sleeps until then: every task of the pool waits for the same rate, so no other
//! key is held up. A limiter outage hands the task back, like any outage, without using
//! an attempt.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use runtime_contracts::{
    Delivery, KeySlot, PoolLimitsStatus, Rate, Reservation, TaskLimiter, TaskQueue,
};
use tokio::sync::Notify;

use crate::signal::StopToken;

/// Tasks of one pool waiting in this process for a key slot, at most.
pub const MAX_WAITING: usize = 1024;
/// How far ahead a pool-wide rate books a start (the worker sleeps at most this long per
/// booking).
const POOL_RATE_AHEAD: Duration = Duration::from_secs(1);
/// How far ahead a per-key rate books: a worker waits this long at most for one key.
const KEY_RATE_AHEAD: Duration = Duration::from_millis(250);
/// First and longest retry of a key whose slots other processes hold.
const ORPHAN_RETRY_FIRST: Duration = Duration::from_millis(50);
const ORPHAN_RETRY_MAX: Duration = Duration::from_secs(1);
/// Delay of a task handed back because the waiting list is full or the limiter is down.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// A pool's limits, from `[workers]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// The task header whose value is the concurrency key (`None`: no key limit).
    pub concurrency_key: Option<String>,
    /// Tasks of one key at once.
    pub per_key: u32,
    /// The rate, if any.
    pub rate: Option<Rate>,
    /// The rate holds per key (tasks without the header share the pool's bucket).
    pub rate_per_key: bool,
}

/// A task's right to run: the key whose slot it holds, if its pool limits keys, and the
/// backend's lease on that slot (none with an in-process limiter).
#[derive(Debug, Default)]
pub(crate) struct Permit {
    key: Option<String>,
    slot: Option<KeySlot>,
}

impl Permit {
    fn remote(slot: KeySlot) -> Self {
        Permit {
            key: Some(slot.key.clone()),
            slot: Some(slot),
        }
    }
}

#[derive(Default)]
struct State {
    /// Slots this process holds, per key (running, or passed to a ready task).
    held: HashMap<String, usize>,
    /// Tasks waiting for a slot of their key, oldest first.
    waiting: HashMap<String, VecDeque<Delivery>>,
    waiting_len: usize,
    /// Keys with waiting tasks and no slot here: when to try the backend again, and the
    /// current backoff.
    orphans: HashMap<String, (Instant, Duration)>,
    /// Tasks that got their slot in the background, for the next free worker.
    ready: VecDeque<(Delivery, Permit)>,
    /// Every slot held here, by holder, for renewal.
    active: HashMap<String, KeySlot>,
    stopping: bool,
}

/// The limits in front of one pool's handler.
pub(crate) struct Gate {
    pool: String,
    limits: PoolLimits,
    limiter: Arc<dyn TaskLimiter>,
    queue: Arc<dyn TaskQueue>,
    renewal: Duration,
    slot_ttl: Duration,
    state: Mutex<State>,
    wake: Notify,
    key_waits: AtomicU64,
    rate_waits: AtomicU64,
    handed_back: AtomicU64,
}

enum Paced {
    Go,
    /// Hand the task back with this delay.
    Back(Duration),
}

impl Gate {
    pub(crate) fn new(
        pool: String,
        limits: PoolLimits,
        limiter: Arc<dyn TaskLimiter>,
        queue: Arc<dyn TaskQueue>,
        renewal: Duration,
    ) -> Self {
        Gate {
            pool,
            limits,
            limiter,
            queue,
            renewal,
            // Like a delivery's lease: two renewals may fail before it runs out.
            slot_ttl: renewal * 3,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            key_waits: AtomicU64::new(0),
            rate_waits: AtomicU64::new(0),
            handed_back: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key_of(&self, delivery: &Delivery) -> Option<String> {
        let header = self.limits.concurrency_key.as_deref()?;
        delivery.task.headers.get(header).map(str::to_owned)
    }

    pub(crate) fn status(&self) -> PoolLimitsStatus {
        let waiting = {
            let s = self.lock();
            (s.waiting_len + s.ready.len()) as u64
        };
        PoolLimitsStatus {
            concurrency_key: self.limits.concurrency_key.clone(),
            per_key: self
                .limits
                .concurrency_key
                .as_ref()
                .map(|_| self.limits.per_key),
            rate: self.limits.rate.map(|r| r.to_string()),
            rate_per_key: self.limits.rate_per_key,
            key_waits_total: self.key_waits.load(Ordering::Relaxed),
            rate_waits_total: self.rate_waits.load(Ordering::Relaxed),
            waiting,
            handed_back_total: self.handed_back.load(Ordering::Relaxed),
        }
    }

    /// Lets `delivery` run now, or parks it / hands it back (then `None`; the caller
    /// takes its next task). The answer may be another task whose slot passed on.
    pub(crate) async fn admit(
        &self,
        delivery: Delivery,
        stop: &StopToken,
    ) -> Option<(Delivery, Permit)> {
        let Some(key) = self.key_of(&delivery) else {
            return self.paced(delivery, Permit::default(), stop).await;
        };
        if self.limiter.in_process() {
            return self.admit_locally(delivery, key, stop).await;
        }
        let wait_here = {
            let s = self.lock();
            let queued = s.waiting.get(&key).is_some_and(|w| !w.is_empty());
            let held = s.held.get(&key).copied().unwrap_or(0);
            // Behind tasks already waiting here, or every slot is ours and busy: wait
            // here without asking the backend.
            queued || held >= self.limits.per_key as usize
        };
        if wait_here {
            self.key_waits.fetch_add(1, Ordering::Relaxed);
            self.park(delivery, key).await;
            return None;
        }
        match self
            .limiter
            .acquire(&self.pool, &key, self.limits.per_key, self.slot_ttl)
            .await
        {
            Ok(Some(slot)) => {
                self.hold(&slot);
                self.paced(delivery, Permit::remote(slot), stop).await
            }
            Ok(None) => {
                self.key_waits.fetch_add(1, Ordering::Relaxed);
                self.park(delivery, key).await;
                None
            }
            Err(error) => {
                tracing::warn!(pool = %self.pool, %error, "key slot unavailable; the task goes back without counting an attempt");
                self.hand_back(&delivery, HAND_BACK_DELAY).await;
                None
            }
        }
    }

    /// With an in-process limiter this process's counts are the whole truth: one lock,
    /// no backend call, and nobody else can free a slot (so no background retries).
    async fn admit_locally(
        &self,
        delivery: Delivery,
        key: String,
        stop: &StopToken,
    ) -> Option<(Delivery, Permit)> {
        enum Local {
            Run(Delivery, String),
            Parked,
            Refused(Delivery),
        }
        let outcome = {
            let mut s = self.lock();
            let queued = s.waiting.get(&key).is_some_and(|w| !w.is_empty());
            let held = s.held.get(&key).copied().unwrap_or(0);
            if !queued && held < self.limits.per_key as usize {
                *s.held.entry(key.clone()).or_default() += 1;
                Local::Run(delivery, key)
            } else if s.stopping || s.waiting_len >= MAX_WAITING {
                Local::Refused(delivery)
            } else {
                s.waiting.entry(key).or_default().push_back(delivery);
                s.waiting_len += 1;
                Local::Parked
            }
        };
        let refused = match outcome {
            Local::Run(delivery, key) => {
                let permit = Permit {
                    key: Some(key),
                    slot: None,
                };
                return self.paced(delivery, permit, stop).await;
            }
            Local::Parked => None,
            Local::Refused(delivery) => Some(delivery),
        };
        self.key_waits.fetch_add(1, Ordering::Relaxed);
        if let Some(delivery) = refused {
            self.hand_back(&delivery, jittered(HAND_BACK_DELAY)).await;
        } else {
            // Their queue leases need renewing.
            self.wake.notify_one();
        }
        None
    }

    /// A task that got its slot in the background, if any.
    pub(crate) async fn take_ready(&self, stop: &StopToken) -> Option<(Delivery, Permit)> {
        loop {
            let (delivery, permit) = self.lock().ready.pop_front()?;
            if let Some(next) = self.paced(delivery, permit, stop).await {
                return Some(next);
            }
        }
    }

    /// A task ran: its slot passes to the next waiting task of the key (returned, to run
    /// now) or goes back to the backend.
    pub(crate) async fn finish(
        &self,
        permit: Permit,
        stop: &StopToken,
    ) -> Option<(Delivery, Permit)> {
        let mut permit = permit;
        loop {
            let (delivery, next) = self.pass_on(permit).await?;
            if let Some(run) = self.paced(delivery, next, stop).await {
                return Some(run);
            }
            // `paced` handed it back and passed its slot on already.
            permit = Permit::default();
        }
    }

    /// Hands a task that will not run (the worker is stopping) back, passing its slot on.
    pub(crate) async fn give_up(&self, delivery: &Delivery, permit: Permit) {
        self.release_delivery(delivery, None).await;
        let mut permit = permit;
        while let Some((next, p)) = self.pass_on(permit).await {
            self.release_delivery(&next, None).await;
            permit = p;
        }
    }

    fn hold(&self, slot: &KeySlot) {
        let first = {
            let mut s = self.lock();
            *s.held.entry(slot.key.clone()).or_default() += 1;
            s.active.insert(slot.holder.clone(), slot.clone());
            s.orphans.remove(&slot.key);
            s.active.len() == 1
        };
        if first {
            // The background task sleeps while nothing is held: renewals start now.
            self.wake.notify_one();
        }
    }

    /// Gives up `permit`'s slot: to the next waiting task of its key if there is one.
    async fn pass_on(&self, permit: Permit) -> Option<(Delivery, Permit)> {
        let key = permit.key.as_deref()?;
        {
            let mut s = self.lock();
            if !s.stopping
                && let Some(next) = s.waiting.get_mut(key).and_then(VecDeque::pop_front)
            {
                s.waiting_len -= 1;
                if s.waiting.get(key).is_some_and(VecDeque::is_empty) {
                    s.waiting.remove(key);
                }
                return Some((next, permit));
            }
            if let Some(slot) = &permit.slot {
                s.active.remove(&slot.holder);
            }
            let left = s.held.get_mut(key).map(|n| {
                *n = n.saturating_sub(1);
                *n
            });
            if left == Some(0) {
                s.held.remove(key);
            }
        }
        // An in-process limiter has no backend lease to give back.
        let slot = permit.slot?;
        if let Err(error) = self.limiter.release(&slot).await {
            tracing::warn!(pool = %self.pool, %error, "key slot release failed; it expires with its lease");
        }
        None
    }

    /// Waits in this process for a slot of `key`; hands the task back if the list is full.
    async fn park(&self, delivery: Delivery, key: String) {
        let refused = {
            let mut s = self.lock();
            if s.stopping || s.waiting_len >= MAX_WAITING {
                Some(delivery)
            } else {
                s.waiting
                    .entry(key.clone())
                    .or_default()
                    .push_back(delivery);
                s.waiting_len += 1;
                if !s.held.contains_key(&key) && !s.orphans.contains_key(&key) {
                    // No task here will pass a slot on: the background task asks.
                    s.orphans.insert(
                        key,
                        (Instant::now() + ORPHAN_RETRY_FIRST, ORPHAN_RETRY_FIRST),
                    );
                }
                None
            }
        };
        match refused {
            Some(delivery) => self.hand_back(&delivery, jittered(HAND_BACK_DELAY)).await,
            None => self.wake.notify_one(),
        }
    }

    /// Waits for the rate, if any; hands the task back (passing its slot on) when it must
    /// wait in the queue instead. `Some`: the task (maybe another one) runs now.
    async fn paced(
        &self,
        delivery: Delivery,
        permit: Permit,
        stop: &StopToken,
    ) -> Option<(Delivery, Permit)> {
        let (mut delivery, mut permit) = (delivery, permit);
        loop {
            match self.pace(&delivery, stop).await {
                Paced::Go => return Some((delivery, permit)),
                Paced::Back(delay) => {
                    self.hand_back(&delivery, delay).await;
                    (delivery, permit) = self.pass_on(permit).await?;
                }
            }
        }
    }

    async fn pace(&self, delivery: &Delivery, stop: &StopToken) -> Paced {
        let Some(rate) = self.limits.rate else {
            return Paced::Go;
        };
        let key = if self.limits.rate_per_key {
            self.key_of(delivery)
        } else {
            None
        };
        let (bucket, ahead) = match &key {
            // The unit separator cannot clash with a pool name written in config.
            Some(key) => (format!("{}\u{1f}{key}", self.pool), KEY_RATE_AHEAD),
            None => (self.pool.clone(), POOL_RATE_AHEAD),
        };
        let mut since_extend = Duration::ZERO;
        let mut counted = false;
        loop {
            if stop.is_stopped() {
                return Paced::Back(Duration::ZERO);
            }
            let wait = match self.limiter.reserve(&bucket, rate, ahead).await {
                Ok(Reservation::Go(wait)) => {
                    if !wait.is_zero() {
                        if !counted {
                            self.rate_waits.fetch_add(1, Ordering::Relaxed);
                        }
                        if !sleep_or_stop(wait, stop).await {
                            return Paced::Back(Duration::ZERO);
                        }
                    }
                    return Paced::Go;
                }
                Ok(Reservation::Wait(wait)) => wait,
                Err(error) => {
                    tracing::warn!(pool = %self.pool, %error, "rate limiter unavailable; the task goes back without counting an attempt");
                    return Paced::Back(HAND_BACK_DELAY);
                }
            };
            if !counted {
                self.rate_waits.fetch_add(1, Ordering::Relaxed);
                counted = true;
            }
            if key.is_some() {
                // Waiting here would hold a worker for one key: the queue keeps it.
                return Paced::Back(wait + jitter_up_to(wait));
            }
            let chunk = wait.min(self.renewal);
            if !sleep_or_stop(chunk, stop).await {
                return Paced::Back(Duration::ZERO);
            }
            since_extend += chunk;
            if since_extend >= self.renewal / 2 {
                since_extend = Duration::ZERO;
                if let Err(error) = self.queue.extend_lease(delivery, self.slot_ttl).await {
                    tracing::warn!(pool = %self.pool, %error, "lease renewal of a task waiting for the rate failed");
                }
            }
        }
    }

    async fn hand_back(&self, delivery: &Delivery, delay: Duration) {
        self.handed_back.fetch_add(1, Ordering::Relaxed);
        self.release_delivery(delivery, Some(delay).filter(|d| !d.is_zero()))
            .await;
    }

    async fn release_delivery(&self, delivery: &Delivery, delay: Option<Duration>) {
        if let Err(error) = self.queue.release(delivery, delay).await {
            tracing::warn!(pool = %self.pool, %error, "release of a waiting task failed; it returns after its lease");
        }
    }

    /// The pool's background task: renews slots and waiting tasks' leases, retries keys
    /// whose slots other processes hold, and at stop hands every waiting task back.
    pub(crate) async fn run_background(self: Arc<Self>, stop: StopToken) {
        let mut next_renewal = Instant::now() + self.renewal;
        loop {
            let next_orphan = self.lock().orphans.values().map(|(at, _)| *at).min();
            let idle = {
                let s = self.lock();
                s.active.is_empty() && s.waiting_len == 0 && s.ready.is_empty()
            };
            let until = match (idle, next_orphan) {
                (_, Some(at)) => Some(at.min(next_renewal)),
                (false, None) => Some(next_renewal),
                // Nothing held, nothing waiting: sleep until a task parks.
                (true, None) => None,
            };
            let timer = async {
                match until {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = timer => {}
                _ = self.wake.notified() => {}
                _ = stop.stopped() => break,
            }
            let now = Instant::now();
            if now >= next_renewal {
                next_renewal = now + self.renewal;
                self.renew().await;
            } else if idle {
                next_renewal = now + self.renewal;
            }
            self.retry_orphans(now).await;
        }
        self.drain().await;
    }

    async fn renew(&self) {
        let (slots, deliveries): (Vec<KeySlot>, Vec<Delivery>) = {
            let s = self.lock();
            (
                s.active.values().cloned().collect(),
                s.waiting
                    .values()
                    .flatten()
                    .chain(s.ready.iter().map(|(d, _)| d))
                    .cloned()
                    .collect(),
            )
        };
        match self.limiter.renew_many(&slots, self.slot_ttl).await {
            Ok(kept) => {
                let lost = kept.iter().filter(|k| !**k).count();
                if lost > 0 {
                    tracing::warn!(pool = %self.pool, lost, "key slots expired before renewal; the key may run over its limit once");
                }
            }
            Err(error) => tracing::warn!(pool = %self.pool, %error, "key slot renewal failed"),
        }
        for d in &deliveries {
            if let Err(error) = self.queue.extend_lease(d, self.slot_ttl).await {
                tracing::debug!(pool = %self.pool, %error, "lease renewal of a waiting task failed");
            }
        }
    }

    async fn retry_orphans(&self, now: Instant) {
        let due: Vec<String> = self
            .lock()
            .orphans
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let result = self
                .limiter
                .acquire(&self.pool, &key, self.limits.per_key, self.slot_ttl)
                .await;
            let unneeded = {
                let mut s = self.lock();
                match result {
                    Ok(Some(slot)) => {
                        let next = s.waiting.get_mut(&key).and_then(VecDeque::pop_front);
                        if s.waiting.get(&key).is_some_and(VecDeque::is_empty) {
                            s.waiting.remove(&key);
                        }
                        s.orphans.remove(&key);
                        match next {
                            Some(delivery) => {
                                s.waiting_len -= 1;
                                *s.held.entry(key).or_default() += 1;
                                s.active.insert(slot.holder.clone(), slot.clone());
                                s.ready.push_back((delivery, Permit::remote(slot)));
                                None
                            }
                            None => Some(slot),
                        }
                    }
                    Ok(None) | Err(_) => {
                        if let Some((at, backoff)) = s.orphans.get_mut(&key) {
                            *backoff = (*backoff * 2).min(ORPHAN_RETRY_MAX);
                            *at = now + jittered(*backoff);
                        }
                        None
                    }
                }
            };
            if let Some(slot) = unneeded {
                let _ = self.limiter.release(&slot).await;
            }
        }
    }

    /// Hands every waiting task back (no attempt) and gives their slots up.
    async fn drain(&self) {
        let (waiting, ready) = {
            let mut s = self.lock();
            s.stopping = true;
            s.waiting_len = 0;
            s.orphans.clear();
            (std::mem::take(&mut s.waiting), std::mem::take(&mut s.ready))
        };
        for d in waiting.into_values().flatten() {
            self.release_delivery(&d, None).await;
        }
        for (d, permit) in ready {
            self.release_delivery(&d, None).await;
            let _ = self.pass_on(permit).await;
        }
    }
}

/// Sleeps for `d`; false when `stop` fired first.
async fn sleep_or_stop(d: Duration, stop: &StopToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.stopped() => false,
    }
}

/// `base` scaled by a random factor in [0.75, 1.25), so waiters do not knock in step.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// A random extra wait in [0, d/2): tasks handed back together come back spread out.
fn jitter_up_to(d: Duration) -> Duration {
    d.mul_f64(fastrand::f64() * 0.5)
}
