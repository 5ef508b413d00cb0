//! The queue's state behind its one mutex. Plain synchronous code: no awaits, no wakers;
//! the caller (`queue.rs`) decides whom to wake from what these methods return.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use runtime_contracts::{
    CancelOutcome, DeadLetter, Delivery, Lease, PublishOutcome, QueueError, QueueStats, Task,
    TaskId, TaskInfo, TaskOrigin, TaskState, now_millis,
};

/// Deadline entries beyond `2 * in_flight + SLACK` trigger a compaction of stale ones.
const COMPACT_SLACK: usize = 1024;
/// Containers smaller than this are never shrunk.
const SHRINK_MIN: usize = 4096;

/// A task waiting for its not-before time. Ordered so that `BinaryHeap` pops the earliest.
pub(crate) struct Delayed {
    pub(crate) due_ms: u64,
    pub(crate) task: Task,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.due_ms == other.due_ms
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> Ordering {
        other.due_ms.cmp(&self.due_ms)
    }
}

/// A delivered task and when its lease runs out.
pub(crate) struct InFlight {
    pub(crate) task: Task,
    pub(crate) deadline: Instant,
    /// An operator cancelled it while it ran: it is never retried nor dead-lettered.
    pub(crate) cancel: bool,
}

/// One slot of the in-flight slab. The generation makes a lease name one delivery: it
/// changes every time the slot is freed, so a stale lease no longer matches.
struct Slot {
    generation: u32,
    entry: Option<InFlight>,
}

fn lease_of(generation: u32, index: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn split_lease(lease: u64) -> (usize, u32) {
    ((lease & 0xffff_ffff) as usize, (lease >> 32) as u32)
}

/// Monotonic counters of [`QueueStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: u64,
    pub(crate) acked: u64,
    pub(crate) nacked: u64,
    pub(crate) released: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) expired: u64,
    pub(crate) cancelled: u64,
}

/// What a publish attempt did.
pub(crate) enum Offer {
    /// Stored (or refused as a duplicate); `wake` says a sleeping consumer should run.
    Done { outcome: PublishOutcome, wake: bool },
    /// No room; the task comes back to the caller.
    Full(Task),
    /// The task is not publishable (see `Task::check_publishable`).
    Invalid(QueueError),
}

/// Approximate memory held by a queue, for capacity planning and the benchmarks.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MemoryUsage {
    /// Live tasks (pending + delayed + in flight).
    pub live_tasks: usize,
    /// Sum of [`Task::heap_bytes`] over live tasks: payloads, headers, owned routes, origins.
    pub task_heap_bytes: usize,
    /// Bytes of the queue's own structures holding live tasks: task slots (including
    /// unused capacity), lease deadlines, the in-flight slab and the origin index.
    pub overhead_bytes: usize,
    /// Tasks in the dead-letter set (not counted above).
    pub dead_tasks: usize,
    /// Sum of payload lengths over live tasks (what `capacity_bytes` bounds).
    pub payload_bytes: u64,
}

