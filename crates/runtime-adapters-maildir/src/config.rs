//! Configuration of a Maildir source.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
            max_message_bytes: 25 * 1024 * 1024,
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
}
