//! The business handler contract and its typed outcome.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::signal::StopSignal;
use crate::task::Task;
use crate::trace::{SpanSpec, TaskSpan, TraceContext, TraceFactory};

/// Why a handler did not finish a task, and what the runtime should do about it.
/// `Ok(())` from a handler means done: the task is acknowledged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task failed and may succeed later. Counts an attempt; retried after `after`,
    /// or after exponential backoff with jitter when `None`; dead-lettered once the
    /// attempts are used up.
    #[error("retryable: {reason}")]
    Retry {
        /// Delay before the next attempt, if the handler knows better than the backoff.
        after: Option<Duration>,
        /// What went wrong.
        reason: String,
    },
    /// The task can never succeed (malformed, forbidden): dead-letter it now.
    #[error("rejected: {reason}")]
    Reject {
        /// Why.
        reason: String,
    },
    /// A dependency is down (a database, a remote server). Not the task's fault: the task goes
    /// back without counting an attempt, so an outage of any length never dead-letters.
    #[error("dependency unavailable: {reason}")]
    Unavailable {
        /// Delay before trying again; backoff when `None`.
        after: Option<Duration>,
        /// What is unavailable.
        reason: String,
    },
}

impl TaskError {
    /// A retryable failure with backoff.
    pub fn retry(reason: impl std::fmt::Display) -> TaskError {
        TaskError::Retry {
            after: None,
            reason: reason.to_string(),
        }
    }

    /// A failure that can never succeed.
    pub fn reject(reason: impl std::fmt::Display) -> TaskError {
        TaskError::Reject {
            reason: reason.to_string(),
        }
    }

    /// An outage of a dependency.
    pub fn unavailable(reason: impl std::fmt::Display) -> TaskError {
        TaskError::Unavailable {
            after: None,
            reason: reason.to_string(),
        }
    }

    /// The reason text.
    pub fn reason(&self) -> &str {
        match self {
            TaskError::Retry { reason, .. }
            | TaskError::Reject { reason }
            | TaskError::Unavailable { reason, .. } => reason,
        }
    }
}

/// What a handler gets besides the task: the task's span, a way to open child spans,
/// where it runs, and a slot for the outcome tag passed on to the source.
pub struct TaskContext<'a> {
    /// The span of this task's processing; the handler's spans are its children.
    pub span: &'a dyn TaskSpan,
    /// The runtime's trace factory.
    pub tracer: &'a dyn TraceFactory,
    /// The pool running the task.
    pub pool: &'a str,
    /// The queue the task came from.
    pub queue: &'a str,
    /// The outcome tag; see [`TaskContext::tag_outcome`].
    pub tag: &'a Mutex<Option<String>>,
    /// Fires when an operator cancels this task while it runs; see
    /// [`TaskContext::is_cancelled`]. Whatever the handler returns after that, the task
    /// is not retried nor dead-lettered (an `Ok` still completes it).
    pub cancellation: &'a dyn StopSignal,
}

impl<'a> TaskContext<'a> {
    /// Opens a child span of the task's span.
    pub fn child_span(&self, name: &str) -> Box<dyn TaskSpan> {
        let parent: TraceContext = self.span.context();
        self.tracer
            .start_span(SpanSpec::new(name).parent(Some(&parent)))
    }

    /// True once this task's cancellation was requested. A long handler checks it
    /// between steps (or awaits [`TaskContext::cancelled`]) and stops early.
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_stopped()
    }

    /// Completes when this task's cancellation is requested (never, if it is not).
    pub async fn cancelled(&self) {
        self.cancellation.stopped().await
    }

    /// Tags a successful outcome (for example `"rejected"`); the source's acknowledger
    /// receives it in [`FinalOutcome::Succeeded`](crate::FinalOutcome::Succeeded).
    pub fn tag_outcome(&self, tag: impl Into<String>) {
        if let Ok(mut slot) = self.tag.lock() {
            *slot = Some(tag.into());
        }
    }
}

/// Executes business logic for one task. The runtime does not know what it does; it
/// only acts on the result. Implementations must be idempotent: at-least-once delivery
/// means a task can run again after a crash or a lost lease.
#[async_trait]
pub trait TaskHandler: Send + Sync + 'static {
    /// Handles one task.
    async fn handle(&self, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError>;
}