pub(crate) struct State {
    /// The queue's capacity: containers never grow past it (retried dead letters aside).
    bound: usize,
    /// Ready to deliver, oldest first.
    ready: VecDeque<Task>,
    /// Waiting for a not-before time.
    delayed: BinaryHeap<Delayed>,
    /// In-flight slab: a lease is (generation, index), so settling needs no hashing.
    slots: Vec<Slot>,
    free: Vec<u32>,
    in_flight: usize,
    /// Lease deadlines given out by `consume`. They only grow (same timeout, monotonic
    /// clock, taken under the lock), so a FIFO keeps them sorted.
    deadlines: VecDeque<(Instant, u64)>,
    /// Deadlines set by `extend_lease`, in any order.
    extended: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Live tasks per origin (a count, because a retried dead letter may share an origin
    /// with a task published since) and the id of the latest, which a duplicate names.
    origins: HashMap<TaskOrigin, (u32, TaskId)>,
    /// The task holding each unique key (pending, delayed, in flight or dead).
    uniques: HashMap<Box<str>, TaskId>,
    /// Sum of the unique keys' lengths held by `uniques`.
    unique_key_bytes: usize,
    /// Sum of the origins' string capacities held by `origins`.
    origin_key_bytes: usize,
    dead: VecDeque<DeadLetter>,
    /// Consumers asleep in `consume`, with the instant their timer fires.
    sleepers: Vec<(u64, Instant)>,
    next_sleeper: u64,
    /// Sum of `Task::heap_bytes` over live tasks.
    heap_bytes: usize,
    /// Sum of payload lengths over live tasks: what `capacity_bytes` bounds.
    payload_bytes: u64,
    pub(crate) counters: Counters,
    pub(crate) closed: bool,
}

/// Grows by a quarter instead of doubling, and not past the queue's bound: a queue of
/// `Task`s (176 bytes each) that just doubled would hold twice the memory it needs.
fn grow_deque<T>(v: &mut VecDeque<T>, bound: usize) {
    if v.len() == v.capacity() {
        v.reserve_exact(growth(v.len(), bound));
    }
}

/// How many slots to add to a full container of `len`: a quarter, capped at the bound
/// (past the bound, which only retried dead letters reach, a plain quarter).
fn growth(len: usize, bound: usize) -> usize {
    let step = (len / 4).max(16);
    match bound.saturating_sub(len) {
        0 => step,
        room => step.min(room),
    }
}

fn shrink_deque<T>(v: &mut VecDeque<T>) {
    if v.capacity() > SHRINK_MIN && v.len() < v.capacity() / 4 {
        v.shrink_to(v.len() * 2);
    }
}

impl State {
    pub(crate) fn new(bound: usize) -> Self {
        State {
            bound,
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            deadlines: VecDeque::new(),
            extended: BinaryHeap::new(),
            origins: HashMap::new(),
            origin_key_bytes: 0,
            uniques: HashMap::new(),
            unique_key_bytes: 0,
            dead: VecDeque::new(),
            sleepers: Vec::new(),
            next_sleeper: 0,
            heap_bytes: 0,
            payload_bytes: 0,
            counters: Counters::default(),
            closed: false,
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.in_flight
    }

    pub(crate) fn has_sleepers(&self) -> bool {
        !self.sleepers.is_empty()
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn sleeper_count(&self) -> usize {
        self.sleepers.len()
    }

    #[cfg(test)]
    pub(crate) fn origin_index_len(&self) -> (usize, usize) {
        (self.origins.len(), self.origin_key_bytes)
    }

    #[cfg(test)]
    pub(crate) fn deadline_entries(&self) -> usize {
        self.deadlines.len() + self.extended.len()
    }

    /// True when a sleeping consumer must wake to re-arm its timer for `at`: every
    /// sleeper's timer fires later.
    fn needs_rearm(&self, at: Instant) -> bool {
        !self.sleepers.is_empty() && self.sleepers.iter().all(|(_, wake)| *wake > at)
    }

    pub(crate) fn add_sleeper(&mut self, wake_at: Instant) -> u64 {
        self.next_sleeper = self.next_sleeper.wrapping_add(1);
        self.sleepers.push((self.next_sleeper, wake_at));
        self.next_sleeper
    }

    pub(crate) fn remove_sleeper(&mut self, token: u64) {
        if let Some(at) = self.sleepers.iter().position(|(t, _)| *t == token) {
            self.sleepers.swap_remove(at);
        }
    }

    fn add_origin(&mut self, origin: &TaskOrigin, id: TaskId) {
        match self.origins.get_mut(origin) {
            Some((n, holder)) => {
                *n += 1;
                *holder = id;
            }
            None => {
                let key = origin.clone();
                self.origin_key_bytes += key.source.capacity() + key.key.capacity();
                self.origins.insert(key, (1, id));
            }
        }
    }

    fn drop_origin(&mut self, origin: &TaskOrigin) {
        if let Some((n, _)) = self.origins.get_mut(origin) {
            *n -= 1;
            if *n == 0
                && let Some((key, _)) = self.origins.remove_entry(origin)
            {
                self.origin_key_bytes -= key.source.capacity() + key.key.capacity();
            }
        }
    }

    /// Adds a task that already passed the capacity check; returns whether a sleeping
    /// consumer should be woken.
    #[inline]
    fn enqueue(&mut self, task: Task, now_ms: Option<u64>) -> bool {
        self.heap_bytes += task.heap_bytes();
        self.payload_bytes += task.payload.len() as u64;
        if let Some(origin) = &task.origin {
            self.add_origin(origin, task.id);
        }
        match task.not_before_ms {
            Some(due_ms) if due_ms > now_ms.unwrap_or_else(now_millis) => {
                self.push_delayed(due_ms, task)
            }
            _ => {
                grow_deque(&mut self.ready, self.bound);
                self.ready.push_back(task);
                self.has_sleepers()
            }
        }
    }

    fn push_delayed(&mut self, due_ms: u64, task: Task) -> bool {
        if self.delayed.len() == self.delayed.capacity() {
            self.delayed
                .reserve_exact(growth(self.delayed.len(), self.bound));
        }
        self.delayed.push(Delayed { due_ms, task });
        let wait = Duration::from_millis(due_ms.saturating_sub(now_millis()));
        self.needs_rearm(Instant::now() + wait)
    }

    /// Publishes one task unless the queue is full: `capacity` tasks, or payloads past
    /// `capacity_bytes` (an empty queue takes any one task, however large).
    #[inline]
    pub(crate) fn offer(&mut self, task: Task, capacity: usize, capacity_bytes: u64) -> Offer {
        if let Some(origin) = &task.origin
            && let Some(&(_, existing)) = self.origins.get(&**origin)
        {
            return Offer::Done {
                outcome: PublishOutcome::Duplicate { existing },
                wake: false,
            };
        }
        // Headers are empty on most tasks: this costs nothing then.
        let unique = task.unique_key();
        if unique.is_some() {
            if let Err(e) = task.check_publishable() {
                return Offer::Invalid(e);
            }
            if let Some(&existing) = unique.and_then(|k| self.uniques.get(k)) {
                return Offer::Done {
                    outcome: PublishOutcome::Duplicate { existing },
                    wake: false,
                };
            }
        }
        let live = self.live();
        let bytes = self.payload_bytes.saturating_add(task.payload.len() as u64);
        if live >= capacity || (live > 0 && bytes > capacity_bytes) {
            return Offer::Full(task);
        }
        if let Some(key) = task.unique_key() {
            self.unique_key_bytes += key.len();
            self.uniques.insert(key.into(), task.id);
        }
        self.counters.published += 1;
        let now_ms = task.not_before_ms.map(|_| now_millis());
        let wake = self.enqueue(task, now_ms);
        Offer::Done {
            outcome: runtime_contracts::PublishOutcome::Enqueued,
            wake,
        }
    }

    /// Moves due delayed tasks to ready and expired leases back to ready. Returns true
    /// when something became ready.
    #[inline]
    pub(crate) fn refresh(&mut self, now: Instant) -> bool {
        let mut moved = false;
        if !self.delayed.is_empty() {
            let now_ms = now_millis();
            while self.delayed.peek().is_some_and(|d| d.due_ms <= now_ms) {
                if let Some(d) = self.delayed.pop() {
                    grow_deque(&mut self.ready, self.bound);
                    self.ready.push_back(d.task);
                    moved = true;
                }
            }
        }
        while let Some(&(at, lease)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            moved |= self.expire(at, lease);
        }
        while let Some(&Reverse((at, lease))) = self.extended.peek() {
            if at > now {
                break;
            }
            self.extended.pop();
            moved |= self.expire(at, lease);
        }
        moved
    }

    /// Expires the delivery `lease` if `at` is still its deadline (not settled, not
    /// extended). The task goes to the front: it has waited longest.
    fn expire(&mut self, at: Instant, lease: u64) -> bool {
        let (index, generation) = split_lease(lease);
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        if slot.generation != generation || slot.entry.as_ref().is_none_or(|e| e.deadline != at) {
            return false;
        }
        let Some(entry) = self.free_slot(index) else {
            return false;
        };
        if entry.cancel {
            // Its holder is gone; the cancellation stands.
            self.forget(&entry.task);
            self.drop_unique(&entry.task);
            return false;
        }
        self.counters.expired += 1;
        grow_deque(&mut self.ready, self.bound);
        self.ready.push_front(entry.task);
        true
    }

    /// The earliest instant at which something may become ready by itself.
    pub(crate) fn next_event(&self, now: Instant) -> Option<Instant> {
        let lease = self.deadlines.front().map(|&(at, _)| at);
        let extended = self.extended.peek().map(|Reverse((at, _))| *at);
        let delayed = self
            .delayed
            .peek()
            .map(|d| now + Duration::from_millis(d.due_ms.saturating_sub(now_millis())));
        [lease, extended, delayed].into_iter().flatten().min()
    }

    /// Takes up to `max` ready tasks and leases them until `now + timeout`. The flag
    /// says a sleeping consumer should run: tasks are left over, or the new lease
    /// deadline comes before every sleeper's timer.
    #[inline]
    pub(crate) fn take_ready(
        &mut self,
        max: usize,
        now: Instant,
        timeout: Duration,
    ) -> (Vec<Delivery>, bool) {
        let n = max.min(self.ready.len());
        let mut out = Vec::with_capacity(n);
        let deadline = now + timeout;
        for _ in 0..n {
            let Some(task) = self.ready.pop_front() else {
                break;
            };
            let delivered = task.clone();
            let lease = self.insert_in_flight(InFlight {
                task,
                deadline,
                cancel: false,
            });
            self.deadlines.push_back((deadline, lease));
            out.push(Delivery {
                task: delivered,
                lease: Lease(lease),
            });
        }
        shrink_deque(&mut self.ready);
        let wake = self.has_sleepers() && (self.has_ready() || self.needs_rearm(deadline));
        (out, wake)
    }

    #[inline]
    fn insert_in_flight(&mut self, entry: InFlight) -> u64 {
        self.in_flight += 1;
        if let Some(index) = self.free.pop()
            && let Some(slot) = self.slots.get_mut(index as usize)
        {
            slot.entry = Some(entry);
            return lease_of(slot.generation, index);
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 0,
            entry: Some(entry),
        });
        lease_of(0, index)
    }

    #[inline]
    fn free_slot(&mut self, index: usize) -> Option<InFlight> {
        let slot = self.slots.get_mut(index)?;
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index as u32);
        self.in_flight -= 1;
        Some(entry)
    }

