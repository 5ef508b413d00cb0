//! The RuntimeManager: the seed's ten-step flow, start and stop order, status.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use runtime_contracts::{
    ApplicationModule, ConfigChange, ConfigError, ConfigSubscriber, ControlEndpoint, ControlPlane,
    HealthContributor, ModuleContext, ModuleError, PoolSpec, RuntimeState, RuntimeStatus,
    SourceSpec, TaskLimiter, TaskQueue, TraceFactory,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::config::ConfigurationManager;
use crate::control::ControlPlaneService;
use crate::health::{HealthRegistry, QueueHealth};
use crate::leader::LeaderSource;
use crate::shared::Shared;
use crate::signal::{StopToken, Termination};
use crate::sources::SourceRunner;
use crate::supervisor::{
    ConcurrencyOrigin, DrainReport, PoolSettings, SupervisorError, WorkerSupervisor,
};
use crate::trace::{IdTraceFactory, TraceService};
use crate::worker::Acknowledgers;

/// Errors while starting the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A module's config check ([`ApplicationModule::validate`]) found problems.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A module failed to register.
    #[error("module {module:?} failed to register: {source}")]
    Module {
        /// The module.
        module: String,
        /// Why.
        #[source]
        source: ModuleError,
    },
    /// A pool could not be set up.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// A source publishes into a queue that does not exist.
    #[error("source {source_name:?} publishes into unknown queue {queue:?}")]
    UnknownQueue {
        /// The source.
        source_name: String,
        /// The queue.
        queue: String,
    },
    /// A source name is used twice.
    #[error("two sources are named {0:?}")]
    DuplicateSource(String),
    /// An exclusive source's queue offers no usable leader lease.
    #[error(
        "source {source_name:?} must run in one process at a time, but its queue gives no leader lease"
    )]
    Lease {
        /// The source.
        source_name: String,
        /// Why.
        #[source]
        source: runtime_contracts::LeaseError,
    },
    /// `start` was called twice, or after stop.
    #[error("the runtime was already started")]
    AlreadyStarted,
    /// A second stop signal arrived while stopping: the operator wants out now. The
    /// binary exits at once (conventionally with 130); the library never exits itself.
    #[error("stopped at once by a second stop signal")]
    Interrupted,
}

/// Builds a [`RuntimeManager`].
pub struct RuntimeBuilder {
    config: Arc<ConfigurationManager>,
    queues: Vec<Arc<dyn TaskQueue>>,
    tracer: Option<Arc<dyn TraceFactory>>,
    modules: Vec<Arc<dyn ApplicationModule>>,
    endpoints: Vec<Arc<dyn ControlEndpoint>>,
    health: Vec<Arc<dyn HealthContributor>>,
    handle_signals: bool,
    pool_settings: Option<PoolSettings>,
    limiter: Option<Arc<dyn TaskLimiter>>,
}

impl RuntimeBuilder {
    /// Sets the limiter that keeps pools' per-key concurrency and rates (the queue
    /// backend's, built beside it). Needed when `[workers]` sets `concurrency_key` or
    /// `rate`; without one such a pool fails the start.
    pub fn limiter(mut self, limiter: impl Into<Option<Arc<dyn TaskLimiter>>>) -> Self {
        self.limiter = limiter.into();
        self
    }

    /// Adds a platform queue (modules find it by name).
    pub fn queue(mut self, queue: Arc<dyn TaskQueue>) -> Self {
        self.queues.push(queue);
        self
    }

    /// Sets the trace factory (default: ids only, nothing exported).
    pub fn tracer(mut self, tracer: Arc<dyn TraceFactory>) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// Adds an application module.
    pub fn module(mut self, module: Arc<dyn ApplicationModule>) -> Self {
        self.modules.push(module);
        self
    }

    /// Adds a control endpoint (the HTTP server), started last and stopped last.
    pub fn endpoint(mut self, endpoint: Arc<dyn ControlEndpoint>) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Adds a health contributor.
    pub fn health(mut self, contributor: Arc<dyn HealthContributor>) -> Self {
        self.health.push(contributor);
        self
    }

    /// Whether `run` listens for SIGINT/SIGTERM (default true; tests turn it off).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Overrides pool settings derived from the platform config.
    pub fn pool_settings(mut self, settings: PoolSettings) -> Self {
        self.pool_settings = Some(settings);
        self
    }

