//! Connecting: TCP, implicit TLS or STARTTLS (rustls with ring), greeting, login,
//! capabilities. Shared by the source and the acknowledger.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::imap_proto::{Response, Status};
use runtime_contracts::{Backoff, ConfigError, Secret};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

use crate::config::{ImapConfig, TlsMode};

/// Errors talking to the server. Messages never contain the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImapError {
    /// Network failure.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The TLS handshake failed.
    #[error("tls handshake with {host} failed: {source}")]
    Tls {
        /// Server name.
        host: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The server refused or failed a command.
    #[error("imap error: {0}")]
    Imap(#[from] async_imap::error::Error),
    /// Login was refused.
    #[error("login as {user} refused: {message}")]
    Login {
        /// The login name.
        user: String,
        /// The server's answer.
        message: String,
    },
    /// The server refused a command in a way retrying cannot fix (`NO`, `[CANNOT]`,
    /// `[NONEXISTENT]`, ...).
    #[error("refused by the server: {0}")]
    Refused(String),
    /// The server did not answer in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The server broke the protocol or closed the connection.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ImapError {
    /// Whether the server refused for good: a `NO` without a response code saying the
    /// condition is temporary (RFC 5530: `UNAVAILABLE`, `INUSE`, `SERVERBUG`, `LIMIT`,
    /// `OVERQUOTA`, `EXPUNGEISSUED`).
    pub fn is_permanent(&self) -> bool {
        const TEMPORARY: [&str; 6] = [
            "[UNAVAILABLE",
            "[INUSE",
            "[SERVERBUG",
            "[LIMIT",
            "[OVERQUOTA",
            "[EXPUNGEISSUED",
        ];
        match self {
            ImapError::Refused(_) => true,
            ImapError::Imap(async_imap::error::Error::No(message)) => {
                let upper = message.to_ascii_uppercase();
                !TEMPORARY.iter().any(|code| upper.contains(code))
            }
            _ => false,
        }
    }
}

/// Runs `fut` with a deadline.
pub(crate) async fn within<T, E: Into<ImapError>>(
    limit: Duration,
    what: &'static str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(ImapError::Timeout(what)),
    }
}

/// A plain or TLS byte stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub(crate) type Session = async_imap::Session<Stream>;

/// What the server can do, as far as this adapter cares.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Caps {
    pub idle: bool,
    pub mv: bool,
    pub uidplus: bool,
    /// The server's hierarchy delimiter (`LIST "" ""`); `None` for a flat namespace.
    pub delimiter: Option<char>,
}

impl Caps {
    /// A configured folder path (`/` separates levels) in the server's own spelling:
    /// `Orders/Processed` is `Orders.Processed` where the delimiter is `.` (Dovecot's
    /// Maildir++ layout refuses `/` with `NO [CANNOT]`).
    pub(crate) fn folder_name(&self, path: &str) -> String {
        match self.delimiter {
            Some(d) if d != '/' => path.replace('/', &d.to_string()),
            _ => path.to_owned(),
        }
    }
}