    /// Checks that `lease` still holds task `id`.
    #[inline]
    fn held(&mut self, lease: Lease, id: TaskId) -> Result<&mut InFlight, QueueError> {
        let (index, generation) = split_lease(lease.0);
        self.slots
            .get_mut(index)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.entry.as_mut())
            .filter(|e| e.task.id == id)
            .ok_or(QueueError::LeaseLost(id))
    }

    /// Ends a delivery: the task leaves the in-flight set and comes back to the caller.
    #[inline]
    fn settle(&mut self, delivery: &Delivery) -> Result<Task, QueueError> {
        self.held(delivery.lease, delivery.task.id)?;
        let (index, _) = split_lease(delivery.lease.0);
        let entry = self
            .free_slot(index)
            .ok_or(QueueError::LeaseLost(delivery.task.id))?;
        self.maybe_compact();
        Ok(entry.task)
    }

    /// Drops deadline entries of settled or extended deliveries once they outnumber the
    /// live ones, so a long visibility timeout does not pile up garbage. Amortised O(1).
    #[inline]
    fn maybe_compact(&mut self) {
        let entries = self.deadlines.len() + self.extended.len();
        if entries <= 2 * self.in_flight + COMPACT_SLACK {
            return;
        }
        let slots = &self.slots;
        let valid = |at: Instant, lease: u64| {
            let (index, generation) = split_lease(lease);
            slots.get(index).is_some_and(|s| {
                s.generation == generation && s.entry.as_ref().is_some_and(|e| e.deadline == at)
            })
        };
        self.deadlines.retain(|&(at, lease)| valid(at, lease));
        self.extended
            .retain(|&Reverse((at, lease))| valid(at, lease));
        shrink_deque(&mut self.deadlines);
    }

