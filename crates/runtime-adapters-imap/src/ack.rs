//! The acknowledger: applies a task's final outcome to its message, over its own
//! connections (never the source's IDLE connection), from the origin key alone.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures_util::StreamExt;
use runtime_contracts::{ConfigError, FinalOutcome, SourceAcknowledger, SourceError};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::config::ImapConfig;
use crate::conn::{Caps, Connector, ImapError, Session, within};
use crate::key::{MessageKey, quote, uid_set};

/// The outcome tag that files a successful message in `rejected_folder`.
pub const TAG_REJECTED: &str = "rejected";

struct AckConn {
    session: Session,
    caps: Caps,
    /// The selected mailbox and its UIDVALIDITY.
    selected: Option<(String, u32)>,
    /// Folders known to exist (created or seen).
    folders: HashSet<String>,
}

/// Completes the mailbox side of a task:
///
/// * success: `\Seen`, then MOVE to `rejected_folder` when the handler tagged the outcome
///   `rejected` and that folder is set, else to `processed_folder` if set;
/// * dead-lettered: the failure keyword (`$OrderBotFailed` by default), then MOVE to
///   `failed_folder` if set.
///
/// Folders are created when missing; without the MOVE extension it copies, flags
/// `\Deleted` and expunges that UID (`UID EXPUNGE` with UIDPLUS). Idempotent: a message no
/// longer in its mailbox counts as done. When the mailbox's UIDVALIDITY changed since the
/// key was made, the message is found again by its Message-ID (part of the key); without
/// one, nothing can be identified safely and the outcome is logged and dropped.
///
/// Keeps `ack_connections` connections (each behind a mutex), reconnecting as needed; a
/// failure on a reused connection is retried once on a fresh one, so a connection the
/// server closed while unused does not cost a redelivery. Errors are
/// [`SourceError::Unavailable`] (the task is retried later).
pub struct ImapAcknowledger {
    source_name: String,
    connector: Connector,
    slots: Vec<Mutex<Option<AckConn>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for ImapAcknowledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapAcknowledger")
            .field("source_name", &self.source_name)
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

impl ImapAcknowledger {
    /// A standalone acknowledger (for a worker-only process) for tasks of the source named
    /// `source_name`.
    pub fn new(config: ImapConfig, source_name: impl Into<String>) -> Result<Self, ConfigError> {
        Ok(ImapAcknowledger::from_connector(
            Connector::new(config)?,
            source_name.into(),
        ))
    }

