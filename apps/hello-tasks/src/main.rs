//! `hello-tasks [--config FILE]... [--count N]`: composes the runtime and runs it until
//! Ctrl-C (or SIGTERM), or until N tasks were handled.
//! `hello-tasks [--config FILE]... enqueue greet TEXT | add A B`: adds one job and exits.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use hello_tasks::enqueue::{Command, EnqueueError, enqueue};
use hello_tasks::{DEFAULTS, HelloModule};
use runtime_compose::ComposeError;
use runtime_core::cli::{
    AppConfigSpec, ConfigArgs, EXIT_INTERRUPTED, config_error_exit, load_config,
};
use runtime_core::{RuntimeError, RuntimeManager};
use tokio::sync::Notify;

/// The app's name: in config messages and as the trace service name.
const APP: &str = "hello-tasks";

/// A ticker feeds a queue; a worker pool greets each task.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Stop after N tasks were handled (default: run until Ctrl-C)
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();

    // 1. Configuration: defaults < --config files < HELLO_* environment variables.
    let spec = AppConfigSpec::new(APP, "HELLO_", DEFAULTS)
        .sections(&["ticker"])
        .validator(Arc::new(hello_tasks::validate))
        .validator(runtime_compose::validator(APP));
    let config = match load_config(&spec, &cli.config).await {
        Ok(config) => Arc::new(config),
        Err(error) => return Ok(config_error_exit(&error)), // exit code 2
    };
    let platform = config.platform();
    runtime_core::logging::init(&platform.tracing)?;

    // The producer's side: enqueue through the client, print the id, run nothing else.
    if let Some(Command::Enqueue(args)) = &cli.command {
        return match enqueue(&config.current(), args).await {
            Ok(done) => {
                println!("{}", serde_json::to_string(&done)?);
                Ok(ExitCode::SUCCESS)
            }
            Err(EnqueueError::Compose(ComposeError::Config(e))) => Ok(config_error_exit(&e)),
            Err(error) => Err(error.into()),
        };
    }

    // 2. The queue and the tracer, as `[queue]` and `[tracing]` choose them (the same
    //    plan the validator checked at load).
    let plan = runtime_compose::plan(&config.current(), APP)?;

    // 3. The runtime: the queue, the module and the `[[schedules]]` (same pool, by route).
    let done = Arc::new(Notify::new());
    let mut builder = RuntimeManager::builder(config)
        .queue(plan.build_queue()?)
        // Keeps `[workers] concurrency_key` and `rate`, shared as the queue is.
        .limiter(plan.build_limiter()?)
        .tracer(plan.build_tracer()?)
        .module(Arc::new(HelloModule {
            limit: cli.count.unwrap_or(u64::MAX),
            done: done.clone(),
        }));
    if let Some(schedules) = plan.schedule_module(&platform.queue.name, &platform.runtime.state_dir)
    {
        builder = builder.module(schedules);
    }
    let runtime = builder.build();

    // 4. `--count`: a graceful stop once enough tasks were handled.
    let handle = runtime.handle();
    tokio::spawn(async move {
        done.notified().await;
        handle.shutdown();
    });

    // 5. Run until a stop request, then stop in order; the binary picks each exit code.
    let report = match runtime.run().await {
        Ok(report) => report,
        Err(RuntimeError::Config(error)) => return Ok(config_error_exit(&error)),
        // A second Ctrl-C: exit at once, without waiting for anything.
        Err(RuntimeError::Interrupted) => std::process::exit(i32::from(EXIT_INTERRUPTED)),
        Err(error) => return Err(error.into()),
    };
    tracing::info!(drained = report.drained, "hello-tasks stopped");
    Ok(ExitCode::SUCCESS)
}
