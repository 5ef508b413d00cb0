//! Configuration of a Maildir source.

use std::path::PathBuf;
use std::time::Duration;

use runtime_contracts::{ConfigError, ConfigIssue};
use serde::{Deserialize, Serialize};

/// Default of `max_batch_bytes`: 16 MiB.
pub(crate) const DEFAULT_MAX_BATCH_BYTES: u64 = 16 * 1024 * 1024;

/// Where the Maildir is and how to watch it. Folder names are Maildir++ sub-folders of
/// `path` (`"Processed"` is `path/.Processed`); empty means "stay in this Maildir".
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaildirConfig {
    /// The Maildir (the directory holding `tmp`, `new` and `cur`); created if missing.
    pub path: PathBuf,
    /// Periodic rescan, the safety net behind the file watcher.
    #[serde(with = "runtime_contracts::duration")]
    pub poll_interval: Duration,
    /// Watch the directories for changes (otherwise only the periodic rescan runs).
    pub watch: bool,
    /// A message still waiting after this long is published again (the queue drops it
    /// if its task is still live); covers a task lost by a queue without durability.
    #[serde(with = "runtime_contracts::duration")]
    pub republish_after: Duration,
    /// Larger messages are published as their header only, with a size header.
    pub max_message_bytes: u64,
    /// Most message bytes read into memory for one published batch (next to the count
    /// limit of 100); a single message larger than this still goes, alone.
    pub max_batch_bytes: u64,
    /// Sub-folder for messages processed successfully.
    pub processed_folder: String,
    /// Sub-folder for successes tagged `rejected`.
    pub rejected_folder: String,
    /// Sub-folder for dead-lettered messages.
    pub failed_folder: String,
}

impl Default for MaildirConfig {
    fn default() -> Self {
        MaildirConfig {
            path: PathBuf::from("./var/maildir"),
            poll_interval: Duration::from_secs(30),
            watch: true,
            republish_after: Duration::from_secs(300),
            max_message_bytes: runtime_contracts::DEFAULT_MAX_MESSAGE_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            processed_folder: String::new(),
            rejected_folder: String::new(),
            failed_folder: String::new(),
        }
    }
}

impl MaildirConfig {
    /// A configuration for `path` with defaults for everything else.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        MaildirConfig {
            path: path.into(),
            ..MaildirConfig::default()
        }
    }

    /// Checks the values: every problem, keyed by its name in this section. A `path` that
    /// exists but is not a directory is refused here, before anything starts, rather than
    /// by a source that would retry creating it for ever.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        let mut bad = |key: &str, value: String, message: String| {
            issues.push(ConfigIssue {
                key: key.to_owned(),
                origin: None,
                value: Some(value),
                message,
            });
        };
        if let Some(problem) = path_problem(&self.path) {
            bad("path", self.path.display().to_string(), problem);
        }
        if self.poll_interval.is_zero() {
            bad("poll_interval", "0s".into(), "must be above zero".into());
        }
        for (key, value) in [
            ("max_message_bytes", self.max_message_bytes),
            ("max_batch_bytes", self.max_batch_bytes),
        ] {
            if value == 0 {
                bad(key, "0".into(), "must be above zero".into());
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }
}

/// Why `path` cannot be a Maildir, if it cannot: it, or the directory it would be
/// created in, is something other than a directory. Missing is fine (it is created).
pub(crate) fn path_problem(path: &std::path::Path) -> Option<String> {
    if path.as_os_str().is_empty() {
        return Some("a Maildir directory is required".to_owned());
    }
    // The nearest part of the path that exists must be a directory.
    let existing = path
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && std::fs::symlink_metadata(p).is_ok())?;
    match std::fs::metadata(existing) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) if existing == path => Some("is a file, not a Maildir directory".to_owned()),
        Ok(_) => Some(format!(
            "{} is a file, so no Maildir can be created under it",
            existing.display()
        )),
        Err(e) => Some(format!("cannot be used: {e}")),
    }
}