    /// A task leaves the queue for good (acked): forget its origin and bytes.
    #[inline]
    fn forget(&mut self, task: &Task) {
        self.heap_bytes -= task.heap_bytes();
        self.payload_bytes -= task.payload.len() as u64;
        if let Some(origin) = &task.origin {
            self.drop_origin(origin);
        }
    }

    /// Frees the task's unique key, if it holds it.
    fn drop_unique(&mut self, task: &Task) {
        if let Some(key) = task.unique_key()
            && self.uniques.get(key) == Some(&task.id)
            && let Some((key, _)) = self.uniques.remove_entry(key)
        {
            self.unique_key_bytes -= key.len();
        }
    }

    /// When the delivery is held and was cancelled while it ran, removes it (the caller
    /// answers as cancelled instead of retrying or dead-lettering it).
    pub(crate) fn take_cancelled(&mut self, delivery: &Delivery) -> Result<bool, QueueError> {
        if !self.held(delivery.lease, delivery.task.id)?.cancel {
            return Ok(false);
        }
        let task = self.settle(delivery)?;
        self.forget(&task);
        self.drop_unique(&task);
        Ok(true)
    }

    /// True while `delivery` is held and its cancellation was requested; `None` when
    /// the lease is no longer held.
    pub(crate) fn cancel_requested(&mut self, delivery: &Delivery) -> Option<bool> {
        self.held(delivery.lease, delivery.task.id)
            .ok()
            .map(|e| e.cancel)
    }

