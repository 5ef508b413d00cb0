//! Shared helpers: queues on the shared Redis with their own key namespace, a private
//! `redis-server` per test, and the child-process entry point.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use deadpool_redis::redis::{self, AsyncCommands};
use tokio::time::Instant;

use runtime_adapters_redis::{RedisQueue, RedisQueueConfig};

/// The shared Redis every integration test may use (own keys only).
pub const URL: &str = "redis://127.0.0.1:6379";

/// A queue name no other test (or test binary) uses.
pub fn unique(tag: &str) -> String {
    format!("it-{tag}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

pub fn config(url: &str, name: &str, visibility: Duration, max_attempts: u32) -> RedisQueueConfig {
    let mut c = RedisQueueConfig::new(url, name);
    c.visibility_timeout = visibility;
    c.max_attempts = max_attempts;
    c.operation_timeout = Duration::from_secs(2);
    c.connect_timeout = Duration::from_secs(1);
    c
}

/// A queue on the shared Redis; fails loudly when Redis is not there.
pub async fn queue(name: &str, visibility: Duration, max_attempts: u32) -> RedisQueue {
    RedisQueue::connect(config(URL, name, visibility, max_attempts))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "redis is not reachable at 127.0.0.1:6379 ({e}); start it with \
                 `redis-server --daemonize yes` (Debian package redis-server)"
            )
        })
}

/// A plain client for the tests' own bookkeeping keys.
pub async fn client(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("redis is not reachable at {url} ({e}); start redis-server"))
}

/// Deletes every key of queue `name` under the default prefix, plus the test's own
/// bookkeeping keys (which share the hash tag).
pub async fn cleanup(url: &str, name: &str) {
    let mut c = client(url).await;
    let pattern = format!("plba:{{{name}}}*");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    let mut own: Vec<String> = redis::cmd("KEYS")
        .arg(format!("test:{{{name}}}*"))
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    own.extend(keys);
    if !own.is_empty() {
        let _: () = c.del(own).await.unwrap_or(());
    }
}

/// Deletes a test queue's keys when dropped, so a failing test cleans up too.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(URL) else {
            return;
        };
        let Ok(mut c) = client.get_connection() else {
            return;
        };
        for pattern in [
            format!("plba:{{{}}}*", self.0),
            format!("test:{{{}}}*", self.0),
        ] {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}

/// Polls `cond` until it holds or `within` passes.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out after {within:?} waiting for {what}")
}

/// A private `redis-server` on a free loopback port with its own directory and AOF
/// persistence, so it can be stopped and restarted without losing data.
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut s = RedisServer {
            child: None,
            dir,
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn()?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .args(["--appendonly", "yes", "--save", "", "--daemonize", "no"])
            .args(["--logfile", &log_path(self.dir.path())])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start redis-server: install it (`apt-get install redis-server`) \
                 so the private-server tests can run",
            )?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                s.set_read_timeout(Some(Duration::from_millis(500)))?;
                if s.write_all(b"PING\r\n").is_ok() {
                    let mut buf = [0u8; 64];
                    if let Ok(n) = s.read(&mut buf) {
                        // PONG, or NOAUTH when a password is set: either way it is up.
                        if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH") {
                            return Ok(());
                        }
                    }
                }
            }
            if std::time::Instant::now() > deadline {
                bail!("private redis-server on port {} did not come up", self.port);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Graceful stop (SIGTERM): Redis flushes its AOF and exits.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            if !status.success() {
                bail!("kill -TERM failed");
            }
            child.wait()?;
        }
        Ok(())
    }

    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }
}

fn log_path(dir: &Path) -> String {
    dir.join("redis.log").display().to_string()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
