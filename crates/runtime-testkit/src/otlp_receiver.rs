//! An in-test OTLP/HTTP collector: `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest`, decoded and kept for assertions.
//!
//! A deliberately small HTTP/1.1 server on a Tokio listener (keep-alive, `content-length`
//! and chunked bodies), so the test controls everything a real collector can do wrong:
//! answer slowly ([`OtlpReceiver::set_delay`]), refuse with a status such as 503
//! ([`OtlpReceiver::set_status`]), or vanish ([`OtlpReceiver::stop`]: the port is closed
//! and every open connection dropped) and come back ([`OtlpReceiver::restart`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use runtime_testkit::otlp_receiver::OtlpReceiver;
//! let receiver = OtlpReceiver::start().await?;
//! // point the exporter at receiver.endpoint(), make spans, then:
//! let spans = receiver
//!     .wait_for_spans(|s| s.iter().any(|s| s.name == "process q"), Duration::from_secs(5))
//!     .await?;
//! # let _ = spans; Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use runtime_contracts::{AttributeValue, SpanKind};

/// Largest request body accepted (a real collector limits it too).
const MAX_BODY: usize = 64 << 20;

/// A span as the collector received it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    /// 128-bit trace id.
    pub trace_id: u128,
    /// 64-bit span id.
    pub span_id: u64,
    /// The parent's span id; `None` for a root span.
    pub parent_span_id: Option<u64>,
    /// Span name.
    pub name: String,
    /// Span kind (unspecified is read as internal).
    pub kind: SpanKind,
    /// Linked contexts as (trace id, span id).
    pub links: Vec<(u128, u64)>,
    /// Attributes (arrays, maps and bytes are kept as their debug text).
    pub attributes: BTreeMap<String, AttributeValue>,
    /// Status.
    pub status: ReceivedStatus,
    /// `service.name` of the resource the span came with.
    pub service_name: Option<String>,
    /// Start time, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// End time, Unix nanoseconds.
    pub end_unix_nano: u64,
}

impl ReceivedSpan {
    /// An attribute.
    pub fn attr(&self, key: &str) -> Option<&AttributeValue> {
        self.attributes.get(key)
    }

    /// A text attribute.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(AttributeValue::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// The status of a received span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceivedStatus {
    /// No status set.
    Unset,
    /// Explicitly ok.
    Ok,
    /// Failed, with its message.
    Error(String),
}

#[derive(Default)]
struct State {
    spans: Mutex<Vec<ReceivedSpan>>,
    /// Bumped on every stored request, so waiters wake up.
    changed: watch::Sender<u64>,
    delay: Mutex<Duration>,
    status: AtomicU16,
    requests: AtomicU64,
}

/// The receiver; see the module docs. Dropping it stops it.
pub struct OtlpReceiver {
    addr: SocketAddr,
    state: Arc<State>,
    server: Mutex<Option<Server>>,
}

struct Server {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Binds 127.0.0.1 on a free port and starts answering 200.
    pub async fn start() -> anyhow::Result<OtlpReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the otlp test receiver on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        state.status.store(200, Ordering::Relaxed);
        let server = spawn_server(listener, Arc::clone(&state));
        Ok(OtlpReceiver {
            addr,
            state,
            server: Mutex::new(Some(server)),
        })
    }

    /// The collector's base URL, `http://127.0.0.1:<port>` (exporters add `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The full traces URL.
    pub fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Waits this long before answering each request (a slow collector).
    pub fn set_delay(&self, delay: Duration) {
        if let Ok(mut d) = self.state.delay.lock() {
            *d = delay;
        }
    }

    /// Answers with this HTTP status (200 stores spans; anything else, like 503, does not).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::Relaxed);
    }

    /// Export requests received so far (all statuses).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Every span stored so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.state
            .spans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Waits until `predicate` holds for the stored spans and returns them; fails after
    /// `timeout`, listing what did arrive.
    pub async fn wait_for_spans(
        &self,
        mut predicate: impl FnMut(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ReceivedSpan>> {
        let mut changed = self.state.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changed.borrow_and_update();
            let spans = self.spans();
            if predicate(&spans) {
                return Ok(spans);
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
                bail!(
                    "otlp receiver: condition not met within {timeout:?}; {} spans arrived: {names:?}",
                    spans.len()
                );
            }
        }
    }

    /// Closes the port and drops every open connection: a dead collector. Returns once
    /// the port refuses connections.
    pub async fn stop(&self) {
        let server = self.server.lock().ok().and_then(|mut s| s.take());
        if let Some(server) = server {
            let _ = server.stop.send(true);
            let _ = server.task.await;
        }
    }

    /// Listens again on the same port after [`OtlpReceiver::stop`].
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.with_context(|| {
            format!("cannot bind the otlp test receiver again on {}", self.addr)
        })?;
        let server = spawn_server(listener, Arc::clone(&self.state));
        if let Ok(mut slot) = self.server.lock() {
            *slot = Some(server);
        }
        Ok(())
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.server.lock()
            && let Some(server) = slot.take()
        {
            // Aborting the accept task drops its JoinSet, which aborts every connection.
            server.task.abort();
        }
    }
}

