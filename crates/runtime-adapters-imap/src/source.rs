//! The source: one connection, one checkpoint, one fetch path, in two wait modes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_imap::imap_proto::{Response, Status};
use async_trait::async_trait;
use futures_util::StreamExt;
use runtime_contracts::{
    ComponentHealth, ConfigError, HealthContributor, HealthStatus, PublishOutcome, QueueError,
    SourceAcknowledger, SourceError, SourceState, SourceStatus, StopSignal, Task, TaskSink,
    TaskSource,
};
use tracing::{debug, info, warn};

use crate::ack::ImapAcknowledger;
use crate::config::ImapConfig;
use crate::conn::{Caps, Connector, ImapError, Reconnects, Session, within};
use crate::key::{MessageKey, message_id, uid_set};

/// Route of every task this source publishes.
pub const ROUTE: &str = "imap";
/// Task header: the message's UID.
pub const HEADER_UID: &str = "x-imap-uid";
/// Task header: the mailbox's UIDVALIDITY.
pub const HEADER_UIDVALIDITY: &str = "x-imap-uidvalidity";
/// Task header: the mailbox.
pub const HEADER_MAILBOX: &str = "x-imap-mailbox";
/// Task header: the message's size in bytes (RFC822.SIZE).
pub const HEADER_SIZE: &str = "x-source-size";
/// Task header, set only when the message was larger than `max_message_bytes`: its size.
/// The payload is then the message header alone. The contracts' shared name.
pub use runtime_contracts::OVERSIZE_HEADER as HEADER_OVERSIZE;

/// Most bytes of message bodies fetched by one command.
const FETCH_BYTES: u64 = 16 * 1024 * 1024;
/// What an oversized message's header is counted as against [`FETCH_BYTES`].
const OVERSIZED_HEADER_COST: u64 = 64 * 1024;

/// How the source waits for new mail between catch-ups.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImapMode {
    /// Search every `poll_interval`.
    Poll,
    /// IMAP IDLE (RFC 2177); falls back to polling when the server lacks it.
    Idle,
}

impl ImapMode {
    fn as_str(self) -> &'static str {
        match self {
            ImapMode::Poll => "poll",
            ImapMode::Idle => "idle",
        }
    }
}

/// The checkpoint: what was enqueued so far in which UIDVALIDITY epoch.
#[derive(Clone, Debug, Default)]
struct Checkpoint {
    uidvalidity: Option<u32>,
    /// Highest UID published (enqueued or refused as a duplicate).
    last_uid: u32,
    /// When all unseen mail was last searched, not only above `last_uid`.
    last_full_scan: Option<Instant>,
}

/// What status and health read; updated by the running loop.
#[derive(Debug)]
struct Shared {
    state: SourceState,
    connected: bool,
    active_mode: ImapMode,
    idle_supported: Option<bool>,
    produced: u64,
    duplicates: u64,
    errors: u64,
    last_error: Option<String>,
    last_success: Option<Instant>,
    last_server_message: Option<Instant>,
    checkpoint: Checkpoint,
    /// Catch-ups run (one per wake-up): shows an idle source is not spinning.
    cycles: u64,
    /// Times the IDLE wait woke (a server line, the re-issue or inactivity timer), also
    /// those that went back to waiting without a catch-up.
    idle_wakeups: u64,
}

struct Inner {
    name: String,
    mode: ImapMode,
    connector: Connector,
    shared: Mutex<Shared>,
    acknowledger: Arc<ImapAcknowledger>,
}

/// An IMAP source that watches one mailbox for unseen mail, by polling or IDLE.
///
/// `run` handles reconnects itself (exponential backoff with jitter, state `reconnecting`),
/// so it returns only when `stop` fires (`Ok`) or the queue is closed (`Err`); the
/// runtime's restart is a second line of defence, not the normal path.
#[derive(Clone)]
pub struct ImapSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ImapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSource")
            .field("name", &self.inner.name)
            .field("mode", &self.inner.mode)
            .field("connector", &self.inner.connector)
            .finish()
    }
}

