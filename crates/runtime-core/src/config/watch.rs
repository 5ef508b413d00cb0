//! Reload triggers: config and secret files changing on disk, and SIGHUP.
//!
//! The watcher watches the *directories* of the files, not the files: editors and
//! Kubernetes replace a file by renaming a new one over it, which a watch on the old
//! inode would miss. Bursts of events (an editor writes, renames, chmods) are coalesced
//! into one reload after a short quiet period.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use runtime_contracts::{ConfigError, StopSignal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ConfigurationManager;

/// What triggers a reload.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Reload when a config file or a secret file changes.
    pub files: bool,
    /// Reload on SIGHUP (Unix).
    pub sighup: bool,
    /// Quiet time after the last file event before reloading.
    pub debounce: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            files: true,
            sighup: true,
            debounce: Duration::from_millis(200),
        }
    }
}

impl ConfigurationManager {
    /// Starts reloading on file changes and SIGHUP until `stop` fires, with
    /// [`WatchOptions::default`]. Call from inside a tokio runtime.
    pub fn spawn_watchers(
        self: &Arc<Self>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<JoinHandle<()>, ConfigError> {
        self.spawn_watchers_with(WatchOptions::default(), stop)
    }

    /// [`spawn_watchers`](Self::spawn_watchers) with explicit options.
    pub fn spawn_watchers_with(
        self: &Arc<Self>,
        options: WatchOptions,
        stop: Arc<dyn StopSignal>,
    ) -> Result<JoinHandle<()>, ConfigError> {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let targets: Arc<Mutex<BTreeSet<PathBuf>>> = Arc::default();
        let mut files = if options.files {
            let targets_cb = targets.clone();
            let watcher =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    let Ok(event) = event else { return };
                    if matches!(event.kind, EventKind::Access(_)) {
                        return;
                    }
                    let hit = match targets_cb.lock() {
                        Ok(t) => event.paths.iter().any(|p| t.contains(p)),
                        Err(_) => true,
                    };
                    if hit {
                        // Full channel = a reload is already pending; this event joins it.
                        let _ = tx.try_send(());
                    }
                })
                .map_err(|e| ConfigError::Load {
                    what: "config file watcher".to_owned(),
                    message: e.to_string(),
                })?;
            let mut fw = FileWatch {
                watcher,
                dirs: BTreeSet::new(),
                targets,
            };
            fw.update(&self.watch_paths());
            Some(fw)
        } else {
            None
        };
        #[cfg(unix)]
        let mut hangup = if options.sighup {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    return Err(ConfigError::Load {
                        what: "SIGHUP handler".to_owned(),
                        message: e.to_string(),
                    });
                }
            }
        } else {
            None
        };
        let manager = self.clone();
        Ok(tokio::spawn(async move {
            let stopped = stop.stopped();
            tokio::pin!(stopped);
            loop {
                #[cfg(unix)]
                let sighup = async {
                    match hangup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let sighup = std::future::pending::<Option<()>>();
                tokio::select! {
                    _ = &mut stopped => break,
                    Some(()) = rx.recv(), if files.is_some() => {
                        // Coalesce the rest of the burst.
                        loop {
                            tokio::select! {
                                more = rx.recv() => if more.is_none() { break },
                                _ = tokio::time::sleep(options.debounce) => break,
                            }
                        }
                        manager.reload_because("file change").await;
                    }
                    Some(()) = sighup => {
                        manager.reload_because("SIGHUP").await;
                    }
                }
                // Secret files may have been added or removed by the reload.
                if let Some(fw) = files.as_mut() {
                    fw.update(&manager.watch_paths());
                }
            }
            tracing::debug!("config watchers stopped");
        }))
    }
}

struct FileWatch {
    watcher: notify::RecommendedWatcher,
    dirs: BTreeSet<PathBuf>,
    targets: Arc<Mutex<BTreeSet<PathBuf>>>,
}

impl FileWatch {
    fn update(&mut self, paths: &[PathBuf]) {
        let mut targets = BTreeSet::new();
        for path in paths {
            let Some((dir, name)) = split(path) else {
                continue;
            };
            targets.insert(dir.join(name));
            if !self.dirs.contains(&dir) {
                match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.dirs.insert(dir);
                    }
                    Err(error) => {
                        tracing::warn!(dir = %dir.display(), %error, "cannot watch config directory")
                    }
                }
            }
        }
        if let Ok(mut t) = self.targets.lock() {
            *t = targets;
        }
    }
}

/// The canonical directory of a file and its name (events name files under the
/// canonical directory that was watched).
fn split(path: &Path) -> Option<(PathBuf, std::ffi::OsString)> {
    let name = path.file_name()?.to_owned();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((dir.canonicalize().ok()?, name))
}
