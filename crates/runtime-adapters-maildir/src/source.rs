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

use crate::ack::{MaildirAcknowledger, Refusals};
use crate::config::{MaildirConfig, path_problem};
use crate::maildir::{FileStamp, HEADER_READ_LIMIT, ListingCache, Maildir, MessageFile, read_file};
use crate::{OVERSIZE_HEADER, ROUTE};

/// Tasks published per `publish_batch` call.
const BATCH: usize = 100;

/// Produces one task per waiting message of a Maildir. See the crate docs.
pub struct MaildirSource {
    name: String,
    config: Arc<MaildirConfig>,
    state: Arc<Mutex<State>>,
    /// The last directory listings; only the scan (one at a time) uses it.
    listing: Arc<Mutex<ListingCache>>,
    /// Dead letters the acknowledger could not file.
    refusals: Refusals,
}

impl std::fmt::Debug for MaildirSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildirSource")
            .field("name", &self.name)
            .field("path", &self.config.path)
            .finish_non_exhaustive()
    }
}

/// A waiting message that could not become a task, reported once.
struct Failure {
    /// The entry version that failed; `None` for a dead letter the acknowledger could
    /// not file, which no new version of the file changes.
    stamp: Option<FileStamp>,
}

#[derive(Default)]
struct State {
    /// Unique name -> when it was last published.
    published: HashMap<String, Instant>,
    /// Unique name -> why it fails; not read again until the entry changes.
    failed: HashMap<String, Failure>,
    produced: u64,
    errors: u64,
    last_error: Option<String>,
    last_success: Option<Instant>,
    pending: u64,
    watching: bool,
    scans: u64,
    listings: u64,
    running: bool,
    /// False after a failed scan, until one succeeds.
    scan_failed: bool,
}

/// What reading one due message gave.
enum Read {
    Message {
        unique: String,
        bytes: Vec<u8>,
        size: u64,
        truncated: bool,
    },
    /// Failed before and unchanged since: already reported.
    StillFailed,
    /// Moved or deleted since the listing: not ours to publish now.
    Gone,
    Failed {
        unique: String,
        path: std::path::PathBuf,
        stamp: FileStamp,
        error: std::io::Error,
    },
}

/// Reads due messages from the front of `files` until the batch holds [`BATCH`] messages
/// or `budget` bytes (a message larger than the budget goes alone). Returns what was
/// read and how many of `files` that used.
fn read_batch(
    root: &Maildir,
    files: &[(MessageFile, Option<FileStamp>)],
    max_message_bytes: u64,
    budget: u64,
) -> (Vec<Read>, usize) {
    let mut out = Vec::new();
    let mut bytes = 0u64;
    let mut messages = 0usize;
    for (used, (file, failed)) in files.iter().enumerate() {
        if messages == BATCH {
            return (out, used);
        }
        let stamp = match FileStamp::of(&file.path) {
            Ok(stamp) => stamp,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push(Read::Gone);
                continue;
            }
            // No stamp to tell a new version by: reported the first time only.
            Err(_) if failed.is_some() => {
                out.push(Read::StillFailed);
                continue;
            }
            Err(error) => {
                out.push(Read::Failed {
                    unique: file.unique.clone(),
                    path: file.path.clone(),
                    stamp: FileStamp::default(),
                    error,
                });
                continue;
            }
        };
        if *failed == Some(stamp) {
            out.push(Read::StillFailed);
            continue;
        }
        let opened = root.open_message(&file.path).and_then(|f| {
            let size = f.metadata()?.len();
            Ok((f, size))
        });
        let (handle, size) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push(Read::Gone);
                continue;
            }
            Err(error) => {
                out.push(Read::Failed {
                    unique: file.unique.clone(),
                    path: file.path.clone(),
                    stamp,
                    error,
                });
                continue;
            }
        };
        let cost = if size <= max_message_bytes {
            size
        } else {
            HEADER_READ_LIMIT
        };
        if messages > 0 && bytes.saturating_add(cost) > budget {
            return (out, used);
        }
        match read_file(handle, max_message_bytes) {
            Ok((data, size, truncated)) => {
                bytes = bytes.saturating_add(data.len() as u64);
                messages += 1;
                out.push(Read::Message {
                    unique: file.unique.clone(),
                    bytes: data,
                    size,
                    truncated,
                });
            }
            Err(error) => out.push(Read::Failed {
                unique: file.unique.clone(),
                path: file.path.clone(),
                stamp,
                error,
            }),
        }
    }
    (out, files.len())
}