    /// Builds the runtime (nothing runs yet).
    pub fn build(self) -> RuntimeManager {
        let platform = self.config.platform();
        let mut pool_settings = self.pool_settings.unwrap_or_else(|| PoolSettings {
            retry: Backoff::new(platform.workers.retry_base, platform.workers.retry_max),
            lease_renewal: Some(platform.lease_renewal()),
            ..PoolSettings::default()
        });
        if pool_settings.limits.is_none() {
            pool_settings.limits = platform.workers.limits();
        }
        let trace = TraceService::new(
            self.tracer
                .unwrap_or_else(|| Arc::new(IdTraceFactory) as Arc<dyn TraceFactory>),
        );
        let acks = Arc::new(Acknowledgers::default());
        let health = HealthRegistry::new();
        for h in self.health {
            health.register(h);
        }
        let queues = self
            .queues
            .into_iter()
            .map(|q| (q.name().to_owned(), q))
            .collect();
        let supervisor = Arc::new(WorkerSupervisor::new(trace.clone(), acks.clone()));
        if let Some(limiter) = self.limiter {
            supervisor.set_limiter(limiter);
        }
        RuntimeManager {
            inner: Arc::new(Shared {
                supervisor,
                config: self.config,
                state: watch::channel(RuntimeState::Starting).0,
                started: Instant::now(),
                modules: self.modules,
                queues: RwLock::new(queues),
                sources: RwLock::new(Vec::new()),
                health,
                queue_stats: Arc::default(),
                trace,
                acks,
                endpoints: self.endpoints,
                shutdown_requested: StopToken::new(),
                interrupted: StopToken::new(),
                sources_stop: StopToken::new(),
                endpoints_stop: StopToken::new(),
                background: Mutex::new(Vec::new()),
                signal_task: Mutex::new(None),
                source_tasks: Mutex::new(Vec::new()),
                handle_signals: self.handle_signals,
                pool_settings,
                started_once: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }
}

/// Applies live config changes the runtime owns: pool concurrency and task timeout.
struct RuntimeConfigSubscriber {
    inner: Weak<Shared>,
}

impl ConfigSubscriber for RuntimeConfigSubscriber {
    fn on_change(&self, change: &ConfigChange) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let platform = inner.config.platform();
        if change.touches("workers.concurrency") {
            inner
                .supervisor
                .set_configured_concurrency(platform.workers.concurrency);
        }
        if change.touches("workers.task_timeout") {
            inner
                .supervisor
                .set_task_timeout(platform.workers.task_timeout);
        }
        if change.touches("tracing.level") {
            crate::logging::set_level(&platform.tracing.level);
        }
    }
}

/// The platform facade: bootstraps, runs and stops everything.
///
/// Start order: config (already loaded) -> module config checks -> modules register -> queues ->
/// workers -> sources -> control plane ready. Stop order: readiness false -> sources
/// stop -> workers drain (unfinished tasks released, never lost) -> queues close ->
/// modules stop -> traces flush -> control plane stops.
pub struct RuntimeManager {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for RuntimeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeManager")
            .field("state", &self.inner.state())
            .finish_non_exhaustive()
    }
}

/// A cheap, cloneable view of a runtime for status and shutdown.
#[derive(Clone)]
pub struct RuntimeHandle {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("state", &self.inner.state())
            .finish_non_exhaustive()
    }
}

impl RuntimeHandle {
    /// The life-cycle state.
    pub fn state(&self) -> RuntimeState {
        self.inner.state()
    }

    /// Waits until the runtime reaches `state` (or a later one).
    pub async fn wait_for(&self, state: RuntimeState) {
        let rank = |s: RuntimeState| s as u8;
        let mut rx = self.inner.state.subscribe();
        let _ = rx.wait_for(|s| rank(*s) >= rank(state)).await;
    }

    /// A status snapshot.
    pub async fn status(&self) -> RuntimeStatus {
        self.inner.status().await
    }

    /// Requests a graceful shutdown.
    pub fn shutdown(&self) {
        self.inner.shutdown_requested.stop();
    }

    /// The control plane (status and admin calls).
    pub fn control_plane(&self) -> Arc<dyn ControlPlane> {
        Arc::new(ControlPlaneService::new(self.inner.clone()))
    }

    /// The supervisor (pool status, resizing).
    pub fn supervisor(&self) -> &WorkerSupervisor {
        &self.inner.supervisor
    }

    /// The health registry.
    pub fn health(&self) -> &HealthRegistry {
        &self.inner.health
    }

