//! Readiness of the order store.

use std::time::Duration;

use async_trait::async_trait;
use runtime_contracts::{ComponentHealth, HealthContributor, HealthStatus};

use super::OrderStore;

/// How long a health check may wait for the database.
const CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// A readiness contributor named `store`: up when the database answers `SELECT 1` within
/// half a second and, after a write failed with an outage, takes a write again.
#[derive(Clone, Debug)]
pub struct StoreHealth {
    store: OrderStore,
}

impl StoreHealth {
    /// Health of `store`.
    pub fn new(store: OrderStore) -> Self {
        StoreHealth { store }
    }
}

#[async_trait]
impl HealthContributor for StoreHealth {
    fn name(&self) -> &str {
        "store"
    }

    async fn check(&self) -> ComponentHealth {
        let health = match tokio::time::timeout(CHECK_TIMEOUT, self.store.check_writable()).await {
            Ok(Ok(())) => ComponentHealth::new("store", HealthStatus::Up),
            Ok(Err(error)) => ComponentHealth::new("store", HealthStatus::Down)
                .with_detail("error", error.to_string()),
            Err(_) => ComponentHealth::new("store", HealthStatus::Down)
                .with_detail("error", "no answer within 500ms"),
        };
        health.with_detail("backend", self.store.backend())
    }
}
