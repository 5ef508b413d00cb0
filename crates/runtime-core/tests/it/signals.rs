//! The second stop signal: an operator who asks twice means it. The child is this very
//! test binary, re-run with `--exact` on [`child_runtime`].

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_contracts::{PoolSpec, Task, TaskContext, TaskError, TaskHandler};
use runtime_core::{RuntimeError, RuntimeManager};
use runtime_testkit::fakes::{PartsModule, VecSource, config};
use tokio::sync::Notify;

use crate::{fast_platform, queue};

const ENV_CHILD: &str = "PLBA_CORE_IT_SIGNAL_CHILD";

/// A handler that never finishes: the graceful stop would wait out its whole grace.
struct Stuck(Arc<Notify>);

#[async_trait]
impl TaskHandler for Stuck {
    async fn handle(&self, _task: &Task, _ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        self.0.notify_one();
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Printed by the child when `run` reports the second signal, just before it exits.
const INTERRUPTED_LINE: &str = "RUN REPORTED INTERRUPTED";

/// The child: a runtime that handles signals, one stuck task and a 10-minute grace
/// period. Prints `READY` once the task runs. Like a binary's `main`, it picks the exit
/// code (130) when `run` reports the second signal.
#[test]
#[ignore = "helper run as a child process by the tests in this module"]
fn child_runtime() {
    if std::env::var_os(ENV_CHILD).is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Installs the process's SIGTERM handler before anything runs, so an early signal
        // is caught rather than killing the process by default.
        let _early =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let started = Arc::new(Notify::new());
        let q = queue(3);
        let cfg = config(fast_platform(
            serde_json::json!({"runtime": {"shutdown_timeout": "600s"}}),
        ))
        .await;
        let module = PartsModule {
            sources: vec![(VecSource::new("s", vec![Task::new("t", "x")]), "q".into())],
            pools: vec![PoolSpec {
                name: "p".into(),
                queue: "q".into(),
                handler: Arc::new(Stuck(started.clone())),
                concurrency: 1,
                task_timeout: Duration::from_secs(600),
            }],
            ..Default::default()
        };
        let runtime = RuntimeManager::builder(cfg)
            .queue(q)
            .module(Arc::new(module))
            .handle_signals(true)
            .build();
        tokio::spawn(async move {
            started.notified().await;
            println!("READY");
        });
        match runtime.run().await {
            Err(RuntimeError::Interrupted) => {
                println!("{INTERRUPTED_LINE}");
                std::process::exit(130);
            }
            _ => println!("STOPPED GRACEFULLY"),
        }
    });
}

/// Runs the child, SIGTERMs it until it exits; returns its status and every line it
/// printed.
fn signal_child_until_it_exits() -> (ExitStatus, Vec<String>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "signals::child_runtime",
            "--ignored",
            "--nocapture",
        ])
        .env(ENV_CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("READY") => break true,
            Ok(line) => lines.push(line),
            Err(_) => break false,
        }
    };
    if !ready {
        let _ = child.kill();
        panic!("the child runtime did not start its task within 30 s");
    }
    // The first SIGTERM starts a graceful stop that would wait 10 minutes for the stuck
    // task; a later one must end the process at once. Signals are sent until it exits,
    // because the first may land before the runtime listens for it.
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child ignored repeated SIGTERMs for 20 s");
        }
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            assert!(!line.contains("STOPPED GRACEFULLY"), "{line}");
            lines.push(line);
        }
    };
    // The reader thread ends with the child's stdout; take what it still holds.
    lines.extend(rx.iter());
    (status, lines)
}

#[test]
fn a_second_stop_signal_exits_at_once_with_130() {
    let (status, _) = signal_child_until_it_exits();
    assert_eq!(status.code(), Some(130), "{status:?}");
}

/// The library never exits the process: `run` reports the second signal and the binary
/// picks the exit code.
#[test]
fn a_second_stop_signal_is_reported_by_run_not_exited_by_the_library() {
    let (status, lines) = signal_child_until_it_exits();
    assert!(
        lines.iter().any(|l| l.contains(INTERRUPTED_LINE)),
        "{status:?} {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("STOPPED GRACEFULLY")),
        "{lines:?}"
    );
}
