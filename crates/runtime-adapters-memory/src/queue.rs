//! [`MemoryQueue`]: the async face of [`State`] — locking, waiting and waking.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_contracts::{
    CancelOutcome, DeadLetter, Delivery, LeaderLease, LeaseError, NackOutcome, PublishOutcome,
    QueueError, QueueStats, Task, TaskControls, TaskId, TaskInfo, TaskQueue,
};
use tokio::sync::Notify;

use crate::config::MemoryQueueConfig;
use crate::lease::{LeaseTable, LocalLease};
use crate::state::{MemoryUsage, Offer, State};

/// A bounded, in-process [`TaskQueue`]. Cheap to share behind an `Arc`.
pub struct MemoryQueue {
    name: String,
    capacity: usize,
    capacity_bytes: u64,
    visibility_timeout: Duration,
    max_attempts: u32,
    state: Mutex<State>,
    /// Wakes consumers: tasks became ready, or a timer must be re-armed earlier.
    ready: Notify,
    /// Wakes publishers waiting for room.
    room: Notify,
    /// Wakes holders watching for the cancellation of their running tasks.
    cancels: Notify,
    /// Publishers waiting for room now. Raised under the state lock, so a settler that
    /// frees room after it sees the waiter.
    blocked: AtomicU64,
    /// The leader leases handed out by this queue.
    leases: Arc<LeaseTable>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("capacity_bytes", &self.capacity_bytes)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// Keeps `blocked` right even when a waiting publish is cancelled.
struct BlockedGuard<'a>(&'a MemoryQueue);

impl Drop for BlockedGuard<'_> {
    fn drop(&mut self) {
        let left = self.0.blocked.fetch_sub(1, Ordering::AcqRel) - 1;
        // Pass the baton: a wake-up this publisher took may have been meant for room it
        // did not use (duplicate, closed, cancelled).
        if left > 0 {
            self.0.room.notify_one();
        }
    }
}

/// Takes a sleeping consumer off the sleeper list even when `consume` is cancelled.
struct SleeperGuard<'a> {
    queue: &'a MemoryQueue,
    token: Option<u64>,
}

impl Drop for SleeperGuard<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            self.queue.lock().remove_sleeper(token);
        }
    }
}

impl MemoryQueue {
    /// A queue built from `config`. Out-of-range values are clamped (capacity, capacity
    /// bytes and max attempts to at least 1, the visibility timeout to at least 1 ms); use
    /// [`MemoryQueueConfig::validate`] to reject them instead.
    pub fn new(config: MemoryQueueConfig) -> Self {
        let capacity = config.capacity.max(1);
        MemoryQueue {
            name: config.name,
            capacity,
            capacity_bytes: config.capacity_bytes.max(1),
            visibility_timeout: config.visibility_timeout.max(Duration::from_millis(1)),
            max_attempts: config.max_attempts.max(1),
            state: Mutex::new(State::new(capacity)),
            ready: Notify::new(),
            room: Notify::new(),
            cancels: Notify::new(),
            blocked: AtomicU64::new(0),
            leases: Arc::default(),
        }
    }

