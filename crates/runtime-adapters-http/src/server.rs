//! `HttpControlPlane`: binds in its constructor, serves until the runtime's stop signal.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use runtime_contracts::{ControlEndpoint, ControlPlane, EndpointError, StopSignal};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::HttpConfig;
use crate::error::error_body;
use crate::routes::router;

/// How long open connections may finish after stop before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Pause after a failed accept (e.g. no free descriptor), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Largest request head (request line and headers); a larger one gets 431. The control
/// plane's requests are small; hyper's own default (about 400 KiB) is far more than needed.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The HTTP control plane: a bound listener waiting for [`ControlEndpoint::serve`].
pub struct HttpControlPlane {
    config: HttpConfig,
    local_addr: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
}

impl std::fmt::Debug for HttpControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpControlPlane")
            .field("local_addr", &self.local_addr)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpControlPlane {
    /// Checks the configuration and binds its address, so a taken port or an unsafe
    /// setting fails start-up before anything runs.
    ///
    /// # Errors
    /// [`EndpointError::Config`] for a non-loopback address without a token, a zero body
    /// limit or a zero timeout; [`EndpointError::Io`] when the address cannot be bound.
    pub async fn bind(config: HttpConfig) -> Result<HttpControlPlane, EndpointError> {
        config.check()?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| EndpointError::Io {
                message: format!("cannot bind the control plane to {}: {e}", config.bind),
                source: Some(Box::new(e)),
            })?;
        let local_addr = listener.local_addr().map_err(|e| EndpointError::Io {
            message: format!("cannot read the control plane's bound address: {e}"),
            source: Some(Box::new(e)),
        })?;
        Ok(HttpControlPlane {
            config,
            local_addr,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// The address actually bound (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The configuration it was bound with.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }
}

#[async_trait]
impl ControlEndpoint for HttpControlPlane {
    fn name(&self) -> &str {
        "http"
    }

    /// Serves on the listener bound by [`HttpControlPlane::bind`] until `stop` fires,
    /// then lets open requests finish for a short grace. Runs once.
    async fn serve(
        &self,
        plane: Arc<dyn ControlPlane>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), EndpointError> {
        let listener = self
            .listener
            .lock()
            .ok()
            .and_then(|mut l| l.take())
            .ok_or_else(|| {
                EndpointError::Config("the http control plane serves only once".into())
            })?;
        let app = router(plane, &self.config);
        tracing::info!(
            addr = %self.local_addr,
            admin = self.config.token.as_ref().is_some_and(|t| !t.is_empty()),
            "control plane listening"
        );
        let cap = crate::fds::connection_cap(self.config.max_connections).await;
        let permits = Arc::new(Semaphore::new(cap));
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = stop.stopped() => break,
                r = listener.accept() => r,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "control plane cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            // Over the cap the connection is closed at once, not queued.
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!(max = cap, "control plane connection refused: too many open");
                drop(stream);
                continue;
            };
            while connections.try_join_next().is_some() {}
            connections.spawn(serve_connection(
                stream,
                app.clone(),
                self.config.clone(),
                stop.clone(),
                permit,
            ));
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "control plane connections still open after stop; closing them");
            connections.abort_all();
        }
        tracing::info!(addr = %self.local_addr, "control plane stopped");
        Ok(())
    }
}

/// Serves one connection: hyper's header-read timeout stops slow request heads, a
/// watchdog closes the connection after `idle_timeout` without traffic, and stop asks
/// for a graceful close. The permit is released when the connection ends.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    config: HttpConfig,
    stop: Arc<dyn StopSignal>,
    _permit: OwnedSemaphorePermit,
) {
    let epoch = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = Activity {
        inner: stream,
        epoch,
        last: last.clone(),
        rewrite: None,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    let idle = config.idle_timeout;
    let watchdog = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let quiet = epoch.elapsed().saturating_sub(since);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "control plane connection ended with an error");
            }
        }
        () = watchdog => tracing::debug!(idle = ?idle, "control plane connection idle; closing it"),
        () = stop.stopped() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A stream that records when it last moved bytes, for the idle watchdog, and puts hyper's
/// own answers to requests it cannot parse into our JSON error shape.
///
/// Hyper answers a malformed or oversized request head itself, before any route runs,
/// with an empty body and no way to change it; such an answer is the only 4xx without a
/// content type (every answer of the router has one), so the writer recognises it and
/// writes [`protocol_error_answer`] in its place. Hyper writes a head in one piece (the
/// stream is not vectored, so it flattens), and closes the connection after it.
struct Activity {
    inner: TcpStream,
    epoch: Instant,
    last: Arc<AtomicU64>,
    /// The replacement being written and how much of it is out.
    rewrite: Option<(Vec<u8>, usize)>,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Activity {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Activity {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.rewrite.is_none()
            && let Some(status) = hyper_error_status(data)
        {
            tracing::debug!(
                status = status.as_u16(),
                "control plane refused a malformed request"
            );
            self.rewrite = Some((protocol_error_answer(status), 0));
        }
        if let Some((bytes, mut sent)) = self.rewrite.take() {
            // Hyper's bytes count as written once all of ours are.
            while sent < bytes.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &bytes[sent..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        sent += n;
                        self.touch();
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        self.rewrite = Some((bytes, sent));
                        return Poll::Pending;
                    }
                }
            }
            return Poll::Ready(Ok(data.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The status of hyper's own answer to a request it could not parse (400, 414, 431: a
/// whole head without a body or content type), `None` for anything else.
fn hyper_error_status(data: &[u8]) -> Option<StatusCode> {
    let head = data.strip_suffix(b"\r\n\r\n")?;
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let code = lines
        .next()?
        .strip_prefix("HTTP/1.")?
        .split(' ')
        .nth(1)?
        .parse::<u16>()
        .ok()?;
    let status = StatusCode::from_u16(code).ok()?;
    let ours = lines.any(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
    });
    let automatic = matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::URI_TOO_LONG
            | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    (automatic && !ours).then_some(status)
}

/// Our whole answer (head and JSON body) for a request hyper refused; the connection
/// closes after it, as hyper closes it.
fn protocol_error_answer(status: StatusCode) -> Vec<u8> {
    let message = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            format!("request head is larger than the limit of {MAX_HEAD_BYTES} bytes")
        }
        StatusCode::URI_TOO_LONG => "request URI is too long".to_owned(),
        _ => "malformed request: the request line or a header cannot be parsed".to_owned(),
    };
    let body = serde_json::to_vec(&error_body(status, &message)).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Bad Request"),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}
