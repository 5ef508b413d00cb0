//! The scheduled source, its checkpoint file and its acknowledger.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jiff::Timestamp;
use runtime_contracts::{
    FinalOutcome, PublishOutcome, SCHEDULE_KIND, SCHEDULE_LOCAL_TICK_HEADER, SCHEDULE_TICK_HEADER,
    ScheduleStatus, SourceAcknowledger, SourceError, SourceStatus, StopSignal, Task, TaskSink,
    TaskSource,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::settings::{Misfire, ScheduleSpec};

/// A tick found up to this late is run as due, not treated as missed: a loaded machine
/// waking a little late must not make `misfire = "skip"` drop ticks.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(2);

/// Largest checkpoint file read (it holds two timestamps).
const MAX_STATE_BYTES: u64 = 4096;

/// How a source is run, beside its schedule.
#[derive(Clone, Debug)]
pub struct SourceOptions {
    /// Directory of the checkpoint file (`schedule-<name>.json`), created on first write.
    pub state_dir: PathBuf,
    /// At start, publish the last tick again when it was not seen finished: for a queue
    /// that loses its tasks with the process (the memory queue). A durable queue still
    /// holds that task, so it is left alone there.
    pub redeliver_unfinished: bool,
}

/// What the checkpoint file holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    /// The last tick handed to the queue (or skipped by `misfire`).
    last_tick: Option<Timestamp>,
    /// The latest tick whose task finished (succeeded or dead-lettered).
    last_finished: Option<Timestamp>,
    /// The last tick published (not one skipped by `misfire`): `/status`'s `last_run`.
    #[serde(default)]
    last_run: Option<Timestamp>,
}

#[derive(Default)]
struct Progress {
    /// Set once the checkpoint was read (the first `run`); later runs (resume, restart
    /// after an error) go on from memory.
    loaded: bool,
    checkpoint: Checkpoint,
    /// The checkpoint changed and was not written yet.
    dirty: bool,
    next: Option<Timestamp>,
    runs: u64,
    last_published: Option<Instant>,
    last_error: Option<String>,
}

struct Inner {
    spec: ScheduleSpec,
    file: PathBuf,
    progress: Mutex<Progress>,
    /// Writes of the checkpoint file, one at a time.
    write: tokio::sync::Mutex<()>,
    /// [`SourceOptions::redeliver_unfinished`].
    redeliver: bool,
}

/// A source that publishes one task per tick of a [`ScheduleSpec`].
///
/// Each task has route `spec.route`, the payload, the headers
/// [`SCHEDULE_TICK_HEADER`] and [`SCHEDULE_LOCAL_TICK_HEADER`], the origin `(name, tick)`
/// with the tick in RFC 3339 UTC and the unique key [`unique_key`]: a queue refuses a
/// second live task for one tick. The last tick is kept in a checkpoint file so that a restart neither repeats
/// a tick nor forgets the ones it missed (`misfire`).
#[derive(Clone)]
pub struct ScheduledSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ScheduledSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduledSource")
            .field("name", &self.inner.spec.name)
            .finish_non_exhaustive()
    }
}

/// The unique key of schedule `name`'s task for tick `t`: `schedule:<name>:<tick>`; a
/// queue adds nothing for it while that tick's task is live.
pub fn unique_key(name: &str, t: Timestamp) -> String {
    format!("schedule:{name}:{}", tick_key(t))
}

/// The origin key of the task for tick `t`: RFC 3339 in UTC.
pub fn tick_key(t: Timestamp) -> String {
    t.to_string()
}

impl ScheduledSource {
    /// A source for `spec`.
    pub fn new(spec: ScheduleSpec, options: SourceOptions) -> Self {
        let file = options
            .state_dir
            .join(format!("schedule-{}.json", spec.name));
        ScheduledSource {
            inner: Arc::new(Inner {
                spec,
                file,
                progress: Mutex::new(Progress::default()),
                write: tokio::sync::Mutex::new(()),
                redeliver: options.redeliver_unfinished,
            }),
        }
    }

    /// The checkpoint file.
    pub fn state_file(&self) -> &Path {
        &self.inner.file
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        lock(&self.inner.progress)
    }

    /// Reads the checkpoint once; the tick owed from before, if any.
    async fn load(&self) -> Result<Option<Timestamp>, SourceError> {
        if self.progress().loaded {
            return Ok(None);
        }
        let checkpoint = read_checkpoint(&self.inner.file).await?;
        let redeliver = self.inner.redeliver;
        let mut p = self.progress();
        p.loaded = true;
        p.checkpoint = match checkpoint {
            Some(c) => c,
            // A new schedule starts now: nothing before it was missed.
            None => Checkpoint {
                last_tick: Some(Timestamp::now()),
                ..Checkpoint::default()
            },
        };
        let owed = match (
            redeliver,
            p.checkpoint.last_tick,
            p.checkpoint.last_finished,
        ) {
            (true, Some(tick), finished) if checkpoint.is_some() && finished < Some(tick) => {
                Some(tick)
            }
            _ => None,
        };
        Ok(owed)
    }

