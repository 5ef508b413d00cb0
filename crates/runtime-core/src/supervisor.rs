//! The WorkerSupervisor: named pools of workers, restarted after panics, resized live,
//! drained at shutdown.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_contracts::{
    AdminError, ComponentHealth, HealthContributor, HealthStatus, PoolSpec, PoolStatus,
    TaskLimiter, TaskQueue,
};
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::limits::{Gate, PoolLimits};
use crate::signal::StopToken;
use crate::trace::TraceService;
use crate::worker::{Acknowledgers, Pending, PoolStats, TaskWorker, WorkerSettings};

/// How pools run; the runtime derives it from the platform config.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSettings {
    /// Retry backoff for failed attempts and outages.
    pub retry: Backoff,
    /// Renew a delivery's lease this often while its task runs (`None`: never).
    pub lease_renewal: Option<Duration>,
    /// Most tasks a worker takes per consume. A worker only prefetches while its tasks
    /// are quick (under 2 ms), so a prefetched task never waits long with its lease
    /// running; after a slow task it takes one at a time.
    pub prefetch: usize,
    /// How long one consume call waits for work before checking for shutdown.
    pub consume_wait: Duration,
    /// Per-key concurrency and rate (`[workers]`); they need the supervisor's limiter.
    pub limits: Option<PoolLimits>,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            retry: Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            lease_renewal: Some(Duration::from_secs(20)),
            prefetch: 16,
            consume_wait: Duration::from_millis(500),
            limits: None,
        }
    }
}

/// Who set a pool's concurrency, which decides whether a reload of `workers.concurrency`
/// changes it: only a pool that took the configured value follows the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConcurrencyOrigin {
    /// `workers.concurrency`: reloads apply.
    Config,
    /// The module registered its own number: reloads leave it.
    Module,
    /// An admin call resized the pool: reloads leave it until the next start.
    Admin,
}

/// A pool's wanted number of workers and who set it, changed together.
#[derive(Clone, Copy, Debug)]
struct Concurrency {
    workers: usize,
    origin: ConcurrencyOrigin,
}

/// Errors of the supervisor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// Two pools with one name.
    #[error("a worker pool named {0:?} is registered twice")]
    DuplicatePool(String),
    /// A pool names a queue that does not exist.
    #[error("worker pool {pool:?} consumes unknown queue {queue:?}")]
    UnknownQueue {
        /// The pool.
        pool: String,
        /// The queue.
        queue: String,
    },
    /// A pool has limits but the queue backend offers no limiter.
    #[error(
        "worker pool {0:?} has limits (workers.concurrency_key / workers.rate) but the queue backend has no limiter"
    )]
    NoLimiter(String),
}

/// Tasks faster than this let a worker prefetch.
const QUICK_TASK: Duration = Duration::from_millis(2);
/// Workers that die this many times in a row (no task processed in between) make the
/// pool a crash loop: readiness goes false until a worker gets through a task again.
const CRASH_LOOP_DEATHS: u32 = 3;

/// Backoff between replacing dead workers, so a panic in the consume path cannot spin.
fn respawn_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
}

struct Slot {
    stop: StopToken,
    handle: JoinHandle<()>,
}

/// What one worker carries from task to task.
struct SlotState {
    panics_in_a_row: u32,
    quick: bool,
    pending: Pending,
    /// When the next task starts (one clock reading per task).
    clock: Instant,
}

#[derive(Default)]
struct Respawn {
    at: Option<Instant>,
    rounds: u32,
}

struct Pool {
    name: String,
    queue: Arc<dyn TaskQueue>,
    worker: Arc<TaskWorker>,
    settings: PoolSettings,
    concurrency: Mutex<Concurrency>,
    slots: Mutex<Vec<Slot>>,
    /// Parent of every slot's stop token: fired when the pool stops consuming.
    consuming: StopToken,
    slot_restarts: AtomicU64,
    /// Worker deaths since a worker last processed a task.
    deaths_in_a_row: AtomicU32,
    /// When dead workers may be replaced, and how many rounds of deaths led there.
    respawn: Mutex<Respawn>,
    /// Per-key concurrency and rate, when the pool has limits.
    gate: Option<Arc<Gate>>,
}

