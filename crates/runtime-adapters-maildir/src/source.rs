//! The Maildir task source.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use runtime_contracts::{
    ComponentHealth, HealthContributor, HealthStatus, SourceAcknowledger, SourceError, SourceState,
    SourceStatus, StopSignal, Task, TaskSink, TaskSource,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::ack::MaildirAcknowledger;
use crate::config::MaildirConfig;
use crate::maildir::Maildir;
use crate::{OVERSIZE_HEADER, ROUTE};

/// Tasks published per `publish_batch` call.
const BATCH: usize = 100;

/// Produces one task per waiting message of a Maildir. See the crate docs.
pub struct MaildirSource {
    name: String,
    config: Arc<MaildirConfig>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MaildirSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildirSource")
            .field("name", &self.name)
            .field("path", &self.config.path)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Unique name -> when it was last published.
    published: HashMap<String, Instant>,
    produced: u64,
    errors: u64,
    last_error: Option<String>,
    last_success: Option<Instant>,
    pending: u64,
    watching: bool,
    scans: u64,
    running: bool,
    /// False after a failed scan, until one succeeds.
    scan_failed: bool,
}

impl MaildirSource {
    /// A source named `name` (its registered name, also its acknowledger's).
    pub fn new(config: MaildirConfig, name: impl Into<String>) -> Self {
        MaildirSource {
            name: name.into(),
            config: Arc::new(config),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MaildirConfig {
        &self.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn record_error(&self, error: &SourceError) {
        let mut state = self.state();
        state.errors += 1;
        state.scan_failed = true;
        state.last_error = Some(error.to_string());
    }

    /// One scan: lists waiting messages and publishes those not published recently.
    async fn scan(&self, sink: &dyn TaskSink) -> Result<(), SourceError> {
        let root = Maildir::new(&self.config.path);
        let pending = tokio::task::spawn_blocking(move || root.pending())
            .await
            .map_err(|e| SourceError::unavailable("maildir scan did not finish", e))?
            .map_err(|e| {
                SourceError::unavailable(
                    format!("cannot list maildir {}", self.config.path.display()),
                    e,
                )
            })?;

        let now = Instant::now();
        let due: Vec<_> = {
            let mut state = self.state();
            // Forget what is no longer waiting (filed by an acknowledger, deleted).
            let waiting: std::collections::HashSet<&str> =
                pending.iter().map(|f| f.unique.as_str()).collect();
            state.published.retain(|k, _| waiting.contains(k.as_str()));
            state.pending = pending.len() as u64;
            pending
                .into_iter()
                .filter(|f| {
                    state
                        .published
                        .get(&f.unique)
                        .is_none_or(|at| now.duration_since(*at) >= self.config.republish_after)
                })
                .collect()
        };

        for chunk in due.chunks(BATCH) {
            let files = chunk.to_vec();
            let max = self.config.max_message_bytes;
            let read = tokio::task::spawn_blocking(move || {
                files
                    .into_iter()
                    .filter_map(|f| match Maildir::read(&f.path, max) {
                        Ok(read) => Some(Ok((f.unique, read))),
                        // Moved or deleted since the listing: not ours to publish now.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => Some(Err((f.path, e))),
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| SourceError::unavailable("maildir read did not finish", e))?;

            let mut tasks = Vec::with_capacity(read.len());
            let mut keys = Vec::with_capacity(read.len());
            for item in read {
                match item {
                    Ok((unique, (bytes, size, truncated))) => {
                        let mut task = Task::new(ROUTE, bytes).with_origin(&self.name, &unique);
                        if truncated {
                            info!(source = %self.name, key = %unique, size, "message over the size limit, publishing its header only");
                            task = task.with_header(OVERSIZE_HEADER, size.to_string());
                        }
                        tasks.push(task);
                        keys.push(unique);
                    }
                    Err((path, error)) => {
                        // One unreadable file must not stop the others.
                        warn!(source = %self.name, path = %path.display(), %error, "cannot read maildir message");
                        let mut state = self.state();
                        state.errors += 1;
                        state.last_error = Some(format!("cannot read {}: {error}", path.display()));
                    }
                }
            }
            if tasks.is_empty() {
                continue;
            }
            let outcomes = sink.publish_batch(tasks).await?;
            let mut state = self.state();
            let now = Instant::now();
            for (key, outcome) in keys.into_iter().zip(outcomes) {
                if outcome == runtime_contracts::PublishOutcome::Enqueued {
                    state.produced += 1;
                }
                state.published.insert(key, now);
            }
        }
        let mut state = self.state();
        state.last_success = Some(Instant::now());
        state.scans += 1;
        state.scan_failed = false;
        Ok(())
    }

    /// Starts a watcher on `new/` and `cur/` that pokes `tx`; `None` when it cannot.
    fn watch(&self, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        let mut watcher = match notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| changes_the_listing(&e.kind)) {
                    // Full channel = a scan is already due; dropping the poke is fine.
                    let _ = tx.try_send(());
                }
            },
        ) {
            Ok(w) => w,
            Err(error) => {
                warn!(source = %self.name, %error, "cannot watch maildir, relying on the periodic rescan");
                return None;
            }
        };
        for dir in ["new", "cur"] {
            let path = self.config.path.join(dir);
            if let Err(error) = watcher.watch(&path, RecursiveMode::NonRecursive) {
                warn!(source = %self.name, path = %path.display(), %error, "cannot watch maildir directory, relying on the periodic rescan");
                return None;
            }
        }
        Some(watcher)
    }
}

/// Whether an event can change what a scan finds. The scan's own `readdir` and reads
/// raise `Access(Open)` / `Access(Close(NoWrite))`; reacting to those made an idle source
/// rescan itself about 10,000 times a second.
fn changes_the_listing(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    ) || matches!(
        kind,
        EventKind::Access(notify::event::AccessKind::Close(
            notify::event::AccessMode::Write
        ))
    )
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl TaskSource for MaildirSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "maildir"
    }

    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        let root = Maildir::new(&self.config.path);
        let created = tokio::task::spawn_blocking(move || root.create())
            .await
            .map_err(|e| SourceError::unavailable("maildir setup did not finish", e))?;
        if let Err(error) = created {
            let error = SourceError::unavailable(
                format!("cannot create maildir {}", self.config.path.display()),
                error,
            );
            self.record_error(&error);
            return Err(error);
        }

        let (tx, mut rx) = mpsc::channel::<()>(1);
        let _watcher = if self.config.watch {
            self.watch(tx)
        } else {
            None
        };
        {
            let mut state = self.state();
            state.watching = _watcher.is_some();
            state.running = true;
            // A fresh run (a restart, a resume) looks at everything again.
            state.published.clear();
        }
        info!(source = %self.name, path = %self.config.path.display(), watching = _watcher.is_some(), "maildir source started");

        let result = loop {
            if stop.is_stopped() {
                break Ok(());
            }
            if let Err(error) = self.scan(sink.as_ref()).await {
                self.record_error(&error);
                break Err(error);
            }
            tokio::select! {
                _ = stop.stopped() => break Ok(()),
                _ = rx.recv() => debug!(source = %self.name, "maildir changed"),
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        };
        let mut state = self.state();
        state.running = false;
        state.watching = false;
        result
    }

    fn status(&self) -> SourceStatus {
        let state = self.state();
        let mut details = BTreeMap::new();
        details.insert(
            "path".to_owned(),
            serde_json::json!(self.config.path.display().to_string()),
        );
        details.insert("watching".to_owned(), serde_json::json!(state.watching));
        details.insert("pending".to_owned(), serde_json::json!(state.pending));
        details.insert("scans".to_owned(), serde_json::json!(state.scans));
        details.insert(
            "poll_interval_seconds".to_owned(),
            serde_json::json!(self.config.poll_interval.as_secs_f64()),
        );
        SourceStatus {
            name: self.name.clone(),
            kind: "maildir".to_owned(),
            state: if state.running {
                SourceState::Running
            } else {
                SourceState::Stopped
            },
            produced: state.produced,
            errors: state.errors,
            last_error: state.last_error.clone(),
            last_success_age_seconds: state.last_success.map(|t| t.elapsed().as_secs_f64()),
            details,
        }
    }

    fn health(&self) -> Option<Arc<dyn HealthContributor>> {
        Some(Arc::new(MaildirHealth {
            component: format!("source:{}", self.name),
            config: Arc::clone(&self.config),
            state: Arc::clone(&self.state),
        }))
    }

    fn acknowledger(&self) -> Option<Arc<dyn SourceAcknowledger>> {
        Some(Arc::new(MaildirAcknowledger::new(Arc::clone(&self.config))))
    }
}

/// Up when the Maildir's directories are there and the last scan succeeded.
struct MaildirHealth {
    component: String,
    config: Arc<MaildirConfig>,
    state: Arc<Mutex<State>>,
}

#[async_trait]
impl HealthContributor for MaildirHealth {
    fn name(&self) -> &str {
        &self.component
    }

    async fn check(&self) -> ComponentHealth {
        let dirs_ok = ["new", "cur"]
            .iter()
            .all(|d| self.config.path.join(d).is_dir());
        let state = lock(&self.state);
        let status = if !dirs_ok || state.scan_failed {
            HealthStatus::Down
        } else if state.running && !state.watching && self.config.watch {
            // Working, but only by the periodic rescan.
            HealthStatus::Degraded
        } else {
            HealthStatus::Up
        };
        let mut health = ComponentHealth::new(&self.component, status)
            .with_detail("path", self.config.path.display().to_string())
            .with_detail("pending", state.pending)
            .with_detail("watching", state.watching);
        if let Some(age) = state.last_success.map(|t| t.elapsed().as_secs_f64()) {
            health = health.with_detail("last_scan_age_seconds", age);
        }
        if let Some(error) = &state.last_error {
            health = health.with_detail("last_error", error);
        }
        health
    }
}