    async fn persist(&self) -> Result<(), SourceError> {
        let _one = self.inner.write.lock().await;
        let checkpoint = {
            let p = self.progress();
            if !p.dirty {
                return Ok(());
            }
            p.checkpoint
        };
        write_checkpoint(&self.inner.file, &checkpoint).await?;
        let mut p = self.progress();
        if p.checkpoint == checkpoint {
            p.dirty = false;
        }
        Ok(())
    }

    fn cursor(&self) -> Timestamp {
        self.progress()
            .checkpoint
            .last_tick
            .unwrap_or_else(Timestamp::now)
    }

    /// Publishes the task of tick `t` (waiting while the queue is full); `false` when
    /// `stop` fired first (nothing published, the cursor unchanged).
    async fn publish(
        &self,
        sink: &Arc<dyn TaskSink>,
        stop: &Arc<dyn StopSignal>,
        t: Timestamp,
    ) -> Result<bool, SourceError> {
        let spec = &self.inner.spec;
        let key = tick_key(t);
        let task = Task::new(spec.route.clone(), spec.payload.clone())
            .with_origin(spec.name.clone(), key.clone())
            .with_unique_key(unique_key(&spec.name, t))
            .with_header(SCHEDULE_TICK_HEADER, key.clone())
            .with_header(SCHEDULE_LOCAL_TICK_HEADER, spec.schedule.local(t));
        let outcome = tokio::select! {
            outcome = sink.publish(task) => outcome,
            _ = stop.stopped() => return Ok(false),
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                self.progress().last_error = Some(error.to_string());
                return Err(error.into());
            }
        };
        {
            let mut p = self.progress();
            if outcome == PublishOutcome::Enqueued {
                p.runs += 1;
            }
            p.last_published = Some(Instant::now());
            if p.checkpoint.last_tick < Some(t) {
                p.checkpoint.last_tick = Some(t);
                p.dirty = true;
            }
            if p.checkpoint.last_run < Some(t) {
                p.checkpoint.last_run = Some(t);
                p.dirty = true;
            }
        }
        info!(schedule = %spec.name, tick = %key, ?outcome, "schedule ticked");
        self.persist().await?;
        Ok(true)
    }

    /// Handles ticks that passed while nothing ran (start, resume, a long wait for room in
    /// the queue), as `misfire` says.
    async fn catch_up(
        &self,
        sink: &Arc<dyn TaskSink>,
        stop: &Arc<dyn StopSignal>,
    ) -> Result<bool, SourceError> {
        let spec = &self.inner.spec;
        let cursor = self.cursor();
        let Ok(limit) = Timestamp::now().checked_sub(MISFIRE_GRACE) else {
            return Ok(true);
        };
        let Some(latest) = spec.schedule.latest_at_or_before(limit) else {
            return Ok(true);
        };
        if latest <= cursor {
            return Ok(true);
        }
        match spec.misfire {
            Misfire::Skip => {
                info!(schedule = %spec.name, latest_missed = %latest, "missed ticks skipped (misfire = skip)");
                {
                    let mut p = self.progress();
                    p.checkpoint.last_tick = Some(latest);
                    p.dirty = true;
                }
                self.persist().await?;
                Ok(true)
            }
            Misfire::Once => {
                info!(schedule = %spec.name, latest_missed = %latest, "running the latest missed tick once (misfire = once)");
                self.publish(sink, stop, latest).await
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn read_checkpoint(file: &Path) -> Result<Option<Checkpoint>, SourceError> {
    let unavailable = |e: std::io::Error| {
        SourceError::unavailable(
            format!("cannot read the schedule state {}", file.display()),
            e,
        )
    };
    match tokio::fs::metadata(file).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unavailable(e)),
        Ok(m) if m.len() > MAX_STATE_BYTES => {
            return Err(SourceError::Config(format!(
                "the schedule state {} is larger than {MAX_STATE_BYTES} bytes; not a state file",
                file.display()
            )));
        }
        Ok(_) => {}
    }
    let text = tokio::fs::read(file).await.map_err(unavailable)?;
    match serde_json::from_slice(&text) {
        Ok(c) => Ok(Some(c)),
        Err(error) => {
            // A torn or foreign file: start afresh rather than never run again.
            warn!(file = %file.display(), %error, "unreadable schedule state; starting from now");
            Ok(None)
        }
    }
}

async fn write_checkpoint(file: &Path, c: &Checkpoint) -> Result<(), SourceError> {
    let unavailable = |e: std::io::Error| {
        SourceError::unavailable(
            format!("cannot write the schedule state {}", file.display()),
            e,
        )
    };
    if let Some(dir) = file.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(unavailable)?;
    }
    let text = serde_json::to_vec(c).map_err(|e| SourceError::Config(e.to_string()))?;
    // Write beside, then rename: a crash leaves the old file or the new one, never half.
    let tmp = file.with_extension("json.tmp");
    tokio::fs::write(&tmp, &text).await.map_err(unavailable)?;
    tokio::fs::rename(&tmp, file).await.map_err(unavailable)?;
    Ok(())
}

