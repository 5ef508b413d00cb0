//! Health as plain data, and the contributor contract.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The health of one component or of the whole runtime.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working.
    Up,
    /// Working with reduced capacity or stale data.
    Degraded,
    /// Not working.
    Down,
}

/// One component's health.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ComponentHealth {
    /// Component name (`queue:jobs`, `source:inbox`, `store`).
    pub name: String,
    /// Its status.
    pub status: HealthStatus,
    /// Whether this component decides readiness.
    pub readiness: bool,
    /// Free-form details (no secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
}

impl ComponentHealth {
    /// A component with a status and no details.
    pub fn new(name: impl Into<String>, status: HealthStatus) -> Self {
        ComponentHealth {
            name: name.into(),
            status,
            readiness: true,
            details: BTreeMap::new(),
        }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        self.details.insert(
            key.into(),
            serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        );
        self
    }
}

/// An aggregated view: the worst status of the components it covers.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct HealthReport {
    /// Overall status.
    pub status: HealthStatus,
    /// Each component.
    pub components: Vec<ComponentHealth>,
}

impl HealthReport {
    /// Aggregates components: `down` if any is down, else `degraded` if any is, else `up`.
    pub fn from_components(components: Vec<ComponentHealth>) -> Self {
        let status = components
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Up);
        HealthReport { status, components }
    }
}

/// Something that knows its own health (a queue backend, a source's connection, a store).
#[async_trait]
pub trait HealthContributor: Send + Sync + 'static {
    /// The component name shown in health reports.
    fn name(&self) -> &str;

    /// Whether this component must be up for the runtime to be ready.
    fn readiness(&self) -> bool {
        true
    }

    /// Checks health now. Must answer quickly (well under a second): report cached state
    /// rather than waiting on a slow network call.
    async fn check(&self) -> ComponentHealth;
}