impl Pool {
    fn stats(&self) -> &PoolStats {
        &self.worker.stats
    }

    fn spawn_slot(self: &Arc<Self>) -> Slot {
        let stop = self.consuming.child();
        let pool = self.clone();
        let slot_stop = stop.clone();
        let handle = tokio::spawn(async move { pool.run_slot(slot_stop).await });
        Slot { stop, handle }
    }

    /// One worker: consume, process, repeat until stopped.
    async fn run_slot(self: Arc<Self>, stop: StopToken) {
        let mut consume_failures = 0u32;
        let mut state = SlotState {
            panics_in_a_row: 0,
            quick: false,
            pending: Pending::default(),
            clock: Instant::now(),
        };
        while !stop.is_stopped() {
            // A task that got its key slot in the background runs before new work.
            if let Some(gate) = &self.gate
                && let Some(first) = gate.take_ready(&stop).await
            {
                let stats = self.stats();
                stats.busy.fetch_add(1, Ordering::Relaxed);
                state.clock = Instant::now();
                self.run_admitted(first, &stop, &mut state).await;
                self.worker.flush(&mut state.pending).await;
                stats.busy.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let max = if state.quick {
                self.settings.prefetch.max(1)
            } else {
                1
            };
            let batch = match self.queue.consume(max, self.settings.consume_wait).await {
                Ok(batch) => {
                    consume_failures = 0;
                    batch
                }
                Err(error) => {
                    let delay = self.settings.retry.delay(consume_failures);
                    consume_failures = consume_failures.saturating_add(1);
                    tracing::warn!(pool = %self.name, %error, retry_in = ?delay, "consume failed");
                    sleep_or_stop(delay, &stop).await;
                    continue;
                }
            };
            if batch.is_empty() {
                // The consume path works again (the queue is just empty).
                self.deaths_in_a_row.store(0, Ordering::Relaxed);
                continue;
            }
            let stats = self.stats();
            stats.busy.fetch_add(1, Ordering::Relaxed);
            state.clock = Instant::now();
            let mut batch = batch.into_iter();
            while let Some(delivery) = batch.next() {
                if stop.is_stopped() {
                    // Prefetched but not started: hand back without counting an attempt.
                    for d in std::iter::once(delivery).chain(batch.by_ref()) {
                        if let Err(error) = self.queue.release(&d, None).await {
                            tracing::warn!(pool = %self.name, %error, "release of a prefetched task failed; it returns after its lease");
                        }
                    }
                    break;
                }
                let admitted = match &self.gate {
                    None => Some((delivery, crate::limits::Permit::default())),
                    Some(gate) => {
                        let admitted = gate.admit(delivery, &stop).await;
                        state.clock = Instant::now();
                        admitted
                    }
                };
                if let Some(first) = admitted {
                    self.run_admitted(first, &stop, &mut state).await;
                }
            }
            self.worker.flush(&mut state.pending).await;
            stats.busy.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Runs an admitted task, then the tasks its key slot passes to, one after another.
    async fn run_admitted(
        &self,
        first: (runtime_contracts::Delivery, crate::limits::Permit),
        stop: &StopToken,
        state: &mut SlotState,
    ) {
        let mut current = Some(first);
        while let Some((delivery, permit)) = current.take() {
            if stop.is_stopped() {
                if let Some(gate) = &self.gate {
                    gate.give_up(&delivery, permit).await;
                } else if let Err(error) = self.queue.release(&delivery, None).await {
                    tracing::warn!(pool = %self.name, %error, "release of a task failed; it returns after its lease");
                }
                return;
            }
            let (processed, next) = self
                .worker
                .process_one(delivery, state.clock, Some(&mut state.pending))
                .await;
            state.clock = next;
            // A worker got through a task: whatever killed its predecessors is gone.
            self.deaths_in_a_row.store(0, Ordering::Relaxed);
            state.quick = processed.elapsed < QUICK_TASK;
            if let Some(gate) = &self.gate {
                current = gate.finish(permit, stop).await;
                if current.is_some() {
                    state.clock = Instant::now();
                }
            }
            if processed.panicked || processed.outage_pause.is_some() {
                // Report finished work before pausing.
                self.worker.flush(&mut state.pending).await;
            }
            if processed.panicked {
                // The worker "restarts": back off so a poison task cannot spin.
                state.panics_in_a_row = state.panics_in_a_row.saturating_add(1);
                let delay = respawn_backoff().delay(state.panics_in_a_row - 1);
                sleep_or_stop(delay, &self.worker.hard_stop).await;
                state.clock = Instant::now();
            } else {
                state.panics_in_a_row = 0;
            }
            if let Some(pause) = processed.outage_pause {
                sleep_or_stop(pause, stop).await;
                state.clock = Instant::now();
            }
        }
    }

    fn status(&self) -> PoolStatus {
        let stats = self.stats();
        PoolStatus {
            name: self.name.clone(),
            queue: self.queue.name().to_owned(),
            concurrency: self.concurrency.lock().map(|c| c.workers).unwrap_or(0),
            busy: stats.busy.load(Ordering::Relaxed),
            processed: stats.processed.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            dead_lettered: stats.dead_lettered.load(Ordering::Relaxed),
            restarts: stats.restarts.load(Ordering::Relaxed)
                + self.slot_restarts.load(Ordering::Relaxed),
            timeouts: stats.timeouts.load(Ordering::Relaxed),
            last_error: stats.last_error.lock().ok().and_then(|e| e.clone()),
            durations: stats.histogram(),
            limits: self.gate.as_ref().map(|g| g.status()),
        }
    }

    /// Grows or shrinks the set of slots to the configured concurrency; replaces slots
    /// whose task ended unexpectedly (a panic outside the handler).
    fn reconcile(self: &Arc<Self>) {
        if self.consuming.is_stopped() {
            return;
        }
        let want = self.concurrency.lock().map(|c| c.workers).unwrap_or(0);
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let before = slots.len();
        slots.retain(|s| !s.handle.is_finished() || s.stop.is_stopped());
        let died = before - slots.len();
        let now = Instant::now();
        let Ok(mut respawn) = self.respawn.lock() else {
            return;
        };
        if died > 0 {
            self.slot_restarts.fetch_add(died as u64, Ordering::Relaxed);
            let before = self
                .deaths_in_a_row
                .fetch_add(died as u32, Ordering::Relaxed);
            respawn.rounds = if before == 0 {
                0
            } else {
                respawn.rounds.saturating_add(1)
            };
            let delay = respawn_backoff().delay(respawn.rounds);
            respawn.at = Some(now + delay);
            tracing::error!(pool = %self.name, died, deaths_in_a_row = before.saturating_add(died as u32), restart_in = ?delay, "worker ended unexpectedly; restarting");
        }
        // Shrinking applies at once; only replacing dead workers waits out the backoff.
        let live: Vec<usize> = (0..slots.len())
            .filter(|i| !slots[*i].stop.is_stopped())
            .collect();
        if live.len() > want {
            // Stopping slots finish their current task first.
            for i in live.iter().skip(want) {
                slots[*i].stop.stop();
            }
        } else if respawn.at.is_none_or(|at| now >= at) {
            respawn.at = None;
            for _ in live.len()..want {
                let slot = self.spawn_slot();
                slots.push(slot);
            }
        }
        drop(respawn);
        slots.retain(|s| !(s.stop.is_stopped() && s.handle.is_finished()));
    }
}

async fn sleep_or_stop(delay: Duration, stop: &StopToken) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stop.stopped() => {}
    }
}

/// Runs worker pools.
pub struct WorkerSupervisor {
    pools: RwLock<Vec<Arc<Pool>>>,
    trace: TraceService,
    acks: Arc<Acknowledgers>,
    hard_stop: StopToken,
    monitor: Mutex<Option<JoinHandle<()>>>,
    /// The backend's limiter, for pools with limits.
    limiter: Mutex<Option<Arc<dyn TaskLimiter>>>,
}

impl std::fmt::Debug for WorkerSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSupervisor").finish_non_exhaustive()
    }
}

