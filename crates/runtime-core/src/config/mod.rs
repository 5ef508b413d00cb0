//! Configuration: layers merged into typed, validated snapshots, reloadable.
//!
//! Layers, later wins: built-in defaults < config files < database < environment.
//! Each layer comes from a [`ConfigProvider`]; the manager reads secrets named by
//! `password_file`-style keys ([`read_secret_file`]), merges the layers into a
//! [`ConfigSnapshot`], checks the platform sections ([`PlatformConfig`]) and every
//! registered [`Validator`] (the application's sections), and only then makes it current.
//! Every problem found is reported at once, each naming its key, its source (file:line,
//! environment variable, database row), its value (`***` for secrets) and what was
//! expected ([`section`] does that for any serde type).
//!
//! Reload ([`ConfigurationManager::reload`], file changes and SIGHUP through
//! [`ConfigurationManager::spawn_watchers`], the admin endpoint) builds a new snapshot the
//! same way; an invalid one is rejected, logged and counted, and the old one stays.
//! Subscribers hear about accepted changes with the changed keys.

mod extract;
mod layers;
mod platform;
mod secrets;
mod toml_out;
mod watch;

// The end-to-end configuration tests live in runtime-compose (tests/it/config.rs): the
// adapter keys they use are read there.

pub use extract::{
    issue, lookup_origin, redact_url, render_value, section, section_validator, suggest,
};
pub use layers::{DefaultsProvider, EnvProvider, EnvSource, PlainFileProvider, parse_value};
pub use platform::{
    LogFormat, PLATFORM_SECTIONS, PlatformConfig, QueueConfig, RuntimeConfig, TracingConfig,
    WorkersConfig, known_sections_validator,
};
pub use secrets::read_secret_file;
pub use toml_out::to_toml;
pub use watch::WatchOptions;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use runtime_contracts::{
    ConfigChange, ConfigError, ConfigIssue, ConfigLayer, ConfigProvider, ConfigSnapshot,
    ConfigSubscriber, ReloadReport,
};

/// Checks a candidate configuration; returns every problem found. Issues may leave
/// `origin` and `value` empty: the manager fills them in (and redacts secrets).
pub type Validator = Arc<dyn Fn(&ConfigSnapshot) -> Vec<ConfigIssue> + Send + Sync>;

struct Current {
    snapshot: Arc<ConfigSnapshot>,
    platform: Arc<PlatformConfig>,
    secret_files: Vec<PathBuf>,
}

/// Loads, validates, holds and reloads the configuration.
pub struct ConfigurationManager {
    providers: Vec<Box<dyn ConfigProvider>>,
    /// Grows when the runtime adds its modules' checks (`add_validator`).
    validators: RwLock<Vec<Validator>>,
    current: RwLock<Current>,
    subscribers: Mutex<Vec<Arc<dyn ConfigSubscriber>>>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    /// One reload at a time (file watcher, SIGHUP and the admin endpoint may race).
    reload_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ConfigurationManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigurationManager")
            .field("layers", &self.layer_names())
            .field("version", &self.current().version)
            .finish_non_exhaustive()
    }
}

impl ConfigurationManager {
    /// Loads every layer in order, validates, and returns a manager holding the result.
    pub async fn load(
        providers: Vec<Box<dyn ConfigProvider>>,
        validators: Vec<Validator>,
    ) -> Result<Self, ConfigError> {
        let built = build(&providers, &validators, 1).await?;
        Ok(ConfigurationManager {
            providers,
            validators: RwLock::new(validators),
            current: RwLock::new(built),
            subscribers: Mutex::new(Vec::new()),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<ConfigSnapshot> {
        self.read(|c| c.snapshot.clone())
    }

    /// The platform sections of the configuration in force.
    pub fn platform(&self) -> Arc<PlatformConfig> {
        self.read(|c| c.platform.clone())
    }

    /// The configuration in force with secrets as `***` (for the control plane).
    pub fn redacted(&self) -> serde_json::Value {
        self.current().redacted()
    }

    /// Checks the configuration in force with `validator` and, when it passes, keeps it
    /// for every later reload. Its issues (origins and values filled in) are the error.
    pub fn add_validator(&self, validator: Validator) -> Result<(), ConfigError> {
        let snapshot = self.current();
        let mut issues = validator(&snapshot);
        if !issues.is_empty() {
            extract::complete(&snapshot, &mut issues);
            return Err(ConfigError::Invalid(issues));
        }
        match self.validators.write() {
            Ok(mut v) => v.push(validator),
            Err(poisoned) => poisoned.into_inner().push(validator),
        }
        Ok(())
    }

    /// The layers, lowest precedence first (`built-in defaults`, `file ./bot.toml`, ...).
    pub fn layer_names(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.describe()).collect()
    }

    /// Files whose change should trigger a reload: config files and secret files.
    pub fn watch_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .providers
            .iter()
            .flat_map(|p| p.watch_paths())
            .collect();
        paths.extend(self.read(|c| c.secret_files.clone()));
        paths.sort();
        paths.dedup();
        paths
    }

    /// Registers a subscriber for accepted changes.
    pub fn subscribe(&self, subscriber: Arc<dyn ConfigSubscriber>) {
        match self.subscribers.lock() {
            Ok(mut subs) => subs.push(subscriber),
            Err(poisoned) => poisoned.into_inner().push(subscriber),
        }
    }

    /// Registers a closure as a subscriber.
    pub fn subscribe_fn(&self, f: impl Fn(&ConfigChange) + Send + Sync + 'static) {
        struct FnSubscriber<F>(F);
        impl<F: Fn(&ConfigChange) + Send + Sync + 'static> ConfigSubscriber for FnSubscriber<F> {
            fn on_change(&self, change: &ConfigChange) {
                (self.0)(change)
            }
        }
        self.subscribe(Arc::new(FnSubscriber(f)));
    }