    /// Completes when a second stop signal asks to stop at once (see
    /// [`RuntimeError::Interrupted`]); a binary that runs `start`/`stop` itself selects on
    /// this while stopping.
    pub async fn interrupted(&self) {
        self.inner.interrupted.stopped().await
    }

    /// The configuration manager.
    pub fn config(&self) -> &Arc<ConfigurationManager> {
        &self.inner.config
    }
}

impl RuntimeManager {
    /// Starts building a runtime over a loaded configuration.
    pub fn builder(config: Arc<ConfigurationManager>) -> RuntimeBuilder {
        RuntimeBuilder {
            config,
            queues: Vec::new(),
            tracer: None,
            modules: Vec::new(),
            endpoints: Vec::new(),
            health: Vec::new(),
            handle_signals: true,
            pool_settings: None,
            limiter: None,
        }
    }

    /// A handle for status and shutdown.
    pub fn handle(&self) -> RuntimeHandle {
        RuntimeHandle {
            inner: self.inner.clone(),
        }
    }

    /// Steps 3–9 of the flow: register modules, start queues, workers, sources and the
    /// control plane. On error nothing keeps running.
    pub async fn start(&self) -> Result<(), RuntimeError> {
        self.claim_start()?;
        self.validate_modules()?;
        self.listen_for_signals();
        let (pools, sources) = self.register_modules().await?;
        self.subscribe_to_config();
        self.register_queue_health();
        let runners = self.build_sources(sources)?;
        self.start_pools(pools)?;
        self.start_sources(runners);
        self.start_heartbeat();
        self.start_control_plane();
        self.inner.state.send_replace(RuntimeState::Running);
        tracing::info!("runtime running");
        Ok(())
    }

    /// Marks the runtime as starting; a second `start` is refused.
    fn claim_start(&self) -> Result<(), RuntimeError> {
        use std::sync::atomic::Ordering;
        let inner = &self.inner;
        if inner.started_once.swap(true, Ordering::SeqCst) {
            return Err(RuntimeError::AlreadyStarted);
        }
        inner.state.send_replace(RuntimeState::Starting);
        tracing::info!(
            config_version = inner.config.current().version,
            "runtime starting"
        );
        Ok(())
    }

    /// Each module checks its config sections before anything runs; the checks also guard
    /// every later reload. All modules' problems are reported at once.
    fn validate_modules(&self) -> Result<(), RuntimeError> {
        let mut issues = Vec::new();
        for module in &self.inner.modules {
            let module = module.clone();
            let check = Arc::new(move |s: &runtime_contracts::ConfigSnapshot| module.validate(s));
            match self.inner.config.add_validator(check) {
                Ok(()) => {}
                Err(ConfigError::Invalid(mut more)) => issues.append(&mut more),
                Err(other) => return Err(other.into()),
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(issues).into())
        }
    }

    /// Turns SIGINT/SIGTERM into a stop request, when signals are handled.
    fn listen_for_signals(&self) {
        let inner = &self.inner;
        if !inner.handle_signals {
            return;
        }
        // Listening starts now, before anything runs, so no signal is lost to the
        // default action (which would kill the process without draining).
        let mut signals = Termination::listen();
        let requested = inner.shutdown_requested.clone();
        let interrupted = inner.interrupted.clone();
        let task = tokio::spawn(async move {
            loop {
                let signal = signals.next().await;
                if requested.is_stopped() {
                    // An operator who asks twice means it; the binary picks the exit code.
                    tracing::warn!(signal, "second stop signal; stopping at once");
                    interrupted.stop();
                    continue;
                }
                tracing::info!(signal, "stop requested");
                requested.stop();
            }
        });
        if let Ok(mut slot) = inner.signal_task.lock() {
            *slot = Some(task);
        }
    }

