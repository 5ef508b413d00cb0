//! The HealthRegistry: liveness, readiness and the aggregated view.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_contracts::{
    ComponentHealth, HealthContributor, HealthReport, HealthStatus, RuntimeState, TaskQueue,
};

/// A contributor slower than this counts as down: health answers must stay fast.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Liveness fails when the runtime's heartbeat is older than this.
const LIVENESS_STALE: Duration = Duration::from_secs(10);

/// Collects health from contributors.
pub struct HealthRegistry {
    contributors: RwLock<Vec<Arc<dyn HealthContributor>>>,
    started: Instant,
    heartbeat_ms: AtomicU64,
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRegistry").finish_non_exhaustive()
    }
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        HealthRegistry {
            contributors: RwLock::new(Vec::new()),
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
        }
    }

    /// Adds a contributor.
    pub fn register(&self, contributor: Arc<dyn HealthContributor>) {
        if let Ok(mut c) = self.contributors.write() {
            c.push(contributor);
        }
    }

    /// Records that the runtime's loop is responsive (called by its heartbeat task).
    pub fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Liveness: the heartbeat is fresh. Backends do not matter here: a dead Redis must
    /// not get the process restarted.
    pub fn liveness(&self) -> ComponentHealth {
        let age_ms = (self.started.elapsed().as_millis() as u64)
            .saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed));
        let status = if Duration::from_millis(age_ms) <= LIVENESS_STALE {
            HealthStatus::Up
        } else {
            HealthStatus::Down
        };
        ComponentHealth::new("runtime", status).with_detail("heartbeat_age_ms", age_ms)
    }

    /// Checks every contributor (concurrently, each bounded in time).
    pub async fn check_all(&self) -> Vec<ComponentHealth> {
        let contributors: Vec<_> = self
            .contributors
            .read()
            .map(|c| c.clone())
            .unwrap_or_default();
        let checks = contributors.into_iter().map(|c| async move {
            let readiness = c.readiness();
            let mut health = match tokio::time::timeout(CHECK_TIMEOUT, c.check()).await {
                Ok(h) => h,
                Err(_) => ComponentHealth::new(c.name(), HealthStatus::Down)
                    .with_detail("error", "health check timed out"),
            };
            health.readiness = readiness;
            health
        });
        futures_util::future::join_all(checks).await
    }

    /// The full view, with the runtime's own state as a component.
    pub async fn health(&self, state: RuntimeState) -> HealthReport {
        let mut components = vec![runtime_component(state)];
        components.extend(self.check_all().await);
        HealthReport::from_components(components)
    }

    /// Readiness: the runtime is running and every readiness contributor is up.
    pub async fn readiness(&self, state: RuntimeState) -> HealthReport {
        let mut components = vec![runtime_component(state)];
        components.extend(self.check_all().await.into_iter().filter(|c| c.readiness));
        let mut report = HealthReport::from_components(components);
        // Degraded is not ready: readiness means "send me work", and a degraded
        // dependency means the work would wait.
        if report.status == HealthStatus::Degraded {
            report.status = HealthStatus::Down;
        }
        report
    }
}

fn runtime_component(state: RuntimeState) -> ComponentHealth {
    let status = if state == RuntimeState::Running {
        HealthStatus::Up
    } else {
        HealthStatus::Down
    };
    ComponentHealth::new("runtime", status).with_detail("state", state)
}

/// Health of a queue backend: up when `ping` answers.
pub struct QueueHealth {
    name: String,
    queue: Arc<dyn TaskQueue>,
}

impl QueueHealth {
    /// Health for `queue`.
    pub fn new(queue: Arc<dyn TaskQueue>) -> Self {
        QueueHealth {
            name: format!("queue:{}", queue.name()),
            queue,
        }
    }
}

#[async_trait]
impl HealthContributor for QueueHealth {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> ComponentHealth {
        let health = ComponentHealth::new(&self.name, HealthStatus::Up)
            .with_detail("backend", self.queue.backend());
        match self.queue.ping().await {
            Ok(()) => health,
            Err(error) => ComponentHealth {
                status: HealthStatus::Down,
                ..health
            }
            .with_detail("error", error.to_string()),
        }
    }
}