/// What a stop achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// True when every in-flight task finished within the grace period.
    pub drained: bool,
    /// Tasks still running at the end of the grace period (cut off and released).
    pub cut_off: usize,
}

impl WorkerSupervisor {
    /// A supervisor whose workers trace with `trace` and tell sources through `acks`.
    pub fn new(trace: TraceService, acks: Arc<Acknowledgers>) -> Self {
        WorkerSupervisor {
            pools: RwLock::new(Vec::new()),
            trace,
            acks,
            hard_stop: StopToken::new(),
            monitor: Mutex::new(None),
            limiter: Mutex::new(None),
        }
    }

    /// Sets the limiter that pools with limits (added after this) keep them with.
    pub fn set_limiter(&self, limiter: Arc<dyn TaskLimiter>) {
        if let Ok(mut l) = self.limiter.lock() {
            *l = Some(limiter);
        }
    }

    /// Registers a pool (not started yet); `origin` says who chose its concurrency.
    pub fn add_pool(
        &self,
        spec: PoolSpec,
        queue: Arc<dyn TaskQueue>,
        settings: PoolSettings,
        origin: ConcurrencyOrigin,
    ) -> Result<(), SupervisorError> {
        let mut pools = self
            .pools
            .write()
            .map_err(|_| SupervisorError::DuplicatePool(spec.name.clone()))?;
        if pools.iter().any(|p| p.name == spec.name) {
            return Err(SupervisorError::DuplicatePool(spec.name));
        }
        let worker_settings = Arc::new(WorkerSettings {
            task_timeout_ms: AtomicU64::new(spec.task_timeout.as_millis() as u64),
            retry: settings.retry,
            lease_renewal: settings.lease_renewal,
        });
        let gate = match &settings.limits {
            None => None,
            Some(limits) => {
                let limiter = self
                    .limiter
                    .lock()
                    .ok()
                    .and_then(|l| l.clone())
                    .ok_or_else(|| SupervisorError::NoLimiter(spec.name.clone()))?;
                Some(Arc::new(Gate::new(
                    spec.name.clone(),
                    limits.clone(),
                    limiter,
                    queue.clone(),
                    settings.lease_renewal.unwrap_or(Duration::from_secs(20)),
                )))
            }
        };
        let worker = TaskWorker::new(
            spec.name.clone(),
            queue.clone(),
            spec.handler.clone(),
            self.trace.clone(),
            self.acks.clone(),
            Arc::new(PoolStats::default()),
            worker_settings,
            self.hard_stop.clone(),
        );
        pools.push(Arc::new(Pool {
            name: spec.name,
            queue,
            worker: Arc::new(worker),
            settings,
            concurrency: Mutex::new(Concurrency {
                workers: spec.concurrency.max(1),
                origin,
            }),
            slots: Mutex::new(Vec::new()),
            consuming: StopToken::new(),
            slot_restarts: AtomicU64::new(0),
            deaths_in_a_row: AtomicU32::new(0),
            respawn: Mutex::new(Respawn::default()),
            gate,
        }));
        Ok(())
    }