/// Everything needed to open a session, resolved once from the config.
#[derive(Clone)]
pub(crate) struct Connector {
    pub config: ImapConfig,
    password: Secret,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.config.host)
            .field("port", &self.config.effective_port())
            .field("tls", &self.config.tls)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Validates the config, reads the password and the CA file.
    pub(crate) fn new(config: ImapConfig) -> Result<Connector, ConfigError> {
        config.validate()?;
        let password = config.resolve_password()?;
        let tls = match config.tls {
            TlsMode::None => None,
            TlsMode::Tls | TlsMode::Starttls => Some(tls_connector(&config)?),
        };
        Ok(Connector {
            config,
            password,
            tls,
        })
    }

    /// Connects, secures, logs in and reads the capabilities, all within `connect_timeout`.
    pub(crate) async fn connect(&self) -> Result<(Session, Caps), ImapError> {
        within(
            self.config.connect_timeout,
            "connect and login",
            self.open(),
        )
        .await
    }

    async fn open(&self) -> Result<(Session, Caps), ImapError> {
        let cfg = &self.config;
        let tcp = TcpStream::connect((cfg.host.as_str(), cfg.effective_port())).await?;
        tcp.set_nodelay(true)?;
        let client = match (cfg.tls, &self.tls) {
            (TlsMode::Tls, Some(tls)) => {
                let mut client = async_imap::Client::new(self.handshake(tls, tcp).await?);
                read_greeting(&mut client).await?;
                client
            }
            (TlsMode::Starttls, Some(tls)) => {
                let mut client = async_imap::Client::new(Stream::Plain(tcp));
                read_greeting(&mut client).await?;
                client.run_command_and_check_ok("STARTTLS", None).await?;
                let Stream::Plain(tcp) = client.into_inner() else {
                    return Err(ImapError::Protocol("unexpected stream state".into()));
                };
                // No second greeting after STARTTLS (RFC 3501 6.2.1).
                async_imap::Client::new(self.handshake(tls, tcp).await?)
            }
            _ => {
                let mut client = async_imap::Client::new(Stream::Plain(tcp));
                read_greeting(&mut client).await?;
                client
            }
        };
        let mut session = client
            .login(&cfg.username, self.password.expose())
            .await
            .map_err(|(e, _)| match e {
                async_imap::error::Error::No(message) | async_imap::error::Error::Bad(message) => {
                    ImapError::Login {
                        user: cfg.username.clone(),
                        message,
                    }
                }
                other => ImapError::Imap(other),
            })?;
        let caps = session.capabilities().await?;
        let (idle, mv, uidplus) = (
            caps.has_str("IDLE"),
            caps.has_str("MOVE"),
            caps.has_str("UIDPLUS"),
        );
        drop(caps);
        let delimiter = {
            use futures_util::StreamExt;
            let mut names = session.list(Some(""), None).await?;
            let mut delimiter = None;
            while let Some(name) = names.next().await {
                if let Some(d) = name?.delimiter() {
                    delimiter = d.chars().next();
                }
            }
            delimiter
        };
        let caps = Caps {
            idle,
            mv,
            uidplus,
            delimiter,
        };
        Ok((session, caps))
    }

    async fn handshake(&self, tls: &TlsConnector, tcp: TcpStream) -> Result<Stream, ImapError> {
        let host = self.config.host.clone();
        let name =
            rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| ImapError::Tls {
                host: host.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            })?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|source| ImapError::Tls { host, source })?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

async fn read_greeting(client: &mut async_imap::Client<Stream>) -> Result<(), ImapError> {
    let greeting = client
        .read_response()
        .await?
        .ok_or_else(|| ImapError::Protocol("connection closed before the greeting".into()))?;
    match greeting.parsed() {
        Response::Data {
            status: Status::Ok | Status::PreAuth,
            ..
        } => Ok(()),
        other => Err(ImapError::Protocol(format!(
            "unexpected greeting: {other:?}"
        ))),
    }
}

fn tls_connector(config: &ImapConfig) -> Result<TlsConnector, ConfigError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.ca_file {
        let bad = |message: String| {
            ConfigError::Invalid(vec![runtime_contracts::ConfigIssue {
                key: "ca_file".into(),
                origin: None,
                value: Some(path.display().to_string()),
                message,
            }])
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("cannot read PEM certificates: {e}")))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("cannot read PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(bad("no certificate in file".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("unusable CA certificate: {e}")))?;
        }
    }
    // ring, chosen explicitly: no process-wide default provider is assumed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("tls", format!("tls set-up failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Consecutive reconnect failures, each delay the contracts' [`Backoff`] for its count
/// (doubling from `min` up to `max`, with jitter, so reconnecting clients spread out).
#[derive(Debug)]
pub(crate) struct Reconnects {
    backoff: Backoff,
    failures: u32,
}

impl Reconnects {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Reconnects {
            backoff: Backoff::new(min, max),
            failures: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.backoff.delay(self.failures);
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

/// `check-config --connect`: connects, logs in and selects `config.mailbox`, then logs
/// out, each step within the configured timeouts. The error names the failing step and
/// never the password.
///
/// # Errors
/// The first step that failed (a bad config as [`ImapError::Refused`]).
pub async fn probe(config: &ImapConfig) -> Result<(), ImapError> {
    let connector =
        Connector::new(config.clone()).map_err(|e| ImapError::Refused(e.to_string()))?;
    let (mut session, caps) = connector.connect().await?;
    let name = caps.folder_name(&config.mailbox);
    within(config.command_timeout, "select", session.select(&name)).await?;
    let _ = tokio::time::timeout(config.command_timeout, session.logout()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Reconnects::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(100));
        for _ in 0..10 {
            b.next_delay();
        }
        let late = b.next_delay();
        assert!(late >= Duration::from_millis(500) && late < Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(100));
    }
}
