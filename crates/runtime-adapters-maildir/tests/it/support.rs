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
            if tasks.iter().any(|t| t.origin == task.origin) {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
                PublishOutcome::Duplicate
            } else {
                tasks.push(task);
                PublishOutcome::Enqueued
            }
        };
        self.changed.notify_waiters();
        Ok(outcome)
    }

    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
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
