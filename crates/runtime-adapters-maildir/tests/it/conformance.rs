//! The source conformance suite over a Maildir in a temporary directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use runtime_adapters_maildir::{MaildirConfig, MaildirSource};
use runtime_contracts::{Task, TaskSource};
use runtime_testkit::source_conformance::SourceFixture;

use crate::support::{deliver, make_dirs, message};

pub struct Maildir {
    _dir: tempfile::TempDir,
    path: PathBuf,
    next: AtomicU32,
}

impl Maildir {
    pub async fn start() -> Maildir {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail");
        make_dirs(&path);
        Maildir {
            _dir: dir,
            path,
            next: AtomicU32::new(1),
        }
    }
}

#[async_trait]
impl SourceFixture for Maildir {
    async fn source(&self) -> Arc<dyn TaskSource> {
        let mut config = MaildirConfig::new(&self.path);
        // The watcher sees new mail; the rescan looks again often, to tempt a flood.
        config.poll_interval = Duration::from_millis(200);
        Arc::new(MaildirSource::new(config, "inbox"))
    }

    async fn add_item(&self) -> Option<String> {
        let unique = format!(
            "{}.M{}.conformance",
            1_700_000_000u32 + self.next.fetch_add(1, Ordering::SeqCst),
            1
        );
        deliver(&self.path, &unique, &message(&unique));
        Some(unique)
    }

    fn item_of(&self, task: &Task) -> String {
        task.origin
            .as_ref()
            .map(|o| o.key.clone())
            .unwrap_or_default()
    }

    async fn is_done(&self, item: &str) -> bool {
        // Done without a processed folder: in cur/ with the Seen flag.
        let prefix = format!("{item}:2,");
        std::fs::read_dir(self.path.join("cur"))
            .map(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix(&prefix)
                        .is_some_and(|flags| flags.contains('S'))
                })
            })
            .unwrap_or(false)
    }

    fn latency(&self) -> Duration {
        Duration::from_secs(2)
    }
}

runtime_testkit::source_conformance_tests!(Maildir::start());