#[async_trait]
impl TaskSource for ScheduledSource {
    fn name(&self) -> &str {
        &self.inner.spec.name
    }

    fn kind(&self) -> &str {
        SCHEDULE_KIND
    }

    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        if let Some(owed) = self.load().await? {
            info!(schedule = %self.inner.spec.name, tick = %owed, "publishing the last tick again: it was not seen finished");
            if !self.publish(&sink, &stop, owed).await? {
                return Ok(());
            }
        }
        // An earlier run may have stopped before writing.
        self.persist().await?;
        loop {
            if !self.catch_up(&sink, &stop).await? {
                return Ok(());
            }
            let cursor = self.cursor();
            let next = self.inner.spec.schedule.next_after(cursor);
            self.progress().next = next;
            let Some(next) = next else {
                // Nothing ever again (a cron's last date passed): idle until stopped.
                stop.stopped().await;
                return Ok(());
            };
            let wait = Timestamp::now()
                .duration_until(next)
                .try_into()
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.stopped() => return Ok(()),
            }
            // tokio's timer and the wall clock may disagree by a little: never early.
            if Timestamp::now() < next {
                continue;
            }
            if !self.publish(&sink, &stop, next).await? {
                return Ok(());
            }
        }
    }

    fn status(&self) -> SourceStatus {
        let spec = &self.inner.spec;
        let mut status = SourceStatus::new(spec.name.clone(), SCHEDULE_KIND);
        let p = self.progress();
        let schedule = ScheduleStatus {
            name: spec.name.clone(),
            next_run: p.next.map(tick_key),
            last_run: p.checkpoint.last_run.map(tick_key),
            runs_total: p.runs,
        };
        schedule.write_details(&mut status.details);
        let d = &mut status.details;
        d.insert("rule".into(), spec.describe.clone().into());
        d.insert("timezone".into(), zone_name(&spec.schedule).into());
        d.insert("route".into(), spec.route.clone().into());
        d.insert("misfire".into(), spec.misfire.as_str().into());
        if let Some(t) = p.checkpoint.last_finished {
            d.insert("last_finished".into(), tick_key(t).into());
        }
        status.last_success_age_seconds = p.last_published.map(|i| i.elapsed().as_secs_f64());
        status.last_error = p.last_error.clone();
        status
    }

    fn acknowledger(&self) -> Option<Arc<dyn SourceAcknowledger>> {
        Some(Arc::new(ScheduleAcknowledger {
            source: self.clone(),
        }))
    }
}

fn zone_name(s: &crate::schedule::Schedule) -> String {
    s.zone().iana_name().unwrap_or("UTC").to_owned()
}

/// Records that a tick's task finished (succeeded or dead-lettered), so a restart does
/// not publish it again.
pub struct ScheduleAcknowledger {
    source: ScheduledSource,
}

#[async_trait]
impl SourceAcknowledger for ScheduleAcknowledger {
    async fn acknowledge(&self, key: &str, outcome: &FinalOutcome) -> Result<(), SourceError> {
        let Ok(tick) = key.parse::<Timestamp>() else {
            // Not a key this source made: nothing of ours to record.
            warn!(schedule = %self.source.name(), key, "acknowledgement for an unknown tick key");
            return Ok(());
        };
        {
            let mut p = self.source.progress();
            // A standby's workers finish the leader's ticks too; its own source never
            // ran, so it has no checkpoint of its own to move (nor to overwrite).
            if !p.loaded {
                return Ok(());
            }
            if p.checkpoint.last_finished < Some(tick) {
                p.checkpoint.last_finished = Some(tick);
                p.dirty = true;
            }
        }
        if let FinalOutcome::DeadLettered { reason } = outcome {
            warn!(schedule = %self.source.name(), tick = key, %reason, "scheduled task dead-lettered");
        }
        self.source.persist().await
    }
}