impl MaildirSource {
    /// A source named `name` (its registered name, also its acknowledger's).
    pub fn new(config: MaildirConfig, name: impl Into<String>) -> Self {
        MaildirSource {
            name: name.into(),
            config: Arc::new(config),
            state: Arc::new(Mutex::new(State::default())),
            listing: Arc::new(Mutex::new(ListingCache::default())),
            refusals: Refusals::default(),
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

    /// Reports a message that cannot become a task: once per entry version, as a
    /// warning, an error in the status and a `failed` count while it stays.
    fn record_failure(
        &self,
        state: &mut State,
        unique: String,
        stamp: Option<FileStamp>,
        reason: String,
    ) {
        warn!(source = %self.name, key = %unique, %reason, "maildir message failed, not producing it");
        state.errors += 1;
        state.last_error = Some(reason);
        state.published.remove(&unique);
        state.failed.insert(unique, Failure { stamp });
    }

    /// One scan: lists waiting messages and publishes those not published recently.
    async fn scan(&self, sink: &dyn TaskSink) -> Result<(), SourceError> {
        let root = Maildir::new(&self.config.path);
        let listing = Arc::clone(&self.listing);
        let (pending, listings) = tokio::task::spawn_blocking(move || {
            let mut cache = listing.lock().unwrap_or_else(|p| p.into_inner());
            root.pending_cached(&mut cache)
                .map(|p| (p, cache.listings()))
        })
        .await
        .map_err(|e| SourceError::unavailable("maildir scan did not finish", e))?
        .map_err(|e| {
            SourceError::unavailable(
                format!("cannot list maildir {}", self.config.path.display()),
                e,
            )
        })?;
        let refused: Vec<(String, String)> = lock_refusals(&self.refusals).drain().collect();

        let now = Instant::now();
        let due: Vec<_> = {
            let mut state = self.state();
            state.listings = listings;
            // Forget what is no longer waiting (filed by an acknowledger, deleted).
            let waiting: std::collections::HashSet<&str> =
                pending.iter().map(|f| f.unique.as_str()).collect();
            state.published.retain(|k, _| waiting.contains(k.as_str()));
            state.failed.retain(|k, _| waiting.contains(k.as_str()));
            for (key, reason) in refused {
                if waiting.contains(key.as_str()) {
                    let reason = format!("dead letter cannot be filed: {reason}");
                    self.record_failure(&mut state, key, None, reason);
                }
            }
            state.pending = pending.len() as u64;
            pending
                .into_iter()
                .filter_map(|f| {
                    let failed = match state.failed.get(&f.unique) {
                        Some(Failure { stamp: None }) => return None,
                        Some(Failure { stamp }) => *stamp,
                        None => None,
                    };
                    let recent = state
                        .published
                        .get(&f.unique)
                        .is_some_and(|at| now.duration_since(*at) < self.config.republish_after);
                    (!recent).then_some((f, failed))
                })
                .collect()
        };

        let due = Arc::new(due);
        let mut next = 0;
        while next < due.len() {
            let (root, files) = (Maildir::new(&self.config.path), Arc::clone(&due));
            let (max, budget) = (self.config.max_message_bytes, self.config.max_batch_bytes);
            let (read, used) =
                tokio::task::spawn_blocking(move || read_batch(&root, &files[next..], max, budget))
                    .await
                    .map_err(|e| SourceError::unavailable("maildir read did not finish", e))?;
            next += used.max(1);

            let mut tasks = Vec::with_capacity(read.len());
            let mut keys = Vec::with_capacity(read.len());
            for item in read {
                match item {
                    Read::Message {
                        unique,
                        bytes,
                        size,
                        truncated,
                    } => {
                        let mut task = Task::new(ROUTE, bytes).with_origin(&self.name, &unique);
                        if truncated {
                            info!(source = %self.name, key = %unique, size, "message over the size limit, publishing its header only");
                            task = task.with_header(OVERSIZE_HEADER, size.to_string());
                        }
                        tasks.push(task);
                        keys.push(unique);
                    }
                    Read::StillFailed | Read::Gone => {}
                    Read::Failed {
                        unique,
                        path,
                        stamp,
                        error,
                    } => {
                        // One unreadable file must not stop the others.
                        let reason = format!("cannot read {}: {error}", path.display());
                        self.record_failure(&mut self.state(), unique, Some(stamp), reason);
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
                state.failed.remove(&key);
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

fn lock_refusals(refusals: &Refusals) -> MutexGuard<'_, HashMap<String, String>> {
    refusals
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
        if let Some(problem) = path_problem(&self.config.path) {
            let error = SourceError::Config(format!(
                "maildir path {}: {problem}",
                self.config.path.display()
            ));
            self.record_error(&error);
            return Err(error);
        }
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
            // A scan waiting for room in a full queue ends with the stop: what it had not
            // published is still in the directory for the next run.
            let scanned = tokio::select! {
                r = self.scan(sink.as_ref()) => r,
                _ = stop.stopped() => break Ok(()),
            };
            if let Err(error) = scanned {
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
        // Full directory readings: an idle source answers its scans from the cache.
        details.insert("listings".to_owned(), serde_json::json!(state.listings));
        // Waiting messages that cannot become tasks (each reported once).
        details.insert("failed".to_owned(), serde_json::json!(state.failed.len()));
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
        Some(Arc::new(MaildirAcknowledger::with_refusals(
            Arc::clone(&self.config),
            Arc::clone(&self.refusals),
        )))
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
