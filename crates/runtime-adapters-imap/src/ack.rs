//! The acknowledger: applies a task's final outcome to its message, over its own
//! connections (never the source's IDLE connection), from the origin key alone.
//!
//! Concurrent acknowledgements are batched: each call queues its message and waits for
//! its answer, and whoever gets a connection takes every queued message with the same
//! mailbox, UIDVALIDITY and action and applies them together — one presence check, one
//! `UID STORE` for the whole set (and one move).
//!
//! At most one batch per mailbox runs at a time: the server serialises changes to a
//! mailbox anyway (Dovecot locks its index and, on Maildir, rescans the directory), so
//! parallel writers only wait on each other's locks. Measured on a 10,000-message Maildir
//! with 8 workers: 8 connections storing one message each took 13 ms per `UID STORE`;
//! one connection storing what queued meanwhile took 1.5 ms per batch of ~2.4 messages.

use std::collections::{HashSet, VecDeque};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use futures_util::StreamExt;
use runtime_contracts::{ConfigError, FinalOutcome, SourceAcknowledger, SourceError};
use tokio::sync::{Mutex, Notify, oneshot};
use tracing::{debug, warn};

use crate::config::ImapConfig;
use crate::conn::{Caps, Connector, ImapError, Session, within};
use crate::key::{MessageKey, quote, uid_set};

/// The outcome tag that files a successful message in `rejected_folder` (the contracts'
/// shared tag).
pub use runtime_contracts::REJECTED_TAG as TAG_REJECTED;

/// The flag a successful outcome sets.
const SEEN: &str = "\\Seen";

/// Most messages applied by one batch (bounds command length and one batch's time).
const MAX_BATCH: usize = 500;

struct AckConn {
    session: Session,
    caps: Caps,
    /// The selected mailbox and its UIDVALIDITY.
    selected: Option<(String, u32)>,
    /// Folders known to exist (created or seen).
    folders: HashSet<String>,
}

/// What an outcome does to its message: a flag to add, then a folder to move it to
/// (empty: it stays).
#[derive(Clone, PartialEq, Eq, Debug)]
struct Action {
    flag: String,
    folder: String,
}

type Answer = oneshot::Sender<Result<(), Arc<ImapError>>>;

/// Acknowledgements waiting for a connection, and the mailboxes a batch runs on now.
#[derive(Default)]
struct Queue {
    /// Oldest first.
    pending: VecDeque<Request>,
    busy: HashSet<String>,
}

/// What [`ImapAcknowledger::take_batch`] found.
enum Take<'a> {
    /// A batch to apply; the mailbox is busy until the guard drops.
    Batch(Vec<Request>, BusyGuard<'a>),
    /// Nothing queued: every request is in some caller's hands.
    Idle,
    /// Requests wait, but only for mailboxes a batch runs on now.
    Busy,
}

/// Marks a mailbox free again when its batch ends, however it ends (also when the caller
/// running it is cancelled).
struct BusyGuard<'a> {
    ack: &'a ImapAcknowledger,
    mailbox: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.ack.queue().busy.remove(&self.mailbox);
        self.ack.freed.notify_waiters();
    }
}

/// One queued acknowledgement.
struct Request {
    key: MessageKey,
    action: Action,
    answer: Answer,
}

impl Request {
    /// Whether `other` can go in the same batch as `self`.
    fn batches_with(&self, other: &Request) -> bool {
        self.key.mailbox == other.key.mailbox
            && self.key.uidvalidity == other.key.uidvalidity
            && self.action == other.action
    }
}

