//! A recording sink, a stop signal, and Maildir helpers.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use runtime_contracts::{PublishOutcome, QueueError, StopSignal, Task, TaskSink};
use tokio::sync::Notify;

/// Records published tasks; refuses a second task with the same origin as a queue does
/// while the first is live.
#[derive(Default)]
pub struct RecordingSink {
    pub tasks: Mutex<Vec<Task>>,
    pub duplicates: AtomicU64,
    /// Per `publish_batch` call: (tasks, payload bytes).
    pub batches: Mutex<Vec<(usize, usize)>>,
    changed: Notify,
}

impl RecordingSink {
    pub fn keys(&self) -> Vec<String> {
        self.tasks
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.origin.as_ref().unwrap().key.clone())
            .collect()
    }

    /// Waits until at least `n` tasks were published (fails after 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Task> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.changed.notified();
            {
                let tasks = self.tasks.lock().unwrap();
                if tasks.len() >= n {
                    return tasks.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {n} tasks; have {:?}", self.keys());
            }
        }
    }
}

#[async_trait]
impl TaskSink for RecordingSink {
    async fn publish(&self, task: Task) -> Result<PublishOutcome, QueueError> {
        let outcome = {
            let mut tasks = self.tasks.lock().unwrap();
            if let Some(first) = tasks.iter().find(|t| t.origin == task.origin) {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                PublishOutcome::Duplicate { existing: first.id }
            } else {
                tasks.push(task);
                PublishOutcome::Enqueued
            }
        };
        self.changed.notify_waiters();
        Ok(outcome)
    }

    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
        let bytes = tasks.iter().map(|t| t.payload.len()).sum();
        self.batches.lock().unwrap().push((tasks.len(), bytes));
        let mut out = Vec::new();
        for task in tasks {
            out.push(self.publish(task).await?);
        }
        Ok(out)
    }
}

#[derive(Default)]
pub struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

#[async_trait]
impl StopSignal for Stop {
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
    async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

pub fn message(id: &str) -> String {
    format!("From: a@b.example\nMessage-ID: <{id}@b.example>\nSubject: {id}\n\nWIDGET-1 x 1\n")
}

/// Delivers like an MDA: write into tmp/, then rename into new/.
pub fn deliver(maildir: &Path, unique: &str, body: &str) -> PathBuf {
    let tmp = maildir.join("tmp").join(unique);
    std::fs::write(&tmp, body).unwrap();
    let new = maildir.join("new").join(unique);
    std::fs::rename(&tmp, &new).unwrap();
    new
}

/// File names in `dir` (sorted), empty when it does not exist.
pub fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

pub fn make_dirs(maildir: &Path) {
    for d in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
}

/// Counts WARN events whose message contains a text, on the thread it is installed on
/// (a current-thread test runtime runs the source there too).
pub struct WarnCounter {
    pub count: std::sync::Arc<AtomicU64>,
    needle: &'static str,
}

impl WarnCounter {
    /// Installs a counter for this thread; keep the guard alive.
    pub fn install(
        needle: &'static str,
    ) -> (std::sync::Arc<AtomicU64>, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::layer::SubscriberExt;
        let count = std::sync::Arc::new(AtomicU64::new(0));
        let layer = WarnCounter {
            count: count.clone(),
            needle,
        };
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        (count, guard)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WarnCounter {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if *event.metadata().level() != tracing::Level::WARN {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0.contains(self.needle) {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Waits until `check` holds (fails after 10 s), polling every few milliseconds.
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
