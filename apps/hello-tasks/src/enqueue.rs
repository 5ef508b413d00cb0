//! `hello-tasks enqueue greet TEXT` / `hello-tasks enqueue add A B`: adds one job to the
//! queue `[queue]` configures and exits, without running the runtime. This is how a web
//! handler or a script hands work to the workers of another process.

use std::time::Duration;

use clap::{Args, Subcommand};
use runtime_compose::ComposeError;
use runtime_compose::client::{Client, ClientError, EnqueueOptions, Enqueued};
use runtime_contracts::ConfigSnapshot;

use crate::{Add, Greet};

/// The subcommands of `hello-tasks`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add one job to the configured queue (a shared one, such as Redis) and exit
    Enqueue(EnqueueArgs),
}

/// `hello-tasks enqueue`: the job and how to enqueue it.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The job
    #[command(subcommand)]
    pub job: JobArgs,
    /// Run no earlier than this from now (`10s`, `5m`)
    #[arg(long, global = true, value_parser = runtime_contracts::duration::parse)]
    pub delay: Option<Duration>,
    /// Enqueue nothing while a live job with this key exists; print that job's id
    #[arg(long, global = true, value_name = "KEY")]
    pub unique_key: Option<String>,
}

/// The jobs hello-tasks knows.
#[derive(Debug, Subcommand)]
pub enum JobArgs {
    /// Print TEXT
    Greet {
        /// What to print
        text: String,
    },
    /// Print the sum of A and B
    Add {
        /// The first term
        #[arg(allow_negative_numbers = true)]
        a: i64,
        /// The second term
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
}

/// Why the job was not enqueued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The configuration cannot build a queue a runtime elsewhere reads (exit code 2).
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The queue refused or is down.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Builds a client from `snapshot` and enqueues the job `args` names.
///
/// # Errors
/// [`EnqueueError`]: a config that names a memory queue, a backend that is down.
pub async fn enqueue(
    snapshot: &ConfigSnapshot,
    args: &EnqueueArgs,
) -> Result<Enqueued, EnqueueError> {
    let client = Client::from_config(snapshot, "hello-tasks")?;
    let mut options = EnqueueOptions::default();
    if let Some(delay) = args.delay {
        options = options.delay(delay);
    }
    if let Some(key) = &args.unique_key {
        options = options.unique_key(key.clone());
    }
    let enqueued = match &args.job {
        JobArgs::Greet { text } => {
            let job = Greet { text: text.clone() };
            client.enqueue_with(&job, &options).await
        }
        JobArgs::Add { a, b } => client.enqueue_with(&Add { a: *a, b: *b }, &options).await,
    };
    client.close().await;
    Ok(enqueued?)
}