    /// Accepted and rejected reloads so far.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads.load(Relaxed),
            self.reload_failures.load(Relaxed),
        )
    }

    /// Reloads every layer; an invalid result is rejected and the old one stays.
    pub async fn reload(&self) -> ReloadReport {
        self.reload_because("request").await
    }

    /// [`reload`](Self::reload), naming what asked for it in the logs.
    pub async fn reload_because(&self, trigger: &str) -> ReloadReport {
        let _one_at_a_time = self.reload_lock.lock().await;
        let old = self.current();
        let validators = match self.validators.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        match build(&self.providers, &validators, old.version + 1).await {
            Ok(built) => {
                let changed_keys = changed_keys(&old, &built.snapshot);
                if changed_keys.is_empty() {
                    // Keep the secret files list fresh even when nothing visible changed.
                    self.write(|c| c.secret_files = built.secret_files);
                    tracing::debug!(trigger, "configuration unchanged");
                    return ReloadReport {
                        accepted: true,
                        version: old.version,
                        changed_keys,
                        errors: Vec::new(),
                    };
                }
                let new = built.snapshot.clone();
                self.write(|c| *c = built);
                self.reloads.fetch_add(1, Relaxed);
                // Key names only: values may be secrets.
                tracing::info!(
                    trigger,
                    version = new.version,
                    changed = %changed_keys.join(", "),
                    "configuration reloaded"
                );
                let change = ConfigChange {
                    old,
                    new: new.clone(),
                    changed_keys: changed_keys.clone(),
                };
                self.notify(&change);
                ReloadReport {
                    accepted: true,
                    version: new.version,
                    changed_keys,
                    errors: Vec::new(),
                }
            }
            Err(error) => {
                self.reload_failures.fetch_add(1, Relaxed);
                tracing::warn!(trigger, %error, "configuration reload rejected, keeping the old one");
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

    fn notify(&self, change: &ConfigChange) {
        let subs = match self.subscribers.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        for sub in subs {
            // A subscriber that panics must not take the reload path (or the watcher) down.
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sub.on_change(change)));
            if outcome.is_err() {
                tracing::error!(version = change.new.version, "config subscriber panicked");
            }
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Current) -> T) -> T {
        match self.current.read() {
            Ok(c) => f(&c),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write(&self, f: impl FnOnce(&mut Current)) {
        match self.current.write() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// Loads the layers of `providers` as they are now, merged but not validated (for
/// bootstrap decisions such as whether a database layer is configured).
pub async fn load_unvalidated(
    providers: &[Box<dyn ConfigProvider>],
) -> Result<ConfigSnapshot, ConfigError> {
    let mut layers = Vec::with_capacity(providers.len());
    for p in providers {
        let mut layer = p.load().await?;
        let (_, issues) = secrets::expand_secret_files(&mut layer).await;
        if !issues.is_empty() {
            return Err(ConfigError::Invalid(issues));
        }
        layers.push(layer);
    }
    Ok(ConfigSnapshot::from_layers(0, &layers))
}

async fn build(
    providers: &[Box<dyn ConfigProvider>],
    validators: &[Validator],
    version: u64,
) -> Result<Current, ConfigError> {
    let mut layers: Vec<ConfigLayer> = Vec::with_capacity(providers.len());
    let mut issues = Vec::new();
    let mut secret_files = Vec::new();
    for p in providers {
        match p.load().await {
            Ok(mut layer) => {
                let (files, mut problems) = secrets::expand_secret_files(&mut layer).await;
                secret_files.extend(files);
                issues.append(&mut problems);
                layers.push(layer);
            }
            Err(ConfigError::Invalid(mut i)) => issues.append(&mut i),
            // A layer that cannot be read at all makes the rest meaningless.
            Err(e) => return Err(e),
        }
    }
    let snapshot = ConfigSnapshot::from_layers(version, &layers);
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
    extract::complete(&snapshot, &mut issues);
    match platform {
        Some(p) if issues.is_empty() => Ok(Current {
            snapshot: Arc::new(snapshot),
            platform: Arc::new(p),
            secret_files,
        }),
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
