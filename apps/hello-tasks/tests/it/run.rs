//! Runs the `hello-tasks` binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn hello() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hello-tasks"));
    cmd.env_remove("RUST_LOG")
        .env("HELLO_TICKER__INTERVAL", "10ms")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for the child to exit, killing it (and failing) past the deadline.
fn wait(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("hello-tasks did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn count_runs_to_completion_and_handles_each_task_once() {
    let out = hello()
        .args(["--count", "5"])
        .env("HELLO_TICKER__GREETING", "hi")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected: Vec<String> = (1..=5).map(|n| format!("hi #{n}")).collect();
    assert_eq!(sorted_lines(&stdout), expected, "stderr: {stderr}");
    assert!(stderr.contains("runtime stopped"), "{stderr}");
}

#[test]
fn a_config_file_layers_under_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.toml");
    std::fs::write(
        &file,
        "[ticker]\ngreeting = \"from-file\"\ninterval = \"1h\"\n\n[workers]\nconcurrency = 1\n",
    )
    .unwrap();
    // The environment (10ms) beats the file's 1h interval; the file's greeting stays.
    let out = hello()
        .arg("--config")
        .arg(&file)
        .args(["--count", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    assert_eq!(
        sorted_lines(&String::from_utf8_lossy(&out.stdout)),
        ["from-file #1", "from-file #2"]
    );
}

#[test]
fn sigint_stops_it_gracefully_with_exit_0() {
    let mut child = hello().spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    // The first greeting proves the whole pipeline runs.
    let first = rx.recv_timeout(DEADLINE);
    if first.is_err() {
        let _ = child.kill();
    }
    assert_eq!(first.unwrap(), "hello #1");
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(kill.success());
    let status = wait(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(stderr.contains("stop requested"), "{stderr}");
}

#[test]
fn a_bad_value_fails_with_exit_2_naming_the_key() {
    let out = hello()
        .env("HELLO_TICKER__INTERVAL", "soon")
        .env("HELLO_WORKERS__CONCURENCY", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ticker.interval"), "{stderr}");
    assert!(stderr.contains("HELLO_TICKER__INTERVAL"), "{stderr}");
    assert!(stderr.contains("workers.concurency"), "{stderr}");

    // Well-typed but useless values are caught too (a zero interval would spin).
    let out = hello()
        .env("HELLO_TICKER__INTERVAL", "0s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ticker.interval"), "{stderr}");
    assert!(stderr.contains("must be above zero"), "{stderr}");
}

/// The app links the memory and Redis queues only: choosing another backend is a config
/// error naming the key (it once ran on the memory queue regardless).
#[test]
fn a_backend_this_build_lacks_fails_with_exit_2_naming_the_key() {
    let out = hello()
        .args(["--count", "1"])
        .env("HELLO_QUEUE__BACKEND", "postgres")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("queue.backend"), "{stderr}");
    assert!(
        stderr.contains("not built into") || stderr.contains("expected one of"),
        "{stderr}"
    );
}

/// A `[[schedules]]` entry in the config file: its ticks reach the greeter like the
/// ticker's tasks, and its last tick is kept in `runtime.state_dir` (relative to the file).
#[test]
fn a_configured_schedule_greets_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.toml");
    std::fs::write(
        &file,
        "[runtime]\nstate_dir = \"state\"\n\n[[schedules]]\nname = \"each-second\"\n\
         every = \"1s\"\nroute = \"greet\"\npayload = '{\"text\": \"from a schedule\"}'\n",
    )
    .unwrap();
    // The ticker greets once at start, then only in an hour: the rest are the schedule's.
    let out = hello()
        .env("HELLO_TICKER__INTERVAL", "1h")
        .args(["--count", "3", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        sorted_lines(&stdout),
        ["from a schedule", "from a schedule", "hello #1"],
        "stderr: {stderr}"
    );
    assert!(dir.path().join("state/schedule-each-second.json").exists());
}

#[test]
fn the_default_rate_limit_paces_the_greetings() {
    // The ticker could publish 41 tasks in about 40 ms; the defaults' `rate = "20/s"`
    // spreads their starts over two seconds, and every one still runs once.
    let started = Instant::now();
    let out = hello()
        .args(["--count", "41"])
        .env("HELLO_TICKER__INTERVAL", "1ms")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 41);
    assert!(
        elapsed >= Duration::from_millis(1900),
        "41 starts at 20/s took {elapsed:?}"
    );
    // Without the limit the same run is quick.
    let started = Instant::now();
    let out = hello()
        .args(["--count", "41"])
        .env("HELLO_TICKER__INTERVAL", "1ms")
        .env("HELLO_WORKERS__RATE", "100000/s")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(started.elapsed() < elapsed, "the rate made no difference");
}
