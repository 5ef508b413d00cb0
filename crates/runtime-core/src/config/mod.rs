//! Configuration: layers merged into typed, validated snapshots, reloadable.
//!
//! Layers, later wins: built-in defaults < config files < database < environment.
//! Each layer comes from a [`ConfigProvider`]; the manager merges them into a
//! [`ConfigSnapshot`], checks the platform sections ([`PlatformConfig`]) and every
//! registered validator (the application's sections), and only then makes it current.

mod platform;

pub use platform::{
    ControlConfig, LogFormat, PLATFORM_SECTIONS, PlatformConfig, QueueBackend, QueueConfig,
    RuntimeConfig, TraceExporter, TracingConfig, WorkersConfig,
};

use std::sync::{Arc, Mutex, RwLock};

use runtime_contracts::{
    ConfigChange, ConfigError, ConfigIssue, ConfigLayer, ConfigProvider, ConfigSnapshot,
    ConfigSubscriber, ReloadReport,
};

/// Checks a candidate configuration; returns every problem found.
pub type Validator = Arc<dyn Fn(&ConfigSnapshot) -> Vec<ConfigIssue> + Send + Sync>;

/// Loads, validates, holds and reloads the configuration.
pub struct ConfigurationManager {
    providers: Vec<Box<dyn ConfigProvider>>,
    validators: Vec<Validator>,
    current: RwLock<(Arc<ConfigSnapshot>, Arc<PlatformConfig>)>,
    subscribers: Mutex<Vec<Arc<dyn ConfigSubscriber>>>,
    reloads: std::sync::atomic::AtomicU64,
    reload_failures: std::sync::atomic::AtomicU64,
}

impl ConfigurationManager {
    /// Loads every layer in order, validates, and returns a manager holding the result.
    pub async fn load(
        providers: Vec<Box<dyn ConfigProvider>>,
        validators: Vec<Validator>,
    ) -> Result<Self, ConfigError> {
        let (snapshot, platform) = build(&providers, &validators, 1).await?;
        Ok(ConfigurationManager {
            providers,
            validators,
            current: RwLock::new((Arc::new(snapshot), Arc::new(platform))),
            subscribers: Mutex::new(Vec::new()),
            reloads: Default::default(),
            reload_failures: Default::default(),
        })
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<ConfigSnapshot> {
        self.current
            .read()
            .map(|c| c.0.clone())
            .unwrap_or_else(|p| p.into_inner().0.clone())
    }

    /// The platform sections of the configuration in force.
    pub fn platform(&self) -> Arc<PlatformConfig> {
        self.current
            .read()
            .map(|c| c.1.clone())
            .unwrap_or_else(|p| p.into_inner().1.clone())
    }

    /// Registers a subscriber for accepted changes.
    pub fn subscribe(&self, subscriber: Arc<dyn ConfigSubscriber>) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(subscriber);
        }
    }

    /// Accepted and rejected reloads so far.
    pub fn reload_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.reloads.load(Relaxed),
            self.reload_failures.load(Relaxed),
        )
    }

    /// Reloads every layer; an invalid result is rejected and the old one stays.
    pub async fn reload(&self) -> ReloadReport {
        use std::sync::atomic::Ordering::Relaxed;
        let old = self.current();
        match build(&self.providers, &self.validators, old.version + 1).await {
            Ok((snapshot, platform)) => {
                let changed_keys = changed_keys(&old, &snapshot);
                if changed_keys.is_empty() {
                    return ReloadReport {
                        accepted: true,
                        version: old.version,
                        changed_keys,
                        errors: Vec::new(),
                    };
                }
                let new = Arc::new(snapshot);
                if let Ok(mut cur) = self.current.write() {
                    *cur = (new.clone(), Arc::new(platform));
                }
                self.reloads.fetch_add(1, Relaxed);
                let change = ConfigChange {
                    old,
                    new: new.clone(),
                    changed_keys: changed_keys.clone(),
                };
                let subs = self
                    .subscribers
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_default();
                for sub in subs {
                    sub.on_change(&change);
                }
                tracing::info!(version = new.version, changed = ?changed_keys, "configuration reloaded");
                ReloadReport {
                    accepted: true,
                    version: new.version,
                    changed_keys,
                    errors: Vec::new(),
                }
            }
            Err(error) => {
                self.reload_failures.fetch_add(1, Relaxed);
                tracing::warn!(%error, "configuration reload rejected, keeping the old one");
                let errors = match error {
                    ConfigError::Invalid(issues) => issues,
                    other => vec![ConfigIssue {
                        key: String::new(),
                        origin: None,
                        value: None,
                        message: other.to_string(),
                    }],
                };
                ReloadReport {
                    accepted: false,
                    version: old.version,
                    changed_keys: Vec::new(),
                    errors,
                }
            }
        }
    }
}

async fn build(
    providers: &[Box<dyn ConfigProvider>],
    validators: &[Validator],
    version: u64,
) -> Result<(ConfigSnapshot, PlatformConfig), ConfigError> {
    let mut layers: Vec<ConfigLayer> = Vec::with_capacity(providers.len());
    for p in providers {
        layers.push(p.load().await?);
    }
    let snapshot = ConfigSnapshot::from_layers(version, &layers);
    let mut issues = Vec::new();
    let platform = match PlatformConfig::from_snapshot(&snapshot) {
        Ok(p) => Some(p),
        Err(ConfigError::Invalid(mut i)) => {
            issues.append(&mut i);
            None
        }
        Err(e) => return Err(e),
    };
    for v in validators {
        issues.extend(v(&snapshot));
    }
    match platform {
        Some(p) if issues.is_empty() => Ok((snapshot, p)),
        _ => Err(ConfigError::Invalid(issues)),
    }
}

fn changed_keys(old: &ConfigSnapshot, new: &ConfigSnapshot) -> Vec<String> {
    let mut keys: Vec<String> = old
        .origins
        .keys()
        .chain(new.origins.keys())
        .filter(|k| old.get(k) != new.get(k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}
