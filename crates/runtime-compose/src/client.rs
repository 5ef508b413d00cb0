//! A client that enqueues typed jobs from a process that does not run the runtime (a web
//! handler, a script, another service).
//!
//! It builds its queue from the same `[queue]` keys as the runtime, through the same
//! [`plan`](crate::plan), so `queue.backend` picks the backend here too and a config the
//! runtime accepts works for the client unchanged. It only publishes: it starts no
//! worker, no source and no background task.
//!
//! Why a module here and not a crate of its own: the client's whole job is "the queue
//! this config chooses", which is composition's; a separate crate would depend on this
//! one for it and add a layer to the rules without adding a boundary.
//!
//! ```no_run
//! # async fn demo(snapshot: runtime_contracts::ConfigSnapshot) -> Result<(), Box<dyn std::error::Error>> {
//! use runtime_compose::client::{Client, EnqueueOptions};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Resize { width: u32 }
//! # impl runtime_contracts::Job for Resize { const ROUTE: &'static str = "resize"; }
//!
//! let client = Client::from_config(&snapshot, "my-web-app")?;
//! let done = client.enqueue(&Resize { width: 64 }).await?;
//! println!("enqueued {}", done.id);
//! let later = EnqueueOptions::default().delay(std::time::Duration::from_secs(60));
//! client.enqueue_with(&Resize { width: 32 }, &later).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use runtime_contracts::{
    ConfigSnapshot, EncodeError, Job, PublishOutcome, QueueError, Task, TaskId, TaskQueue,
    TraceContext,
};
use serde::Serialize;

use crate::ComposeError;

/// Tasks per `publish_batch` call: bounds one round trip (one Redis script call) however
/// long the caller's list is.
pub const MAX_BATCH: usize = 500;

/// How to enqueue a job beyond its payload.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct EnqueueOptions {
    /// Deliver no earlier than this long from now.
    pub delay: Option<Duration>,
    /// Enqueue nothing while a live task with this key exists (pending, delayed,
    /// running or dead); the answer then names that task. At most
    /// [`MAX_UNIQUE_KEY_BYTES`](runtime_contracts::MAX_UNIQUE_KEY_BYTES), not empty.
    pub unique_key: Option<String>,
    /// Extra task headers (name, value).
    pub headers: Vec<(String, String)>,
    /// The trace the task continues (a web request's, say); a new one when `None`.
    pub trace: Option<TraceContext>,
}

impl EnqueueOptions {
    /// Delays the first delivery.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Makes the task unique by `key` (see the queue's unique publish).
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Adds a task header (for example a pool's concurrency key).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Continues `trace` (the task's spans become its children).
    pub fn trace(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }
}

/// What an enqueue did. Serializes as `{"id": "...", "duplicate": false}`, the same
/// shape as the control plane's `POST /admin/queues/{queue}/tasks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The id of the task in the queue for this job: the new task's, or on a duplicate
    /// the id of the live task it matched.
    pub id: TaskId,
    /// True when the queue already held a live task for the same key and added nothing.
    pub duplicate: bool,
}

/// Why an enqueue failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The job does not serialize.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The queue refused or cannot be reached ([`QueueError::is_transient`] says whether
    /// trying again later may help).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Enqueues jobs into one queue. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Client {
    queue: Arc<dyn TaskQueue>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("queue", &self.queue.name())
            .field("backend", &self.queue.backend())
            .finish()
    }
}

impl Client {
    /// A client over a queue built elsewhere (in the runtime's own process: the queue
    /// given to `RuntimeManager::builder`, which is the only way to reach a memory queue).
    pub fn new(queue: Arc<dyn TaskQueue>) -> Client {
        Client { queue }
    }

    /// A client over the queue `[queue]` of `snapshot` chooses, planned and checked like
    /// the runtime's ([`plan`](crate::plan)). A Redis queue connects on first use.
    ///
    /// # Errors
    /// [`ComposeError::Config`] for a bad config, and for `queue.backend = "memory"`: a
    /// memory queue lives inside one process, so a client elsewhere would fill a queue
    /// nobody reads; [`ComposeError::Setup`] when the queue cannot be set up.
    pub fn from_config(
        snapshot: &ConfigSnapshot,
        service_name: &str,
    ) -> Result<Client, ComposeError> {
        let plan = crate::plan(snapshot, service_name)?;
        #[cfg(feature = "memory")]
        if plan.queue.backend()
            == <runtime_adapters_memory::MemoryQueueSettings as runtime_contracts::QueueBackendSettings>::BACKEND
        {
            return Err(runtime_contracts::ConfigError::invalid(
                "queue.backend",
                "\"memory\" lives inside one process, so a client in another process cannot reach it; \
                 use a shared backend (\"redis\"), or Client::new with the runtime's own queue",
            )
            .into());
        }
        Ok(Client::new(plan.build_queue()?))
    }

