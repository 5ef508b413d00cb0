//! A restart after missed ticks follows `misfire`; a restart right after a tick repeats
//! none.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use runtime_adapters_schedule::{Misfire, ScheduleSettings, ScheduledSource, SourceOptions};
use runtime_contracts::{
    FinalOutcome, PublishOutcome, QueueError, StopSignal, Task, TaskSink, TaskSource,
};
use runtime_testkit::runtime_core::StopToken;

/// Records what the source publishes; `published` tells each publish.
#[derive(Default)]
struct Sink {
    tasks: Mutex<Vec<Task>>,
    published: tokio::sync::Notify,
}

#[async_trait]
impl TaskSink for Sink {
    async fn publish(&self, task: Task) -> Result<PublishOutcome, QueueError> {
        self.tasks.lock().unwrap().push(task);
        self.published.notify_waiters();
        Ok(PublishOutcome::Enqueued)
    }
    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(self.publish(t).await?);
        }
        Ok(out)
    }
}

fn hourly(misfire: Misfire, dir: &std::path::Path, redeliver: bool) -> ScheduledSource {
    let spec = ScheduleSettings {
        name: "hourly".into(),
        cron: Some("0 * * * *".into()),
        timezone: "Europe/Berlin".into(),
        route: "report".into(),
        misfire,
        ..ScheduleSettings::default()
    }
    .spec("schedules[0]")
    .unwrap();
    ScheduledSource::new(
        spec,
        SourceOptions {
            state_dir: dir.to_owned(),
            redeliver_unfinished: redeliver,
        },
    )
}

/// The start of the current hour (the latest tick of an hourly cron), and two before it.
fn hours() -> (Timestamp, Timestamp) {
    let now = Timestamp::now();
    let ms = now.as_millisecond();
    let latest = Timestamp::from_millisecond(ms - ms.rem_euclid(3_600_000)).unwrap();
    let old = latest
        .checked_sub(jiff::SignedDuration::from_hours(2))
        .unwrap();
    (latest, old)
}

fn write_state(dir: &std::path::Path, last_tick: Timestamp, last_finished: Option<Timestamp>) {
    let state = serde_json::json!({ "last_tick": last_tick, "last_finished": last_finished });
    std::fs::write(dir.join("schedule-hourly.json"), state.to_string()).unwrap();
}

fn read_state(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("schedule-hourly.json")).unwrap())
        .unwrap()
}

/// Waits until the state file's `field` names `t` (it is written right after publish).
async fn wait_state(dir: &std::path::Path, field: &str, t: Timestamp) {
    for _ in 0..250 {
        if std::fs::read_to_string(dir.join("schedule-hourly.json")).is_ok()
            && read_state(dir)[field] == t.to_string()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the state file never showed {field} = {t}: {}",
        read_state(dir)
    );
}

fn run(source: &ScheduledSource, sink: &Arc<Sink>) -> (StopToken, tokio::task::JoinHandle<()>) {
    let stop = StopToken::new();
    let (source, sink2, signal): (ScheduledSource, Arc<dyn TaskSink>, Arc<dyn StopSignal>) =
        (source.clone(), sink.clone(), stop.signal());
    let join = tokio::spawn(async move {
        source.run(sink2, signal).await.unwrap();
    });
    (stop, join)
}

async fn wait_tasks(sink: &Sink, n: usize) -> Vec<Task> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let notified = sink.published.notified();
            if sink.tasks.lock().unwrap().len() >= n {
                return sink.tasks.lock().unwrap().clone();
            }
            notified.await;
        }
    })
    .await
    .expect("the source did not publish in time")
}

#[tokio::test]
async fn misfire_once_runs_the_latest_missed_tick_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (latest, old) = hours();
    // The process last ran two hours ago: two hourly ticks were missed.
    write_state(dir.path(), old, Some(old));
    let sink = Arc::new(Sink::default());
    let source = hourly(Misfire::Once, dir.path(), false);
    let (stop, join) = run(&source, &sink);
    let tasks = wait_tasks(&sink, 1).await;
    let key = &tasks[0].origin.as_ref().unwrap().key;
    assert_eq!(key, &latest.to_string(), "the latest missed tick, once");
    assert_eq!(
        tasks[0]
            .headers
            .get(runtime_contracts::SCHEDULE_LOCAL_TICK_HEADER),
        Some(
            latest
                .to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").unwrap())
                .to_string()
                .as_str()
        )
    );
    wait_state(dir.path(), "last_tick", latest).await;
    let status = runtime_contracts::ScheduleStatus::from_source(&source.status()).unwrap();
    assert_eq!(status.runs_total, 1);
    assert_eq!(
        status.last_run.as_deref(),
        Some(latest.to_string().as_str())
    );
    stop.stop();
    join.await.unwrap();

    // Started again at once: that tick is not run again.
    let again = Arc::new(Sink::default());
    let source = hourly(Misfire::Once, dir.path(), false);
    let (stop, join) = run(&source, &again);
    let status = wait_status(&source).await;
    assert!(status.next_run.is_some());
    assert!(again.tasks.lock().unwrap().is_empty(), "a tick ran twice");
    stop.stop();
    join.await.unwrap();
}

/// The status once the source computed its next tick (it has caught up).
async fn wait_status(source: &ScheduledSource) -> runtime_contracts::ScheduleStatus {
    for _ in 0..250 {
        let s = runtime_contracts::ScheduleStatus::from_source(&source.status()).unwrap();
        if s.next_run.is_some() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the source never computed its next tick");
}

#[tokio::test]
async fn misfire_skip_runs_nothing_for_missed_ticks_and_waits_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let (latest, old) = hours();
    write_state(dir.path(), old, Some(old));
    let sink = Arc::new(Sink::default());
    let source = hourly(Misfire::Skip, dir.path(), false);
    let (stop, join) = run(&source, &sink);
    let status = wait_status(&source).await;
    // The missed ticks are recorded as passed, and the next one is in the future.
    assert_eq!(read_state(dir.path())["last_tick"], latest.to_string());
    let next: Timestamp = status.next_run.unwrap().parse().unwrap();
    assert!(next > Timestamp::now());
    assert!(sink.tasks.lock().unwrap().is_empty(), "a missed tick ran");
    assert_eq!(status.last_run, None, "a skipped tick is no run");
    stop.stop();
    join.await.unwrap();
}

#[tokio::test]
async fn a_tick_lost_with_a_memory_queue_is_published_again_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (latest, _) = hours();
    // Published, never seen finished, and the queue died with the process.
    let before = latest
        .checked_sub(jiff::SignedDuration::from_hours(1))
        .unwrap();
    write_state(dir.path(), latest, Some(before));
    let sink = Arc::new(Sink::default());
    let source = hourly(Misfire::Skip, dir.path(), true);
    let (stop, join) = run(&source, &sink);
    let tasks = wait_tasks(&sink, 1).await;
    assert_eq!(tasks[0].origin.as_ref().unwrap().key, latest.to_string());
    // Its success is recorded, so the next start owes nothing.
    source
        .acknowledger()
        .unwrap()
        .acknowledge(&latest.to_string(), &FinalOutcome::Succeeded { tag: None })
        .await
        .unwrap();
    assert_eq!(read_state(dir.path())["last_finished"], latest.to_string());
    stop.stop();
    join.await.unwrap();
}