    /// Modules register, in order. Returns the pools and sources they asked for.
    async fn register_modules(&self) -> Result<(Vec<PoolSpec>, Vec<SourceSpec>), RuntimeError> {
        let inner = &self.inner;
        let mut pools: Vec<PoolSpec> = Vec::new();
        let mut sources = Vec::new();
        for module in &inner.modules {
            let queues = inner.queues.read().map(|q| q.clone()).unwrap_or_default();
            let mut ctx = ModuleContext::new(
                inner.config.current(),
                queues,
                inner.trace.factory().clone(),
            );
            module
                .register(&mut ctx)
                .await
                .map_err(|source| RuntimeError::Module {
                    module: module.name().to_owned(),
                    source,
                })?;
            let regs = ctx.finish();
            if let Ok(mut q) = inner.queues.write() {
                for queue in regs.queues {
                    q.insert(queue.name().to_owned(), queue);
                }
            }
            for (name, ack) in regs.acknowledgers {
                inner.acks.insert(name, ack);
            }
            for h in regs.health {
                inner.health.register(h);
            }
            for s in regs.subscribers {
                inner.config.subscribe(s);
            }
            pools.extend(regs.pools);
            sources.extend(regs.sources);
            tracing::info!(module = %module.name(), "module registered");
        }
        Ok((pools, sources))
    }

    /// Live config changes the runtime owns (after the modules' own subscribers).
    fn subscribe_to_config(&self) {
        self.inner
            .config
            .subscribe(Arc::new(RuntimeConfigSubscriber {
                inner: Arc::downgrade(&self.inner),
            }));
    }

    /// Queues: their health decides readiness.
    fn register_queue_health(&self) {
        for q in self.inner.queue_list() {
            self.inner.health.register(Arc::new(QueueHealth::new(q)));
        }
    }

    /// Sources are checked before anything runs, so a bad wiring fails cleanly.
    fn build_sources(
        &self,
        sources: Vec<SourceSpec>,
    ) -> Result<Vec<Arc<SourceRunner>>, RuntimeError> {
        let inner = &self.inner;
        let mut runners = Vec::new();
        for spec in sources {
            let name = spec.source.name().to_owned();
            if runners.iter().any(|r: &Arc<SourceRunner>| r.name() == name) {
                return Err(RuntimeError::DuplicateSource(name));
            }
            let q = inner
                .queue(&spec.queue)
                .ok_or_else(|| RuntimeError::UnknownQueue {
                    source_name: name.clone(),
                    queue: spec.queue.clone(),
                })?;
            let source = match spec.lease_ttl {
                None => spec.source,
                Some(ttl) => {
                    let lease =
                        q.leader_lease(&format!("source:{name}"), ttl)
                            .map_err(|source| RuntimeError::Lease {
                                source_name: name.clone(),
                                source,
                            })?;
                    Arc::new(LeaderSource::new(spec.source, lease))
                }
            };
            if let Some(ack) = source.acknowledger() {
                inner.acks.insert(name.clone(), ack);
            }
            if let Some(h) = source.health() {
                inner.health.register(h);
            }
            runners.push(Arc::new(SourceRunner::new(
                source,
                q,
                inner.trace.clone(),
                inner.sources_stop.clone(),
            )));
        }
        Ok(runners)
    }

    /// Workers: one pool per spec, then the supervisor starts them all.
    fn start_pools(&self, pools: Vec<PoolSpec>) -> Result<(), RuntimeError> {
        let inner = &self.inner;
        let configured = inner.config.platform().workers.concurrency;
        for spec in pools {
            let q = inner
                .queue(&spec.queue)
                .ok_or_else(|| SupervisorError::UnknownQueue {
                    pool: spec.name.clone(),
                    queue: spec.queue.clone(),
                })?;
            // A pool registered with the configured concurrency follows reloads of it; one
            // registered with its own number keeps that.
            let origin = if spec.concurrency == configured {
                ConcurrencyOrigin::Config
            } else {
                ConcurrencyOrigin::Module
            };
            // The pool's own spec carries its task timeout.
            inner
                .supervisor
                .add_pool(spec, q, inner.pool_settings.clone(), origin)?;
        }
        inner.health.register(inner.supervisor.health());
        inner.supervisor.start();
        Ok(())
    }

    /// Sources run, each in its own task.
    fn start_sources(&self, runners: Vec<Arc<SourceRunner>>) {
        let inner = &self.inner;
        let handles: Vec<JoinHandle<()>> = runners
            .iter()
            .map(|r| tokio::spawn(r.clone().run()))
            .collect();
        if let Ok(mut s) = inner.sources.write() {
            *s = runners;
        }
        if let Ok(mut t) = inner.source_tasks.lock() {
            t.extend(handles);
        }
    }