    /// The queue this client publishes to.
    pub fn queue(&self) -> &Arc<dyn TaskQueue> {
        &self.queue
    }

    /// The task that carries `job` with `options`, without enqueuing it (for
    /// [`Client::enqueue_tasks`] with jobs of several types).
    ///
    /// # Errors
    /// [`ClientError::Encode`], or [`ClientError::Queue`] with [`QueueError::Invalid`] for
    /// a unique key the queue would refuse (empty, too long).
    pub fn task<J: Job>(job: &J, options: &EnqueueOptions) -> Result<Task, ClientError> {
        let mut task = Task::from_job(job)?;
        for (name, value) in &options.headers {
            task.headers.insert(name.clone(), value.clone());
        }
        if let Some(trace) = &options.trace {
            task.set_trace_context(trace);
        }
        if let Some(delay) = options.delay {
            task = task.with_delay(delay);
        }
        if let Some(key) = &options.unique_key {
            task = task.with_unique_key(key.clone());
        }
        // The queue refuses these too; refusing here names the job before any I/O.
        task.check_publishable()?;
        Ok(task)
    }

    /// Enqueues `job` to run as soon as a worker is free.
    ///
    /// # Errors
    /// [`ClientError`]: the job does not encode, or the queue failed.
    pub async fn enqueue<J: Job>(&self, job: &J) -> Result<Enqueued, ClientError> {
        self.enqueue_with(job, &EnqueueOptions::default()).await
    }

    /// Enqueues `job` with `options` (delay, unique key, headers, trace).
    ///
    /// # Errors
    /// [`ClientError`]: the job does not encode, an option is invalid, or the queue
    /// failed.
    pub async fn enqueue_with<J: Job>(
        &self,
        job: &J,
        options: &EnqueueOptions,
    ) -> Result<Enqueued, ClientError> {
        self.enqueue_task(Client::task(job, options)?).await
    }

    /// Enqueues every job of `jobs` with the same `options`, in round trips of at most
    /// [`MAX_BATCH`] tasks. The answers are in the order of `jobs`.
    ///
    /// # Errors
    /// As [`Client::enqueue_with`]. Nothing is enqueued when a job does not encode; when
    /// the queue fails midway, the batches before the failing one are enqueued.
    pub async fn enqueue_batch<J: Job>(
        &self,
        jobs: &[J],
        options: &EnqueueOptions,
    ) -> Result<Vec<Enqueued>, ClientError> {
        let tasks = jobs
            .iter()
            .map(|job| Client::task(job, options))
            .collect::<Result<Vec<_>, _>>()?;
        self.enqueue_tasks(tasks).await
    }

    /// Enqueues one prepared task.
    ///
    /// # Errors
    /// [`ClientError::Queue`].
    pub async fn enqueue_task(&self, task: Task) -> Result<Enqueued, ClientError> {
        let id = task.id;
        let outcome = self.queue.publish(task).await?;
        Ok(enqueued(id, outcome))
    }

    /// Enqueues prepared tasks (of any routes) in round trips of at most [`MAX_BATCH`].
    ///
    /// # Errors
    /// [`ClientError::Queue`]; the batches before the failing one are enqueued.
    pub async fn enqueue_tasks(&self, mut tasks: Vec<Task>) -> Result<Vec<Enqueued>, ClientError> {
        let mut out = Vec::with_capacity(tasks.len());
        while !tasks.is_empty() {
            let rest = tasks.split_off(tasks.len().min(MAX_BATCH));
            let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
            let outcomes = self.queue.publish_batch(tasks).await?;
            out.extend(ids.into_iter().zip(outcomes).map(|(id, o)| enqueued(id, o)));
            tasks = rest;
        }
        Ok(out)
    }

    /// Closes the queue's connections.
    pub async fn close(&self) {
        self.queue.close().await;
    }
}

fn enqueued(published: TaskId, outcome: PublishOutcome) -> Enqueued {
    Enqueued {
        id: outcome.task_id(published),
        duplicate: outcome.is_duplicate(),
    }
}