    /// Readiness of the pools: down while a pool's workers keep dying (a crash loop).
    pub fn health(self: &Arc<Self>) -> Arc<dyn HealthContributor> {
        Arc::new(PoolsHealth {
            supervisor: Arc::downgrade(self),
        })
    }

    fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// Starts every pool's workers and the monitor that replaces dead ones.
    pub fn start(&self) {
        let pools = self.pools();
        for pool in &pools {
            if let Some(gate) = &pool.gate {
                // Ends when the pool stops consuming, handing waiting tasks back.
                tokio::spawn(gate.clone().run_background(pool.consuming.clone()));
            }
            pool.reconcile();
            tracing::info!(pool = %pool.name, queue = %pool.queue.name(), concurrency = pool.status().concurrency, "worker pool started");
        }
        let monitor = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                for pool in &pools {
                    pool.reconcile();
                }
            }
        });
        if let Ok(mut m) = self.monitor.lock() {
            *m = Some(monitor);
        }
    }

    /// Per-pool status.
    pub fn status(&self) -> Vec<PoolStatus> {
        self.pools().iter().map(|p| p.status()).collect()
    }

    /// Changes a pool's concurrency live (an admin call; later reloads of
    /// `workers.concurrency` leave the pool alone). Shrinking lets the stopped workers
    /// finish their current task.
    pub fn set_concurrency(
        &self,
        pool: &str,
        concurrency: usize,
    ) -> Result<PoolStatus, AdminError> {
        if concurrency == 0 || concurrency > 4096 {
            return Err(AdminError::Invalid(
                "concurrency must be from 1 to 4096".into(),
            ));
        }
        let pools = self.pools();
        let p = pools
            .iter()
            .find(|p| p.name == pool)
            .ok_or_else(|| AdminError::NotFound(format!("worker pool {pool:?}")))?;
        if let Ok(mut c) = p.concurrency.lock() {
            *c = Concurrency {
                workers: concurrency,
                origin: ConcurrencyOrigin::Admin,
            };
        }
        p.reconcile();
        tracing::info!(pool = %p.name, concurrency, "worker pool resized");
        Ok(p.status())
    }

    /// A config reload of `workers.concurrency`: resizes the pools whose concurrency came
    /// from the config; pools a module or an admin call sized keep theirs.
    pub fn set_configured_concurrency(&self, concurrency: usize) {
        for p in self.pools() {
            let follows = match p.concurrency.lock() {
                Ok(mut c) if c.origin == ConcurrencyOrigin::Config => {
                    c.workers = concurrency.max(1);
                    true
                }
                _ => false,
            };
            if follows {
                p.reconcile();
                tracing::info!(pool = %p.name, concurrency, "worker pool resized by config reload");
            } else {
                tracing::info!(pool = %p.name, "worker pool keeps its own concurrency; workers.concurrency reload not applied");
            }
        }
    }

    /// Changes every pool's task timeout (a config reload of `workers.task_timeout`).
    pub fn set_task_timeout(&self, timeout: Duration) {
        for p in self.pools() {
            p.worker
                .settings
                .task_timeout_ms
                .store(timeout.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Tasks running now, over all pools.
    pub fn busy(&self) -> usize {
        self.pools()
            .iter()
            .map(|p| p.stats().busy.load(Ordering::Relaxed))
            .sum()
    }

    /// Stops consuming, lets in-flight tasks finish for up to `grace`, then cuts off the
    /// rest (they are released without counting an attempt) and waits up to `release`
    /// for every worker.
    pub async fn stop(&self, grace: Duration, release: Duration) -> DrainReport {
        if let Some(m) = self.monitor.lock().ok().and_then(|mut m| m.take()) {
            m.abort();
        }
        let pools = self.pools();
        for p in &pools {
            p.consuming.stop();
        }
        let handles: Vec<JoinHandle<()>> = pools
            .iter()
            .flat_map(|p| {
                p.slots
                    .lock()
                    .map(|mut s| s.drain(..).map(|s| s.handle).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect();
        let all = futures_util::future::join_all(handles);
        tokio::pin!(all);
        let drained = tokio::time::timeout(grace, &mut all).await.is_ok();
        let mut cut_off = 0;
        if !drained {
            cut_off = self.busy();
            tracing::warn!(
                cut_off,
                "shutdown grace period over; releasing unfinished tasks"
            );
            self.hard_stop.stop();
            // Cut-off workers release their task and return promptly.
            if tokio::time::timeout(release, &mut all).await.is_err() {
                tracing::warn!(timeout = ?release, "a cut-off worker did not release its task within runtime.release_timeout");
            }
        }
        DrainReport { drained, cut_off }
    }
}

/// Readiness of the worker pools: a pool whose workers die over and over does no work,
/// so the runtime must not claim to be ready.
struct PoolsHealth {
    supervisor: std::sync::Weak<WorkerSupervisor>,
}

#[async_trait]
impl HealthContributor for PoolsHealth {
    fn name(&self) -> &str {
        "workers"
    }

    async fn check(&self) -> ComponentHealth {
        let pools = self
            .supervisor
            .upgrade()
            .map(|s| s.pools())
            .unwrap_or_default();
        let looping: Vec<&str> = pools
            .iter()
            .filter(|p| p.deaths_in_a_row.load(Ordering::Relaxed) >= CRASH_LOOP_DEATHS)
            .map(|p| p.name.as_str())
            .collect();
        if looping.is_empty() {
            ComponentHealth::new("workers", HealthStatus::Up)
        } else {
            ComponentHealth::new("workers", HealthStatus::Down)
                .with_detail("crash_looping", looping.join(","))
        }
    }
}