fn spawn_server(listener: TcpListener, state: Arc<State>) -> Server {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => break,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        connections.spawn(serve(stream, Arc::clone(&state)));
                    }
                }
            }
        }
        drop(listener);
        connections.shutdown().await;
    });
    Server { stop, task }
}

/// Serves one keep-alive connection until the peer closes it or sends garbage.
async fn serve(stream: TcpStream, state: Arc<State>) {
    let mut stream = BufReader::new(stream);
    while let Ok(Some(request)) = read_request(&mut stream).await {
        state.requests.fetch_add(1, Ordering::Relaxed);
        let delay = state.delay.lock().map(|d| *d).unwrap_or_default();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (status, body) = answer(&state, &request);
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
            reason(status),
            if status == 200 {
                "application/x-protobuf"
            } else {
                "text/plain"
            },
            body.len()
        );
        let out = stream.get_mut();
        if out.write_all(head.as_bytes()).await.is_err() || out.write_all(&body).await.is_err() {
            return;
        }
        if request.close {
            return;
        }
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    close: bool,
}

fn answer(state: &State, request: &Request) -> (u16, Vec<u8>) {
    if request.path != "/v1/traces" {
        return (404, b"not found".to_vec());
    }
    if request.method != "POST" {
        return (405, b"method not allowed".to_vec());
    }
    let status = state.status.load(Ordering::Relaxed);
    if status != 200 {
        return (status, b"unavailable".to_vec());
    }
    let Ok(export) = ExportTraceServiceRequest::decode(request.body.as_slice()) else {
        return (400, b"bad protobuf".to_vec());
    };
    let spans = convert(export);
    let n = spans.len() as u64;
    if let Ok(mut stored) = state.spans.lock() {
        stored.extend(spans);
    }
    state.changed.send_modify(|c| *c += n);
    // An empty ExportTraceServiceResponse encodes to no bytes.
    (200, Vec::new())
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut length = 0usize;
    let mut chunked = false;
    let mut close = false;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Ok(None);
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(usize::MAX),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .unwrap_or(usize::MAX);
            if size > MAX_BODY || body.len() + size > MAX_BODY {
                return Ok(None);
            }
            let start = body.len();
            body.resize(start + size, 0);
            stream.read_exact(&mut body[start..]).await?;
            line.clear();
            stream.read_line(&mut line).await?;
            if size == 0 {
                break;
            }
        }
    } else {
        if length > MAX_BODY {
            return Ok(None);
        }
        body.resize(length, 0);
        stream.read_exact(&mut body).await?;
    }
    Ok(Some(Request {
        method,
        path,
        body,
        close,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn convert(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in export.resource_spans {
        let service_name = resource_spans.resource.and_then(|r| {
            r.attributes
                .into_iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match value(kv.value) {
                    AttributeValue::Str(s) => Some(s),
                    _ => None,
                })
        });
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                let status = match span.status {
                    Some(s) if s.code == 2 => ReceivedStatus::Error(s.message),
                    Some(s) if s.code == 1 => ReceivedStatus::Ok,
                    _ => ReceivedStatus::Unset,
                };
                out.push(ReceivedSpan {
                    trace_id: id128(&span.trace_id),
                    span_id: id64(&span.span_id),
                    parent_span_id: Some(id64(&span.parent_span_id)).filter(|id| *id != 0),
                    name: span.name,
                    kind: match span.kind {
                        2 => SpanKind::Server,
                        3 => SpanKind::Client,
                        4 => SpanKind::Producer,
                        5 => SpanKind::Consumer,
                        _ => SpanKind::Internal,
                    },
                    links: span
                        .links
                        .iter()
                        .map(|l| (id128(&l.trace_id), id64(&l.span_id)))
                        .collect(),
                    attributes: attributes(span.attributes),
                    status,
                    service_name: service_name.clone(),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                });
            }
        }
    }
    out
}

fn attributes(kvs: Vec<KeyValue>) -> BTreeMap<String, AttributeValue> {
    kvs.into_iter()
        .map(|kv| (kv.key, value(kv.value)))
        .collect()
}

fn value(v: Option<AnyValue>) -> AttributeValue {
    match v.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => AttributeValue::Str(s),
        Some(any_value::Value::BoolValue(b)) => AttributeValue::Bool(b),
        Some(any_value::Value::IntValue(i)) => AttributeValue::Int(i),
        Some(any_value::Value::DoubleValue(f)) => AttributeValue::Float(f),
        Some(other) => AttributeValue::Str(format!("{other:?}")),
        None => AttributeValue::Str(String::new()),
    }
}

/// Big-endian id bytes; a wrong length reads as 0 (invalid).
fn id128(bytes: &[u8]) -> u128 {
    <[u8; 16]>::try_from(bytes).map_or(0, u128::from_be_bytes)
}

fn id64(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}