    /// Bound on pending + delayed + in-flight tasks.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bound on the payload bytes of pending + delayed + in-flight tasks.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Approximate memory held for live tasks (see [`MemoryUsage`]).
    pub fn memory_usage(&self) -> MemoryUsage {
        self.lock().memory()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; if one ever did, the state is still
        // structurally valid, so keep serving rather than poison every caller.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }

    fn wake_consumer(&self, wake: bool) {
        if wake {
            self.ready.notify_one();
        }
    }

    /// Room for `freed` more tasks: wake as many waiting publishers.
    fn wake_publishers(&self, freed: u64) {
        let waiting = self.blocked.load(Ordering::Acquire);
        for _ in 0..freed.min(waiting) {
            self.room.notify_one();
        }
    }

    /// Publishes one task into a queue that was just found full, waiting for room.
    ///
    /// Callers box this future: the fast paths stay small futures, cheap to create and
    /// move, and only a full queue pays for `Notify` and the guard.
    async fn publish_waiting(&self, mut task: Task) -> Result<PublishOutcome, QueueError> {
        let mut blocked: Option<BlockedGuard<'_>> = None;
        loop {
            // Register with `Notify` before re-checking so no wake-up is lost.
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return Err(QueueError::Closed);
                }
                match state.offer(task, self.capacity, self.capacity_bytes) {
                    Offer::Done { outcome, wake } => {
                        drop(state);
                        self.wake_consumer(wake);
                        return Ok(outcome);
                    }
                    Offer::Invalid(e) => return Err(e),
                    Offer::Full(back) => {
                        task = back;
                        if blocked.is_none() {
                            self.blocked.fetch_add(1, Ordering::AcqRel);
                            blocked = Some(BlockedGuard(self));
                        }
                    }
                }
            }
            room.await;
        }
    }

    /// Waits up to `until` for ready tasks, after the fast path found none. Boxed by
    /// the caller, like `publish_waiting`.
    async fn consume_waiting(
        &self,
        max: usize,
        until: Instant,
    ) -> Result<Vec<Delivery>, QueueError> {
        // Before paying for a timer and a wake-up, let the tasks queued on this worker
        // thread (often the publisher) run once, then look again.
        tokio::task::yield_now().await;
        let mut sleeper = SleeperGuard {
            queue: self,
            token: None,
        };
        loop {
            // Register with `Notify` before looking, so a wake-up in between is kept.
            let mut ready = pin!(self.ready.notified());
            ready.as_mut().enable();
            let wake_at = {
                let mut state = self.lock();
                if let Some(token) = sleeper.token.take() {
                    state.remove_sleeper(token);
                }
                if state.closed {
                    return Err(QueueError::Closed);
                }
                let now = Instant::now();
                state.refresh(now);
                if state.has_ready() {
                    let (out, wake) = state.take_ready(max, now, self.visibility_timeout);
                    drop(state);
                    self.wake_consumer(wake);
                    return Ok(out);
                }
                if now >= until {
                    return Ok(Vec::new());
                }
                // Sleep until the caller's deadline or the moment a lease runs out or
                // a delayed task falls due, whichever is first.
                let at = state.next_event(now).map_or(until, |e| e.min(until));
                sleeper.token = Some(state.add_sleeper(at));
                at
            };
            let _ = tokio::time::timeout_at(tokio::time::Instant::from_std(wake_at), ready).await;
        }
    }
}

