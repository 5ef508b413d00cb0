//! The source conformance suite over a real Dovecot, polling and IDLE.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use runtime_adapters_imap::{ImapConfig, ImapMode, MessageKey};
use runtime_contracts::{Task, TaskSource};
use runtime_testkit::dovecot::DovecotServer;
use runtime_testkit::source_conformance::SourceFixture;

use crate::support::{config, mail, source};

/// A Dovecot with one mailbox; items are messages tagged `m<n>` (their Message-ID).
pub struct Imap {
    server: DovecotServer,
    mode: ImapMode,
    next: AtomicU32,
    /// Tag -> UID, learnt from the tasks' origin keys.
    uids: Mutex<HashMap<String, u32>>,
}

impl Imap {
    pub async fn start(mode: ImapMode) -> Imap {
        Imap {
            server: DovecotServer::start().await.unwrap(),
            mode,
            next: AtomicU32::new(1),
            uids: Mutex::new(HashMap::new()),
        }
    }

    fn config(&self) -> ImapConfig {
        match self.mode {
            // Polls often, to tempt a flood of the same message.
            ImapMode::Poll => ImapConfig {
                poll_interval: Duration::from_millis(200),
                ..config(&self.server)
            },
            // Only IDLE can deliver within the suite's deadlines.
            _ => ImapConfig {
                poll_interval: Duration::from_secs(3600),
                rescan_interval: Duration::from_secs(3600),
                ..config(&self.server)
            },
        }
    }
}

#[async_trait]
impl SourceFixture for Imap {
    async fn source(&self) -> Arc<dyn TaskSource> {
        Arc::new(source("inbox", self.config(), self.mode))
    }

    async fn add_item(&self) -> Option<String> {
        let tag = format!("m{}", self.next.fetch_add(1, Ordering::SeqCst));
        self.server.append("INBOX", &mail(&tag)).await.unwrap();
        Some(tag)
    }

    fn item_of(&self, task: &Task) -> String {
        let Some(key) = task
            .origin
            .as_ref()
            .and_then(|o| o.key.parse::<MessageKey>().ok())
        else {
            return String::new();
        };
        let tag = key
            .message_id
            .as_deref()
            .and_then(|m| m.strip_prefix('<'))
            .and_then(|m| m.split('@').next())
            .unwrap_or_default()
            .to_owned();
        self.uids.lock().unwrap().insert(tag.clone(), key.uid);
        tag
    }

    async fn is_done(&self, item: &str) -> bool {
        let Some(uid) = self.uids.lock().unwrap().get(item).copied() else {
            return false;
        };
        // Done without a processed folder: flagged \Seen in place.
        self.server
            .messages("INBOX")
            .await
            .unwrap()
            .iter()
            .any(|m| m.uid == uid && m.has("\\Seen"))
    }

    fn latency(&self) -> Duration {
        // Dovecot reports new mail to IDLE about 500 ms after the APPEND.
        Duration::from_secs(3)
    }
}

mod poll {
    use super::*;
    runtime_testkit::source_conformance_tests!(Imap::start(ImapMode::Poll));
}

mod idle {
    use super::*;
    runtime_testkit::source_conformance_tests!(Imap::start(ImapMode::Idle));
}