/// The mailbox a connection watches, as the server names it (keys carry this name, so
/// the acknowledger selects it as it is), and its UIDVALIDITY.
struct Selected {
    mailbox: String,
    uidvalidity: u32,
}

enum Exit {
    Stopped,
}

enum CycleError {
    Imap(ImapError),
    Queue(QueueError),
}

impl From<ImapError> for CycleError {
    fn from(e: ImapError) -> Self {
        CycleError::Imap(e)
    }
}

impl From<async_imap::error::Error> for CycleError {
    fn from(e: async_imap::error::Error) -> Self {
        CycleError::Imap(e.into())
    }
}

impl ImapSource {
    /// A source named `name` (also its acknowledger's name). Fails on a bad config or an
    /// unreadable password or CA file; connects only in `run`.
    pub fn new(
        name: impl Into<String>,
        config: ImapConfig,
        mode: ImapMode,
    ) -> Result<ImapSource, ConfigError> {
        let name = name.into();
        let connector = Connector::new(config)?;
        let acknowledger = Arc::new(ImapAcknowledger::from_connector(
            connector.clone(),
            name.clone(),
        ));
        Ok(ImapSource {
            inner: Arc::new(Inner {
                name,
                mode,
                connector,
                shared: Mutex::new(Shared {
                    state: SourceState::Starting,
                    connected: false,
                    active_mode: mode,
                    idle_supported: None,
                    produced: 0,
                    duplicates: 0,
                    errors: 0,
                    last_error: None,
                    last_success: None,
                    last_server_message: None,
                    checkpoint: Checkpoint::default(),
                    cycles: 0,
                    idle_wakeups: 0,
                }),
                acknowledger,
            }),
        })
    }

    /// The configured mode.
    pub fn mode(&self) -> ImapMode {
        self.inner.mode
    }

    /// The acknowledger for this source's tasks, sharing its configuration (it opens its
    /// own connections).
    pub fn imap_acknowledger(&self) -> Arc<ImapAcknowledger> {
        self.inner.acknowledger.clone()
    }

    fn cfg(&self) -> &ImapConfig {
        &self.inner.connector.config
    }

    fn with_shared<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        let mut guard = match self.inner.shared.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn record_error(&self, message: String) {
        self.with_shared(|s| {
            s.errors += 1;
            s.last_error = Some(message);
        });
    }

    fn touch_server(&self, success: bool) {
        let now = Instant::now();
        self.with_shared(|s| {
            s.last_server_message = Some(now);
            if success {
                s.last_success = Some(now);
            }
        });
    }