#[async_trait]
impl TaskQueue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    /// One publish attempt without waiting: the task comes back when there is no room.
    fn try_publish(&self, task: Task) -> Result<Result<PublishOutcome, Task>, QueueError> {
        let mut state = self.lock();
        if state.closed {
            return Err(QueueError::Closed);
        }
        match state.offer(task, self.capacity, self.capacity_bytes) {
            Offer::Done { outcome, wake } => {
                drop(state);
                self.wake_consumer(wake);
                Ok(Ok(outcome))
            }
            Offer::Full(task) => Ok(Err(task)),
            Offer::Invalid(e) => Err(e),
        }
    }

    async fn publish(&self, task: Task) -> Result<PublishOutcome, QueueError> {
        match self.try_publish(task)? {
            Ok(outcome) => Ok(outcome),
            Err(task) => Box::pin(self.publish_waiting(task)).await,
        }
    }

    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
        let mut out = Vec::with_capacity(tasks.len());
        let mut tasks = tasks.into_iter();
        while tasks.len() > 0 {
            // As many as fit under one lock; the first that does not fit waits alone.
            let mut full = None;
            let mut wake = false;
            {
                let mut state = self.lock();
                if state.closed {
                    return Err(QueueError::Closed);
                }
                for task in tasks.by_ref() {
                    match state.offer(task, self.capacity, self.capacity_bytes) {
                        Offer::Done { outcome, wake: w } => {
                            wake |= w;
                            out.push(outcome);
                        }
                        Offer::Full(back) => {
                            full = Some(back);
                            break;
                        }
                        Offer::Invalid(e) => {
                            drop(state);
                            self.wake_consumer(wake);
                            return Err(e);
                        }
                    }
                }
            }
            self.wake_consumer(wake);
            if let Some(task) = full {
                out.push(Box::pin(self.publish_waiting(task)).await?);
            }
        }
        Ok(out)
    }

    async fn consume(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        {
            let mut state = self.lock();
            if state.closed {
                return Err(QueueError::Closed);
            }
            state.refresh(now);
            if state.has_ready() {
                let (out, wake) = state.take_ready(max, now, self.visibility_timeout);
                drop(state);
                self.wake_consumer(wake);
                return Ok(out);
            }
        }
        if wait.is_zero() {
            return Ok(Vec::new());
        }
        // A wait too long to represent is "for ever"; a century is close enough.
        let until = now
            .checked_add(wait)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        Box::pin(self.consume_waiting(max, until)).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let task = self.lock().ack(delivery)?;
        drop(task);
        self.wake_publishers(1);
        Ok(())
    }

    /// Acks every delivery it can and reports the first failure after, so one stale lease
    /// does not leave the others unsettled.
    async fn ack_batch(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        let mut done = Vec::with_capacity(deliveries.len());
        let mut first_error = None;
        {
            let mut state = self.lock();
            for d in deliveries {
                match state.ack(d) {
                    Ok(task) => done.push(task),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        self.wake_publishers(done.len() as u64);
        drop(done);
        first_error.map_or(Ok(()), Err)
    }

    async fn nack(
        &self,
        delivery: &Delivery,
        retry_delay: Option<Duration>,
        error: &str,
    ) -> Result<NackOutcome, QueueError> {
        let (dead, wake) = {
            let mut state = self.lock();
            if state.take_cancelled(delivery)? {
                drop(state);
                self.wake_publishers(1);
                return Ok(NackOutcome::Cancelled);
            }
            state.nack(delivery, retry_delay, error, self.max_attempts)?
        };
        self.wake_consumer(wake);
        if dead {
            self.wake_publishers(1);
            Ok(NackOutcome::DeadLettered)
        } else {
            Ok(NackOutcome::Requeued)
        }
    }

    async fn release(
        &self,
        delivery: &Delivery,
        delay: Option<Duration>,
    ) -> Result<(), QueueError> {
        let wake = {
            let mut state = self.lock();
            if state.take_cancelled(delivery)? {
                drop(state);
                self.wake_publishers(1);
                return Ok(());
            }
            state.release(delivery, delay)?
        };
        self.wake_consumer(wake);
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        {
            let mut state = self.lock();
            if !state.take_cancelled(delivery)? {
                state.dead_letter(delivery, reason)?;
            }
        }
        self.wake_publishers(1);
        Ok(())
    }

    async fn extend_lease(&self, delivery: &Delivery, by: Duration) -> Result<(), QueueError> {
        let rearm = self.lock().extend_lease(delivery, by)?;
        self.wake_consumer(rearm);
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let (stats, wake) = {
            let mut state = self.lock();
            let moved = state.refresh(Instant::now());
            let wake = moved && state.has_sleepers();
            let blocked = self.blocked.load(Ordering::Acquire);
            (state.stats(&self.name, self.capacity, blocked), wake)
        };
        self.wake_consumer(wake);
        Ok(stats)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self.lock().dead_letters(limit))
    }

    async fn retry_dead_letter(&self, id: TaskId) -> Result<bool, QueueError> {
        let retried = self.lock().retry_dead_letter(id);
        if let Some(wake) = retried {
            self.wake_consumer(wake);
        }
        Ok(retried.is_some())
    }

    async fn delete_dead_letter(&self, id: TaskId) -> Result<bool, QueueError> {
        let removed = self.lock().delete_dead_letter(id);
        Ok(removed.is_some())
    }

    async fn purge_dead_letters(&self) -> Result<u64, QueueError> {
        let purged = self.lock().purge_dead_letters();
        Ok(purged.len() as u64)
    }

    fn controls(&self) -> Option<&dyn TaskControls> {
        Some(self)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        if self.lock().closed {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }

    /// Refuses new publishes and consumes; waiting publishers and consumers return
    /// `Closed`. Deliveries already out can still be settled, and stored tasks stay.
    async fn close(&self) {
        self.lock().closed = true;
        self.room.notify_waiters();
        self.ready.notify_waiters();
    }

    /// A process-local lease (the queue spans one process): holders of one queue contend,
    /// two queues never do.
    fn leader_lease(&self, name: &str, ttl: Duration) -> Result<Arc<dyn LeaderLease>, LeaseError> {
        Ok(Arc::new(LocalLease::new(
            self.leases.clone(),
            name.to_owned(),
            ttl,
        )?))
    }
}

/// Lookups and cancels scan the queue under its lock (O(live tasks), bounded by the
/// capacity): an index by id would cost every publish and ack a hash update, and only
/// operators call these. A running task's holder learns of its cancellation at once.
#[async_trait]
impl TaskControls for MemoryQueue {
    async fn lookup(&self, id: TaskId) -> Result<TaskInfo, QueueError> {
        Ok(self.lock().lookup(id, &self.name))
    }

    async fn cancel(&self, id: TaskId) -> Result<CancelOutcome, QueueError> {
        let outcome = self.lock().cancel(id);
        match outcome {
            CancelOutcome::Removed => self.wake_publishers(1),
            CancelOutcome::Signalled => self.cancels.notify_waiters(),
            CancelOutcome::Dead | CancelOutcome::Unknown => {}
        }
        Ok(outcome)
    }

    async fn cancelled(&self, delivery: &Delivery) -> Result<(), QueueError> {
        loop {
            // Register before looking, so a cancel in between is not missed.
            let mut woke = pin!(self.cancels.notified());
            woke.as_mut().enable();
            let requested = self.lock().cancel_requested(delivery);
            match requested {
                Some(true) => return Ok(()),
                Some(false) => {}
                // Settled or lost: nothing to watch any more.
                None => std::future::pending::<()>().await,
            }
            woke.await;
        }
    }
}