/// Completes the mailbox side of a task:
///
/// * success: `\Seen`; with a folder (`rejected_folder` when the handler tagged the
///   outcome `rejected` and that folder is set, else `processed_folder` if set) the MOVE
///   comes first and the copy is flagged `\Seen` in the folder (by its `COPYUID`), so the
///   source is never seen-but-unfiled; a copy a crash left unseen is flagged when the
///   task comes back (found by Message-ID);
/// * dead-lettered: the failure keyword (`failed_keyword`, which the application sets), then MOVE to
///   `failed_folder` if set.
///
/// Folders are created when missing; without the MOVE extension it copies, flags
/// `\Deleted` and expunges those UIDs (`UID EXPUNGE` with UIDPLUS). Idempotent: a message
/// no longer in its mailbox counts as done. When the mailbox's UIDVALIDITY changed since
/// the key was made, the message is found again by its Message-ID (part of the key);
/// without one, nothing can be identified safely and the outcome is logged and dropped.
///
/// Concurrent calls are batched, one batch per mailbox at a time (see the module docs);
/// each call still returns only after the server confirmed the commands that covered its
/// message. Keeps up to `ack_connections` connections (each behind a mutex; batches for
/// different mailboxes run on them in parallel), opened when first needed and
/// reconnecting as needed; a failure on a reused
/// connection is retried once on a fresh one, so a connection the server closed while
/// unused does not cost a redelivery. Errors are [`SourceError::Unavailable`] (the task is
/// retried later), or [`SourceError::Permanent`] when the server refused for good.
pub struct ImapAcknowledger {
    source_name: String,
    connector: Connector,
    slots: Vec<Mutex<Option<AckConn>>>,
    next: AtomicUsize,
    queue: std::sync::Mutex<Queue>,
    /// Signalled when a batch ends and its mailbox is free again.
    freed: Notify,
    /// Acknowledgements the server refused for good (see [`ImapAcknowledger::refused`]).
    refused: AtomicU64,
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
            queue: std::sync::Mutex::default(),
            freed: Notify::new(),
            refused: AtomicU64::new(0),
        }
    }

    /// The name of the source whose tasks this acknowledges.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// How many acknowledgements the server refused for good so far: each left its message
    /// unfiled and cost its task an attempt (the source's status shows it as
    /// `ack_refused`).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Only short, panic-free updates happen under it: it is never left half-changed.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enqueue(
        &self,
        key: &MessageKey,
        action: &Action,
    ) -> oneshot::Receiver<Result<(), Arc<ImapError>>> {
        let (answer, rx) = oneshot::channel();
        self.queue().pending.push_back(Request {
            key: key.clone(),
            action: action.clone(),
            answer,
        });
        rx
    }

    /// The oldest queued request whose mailbox is not busy and every other one that
    /// batches with it.
    fn take_batch(&self) -> Take<'_> {
        let mut guard = self.queue();
        let queue = &mut *guard;
        if queue.pending.is_empty() {
            return Take::Idle;
        }
        let Some(first) = queue
            .pending
            .iter()
            .position(|r| !queue.busy.contains(&r.key.mailbox))
            .and_then(|i| queue.pending.remove(i))
        else {
            return Take::Busy;
        };
        let mut batch = vec![first];
        let mut rest = VecDeque::with_capacity(queue.pending.len());
        for r in queue.pending.drain(..) {
            if batch.len() < MAX_BATCH && batch[0].batches_with(&r) {
                batch.push(r);
            } else {
                rest.push_back(r);
            }
        }
        queue.pending = rest;
        let mailbox = batch[0].key.mailbox.clone();
        queue.busy.insert(mailbox.clone());
        Take::Batch(batch, BusyGuard { ack: self, mailbox })
    }

    fn action(&self, outcome: &FinalOutcome) -> Action {
        let cfg = &self.connector.config;
        let (flag, folder) = match outcome {
            FinalOutcome::Succeeded { tag } => {
                let folder =
                    if tag.as_deref() == Some(TAG_REJECTED) && !cfg.rejected_folder.is_empty() {
                        &cfg.rejected_folder
                    } else {
                        &cfg.processed_folder
                    };
                (SEEN, folder)
            }
            FinalOutcome::DeadLettered { .. } => (cfg.failed_keyword.as_str(), &cfg.failed_folder),
        };
        Action {
            flag: flag.to_owned(),
            folder: folder.clone(),
        }
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

    /// Applies `batch` on the connection in `slot` (retrying once on a fresh connection
    /// when a reused one fails) and answers every request in it.
    async fn run_batch(&self, slot: &mut Option<AckConn>, batch: Vec<Request>) {
        let keys: Vec<&MessageKey> = batch.iter().map(|r| &r.key).collect();
        let action = &batch[0].action;
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
            match self.apply(conn, &keys, action).await {
                Ok(()) => {
                    for r in batch {
                        let _ = r.answer.send(Ok(()));
                    }
                    return;
                }
                Err(e) => {
                    *slot = None;
                    let retry = !fresh;
                    debug!(source = %self.source_name, error = %e, retry, messages = keys.len(), "acknowledgement failed");
                    last_error = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        let error = Arc::new(last_error.unwrap_or(ImapError::Protocol("no attempt made".into())));
        for r in batch {
            let _ = r.answer.send(Err(error.clone()));
        }
    }

    /// Applies `action` to the messages of `keys`, which share mailbox and UIDVALIDITY.
    async fn apply(
        &self,
        conn: &mut AckConn,
        keys: &[&MessageKey],
        action: &Action,
    ) -> Result<(), ImapError> {
        let Some(first) = keys.first() else {
            return Ok(());
        };
        let mailbox = &first.mailbox;
        let t = self.connector.config.command_timeout;
        let uidvalidity = self.select(conn, mailbox).await?;
        let mut candidates: Vec<u32> = Vec::with_capacity(keys.len());
        // Message-IDs of messages no longer in the mailbox (see `repair_copies`).
        let mut gone: Vec<&str> = Vec::new();
        if uidvalidity == first.uidvalidity {
            candidates.extend(keys.iter().map(|k| k.uid));
        } else {
            for key in keys {
                let Some(mid) = &key.message_id else {
                    warn!(source = %self.source_name, key = %key, "uidvalidity changed and message has no message-id; outcome not applied");
                    continue;
                };
                let query = format!("HEADER Message-ID {}", quote(mid));
                let found = within(t, "uid search", conn.session.uid_search(&query)).await?;
                debug!(source = %self.source_name, message_id = %mid, found = found.len(), "uidvalidity changed; found by message-id");
                if found.is_empty() {
                    gone.push(mid);
                }
                candidates.extend(found);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut present = Vec::new();
        if !candidates.is_empty() {
            present = self.present(conn, &candidates).await?;
        }
        if present.len() < candidates.len() {
            // The session may not know mail newer than its last sync yet.
            within(t, "noop", conn.session.noop()).await?;
            let missing: Vec<u32> = candidates
                .iter()
                .copied()
                .filter(|u| present.binary_search(u).is_err())
                .collect();
            present.extend(self.present(conn, &missing).await?);
            present.sort_unstable();
            present.dedup();
        }
        if uidvalidity == first.uidvalidity {
            gone.extend(
                keys.iter()
                    .filter(|k| present.binary_search(&k.uid).is_err())
                    .filter_map(|k| k.message_id.as_deref()),
            );
        }
        let folder = conn.caps.folder_name(&action.folder);
        if present.is_empty() {
            debug!(source = %self.source_name, key = %first, messages = keys.len(), "messages no longer in mailbox; nothing to do");
        } else {
            self.file(conn, &present, action, &folder).await?;
        }
        if action.flag == SEEN
            && !gone.is_empty()
            && !folder.is_empty()
            && folder != *mailbox
            && let Err(error) = self.repair_copies(conn, &folder, &gone).await
        {
            conn.selected = None;
            warn!(source = %self.source_name, folder = %folder, error = %error, "could not check filed copies");
        }
        Ok(())
    }

    /// Applies `action` to the messages `present` (UIDs in the selected mailbox), filing
    /// them in `folder` (the server's spelling; empty: they stay).
    async fn file(
        &self,
        conn: &mut AckConn,
        present: &[u32],
        action: &Action,
        folder: &str,
    ) -> Result<(), ImapError> {
        let set = uid_set(present);
        let in_place = conn.selected.as_ref().is_some_and(|(m, _)| m == folder);
        if folder.is_empty() || in_place {
            return self.store(conn, &set, &add_flag(&action.flag)).await;
        }
        if action.flag != SEEN {
            // The failure keyword first, so it travels with the move; should the move
            // fail, a message flagged in place is a visible dead letter, never produced
            // again.
            self.store(conn, &set, &add_flag(&action.flag)).await?;
            self.transfer(conn, &set, folder, false).await?;
            return Ok(());
        }
        // `\Seen` never goes on the source before the message is safely in its folder: a
        // seen message left behind (a move that failed, a connection lost in between)
        // would never be found again. So the message is moved (or copied, then flagged
        // `\Seen \Deleted` and expunged) first, and its copy flagged in the folder after;
        // should that last step not happen (a crash), the redelivery repairs it.
        let copies = self.transfer(conn, &set, folder, true).await?;
        if let Err(error) = self.flag_copies(conn, folder, &copies).await {
            // Filed already; only the copy's flag is missing: not worth a redelivery
            // (`repair_copies` would find it on one).
            conn.selected = None;
            warn!(source = %self.source_name, folder = %folder, error = %error, "filed, but could not flag the copy \\Seen");
        }
        Ok(())
    }

    /// Flags `\Seen` the unseen messages in `folder` with one of the Message-IDs `mids`:
    /// a message whose move went through but whose copy was not flagged yet (the process
    /// died in between) is gone from its mailbox when its task comes back, and is found
    /// here instead. Selects `folder`; a folder that does not exist holds nothing.
    async fn repair_copies(
        &self,
        conn: &mut AckConn,
        folder: &str,
        mids: &[&str],
    ) -> Result<(), ImapError> {
        let t = self.connector.config.command_timeout;
        // A fresh SELECT: the copy may have been filed over another connection since.
        conn.selected = None;
        match self.select(conn, folder).await {
            Ok(_) => {}
            Err(ImapError::Imap(async_imap::error::Error::No(_))) => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut unseen = Vec::new();
        for mid in mids {
            let query = format!("UNSEEN HEADER Message-ID {}", quote(mid));
            unseen.extend(within(t, "uid search", conn.session.uid_search(&query)).await?);
        }
        if unseen.is_empty() {
            return Ok(());
        }
        unseen.sort_unstable();
        unseen.dedup();
        debug!(source = %self.source_name, folder = %folder, messages = unseen.len(), "flagging filed copies left unseen");
        self.store(conn, &uid_set(&unseen), &add_flag(SEEN)).await
    }

    /// Flags the messages `copies` (UIDs in `folder`, from `COPYUID`) `\Seen`; selects
    /// `folder` for it.
    async fn flag_copies(
        &self,
        conn: &mut AckConn,
        folder: &str,
        copies: &[u32],
    ) -> Result<(), ImapError> {
        if copies.is_empty() {
            // Without UIDPLUS the server does not say where the copies went.
            debug!(source = %self.source_name, folder = %folder, "no COPYUID; the filed copies stay as copied");
            return Ok(());
        }
        self.select(conn, folder).await?;
        self.store(conn, &uid_set(copies), &add_flag(SEEN)).await
    }

    /// Selects `mailbox` unless it is selected already; returns its UIDVALIDITY.
    async fn select(&self, conn: &mut AckConn, mailbox: &str) -> Result<u32, ImapError> {
        if let Some((selected, v)) = &conn.selected
            && selected == mailbox
        {
            return Ok(*v);
        }
        conn.selected = None;
        let t = self.connector.config.command_timeout;
        let mbox = within(t, "select", conn.session.select(mailbox)).await?;
        let v = mbox
            .uid_validity
            .ok_or_else(|| ImapError::Protocol(format!("mailbox {mailbox} has no UIDVALIDITY")))?;
        conn.selected = Some((mailbox.to_owned(), v));
        Ok(v)
    }

    /// The UIDs among `uids` (sorted) still in the selected mailbox, sorted.
    async fn present(&self, conn: &mut AckConn, uids: &[u32]) -> Result<Vec<u32>, ImapError> {
        let t = self.connector.config.command_timeout;
        within(t, "fetch uid", async {
            let mut out = Vec::new();
            let mut stream = conn.session.uid_fetch(uid_set(uids), "(UID)").await?;
            while let Some(f) = stream.next().await {
                if let Some(uid) = f?.uid
                    && uids.binary_search(&uid).is_ok()
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

    /// Moves the messages of `set` to `folder` (created when missing): `UID MOVE`, or
    /// without MOVE `UID COPY`, then `\Deleted` (with `\Seen` too when `seen`) and
    /// expunge. Returns the copies' UIDs in `folder` when the server says (`COPYUID`).
    async fn transfer(
        &self,
        conn: &mut AckConn,
        set: &str,
        folder: &str,
        seen: bool,
    ) -> Result<Vec<u32>, ImapError> {
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
            return within(
                t,
                "uid move",
                copy_uids(&mut conn.session, "MOVE", set, folder),
            )
            .await;
        }
        let copies = within(
            t,
            "uid copy",
            copy_uids(&mut conn.session, "COPY", set, folder),
        )
        .await?;
        let flags = if seen {
            "(\\Seen \\Deleted)"
        } else {
            "(\\Deleted)"
        };
        self.store(conn, set, &format!("+FLAGS.SILENT {flags}"))
            .await?;
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
        .await?;
        Ok(copies)
    }
}

/// `+FLAGS.SILENT (<flag>)`.
fn add_flag(flag: &str) -> String {
    format!("+FLAGS.SILENT ({flag})")
}

/// Runs `UID <verb> <set> <folder>` (COPY or MOVE) and returns the destination UIDs from
/// its `COPYUID` code (RFC 4315; tagged for COPY, untagged for MOVE, RFC 6851), empty
/// when the server gives none. async-imap's own `uid_copy`/`uid_mv` drop that code.
async fn copy_uids(
    session: &mut Session,
    verb: &str,
    set: &str,
    folder: &str,
) -> Result<Vec<u32>, async_imap::error::Error> {
    use async_imap::error::Error;
    use async_imap::imap_proto::rfc4315::UidSetMember;
    use async_imap::imap_proto::{Response, ResponseCode, Status};

    let id = session
        .run_command(format!("UID {verb} {set} {}", quote(folder)))
        .await?;
    let mut copies = Vec::new();
    let mut collect = |code: &Option<ResponseCode<'_>>| {
        if let Some(ResponseCode::CopyUid(_, _, dst)) = code {
            for member in dst {
                match member {
                    UidSetMember::Uid(u) => copies.push(*u),
                    UidSetMember::UidRange(r) => copies.extend(r.clone()),
                }
            }
        }
    };
    loop {
        let Some(response) = session.read_response().await? else {
            return Err(Error::ConnectionLost);
        };
        match response.parsed() {
            Response::Data {
                status: Status::Ok,
                outcome,
            } => collect(&outcome.code),
            Response::Done {
                tag,
                status,
                outcome,
            } if *tag == id => {
                // Worded as async-imap words it, so `is_permanent` reads it the same.
                let why = || format!("code: {:?}, info: {:?}", outcome.code, outcome.information);
                return match status {
                    Status::Ok => {
                        collect(&outcome.code);
                        copies.sort_unstable();
                        Ok(copies)
                    }
                    Status::No => Err(Error::No(why())),
                    _ => Err(Error::Bad(why())),
                };
            }
            // EXPUNGE and the like: this connection keeps no sequence numbers.
            _ => {}
        }
    }
}

#[async_trait]
impl SourceAcknowledger for ImapAcknowledger {
    async fn acknowledge(&self, key: &str, outcome: &FinalOutcome) -> Result<(), SourceError> {
        // A key this adapter did not make will never work: not an outage.
        let key: MessageKey = key
            .parse()
            .map_err(|e: crate::key::ParseKeyError| SourceError::Config(e.to_string()))?;
        let action = self.action(outcome);
        let mut answer = self.enqueue(&key, &action);
        // Set once another caller holds our request: then only its answer is awaited.
        let mut taken = false;
        loop {
            let result = if taken {
                (&mut answer).await
            } else {
                // Armed before looking at the queue, so a batch ending in between wakes it.
                let mut freed = pin!(self.freed.notified());
                freed.as_mut().enable();
                let busy = tokio::select! {
                    biased;
                    result = &mut answer => Err(result),
                    mut slot = self.slot() => match self.take_batch() {
                        Take::Batch(batch, _busy) => {
                            // Not necessarily ours: the oldest first, then come back.
                            self.run_batch(&mut slot, batch).await;
                            Ok(false)
                        }
                        Take::Idle => {
                            taken = true;
                            Ok(false)
                        }
                        Take::Busy => Ok(true),
                    },
                };
                match busy {
                    Err(result) => result,
                    Ok(false) => continue,
                    // Wait (without holding a connection) for our answer or a free mailbox.
                    Ok(true) => tokio::select! {
                        biased;
                        result = &mut answer => result,
                        () = freed => continue,
                    },
                }
            };
            match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) if error.is_permanent() => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    warn!(source = %self.source_name, key = %key, error = %error, "imap acknowledgement refused for good");
                    return Err(SourceError::Permanent(format!(
                        "imap acknowledgement of {key} refused: {error}"
                    )));
                }
                Ok(Err(error)) => {
                    warn!(source = %self.source_name, key = %key, error = %error, "imap acknowledgement failed");
                    return Err(SourceError::unavailable(
                        format!("imap acknowledgement of {key} failed: {error}"),
                        error,
                    ));
                }
                // The caller that held it was cancelled before answering: queue it again
                // (acknowledging is idempotent).
                Err(_) => {
                    answer = self.enqueue(&key, &action);
                    taken = false;
                }
            }
        }
    }
}