    async fn run_loop(
        &self,
        sink: &dyn TaskSink,
        stop: &dyn StopSignal,
    ) -> Result<(), SourceError> {
        let cfg = self.cfg();
        let mut backoff = Reconnects::new(cfg.reconnect_min, cfg.reconnect_max);
        while !stop.is_stopped() {
            let result = tokio::select! {
                r = self.connection(sink, stop, &mut backoff) => r,
                _ = stop.stopped() => Ok(Exit::Stopped),
            };
            self.with_shared(|s| s.connected = false);
            match result {
                Ok(Exit::Stopped) => break,
                Err(CycleError::Queue(e)) if !e.is_transient() => {
                    self.record_error(format!("publish failed: {e}"));
                    return Err(SourceError::Queue(e));
                }
                Err(CycleError::Queue(e)) => {
                    warn!(source = %self.inner.name, error = %e, "publish failed; retrying");
                    self.record_error(format!("publish failed: {e}"));
                }
                Err(CycleError::Imap(e)) => {
                    warn!(source = %self.inner.name, error = %e, "imap connection failed; reconnecting");
                    self.record_error(e.to_string());
                }
            }
            self.with_shared(|s| s.state = SourceState::Reconnecting);
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.stopped() => break,
            }
        }
        self.with_shared(|s| {
            s.state = SourceState::Stopped;
            s.connected = false;
        });
        Ok(())
    }

    /// One connection's life: connect, select, then catch up and wait, until an error.
    async fn connection(
        &self,
        sink: &dyn TaskSink,
        stop: &dyn StopSignal,
        backoff: &mut Reconnects,
    ) -> Result<Exit, CycleError> {
        let cfg = self.cfg();
        let (mut session, caps) = self.inner.connector.connect().await?;
        // The configured path in the server's spelling, as for the acknowledger's folders.
        let name = caps.folder_name(&cfg.mailbox);
        let mailbox = within(cfg.command_timeout, "select", session.select(&name)).await?;
        let uidvalidity = mailbox
            .uid_validity
            .ok_or_else(|| ImapError::Protocol(format!("mailbox {name} has no UIDVALIDITY")))?;
        let mode = self.effective_mode(caps);
        self.with_shared(|s| {
            let cp = &mut s.checkpoint;
            if cp.uidvalidity.is_some_and(|v| v != uidvalidity) {
                // UIDs of the old epoch mean nothing now: rescan all unseen mail and rely
                // on the queue's origin dedupe and the idempotent handler.
                warn!(source = %self.inner.name, old = ?cp.uidvalidity, new = uidvalidity, "uidvalidity changed; rescanning");
                *cp = Checkpoint::default();
            }
            cp.uidvalidity = Some(uidvalidity);
            s.connected = true;
            s.state = SourceState::Running;
            s.active_mode = mode;
            s.idle_supported = Some(caps.idle);
        });
        self.touch_server(true);
        info!(source = %self.inner.name, mailbox = %name, uidvalidity, mode = mode.as_str(), "imap connected");
        let selected = Selected {
            mailbox: name,
            uidvalidity,
        };
        backoff.reset();

        loop {
            self.with_shared(|s| s.cycles += 1);
            if self.catch_up(&mut session, &selected, sink, stop).await? {
                break;
            }
            match mode {
                ImapMode::Poll => {
                    tokio::select! {
                        _ = tokio::time::sleep(cfg.poll_interval) => {}
                        _ = stop.stopped() => break,
                    }
                }
                ImapMode::Idle => {
                    let (s, stopped) = self.idle_wait(session, stop).await?;
                    session = s;
                    if stopped {
                        break;
                    }
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
        Ok(Exit::Stopped)
    }

    fn effective_mode(&self, caps: Caps) -> ImapMode {
        match self.inner.mode {
            ImapMode::Idle if !caps.idle => {
                warn!(source = %self.inner.name, "server lacks IDLE; polling instead");
                ImapMode::Poll
            }
            mode => mode,
        }
    }

    /// Searches from the checkpoint (or everything unseen, on a full rescan), fetches and
    /// publishes. Returns true if stop fired meanwhile.
    async fn catch_up(
        &self,
        session: &mut Session,
        selected: &Selected,
        sink: &dyn TaskSink,
        stop: &dyn StopSignal,
    ) -> Result<bool, CycleError> {
        let cfg = self.cfg();
        let (last_uid, full) = self.with_shared(|s| {
            let cp = &s.checkpoint;
            let full = cp
                .last_full_scan
                .is_none_or(|t| t.elapsed() >= cfg.rescan_interval);
            (cp.last_uid, full)
        });
        // NOOP first: some servers only show new mail to a session after a sync point.
        within(cfg.command_timeout, "noop", session.noop()).await?;
        let query = if full {
            format!("UNSEEN UNKEYWORD {}", cfg.failed_keyword)
        } else {
            format!(
                "UID {}:* UNSEEN UNKEYWORD {}",
                last_uid.saturating_add(1),
                cfg.failed_keyword
            )
        };
        let found = within(
            cfg.command_timeout,
            "uid search",
            session.uid_search(&query),
        )
        .await?;
        // `N:*` includes the highest UID even when it is below N: filter.
        let mut uids: Vec<u32> = found
            .into_iter()
            .filter(|&u| full || u > last_uid)
            .collect();
        uids.sort_unstable();
        if full {
            self.with_shared(|s| s.checkpoint.last_full_scan = Some(Instant::now()));
        }
        debug!(source = %self.inner.name, count = uids.len(), full, "uid search");
        for chunk in uids.chunks(cfg.fetch_batch) {
            if stop.is_stopped() {
                return Ok(true);
            }
            if self
                .fetch_and_publish(session, selected, chunk, sink, stop)
                .await?
            {
                return Ok(true);
            }
        }
        self.touch_server(true);
        Ok(stop.is_stopped())
    }

    /// Fetches one chunk of UIDs (sizes first, then bodies or, when oversized, headers)
    /// and publishes it in UID order. Returns true if stop fired while publishing.
    async fn fetch_and_publish(
        &self,
        session: &mut Session,
        selected: &Selected,
        uids: &[u32],
        sink: &dyn TaskSink,
        stop: &dyn StopSignal,
    ) -> Result<bool, CycleError> {
        let cfg = self.cfg();
        let t = cfg.command_timeout;
        let sizes = within(t, "fetch sizes", async {
            let mut out = Vec::new();
            let mut stream = session
                .uid_fetch(uid_set(uids), "(UID RFC822.SIZE)")
                .await?;
            while let Some(f) = stream.next().await {
                let f = f?;
                if let (Some(uid), Some(size)) = (f.uid, f.size) {
                    out.push((uid, u64::from(size)));
                }
            }
            Ok::<_, async_imap::error::Error>(out)
        })
        .await?;
        let mut sizes: Vec<(u32, u64)> = sizes
            .into_iter()
            .filter(|(uid, _)| uids.binary_search(uid).is_ok())
            .collect();
        sizes.sort_unstable();
        sizes.dedup_by_key(|(uid, _)| *uid);

        // Fetched and published in groups bounded by bytes, in UID order: a chunk of
        // large mail never sits in memory all at once (a message over the bound goes
        // alone).
        let mut start = 0;
        while start < sizes.len() {
            let mut end = start;
            let mut group_bytes = 0u64;
            while let Some((_, size)) = sizes.get(end) {
                // An oversized message costs its header only; 64 KiB is counted for it, so
                // a chunk of them cannot all be fetched at once either.
                let cost = if *size <= cfg.max_message_bytes {
                    *size
                } else {
                    OVERSIZED_HEADER_COST
                };
                if end > start && group_bytes + cost > FETCH_BYTES {
                    break;
                }
                group_bytes += cost;
                end += 1;
            }
            let group = &sizes[start..end];
            start = end;
            if self
                .fetch_group(session, selected, group, sink, stop)
                .await?
            {
                return Ok(true);
            }
        }
        if let Some(max) = uids.iter().max() {
            self.with_shared(|s| s.checkpoint.last_uid = s.checkpoint.last_uid.max(*max));
        }
        Ok(false)
    }

    /// Fetches one byte-bounded group (bodies, or headers when oversized) and publishes
    /// it in UID order. Returns true if stop fired while publishing.
    async fn fetch_group(
        &self,
        session: &mut Session,
        selected: &Selected,
        sizes: &[(u32, u64)],
        sink: &dyn TaskSink,
        stop: &dyn StopSignal,
    ) -> Result<bool, CycleError> {
        let cfg = self.cfg();
        let t = cfg.command_timeout;
        let uids = |oversized: bool| -> Vec<u32> {
            sizes
                .iter()
                .filter(|(_, size)| (*size > cfg.max_message_bytes) == oversized)
                .map(|(uid, _)| *uid)
                .collect()
        };
        let (small, big) = (uids(false), uids(true));
        let mut payloads: HashMap<u32, Vec<u8>> = HashMap::with_capacity(sizes.len());
        if !small.is_empty() {
            fetch_section(session, t, &small, "BODY.PEEK[]", false, &mut payloads).await?;
        }
        if !big.is_empty() {
            fetch_section(session, t, &big, "BODY.PEEK[HEADER]", true, &mut payloads).await?;
        }
        self.touch_server(true);

        let mut tasks = Vec::with_capacity(sizes.len());
        for (uid, size) in sizes {
            // A message expunged between search and fetch simply is not there.
            let Some(payload) = payloads.remove(uid) else {
                continue;
            };
            let key = MessageKey {
                mailbox: selected.mailbox.clone(),
                uidvalidity: selected.uidvalidity,
                uid: *uid,
                message_id: message_id(&payload),
            };
            let mut task = Task::new(ROUTE, payload)
                .with_origin(self.inner.name.clone(), key.to_string())
                .with_header(HEADER_UID, uid.to_string())
                .with_header(HEADER_UIDVALIDITY, selected.uidvalidity.to_string())
                .with_header(HEADER_MAILBOX, selected.mailbox.clone())
                .with_header(HEADER_SIZE, size.to_string());
            if *size > cfg.max_message_bytes {
                task = task.with_header(HEADER_OVERSIZE, size.to_string());
            }
            tasks.push(task);
        }
        if !tasks.is_empty() {
            let outcomes = tokio::select! {
                r = sink.publish_batch(tasks) => r.map_err(CycleError::Queue)?,
                _ = stop.stopped() => return Ok(true),
            };
            let enqueued = outcomes
                .iter()
                .filter(|o| **o == PublishOutcome::Enqueued)
                .count() as u64;
            let duplicates = outcomes.len() as u64 - enqueued;
            self.with_shared(|s| {
                s.produced += enqueued;
                s.duplicates += duplicates;
            });
            debug!(source = %self.inner.name, enqueued, duplicates, "published");
        }
        Ok(false)
    }

    /// Idles until the server reports a change, the re-issue deadline, a silent link, or
    /// stop. Returns the session (after `DONE`) and whether stop fired.
    async fn idle_wait(
        &self,
        session: Session,
        stop: &dyn StopSignal,
    ) -> Result<(Session, bool), CycleError> {
        let cfg = self.cfg();
        let mut handle = session.idle();
        within(cfg.command_timeout, "idle", handle.init()).await?;
        let reissue_at = tokio::time::Instant::now() + cfg.idle_reissue;
        let mut stopped = false;
        // The handle is read as a stream directly: every server line (also the
        // `* OK Still here` keepalive) is seen, which `wait_with_timeout` would hide.
        loop {
            let woke = tokio::select! {
                _ = stop.stopped() => {
                    stopped = true;
                    break;
                }
                _ = tokio::time::sleep_until(reissue_at) => {
                    debug!(source = %self.inner.name, "re-issuing idle");
                    None
                }
                next = tokio::time::timeout(cfg.idle_inactivity_timeout, handle.next()) => Some(next),
            };
            self.with_shared(|s| s.idle_wakeups += 1);
            let Some(next) = woke else { break };
            match next {
                Err(_) => {
                    // Silence: DONE below doubles as the probe; a dead link fails it.
                    debug!(source = %self.inner.name, "no server message while idling; probing");
                    break;
                }
                Ok(None) => {
                    return Err(ImapError::Protocol("connection closed while idling".into()).into());
                }
                Ok(Some(Err(e))) => return Err(ImapError::Io(e).into()),
                Ok(Some(Ok(resp))) => {
                    self.touch_server(true);
                    match resp.parsed() {
                        Response::Data {
                            status: Status::Bye,
                            ..
                        } => {
                            return Err(ImapError::Protocol(
                                "server closed the connection (BYE)".into(),
                            )
                            .into());
                        }
                        Response::Data {
                            status: Status::Ok, ..
                        }
                        | Response::Continue(_) => {}
                        // EXISTS, EXPUNGE, FETCH, ...: a hint; catch up from the checkpoint.
                        _ => break,
                    }
                }
            }
        }
        let session = within(cfg.command_timeout, "idle done", handle.done()).await?;
        self.touch_server(true);
        Ok((session, stopped))
    }

    fn health_bound(&self) -> Duration {
        let cfg = self.cfg();
        let active = self.with_shared(|s| s.active_mode);
        let wait = match active {
            ImapMode::Poll => cfg.poll_interval,
            ImapMode::Idle => cfg.idle_inactivity_timeout.min(cfg.idle_reissue),
        };
        wait.saturating_mul(2) + cfg.command_timeout
    }
}

async fn fetch_section(
    session: &mut Session,
    limit: Duration,
    uids: &[u32],
    section: &str,
    header: bool,
    out: &mut HashMap<u32, Vec<u8>>,
) -> Result<(), CycleError> {
    if uids.is_empty() {
        return Ok(());
    }
    let query = format!("(UID {section})");
    within(limit, "fetch messages", async {
        let mut stream = session.uid_fetch(uid_set(uids), &query).await?;
        while let Some(f) = stream.next().await {
            let f = f?;
            let data = if header { f.header() } else { f.body() };
            if let (Some(uid), Some(data)) = (f.uid, data) {
                out.insert(uid, data.to_vec());
            }
        }
        Ok::<_, async_imap::error::Error>(())
    })
    .await?;
    Ok(())
}

#[async_trait]
impl TaskSource for ImapSource {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> &str {
        match self.inner.mode {
            ImapMode::Poll => "imap-poll",
            ImapMode::Idle => "imap-idle",
        }
    }

    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        self.run_loop(sink.as_ref(), stop.as_ref()).await
    }

    fn status(&self) -> SourceStatus {
        let cfg = self.cfg();
        let mut status = SourceStatus::new(self.inner.name.clone(), self.kind());
        self.with_shared(|s| {
            status.state = s.state;
            status.produced = s.produced;
            status.errors = s.errors;
            status.last_error = s.last_error.clone();
            status.last_success_age_seconds = s.last_success.map(|t| t.elapsed().as_secs_f64());
            let mut d = BTreeMap::new();
            d.insert("mode".into(), s.active_mode.as_str().into());
            d.insert("configured_mode".into(), self.inner.mode.as_str().into());
            if let Some(idle) = s.idle_supported {
                d.insert("idle_supported".into(), idle.into());
            }
            d.insert("connected".into(), s.connected.into());
            d.insert("mailbox".into(), cfg.mailbox.clone().into());
            d.insert("uidvalidity".into(), s.checkpoint.uidvalidity.into());
            d.insert("last_uid".into(), s.checkpoint.last_uid.into());
            d.insert("duplicates".into(), s.duplicates.into());
            d.insert("cycles".into(), s.cycles.into());
            d.insert("idle_wakeups".into(), s.idle_wakeups.into());
            d.insert(
                "ack_refused".into(),
                self.inner.acknowledger.refused().into(),
            );
            d.insert(
                "last_server_message_age_seconds".into(),
                s.last_server_message
                    .map(|t| t.elapsed().as_secs_f64())
                    .into(),
            );
            status.details = d;
        });
        status
    }

    fn health(&self) -> Option<Arc<dyn HealthContributor>> {
        Some(Arc::new(ImapHealth {
            name: format!("source:{}", self.inner.name),
            source: self.clone(),
        }))
    }

    fn acknowledger(&self) -> Option<Arc<dyn SourceAcknowledger>> {
        Some(self.inner.acknowledger.clone())
    }
}

/// Up while connected with recent server activity; degraded when connected but stale;
/// down when disconnected.
struct ImapHealth {
    name: String,
    source: ImapSource,
}

#[async_trait]
impl HealthContributor for ImapHealth {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> ComponentHealth {
        let bound = self.source.health_bound();
        let (connected, age, mode, last_error) = self.source.with_shared(|s| {
            (
                s.connected,
                s.last_success.map(|t| t.elapsed()),
                s.active_mode,
                s.last_error.clone(),
            )
        });
        let status = match (connected, age) {
            (false, _) => HealthStatus::Down,
            (true, Some(age)) if age <= bound => HealthStatus::Up,
            (true, _) => HealthStatus::Degraded,
        };
        let mut h = ComponentHealth::new(self.name.clone(), status)
            .with_detail("connected", connected)
            .with_detail("mode", mode.as_str())
            .with_detail("last_success_age_seconds", age.map(|a| a.as_secs_f64()));
        if status != HealthStatus::Up
            && let Some(e) = last_error
        {
            h = h.with_detail("last_error", e);
        }
        h
    }
}
