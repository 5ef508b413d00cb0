//! The serde configuration that builds a [`MemoryQueue`](crate::MemoryQueue).

use std::time::Duration;

use runtime_contracts::{ConfigIssue, QueueShared};
use serde::{Deserialize, Serialize};

/// The default `capacity_bytes`: 256 MiB of payloads, ten mails at the 25 MiB limit.
pub const DEFAULT_CAPACITY_BYTES: u64 = 256 * 1024 * 1024;

/// Settings of one in-memory queue. Every field has a default, so `{}` is a valid config.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryQueueConfig {
    /// Queue name (status, metrics, logs).
    pub name: String,
    /// Bound on pending + delayed + in-flight tasks; `publish` waits beyond it.
    pub capacity: usize,
    /// Bound on the payload bytes of pending + delayed + in-flight tasks; `publish` waits
    /// beyond it exactly as beyond `capacity`. A count alone lets 10,000 mails of 25 MiB
    /// fill memory; this bounds what the queue holds whatever the payloads. One task
    /// larger than the bound is still taken when the queue is empty, so it cannot wait
    /// for ever.
    pub capacity_bytes: u64,
    /// How long a delivery may stay unsettled before the task is delivered again
    /// (`"30s"`, `"500ms"`).
    #[serde(with = "runtime_contracts::duration")]
    pub visibility_timeout: Duration,
    /// Failed attempts after which `nack` moves a task to the dead-letter set.
    pub max_attempts: u32,
}

impl Default for MemoryQueueConfig {
    fn default() -> Self {
        MemoryQueueConfig {
            name: "default".to_owned(),
            capacity: 10_000,
            capacity_bytes: DEFAULT_CAPACITY_BYTES,
            visibility_timeout: Duration::from_secs(30),
            max_attempts: 5,
        }
    }
}

/// A [`MemoryQueueConfig`] value that cannot work.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("invalid memory queue setting {key}: {message}")]
pub struct InvalidConfig {
    /// The offending key.
    pub key: &'static str,
    /// What is expected.
    pub message: &'static str,
}

impl MemoryQueueConfig {
    /// Checks the values; [`MemoryQueue::new`](crate::MemoryQueue::new) clamps instead of
    /// failing, so call this where a bad value should stop start-up.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.name.trim().is_empty() {
            return Err(InvalidConfig {
                key: "name",
                message: "expected a non-empty name",
            });
        }
        if self.capacity == 0 {
            return Err(InvalidConfig {
                key: "capacity",
                message: "expected at least 1",
            });
        }
        if self.capacity_bytes == 0 {
            return Err(InvalidConfig {
                key: "capacity_bytes",
                message: "expected at least 1",
            });
        }
        if self.visibility_timeout.is_zero() {
            return Err(InvalidConfig {
                key: "visibility_timeout",
                message: "expected a positive duration",
            });
        }
        if self.max_attempts == 0 {
            return Err(InvalidConfig {
                key: "max_attempts",
                message: "expected at least 1",
            });
        }
        Ok(())
    }
}

/// The memory queue's own keys of `[queue]` (`queue.backend = "memory"`); the keys every
/// backend shares come in as [`QueueShared`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryQueueSettings {
    /// `queue.capacity`: bound for backpressure.
    pub capacity: usize,
}

impl Default for MemoryQueueSettings {
    fn default() -> Self {
        MemoryQueueSettings {
            capacity: MemoryQueueConfig::default().capacity,
        }
    }
}

impl MemoryQueueSettings {
    /// Every problem, each with its key (`queue.capacity`); no I/O.
    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.capacity == 0 {
            issues.push(ConfigIssue::new(
                "queue.capacity",
                Some("0".into()),
                "expected a whole number of at least 1",
            ));
        }
        issues
    }

    /// The queue's config from these settings and the shared `[queue]` keys.
    pub fn config(&self, shared: &QueueShared) -> MemoryQueueConfig {
        MemoryQueueConfig {
            name: shared.name.clone(),
            capacity: self.capacity,
            visibility_timeout: shared.visibility_timeout,
            max_attempts: shared.max_attempts,
            ..MemoryQueueConfig::default()
        }
    }
}

impl runtime_contracts::QueueBackendSettings for MemoryQueueSettings {
    const BACKEND: &'static str = "memory";

    fn check(&self, _shared: &QueueShared) -> Vec<ConfigIssue> {
        MemoryQueueSettings::check(self)
    }

    fn build(
        &self,
        shared: &QueueShared,
    ) -> Result<std::sync::Arc<dyn runtime_contracts::TaskQueue>, runtime_contracts::QueueError>
    {
        Ok(std::sync::Arc::new(crate::MemoryQueue::new(
            self.config(shared),
        )))
    }

    /// Limits in this process (the memory queue lives in one).
    fn limiter(
        &self,
        _shared: &QueueShared,
    ) -> Result<
        Option<std::sync::Arc<dyn runtime_contracts::TaskLimiter>>,
        runtime_contracts::QueueError,
    > {
        Ok(Some(std::sync::Arc::new(crate::MemoryLimiter::new())))
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn settings_name_the_bad_key_and_build_with_the_shared_keys() {
        let bad = MemoryQueueSettings { capacity: 0 }.check();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].key, "queue.capacity");
        let ok = MemoryQueueSettings::default();
        assert!(ok.check().is_empty());
        let shared = QueueShared {
            name: "q".into(),
            visibility_timeout: Duration::from_secs(7),
            max_attempts: 3,
        };
        let config = ok.config(&shared);
        assert_eq!(
            (config.name.as_str(), config.capacity, config.max_attempts),
            ("q", 10_000, 3)
        );
    }
}
