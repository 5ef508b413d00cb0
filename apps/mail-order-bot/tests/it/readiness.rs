//! Readiness over HTTP follows a real Redis outage: 200, then 503 while the queue's
//! Redis is down, then 200 again by itself; mail delivered meanwhile is not lost.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Db, Env, Queue, Setup, Source, eventually, free_port, get, sample};

/// A private redis-server on `port`, keeping nothing on disk.
fn redis(port: u16, dir: &std::path::Path) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is required (Debian: apt-get install -y redis-server)")
}

/// The HTTP status code of `GET path`, or an error while nothing answers.
async fn status_of(port: u16, path: &str) -> Result<u16, String> {
    get(port, path).await.map(|(code, _)| code)
}

async fn wait_status(port: u16, path: &str, want: u16) {
    eventually(
        &format!("{path} answers {want}"),
        Duration::from_secs(20),
        || async move {
            match status_of(port, path).await {
                Ok(code) if code == want => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_redis_outage_and_nothing_is_lost() {
    let env = Env::new(Setup::new(Source::Maildir, Queue::Redis, Db::Sqlite)).await;
    let redis_port = free_port();
    let http_port = free_port();
    let redis_dir = tempfile::tempdir().unwrap();
    let mut server = redis(redis_port, redis_dir.path());
    let config = env
        .config_toml()
        .replace(
            "[control]\nenabled = false",
            &format!("[control]\nenabled = true\nbind = \"127.0.0.1:{http_port}\""),
        )
        .replace(
            "backend = \"redis\"",
            &format!("backend = \"redis\"\nredis_url = \"redis://127.0.0.1:{redis_port}/0\""),
        );
    std::fs::write(&env.config_path, config).unwrap();
    let (runtime, module) = env.compose().await;
    runtime.start().await.unwrap();
    wait_status(http_port, "/health/ready", 200).await;

    server.kill().unwrap();
    server.wait().unwrap();
    wait_status(http_port, "/health/ready", 503).await;
    // Liveness does not depend on a backend.
    assert_eq!(status_of(http_port, "/health/live").await, Ok(200));
    env.deliver(&sample("01-accepted-plain.eml")).await;

    let mut server = redis(redis_port, redis_dir.path());
    wait_status(http_port, "/health/ready", 200).await;
    let mut finished = module.finished();
    eventually(
        "the mail sent during the outage is processed",
        Duration::from_secs(20),
        || {
            let done = *finished.borrow_and_update();
            async move {
                if done >= 1 {
                    Ok(())
                } else {
                    Err(format!("{done} processed"))
                }
            }
        },
    )
    .await;
    runtime.stop().await;
    server.kill().unwrap();
    let _ = server.wait();
}