    pub(crate) fn from_connector(connector: Connector, source_name: String) -> Self {
        let slots = (0..connector.config.ack_connections.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        ImapAcknowledger {
            source_name,
            connector,
            slots,
            next: AtomicUsize::new(0),
        }
    }

    /// The name of the source whose tasks this acknowledges.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    async fn slot(&self) -> tokio::sync::MutexGuard<'_, Option<AckConn>> {
        for slot in &self.slots {
            if let Ok(guard) = slot.try_lock() {
                return guard;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        self.slots[i].lock().await
    }

    async fn connect(&self) -> Result<AckConn, ImapError> {
        let (session, caps) = self.connector.connect().await?;
        Ok(AckConn {
            session,
            caps,
            selected: None,
            folders: HashSet::new(),
        })
    }

    async fn apply(
        &self,
        conn: &mut AckConn,
        key: &MessageKey,
        outcome: &FinalOutcome,
    ) -> Result<(), ImapError> {
        let cfg = &self.connector.config;
        let t = cfg.command_timeout;
        let uidvalidity = match &conn.selected {
            Some((mailbox, v)) if *mailbox == key.mailbox => *v,
            _ => {
                conn.selected = None;
                let mbox = within(t, "select", conn.session.select(&key.mailbox)).await?;
                let v = mbox.uid_validity.ok_or_else(|| {
                    ImapError::Protocol(format!("mailbox {} has no UIDVALIDITY", key.mailbox))
                })?;
                conn.selected = Some((key.mailbox.clone(), v));
                v
            }
        };
        let candidates: Vec<u32> = if uidvalidity == key.uidvalidity {
            vec![key.uid]
        } else if let Some(mid) = &key.message_id {
            let query = format!("HEADER Message-ID {}", quote(mid));
            let mut found: Vec<u32> = within(t, "uid search", conn.session.uid_search(&query))
                .await?
                .into_iter()
                .collect();
            found.sort_unstable();
            debug!(source = %self.source_name, message_id = %mid, found = found.len(), "uidvalidity changed; found by message-id");
            found
        } else {
            warn!(source = %self.source_name, key = %key, "uidvalidity changed and message has no message-id; outcome not applied");
            return Ok(());
        };
        if candidates.is_empty() {
            debug!(source = %self.source_name, key = %key, "message no longer in mailbox; nothing to do");
            return Ok(());
        }
        let mut present = self.present(conn, &candidates).await?;
        if present.is_empty() {
            // The session may not know mail newer than its last sync yet.
            within(t, "noop", conn.session.noop()).await?;
            present = self.present(conn, &candidates).await?;
        }
        if present.is_empty() {
            debug!(source = %self.source_name, key = %key, "message no longer in mailbox; nothing to do");
            return Ok(());
        }
        let set = uid_set(&present);
        let (flag, folder) = match outcome {
            FinalOutcome::Succeeded { tag } => {
                let folder =
                    if tag.as_deref() == Some(TAG_REJECTED) && !cfg.rejected_folder.is_empty() {
                        &cfg.rejected_folder
                    } else {
                        &cfg.processed_folder
                    };
                ("\\Seen", folder)
            }
            FinalOutcome::DeadLettered { .. } => (cfg.failed_keyword.as_str(), &cfg.failed_folder),
        };
        self.store(conn, &set, &format!("+FLAGS.SILENT ({flag})"))
            .await?;
        if !folder.is_empty() && *folder != key.mailbox {
            self.move_to(conn, &set, folder).await?;
        }
        Ok(())
    }

    /// The UIDs among `uids` still in the selected mailbox.
    async fn present(&self, conn: &mut AckConn, uids: &[u32]) -> Result<Vec<u32>, ImapError> {
        let t = self.connector.config.command_timeout;
        within(t, "fetch uid", async {
            let mut out = Vec::new();
            let mut stream = conn.session.uid_fetch(uid_set(uids), "(UID)").await?;
            while let Some(f) = stream.next().await {
                if let Some(uid) = f?.uid
                    && uids.contains(&uid)
                {
                    out.push(uid);
                }
            }
            out.sort_unstable();
            out.dedup();
            Ok::<_, async_imap::error::Error>(out)
        })
        .await
    }

    async fn store(&self, conn: &mut AckConn, set: &str, what: &str) -> Result<(), ImapError> {
        let t = self.connector.config.command_timeout;
        within(t, "uid store", async {
            let mut stream = conn.session.uid_store(set, what).await?;
            // The stream must be drained to read the command's completion.
            while let Some(r) = stream.next().await {
                r?;
            }
            Ok::<_, async_imap::error::Error>(())
        })
        .await
    }

    async fn move_to(&self, conn: &mut AckConn, set: &str, folder: &str) -> Result<(), ImapError> {
        let t = self.connector.config.command_timeout;
        if !conn.folders.contains(folder) {
            // NO means it exists already (or cannot be made; then the move says so).
            match within(t, "create", conn.session.create(folder)).await {
                Ok(()) | Err(ImapError::Imap(async_imap::error::Error::No(_))) => {}
                Err(e) => return Err(e),
            }
            conn.folders.insert(folder.to_owned());
        }
        if conn.caps.mv {
            within(t, "uid move", conn.session.uid_mv(set, folder)).await?;
            return Ok(());
        }
        within(t, "uid copy", conn.session.uid_copy(set, folder)).await?;
        self.store(conn, set, "+FLAGS.SILENT (\\Deleted)").await?;
        let uidplus = conn.caps.uidplus;
        within(t, "expunge", async {
            // Without UIDPLUS only a plain EXPUNGE exists; it also removes other messages
            // flagged \Deleted in this mailbox, which is what \Deleted asks for anyway.
            if uidplus {
                let s = conn.session.uid_expunge(set).await?;
                let mut s = std::pin::pin!(s);
                while let Some(r) = s.next().await {
                    r?;
                }
            } else {
                let s = conn.session.expunge().await?;
                let mut s = std::pin::pin!(s);
                while let Some(r) = s.next().await {
                    r?;
                }
            }
            Ok::<_, async_imap::error::Error>(())
        })
        .await
    }
}

#[async_trait]
impl SourceAcknowledger for ImapAcknowledger {
    async fn acknowledge(&self, key: &str, outcome: &FinalOutcome) -> Result<(), SourceError> {
        // A key this adapter did not make will never work: not an outage.
        let key: MessageKey = key
            .parse()
            .map_err(|e: crate::key::ParseKeyError| SourceError::Config(e.to_string()))?;
        let mut slot = self.slot().await;
        let mut last_error = None;
        for _ in 0..2 {
            let fresh = slot.is_none();
            let conn = match slot.as_mut() {
                Some(conn) => conn,
                None => match self.connect().await {
                    Ok(conn) => slot.insert(conn),
                    Err(e) => {
                        last_error = Some(e);
                        break;
                    }
                },
            };
            match self.apply(conn, &key, outcome).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    *slot = None;
                    let retry = !fresh;
                    debug!(source = %self.source_name, error = %e, retry, "acknowledgement failed");
                    last_error = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        let error = last_error.unwrap_or(ImapError::Protocol("no attempt made".into()));
        warn!(source = %self.source_name, key = %key, error = %error, "imap acknowledgement failed");
        Err(SourceError::unavailable(
            format!("imap acknowledgement of {key} failed: {error}"),
            error,
        ))
    }
}
