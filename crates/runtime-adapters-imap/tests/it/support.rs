//! A recording sink, a stop signal and helpers shared by the tests.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use runtime_adapters_imap::{ImapConfig, ImapMode, ImapSource, TlsMode};
use runtime_contracts::{
    PublishOutcome, QueueError, Secret, SourceError, StopSignal, Task, TaskOrigin, TaskSink,
    TaskSource,
};
use runtime_testkit::dovecot::DovecotServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Records published tasks and, like a real queue, refuses a second live task with the
/// same origin (until [`RecordingSink::finish`] says it is done).
#[derive(Default)]
pub struct RecordingSink {
    inner: Mutex<SinkState>,
}

#[derive(Default)]
struct SinkState {
    enqueued: Vec<Task>,
    live: HashSet<TaskOrigin>,
    duplicates: u64,
    /// Payload bytes of each `publish_batch` call.
    batch_bytes: Vec<usize>,
}

impl RecordingSink {
    pub fn enqueued(&self) -> Vec<Task> {
        self.inner.lock().unwrap().enqueued.clone()
    }
    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().enqueued.len()
    }
    pub fn duplicates(&self) -> u64 {
        self.inner.lock().unwrap().duplicates
    }
    pub fn batch_bytes(&self) -> Vec<usize> {
        self.inner.lock().unwrap().batch_bytes.clone()
    }
}

#[async_trait]
impl TaskSink for RecordingSink {
    async fn publish(&self, task: Task) -> Result<PublishOutcome, QueueError> {
        let mut s = self.inner.lock().unwrap();
        if let Some(origin) = &task.origin
            && !s.live.insert((**origin).clone())
        {
            s.duplicates += 1;
            // The sink keeps no ids of live tasks; the test only counts duplicates.
            return Ok(PublishOutcome::Duplicate { existing: task.id });
        }
        s.enqueued.push(task);
        Ok(PublishOutcome::Enqueued)
    }

    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
        let bytes = tasks.iter().map(|t| t.payload.len()).sum();
        self.inner.lock().unwrap().batch_bytes.push(bytes);
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(self.publish(t).await?);
        }
        Ok(out)
    }
}

pub struct TestStop(watch::Sender<bool>);

impl TestStop {
    pub fn new() -> Arc<Self> {
        Arc::new(TestStop(watch::channel(false).0))
    }
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

#[async_trait]
impl StopSignal for TestStop {
    fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
    async fn stopped(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// A running source with its sink and stop signal.
pub struct Running {
    pub source: ImapSource,
    pub sink: Arc<RecordingSink>,
    pub stop: Arc<TestStop>,
    handle: JoinHandle<Result<(), SourceError>>,
}

impl Running {
    pub fn start(source: ImapSource) -> Running {
        let sink = Arc::new(RecordingSink::default());
        let stop = TestStop::new();
        let handle = tokio::spawn({
            let (source, sink, stop) = (source.clone(), sink.clone(), stop.clone());
            async move { source.run(sink, stop).await }
        });
        Running {
            source,
            sink,
            stop,
            handle,
        }
    }

    /// Waits until the sink holds `n` tasks.
    pub async fn wait_for_tasks(&self, n: usize, within: Duration) -> Vec<Task> {
        let sink = self.sink.clone();
        let ok = eventually(within, || {
            let sink = sink.clone();
            async move { sink.count() >= n }
        })
        .await;
        let tasks = self.sink.enqueued();
        assert!(
            ok,
            "expected {n} tasks within {within:?}, got {}; status {:?}",
            tasks.len(),
            self.source.status()
        );
        tasks
    }

    /// Waits until the source is connected (its first catch-up has run).
    pub async fn wait_connected(&self) {
        let source = self.source.clone();
        let ok = eventually(Duration::from_secs(10), || {
            let source = source.clone();
            async move {
                let s = source.status();
                s.details.get("connected") == Some(&true.into())
                    && s.last_success_age_seconds.is_some()
            }
        })
        .await;
        assert!(ok, "source did not connect: {:?}", self.source.status());
    }

    /// Fires stop and checks that `run` returns `Ok`.
    pub async fn stop(self) {
        self.stop.fire();
        let r = tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("run did not return after stop")
            .expect("source task panicked");
        assert!(r.is_ok(), "run returned {r:?}");
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain-text config for the fixture, fast timings.
pub fn config(server: &DovecotServer) -> ImapConfig {
    ImapConfig {
        host: server.host().to_owned(),
        port: Some(server.port()),
        tls: TlsMode::None,
        username: server.user().to_owned(),
        password: Some(Secret::new(server.password())),
        poll_interval: Duration::from_millis(200),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        command_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        // The keyword is the application's; these tests use mail-order-bot's.
        failed_keyword: "$OrderBotFailed".to_owned(),
        ..ImapConfig::default()
    }
}

pub fn source(name: &str, config: ImapConfig, mode: ImapMode) -> ImapSource {
    ImapSource::new(name, config, mode).expect("valid config")
}

/// A small message with a Message-ID.
pub fn mail(tag: &str) -> Vec<u8> {
    format!(
        "From: Buyer <buyer@example.com>\r\nTo: shop@example.com\r\nSubject: test {tag}\r\n\
         Message-ID: <{tag}@test.example>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody of {tag}\r\n"
    )
    .into_bytes()
}

/// A TCP proxy in front of the server that cuts a connection (both ways, without
/// forwarding) the moment the client sends a command containing `cut` — a connection
/// lost in the middle of an exchange, at an exact point.
pub struct CuttingProxy {
    port: u16,
    task: JoinHandle<()>,
}

impl CuttingProxy {
    pub async fn start(server: &DovecotServer, cut: &'static str) -> CuttingProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = (server.host().to_owned(), server.port());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let text = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
                        if text.contains(cut) || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    // Dropping both halves closes both sockets.
                    down.abort();
                });
            }
        });
        CuttingProxy { port, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
