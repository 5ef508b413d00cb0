//! Connections: a few shared multiplexed connections for every non-blocking call, and a
//! deadpool of exclusive connections for blocking waits.
//!
//! Why two kinds: a multiplexed connection pipelines the calls of all workers of a process
//! over one socket (one round trip each, no pool check-out), but a blocking `BLPOP` would
//! stall everyone behind it, so idle consumers block on pooled connections of their own.
//! deadpool checks a connection with a `PING` on every check-out; that round trip is paid
//! only by idle consumers, never on the hot path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{AsyncConnectionConfig, Client, RedisError};
use deadpool_redis::{Connection, Manager, Pool, Runtime, Timeouts};

use runtime_contracts::QueueError;

use crate::config::RedisQueueConfig;

/// One shared multiplexed connection that reconnects lazily after it broke.
struct Shared {
    slot: Mutex<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
}

/// The connections of one queue handle.
pub(crate) struct Connections {
    client: Client,
    config: AsyncConnectionConfig,
    shared: Vec<Shared>,
    next: AtomicUsize,
    pool: Pool,
    pool_timeouts: Timeouts,
}

/// The redis error may quote the URL: keep only its kind.
fn invalid_url(cfg: &RedisQueueConfig, e: &RedisError) -> QueueError {
    QueueError::Invalid(format!(
        "invalid redis url {}: {:?}",
        cfg.redacted_url(),
        e.kind()
    ))
}

/// Parses the URL into a client, without connecting: the one parse both
/// [`RedisQueueConfig::check`] and the connections use.
pub(crate) fn parse_url(cfg: &RedisQueueConfig) -> Result<Client, QueueError> {
    Client::open(cfg.url.expose()).map_err(|e| invalid_url(cfg, &e))
}

impl Connections {
    pub(crate) fn new(cfg: &RedisQueueConfig) -> Result<Self, QueueError> {
        if cfg.url.expose().starts_with("rediss://") {
            // rustls needs one crypto provider; pick ring (no C build). An error only
            // means the process chose one already, which is fine.
            let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        }
        let invalid = |e: RedisError| invalid_url(cfg, &e);
        let client = parse_url(cfg)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.operation_timeout));
        // Blocking waits must not trip a response timeout: they get a tokio timeout of
        // their own (wait + operation timeout) instead.
        let wait_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(None);
        let manager = Manager::new_with_config(cfg.url.expose(), wait_config).map_err(invalid)?;
        let pool = Pool::builder(manager)
            .max_size(cfg.wait_pool_size)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| QueueError::Invalid(format!("redis wait pool: {e}")))?;
        let shared = (0..cfg.connections)
            .map(|_| Shared {
                slot: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        Ok(Connections {
            client,
            config,
            shared,
            next: AtomicUsize::new(0),
            pool,
            pool_timeouts: Timeouts {
                wait: Some(cfg.operation_timeout),
                create: Some(cfg.connect_timeout),
                recycle: Some(cfg.operation_timeout),
            },
        })
    }

    /// A shared connection (round robin), opening it when needed. Returns its slot index
    /// so a failure can drop exactly that connection.
    pub(crate) async fn shared(&self) -> Result<(usize, MultiplexedConnection), RedisError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shared.len();
        let s = &self.shared[i];
        if let Some(c) = lock(&s.slot).clone() {
            return Ok((i, c));
        }
        // One task connects, the others wait for its result instead of piling on.
        let _guard = s.connecting.lock().await;
        if let Some(c) = lock(&s.slot).clone() {
            return Ok((i, c));
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *lock(&s.slot) = Some(conn.clone());
        Ok((i, conn))
    }

    /// Runs `call` on a shared connection; an error that may have broken the connection
    /// drops it, so the next call reconnects.
    pub(crate) async fn with_shared<T>(
        &self,
        call: impl AsyncFnOnce(&mut MultiplexedConnection) -> Result<T, RedisError>,
    ) -> Result<T, RedisError> {
        let (slot, mut conn) = self.shared().await?;
        let result = call(&mut conn).await;
        if let Err(error) = &result {
            self.forget(slot, error);
        }
        result
    }

    /// Drops shared connection `i` after an error that may have broken it; the next
    /// call reconnects.
    pub(crate) fn forget(&self, i: usize, error: &RedisError) {
        if is_connection_error(error)
            && let Some(s) = self.shared.get(i)
        {
            *lock(&s.slot) = None;
        }
    }

    /// An exclusive connection for a blocking wait.
    pub(crate) async fn exclusive(&self) -> Result<Connection, QueueError> {
        self.pool
            .timeout_get(&self.pool_timeouts)
            .await
            .map_err(|e| QueueError::unavailable("redis connection failed", e))
    }

    pub(crate) fn close(&self) {
        self.pool.close();
        for s in &self.shared {
            *lock(&s.slot) = None;
        }
    }
}

/// True when the connection that returned `e` should not be used again.
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned slot only holds a connection handle; it is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