    /// Cancels task `id`: removes it when pending or delayed, marks it when in flight.
    /// The scan is O(live tasks), bounded by the capacity; only operators call it.
    pub(crate) fn cancel(&mut self, id: TaskId) -> CancelOutcome {
        if let Some(at) = self.ready.iter().position(|t| t.id == id)
            && let Some(task) = self.ready.remove(at)
        {
            self.remove_cancelled(task);
            return CancelOutcome::Removed;
        }
        if self.delayed.iter().any(|d| d.task.id == id) {
            let mut all = std::mem::take(&mut self.delayed).into_vec();
            if let Some(at) = all.iter().position(|d| d.task.id == id) {
                let gone = all.swap_remove(at);
                self.delayed = BinaryHeap::from(all);
                self.remove_cancelled(gone.task);
                return CancelOutcome::Removed;
            }
            self.delayed = BinaryHeap::from(all);
        }
        if let Some(entry) = self
            .slots
            .iter_mut()
            .filter_map(|s| s.entry.as_mut())
            .find(|e| e.task.id == id)
        {
            if !entry.cancel {
                entry.cancel = true;
                self.counters.cancelled += 1;
            }
            return CancelOutcome::Signalled;
        }
        if self.dead.iter().any(|d| d.task.id == id) {
            return CancelOutcome::Dead;
        }
        CancelOutcome::Unknown
    }

    fn remove_cancelled(&mut self, task: Task) {
        self.forget(&task);
        self.drop_unique(&task);
        self.counters.cancelled += 1;
    }

    /// Task `id` as an operator sees it. A scan like [`State::cancel`].
    pub(crate) fn lookup(&self, id: TaskId, queue: &str) -> TaskInfo {
        if let Some(t) = self.ready.iter().find(|t| t.id == id) {
            return TaskInfo::of(t, queue, TaskState::Pending);
        }
        if let Some(d) = self.delayed.iter().find(|d| d.task.id == id) {
            let state = if d.due_ms <= now_millis() {
                TaskState::Pending
            } else {
                TaskState::Delayed
            };
            return TaskInfo::of(&d.task, queue, state);
        }
        if let Some(e) = self
            .slots
            .iter()
            .filter_map(|s| s.entry.as_ref())
            .find(|e| e.task.id == id)
        {
            let mut info = TaskInfo::of(&e.task, queue, TaskState::Running);
            info.cancel_requested = e.cancel;
            return info;
        }
        if let Some(d) = self.dead.iter().find(|d| d.task.id == id) {
            let mut info = TaskInfo::of(&d.task, queue, TaskState::Dead);
            info.last_error = Some(d.reason.clone());
            return info;
        }
        TaskInfo::unknown(id)
    }

    fn bury(&mut self, task: Task, reason: &str) {
        self.forget(&task);
        self.counters.dead_lettered += 1;
        self.dead.push_back(DeadLetter {
            task,
            reason: reason.to_owned(),
            failed_at_ms: now_millis(),
        });
    }

    /// Returns the task so the caller drops it (and its payload) outside the lock.
    #[inline]
    pub(crate) fn ack(&mut self, delivery: &Delivery) -> Result<Task, QueueError> {
        let task = self.settle(delivery)?;
        self.forget(&task);
        self.drop_unique(&task);
        self.counters.acked += 1;
        Ok(task)
    }

    /// Counts a failed attempt. Returns (dead-lettered, wake a consumer).
    pub(crate) fn nack(
        &mut self,
        delivery: &Delivery,
        delay: Option<Duration>,
        error: &str,
        max_attempts: u32,
    ) -> Result<(bool, bool), QueueError> {
        let mut task = self.settle(delivery)?;
        // The worker may record per-attempt data (the first attempt's trace context).
        self.heap_bytes -= task.heap_bytes();
        if task.headers != delivery.task.headers {
            task.headers = delivery.task.headers.clone();
        }
        task.record_error(error);
        self.heap_bytes += task.heap_bytes();
        self.counters.nacked += 1;
        task.attempts = task.attempts.saturating_add(1);
        if task.attempts >= max_attempts {
            self.bury(task, error);
            return Ok((true, false));
        }
        Ok((false, self.requeue(task, delay, false)))
    }

