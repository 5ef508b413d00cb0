//! The state a runtime shares: built by the [`RuntimeManager`](crate::RuntimeManager),
//! read by its handles and by the [`ControlPlaneService`](crate::ControlPlaneService).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use runtime_contracts::{
    ApplicationModule, ControlEndpoint, ModuleStatus, RuntimeState, RuntimeStatus, TaskQueue,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ConfigurationManager;
use crate::health::HealthRegistry;
use crate::signal::StopToken;
use crate::sources::SourceRunner;
use crate::stats::QueueStatsCache;
use crate::supervisor::{PoolSettings, WorkerSupervisor};
use crate::trace::TraceService;
use crate::worker::Acknowledgers;

/// What a runtime shares between its manager, its handles and its control plane.
pub(crate) struct Shared {
    pub(crate) config: Arc<ConfigurationManager>,
    pub(crate) state: watch::Sender<RuntimeState>,
    pub(crate) started: Instant,
    pub(crate) modules: Vec<Arc<dyn ApplicationModule>>,
    pub(crate) queues: RwLock<BTreeMap<String, Arc<dyn TaskQueue>>>,
    pub(crate) supervisor: Arc<WorkerSupervisor>,
    pub(crate) sources: RwLock<Vec<Arc<SourceRunner>>>,
    pub(crate) health: HealthRegistry,
    pub(crate) queue_stats: Arc<QueueStatsCache>,
    pub(crate) trace: TraceService,
    pub(crate) acks: Arc<Acknowledgers>,
    pub(crate) endpoints: Vec<Arc<dyn ControlEndpoint>>,
    pub(crate) shutdown_requested: StopToken,
    /// Fired by a second stop signal: the binary is to exit at once (it picks the code).
    pub(crate) interrupted: StopToken,
    pub(crate) sources_stop: StopToken,
    pub(crate) endpoints_stop: StopToken,
    pub(crate) background: Mutex<Vec<JoinHandle<()>>>,
    /// Turns SIGINT/SIGTERM into a stop request (and a second one into `interrupted`).
    pub(crate) signal_task: Mutex<Option<JoinHandle<()>>>,
    pub(crate) source_tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) handle_signals: bool,
    pub(crate) pool_settings: PoolSettings,
    pub(crate) started_once: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn state(&self) -> RuntimeState {
        *self.state.borrow()
    }

    pub(crate) fn queue_list(&self) -> Vec<Arc<dyn TaskQueue>> {
        self.queues
            .read()
            .map(|q| q.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The queue named `name`, if registered.
    pub(crate) fn queue(&self, name: &str) -> Option<Arc<dyn TaskQueue>> {
        self.queues.read().ok().and_then(|q| q.get(name).cloned())
    }

    pub(crate) fn source_list(&self) -> Vec<Arc<SourceRunner>> {
        self.sources.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) async fn status(&self) -> RuntimeStatus {
        let queues = self.queue_list();
        let gathered =
            futures_util::future::join_all(queues.iter().map(|q| self.queue_stats.get(q))).await;
        let stats_age = gathered
            .iter()
            .map(|(_, age)| *age)
            .max()
            .unwrap_or_default();
        let stats = gathered.into_iter().map(|(stats, _)| stats).collect();
        let (reloads, failures) = self.config.reload_counts();
        let sources: Vec<_> = self.source_list().iter().map(|s| s.status()).collect();
        RuntimeStatus {
            state: self.state(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            config_version: self.config.current().version,
            config_reloads: reloads,
            config_reload_failures: failures,
            modules: self
                .modules
                .iter()
                .map(|m| ModuleStatus {
                    name: m.name().to_owned(),
                })
                .collect(),
            schedules: sources
                .iter()
                .filter_map(runtime_contracts::ScheduleStatus::from_source)
                .collect(),
            sources,
            queues: stats,
            pools: self.supervisor.status(),
            dropped_spans: self.trace.factory().dropped_spans(),
            stats_age_ms: u64::try_from(stats_age.as_millis()).unwrap_or(u64::MAX),
        }
    }
}