    /// Liveness heartbeat: proves the runtime's loop still turns.
    fn start_heartbeat(&self) {
        let inner = &self.inner;
        let weak = Arc::downgrade(inner);
        let beat_stop = inner.endpoints_stop.clone();
        let heartbeat = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = beat_stop.stopped() => break,
                }
                match weak.upgrade() {
                    Some(inner) => inner.health.beat(),
                    None => break,
                }
            }
        });
        if let Ok(mut b) = inner.background.lock() {
            b.push(heartbeat);
        }
        inner.health.beat();
    }

    /// Control plane last: when it answers, everything behind it runs.
    fn start_control_plane(&self) {
        let inner = &self.inner;
        let plane: Arc<dyn ControlPlane> = Arc::new(ControlPlaneService::new(inner.clone()));
        let mut background = Vec::new();
        for endpoint in &inner.endpoints {
            let endpoint = endpoint.clone();
            let plane = plane.clone();
            let stop = inner.endpoints_stop.signal();
            let shutdown = inner.shutdown_requested.clone();
            background.push(tokio::spawn(async move {
                if let Err(error) = endpoint.serve(plane, stop).await {
                    tracing::error!(endpoint = %endpoint.name(), %error, "control endpoint failed; shutting down");
                    shutdown.stop();
                }
            }));
        }
        if let Ok(mut b) = inner.background.lock() {
            b.extend(background);
        }
    }

    /// Waits for a stop request: SIGINT/SIGTERM (when signals are handled) or
    /// [`RuntimeHandle::shutdown`] / the admin endpoint.
    pub async fn wait_for_shutdown_request(&self) {
        // With signals handled, `start` listens for them and fires this same token.
        self.inner.shutdown_requested.stopped().await;
    }

    /// Graceful stop, in order; unfinished tasks go back to their queue.
    pub async fn stop(&self) -> DrainReport {
        let inner = &self.inner;
        if inner.state() == RuntimeState::Stopped {
            return DrainReport {
                drained: true,
                cut_off: 0,
            };
        }
        inner.state.send_replace(RuntimeState::Stopping);
        // From here on a stop signal forces exit (see `start`).
        inner.shutdown_requested.stop();
        tracing::info!("runtime stopping: sources");
        inner.sources_stop.stop();
        let source_tasks: Vec<_> = inner
            .source_tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        // One snapshot for the whole sequence, so a reload mid-stop cannot mix budgets.
        let timeouts = inner.config.platform().runtime.clone();
        if tokio::time::timeout(
            timeouts.source_stop_timeout,
            futures_util::future::join_all(source_tasks),
        )
        .await
        .is_err()
        {
            tracing::warn!(timeout = ?timeouts.source_stop_timeout, "a source did not stop within runtime.source_stop_timeout");
        }
        let grace = timeouts.shutdown_timeout;
        tracing::info!(grace = ?grace, in_flight = inner.supervisor.busy(), "runtime stopping: workers drain");
        let report = inner.supervisor.stop(grace, timeouts.release_timeout).await;
        for q in inner.queue_list() {
            q.close().await;
        }
        for m in inner.modules.iter().rev() {
            m.stop().await;
        }
        inner.trace.factory().flush();
        inner.endpoints_stop.stop();
        let background: Vec<_> = inner
            .background
            .lock()
            .map(|mut b| b.drain(..).collect())
            .unwrap_or_default();
        if tokio::time::timeout(
            timeouts.control_stop_timeout,
            futures_util::future::join_all(background),
        )
        .await
        .is_err()
        {
            tracing::warn!(timeout = ?timeouts.control_stop_timeout, "a control endpoint did not stop within runtime.control_stop_timeout");
        }
        if let Some(task) = inner.signal_task.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
        inner.state.send_replace(RuntimeState::Stopped);
        tracing::info!(
            drained = report.drained,
            cut_off = report.cut_off,
            "runtime stopped"
        );
        report
    }

    /// Starts, runs until a stop request, stops. `Ok` after a graceful stop;
    /// [`RuntimeError::Interrupted`] at once when a second stop signal cuts the stop short.
    pub async fn run(self) -> Result<DrainReport, RuntimeError> {
        if let Err(error) = self.start().await {
            self.stop().await;
            return Err(error);
        }
        self.wait_for_shutdown_request().await;
        tokio::select! {
            biased;
            _ = self.inner.interrupted.stopped() => Err(RuntimeError::Interrupted),
            report = self.stop() => Ok(report),
        }
    }

    /// Completes when a second stop signal asks to stop at once; see
    /// [`RuntimeHandle::interrupted`].
    pub async fn interrupted(&self) {
        self.inner.interrupted.stopped().await
    }
}