    /// Hands a task back without counting an attempt. Returns whether to wake a consumer.
    pub(crate) fn release(
        &mut self,
        delivery: &Delivery,
        delay: Option<Duration>,
    ) -> Result<bool, QueueError> {
        let task = self.settle(delivery)?;
        self.counters.released += 1;
        Ok(self.requeue(task, delay, true))
    }

    fn requeue(&mut self, mut task: Task, delay: Option<Duration>, front: bool) -> bool {
        match delay.filter(|d| !d.is_zero()) {
            Some(delay) => {
                let due_ms = now_millis().saturating_add(delay.as_millis() as u64);
                task.not_before_ms = Some(due_ms);
                self.push_delayed(due_ms, task)
            }
            None => {
                grow_deque(&mut self.ready, self.bound);
                if front {
                    self.ready.push_front(task);
                } else {
                    self.ready.push_back(task);
                }
                self.has_sleepers()
            }
        }
    }

    pub(crate) fn dead_letter(
        &mut self,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<(), QueueError> {
        let task = self.settle(delivery)?;
        self.bury(task, reason);
        Ok(())
    }

    /// Returns whether a sleeping consumer must re-arm its timer.
    pub(crate) fn extend_lease(
        &mut self,
        delivery: &Delivery,
        by: Duration,
    ) -> Result<bool, QueueError> {
        let deadline = Instant::now() + by;
        self.held(delivery.lease, delivery.task.id)?.deadline = deadline;
        self.extended.push(Reverse((deadline, delivery.lease.0)));
        self.maybe_compact();
        Ok(self.needs_rearm(deadline))
    }

    pub(crate) fn stats(&self, name: &str, capacity: usize, blocked: u64) -> QueueStats {
        let c = &self.counters;
        QueueStats {
            name: name.to_owned(),
            backend: "memory".to_owned(),
            pending: self.ready.len() as u64,
            in_flight: self.in_flight as u64,
            delayed: self.delayed.len() as u64,
            dead: self.dead.len() as u64,
            capacity: Some(capacity as u64),
            blocked_publishers: blocked,
            published_total: c.published,
            acked_total: c.acked,
            nacked_total: c.nacked,
            released_total: c.released,
            dead_lettered_total: c.dead_lettered,
            expired_total: c.expired,
            cancelled_total: c.cancelled,
        }
    }

    pub(crate) fn dead_letters(&self, limit: usize) -> Vec<DeadLetter> {
        self.dead.iter().take(limit).cloned().collect()
    }

    /// Puts a dead letter back as a fresh task (attempts 0, ready now). It may take the
    /// queue past its capacity: an operator's retry is not refused for lack of room.
    pub(crate) fn retry_dead_letter(&mut self, id: TaskId) -> Option<bool> {
        let at = self.dead.iter().position(|d| d.task.id == id)?;
        let mut task = self.dead.remove(at)?.task;
        task.attempts = 0;
        task.not_before_ms = None;
        Some(self.enqueue(task, None))
    }

    pub(crate) fn delete_dead_letter(&mut self, id: TaskId) -> Option<DeadLetter> {
        let at = self.dead.iter().position(|d| d.task.id == id)?;
        let letter = self.dead.remove(at)?;
        self.drop_unique(&letter.task);
        Some(letter)
    }

    pub(crate) fn purge_dead_letters(&mut self) -> VecDeque<DeadLetter> {
        let dead = std::mem::take(&mut self.dead);
        for d in &dead {
            self.drop_unique(&d.task);
        }
        dead
    }

    pub(crate) fn memory(&self) -> MemoryUsage {
        use std::mem::size_of;
        let origin_index = self.origins.capacity() * (size_of::<(TaskOrigin, (u32, TaskId))>() + 1)
            + self.origin_key_bytes
            + self.uniques.capacity() * (size_of::<(Box<str>, TaskId)>() + 1)
            + self.unique_key_bytes;
        let overhead = self.ready.capacity() * size_of::<Task>()
            + self.delayed.capacity() * size_of::<Delayed>()
            + self.slots.capacity() * size_of::<Slot>()
            + self.free.capacity() * size_of::<u32>()
            + self.deadlines.capacity() * size_of::<(Instant, u64)>()
            + self.extended.capacity() * size_of::<Reverse<(Instant, u64)>>()
            + origin_index;
        MemoryUsage {
            live_tasks: self.live(),
            task_heap_bytes: self.heap_bytes,
            overhead_bytes: overhead,
            dead_tasks: self.dead.len(),
            payload_bytes: self.payload_bytes,
        }
    }
}
