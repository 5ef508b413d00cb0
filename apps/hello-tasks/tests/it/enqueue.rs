//! `hello-tasks enqueue` in one process, the runtime in another, Redis between them.

use std::process::{Command, Output, Stdio};

/// The binary with a private Redis queue (`plba:{name}:*`) and a ticker that ticks once.
fn hello(queue: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hello-tasks"));
    cmd.env_remove("RUST_LOG")
        .env("HELLO_QUEUE__BACKEND", "redis")
        .env("HELLO_QUEUE__NAME", queue)
        .env("HELLO_TICKER__INTERVAL", "1h")
        .stdin(Stdio::null());
    cmd
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes the queue's keys, also when the test fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let keys = Command::new("redis-cli")
            .args(["--scan", "--pattern", &format!("plba:{{{}}}:*", self.0)])
            .output();
        for key in keys.iter().flat_map(|k| {
            String::from_utf8_lossy(&k.stdout)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }) {
            let _ = Command::new("redis-cli").args(["del", &key]).output();
        }
    }
}

#[test]
fn jobs_enqueued_by_another_process_run_on_the_router_of_the_runtime() {
    let queue = format!("hello-enqueue-{}", std::process::id());
    let _cleanup = Cleanup(queue.clone());
    let greet = hello(&queue)
        .args(["enqueue", "greet", "from another process"])
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&ok(&greet)).unwrap();
    assert_eq!(answer["duplicate"], false);
    assert_eq!(answer["id"].as_str().map(str::len), Some(32), "{answer}");
    ok(&hello(&queue)
        .args(["enqueue", "add", "2", "-5"])
        .output()
        .unwrap());

    // The runtime: the ticker's first tick (at once) and the two jobs, then it stops.
    let run = hello(&queue).args(["--count", "3"]).output().unwrap();
    let mut lines: Vec<String> = ok(&run).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["2 + -5 = -3", "from another process", "hello #1"]);
}

#[test]
fn enqueue_refuses_a_memory_queue_nobody_else_can_read() {
    let out = Command::new(env!("CARGO_BIN_EXE_hello-tasks"))
        .env_remove("RUST_LOG")
        .env("HELLO_QUEUE__BACKEND", "memory")
        .args(["enqueue", "greet", "lost"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("queue.backend"), "{stderr}");
    assert!(stderr.contains("inside one process"), "{stderr}");
    assert!(out.stdout.is_empty());
}
