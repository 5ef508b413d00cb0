//! [`RedisLease`]: the Redis queue's leader lease
//! ([`LeaderLease`](runtime_contracts::LeaderLease)), one string key that at most one
//! holder has at a time.
//!
//! `SET key <holder> NX PX ttl` takes it; Lua scripts renew and release it only while the
//! key still names this holder, so nobody ever extends or deletes someone else's lease. A
//! holder that stops renewing (crashed, cut off) loses the lease when the key expires, and
//! a standby takes it on its next attempt. The runtime's `LeaderSource` (core) runs an
//! exclusive source behind it.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, FromRedisValue, RedisError, Script};

pub use runtime_contracts::LeaseError;
use runtime_contracts::{LeaderLease, QueueError, Secret};

use crate::config::RedisQueueConfig;
use crate::conn::Connections;

/// Extends the lease only while it is ours. `ARGV`: holder, ttl ms.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Deletes the lease only while it is ours. `ARGV`: holder.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

/// Shortest lease accepted: renewals every ttl/3 must stay well above a round trip.
const MIN_TTL: Duration = Duration::from_millis(30);

/// A lease in Redis that at most one holder has at a time.
///
/// The holder id is `host:pid:random`, with the random part chosen per `RedisLease`, so
/// two leases in one process (tests, two sources) are different holders too.
pub struct RedisLease {
    key: String,
    holder: String,
    ttl: Duration,
    ttl_ms: u64,
    conns: Connections,
    redacted_url: String,
}

impl std::fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLease")
            .field("url", &self.redacted_url)
            .field("key", &self.key)
            .field("holder", &self.holder)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisLease {
    /// A lease on `key` that expires `ttl` after it was last taken or renewed. Does not
    /// talk to Redis: an unreachable Redis shows up later as "not leader".
    ///
    /// Calls time out after ttl/3 (at most 2 s), so a renewal answers before the lease
    /// could run out.
    pub fn new(url: Secret, key: impl Into<String>, ttl: Duration) -> Result<Self, LeaseError> {
        let key = key.into();
        if key.is_empty() {
            return Err(LeaseError::Invalid("key must not be empty".into()));
        }
        if ttl < MIN_TTL {
            return Err(LeaseError::Invalid(format!(
                "ttl must be at least {}ms",
                MIN_TTL.as_millis()
            )));
        }
        let operation_timeout = (ttl / 3).min(Duration::from_secs(2));
        // The queue's connection code, reused: one lazily (re)opened multiplexed
        // connection; the wait pool it also builds stays empty (deadpool is lazy).
        let mut cfg = RedisQueueConfig::new(url.expose(), "lease");
        cfg.connections = 1;
        cfg.wait_pool_size = 1;
        cfg.connect_timeout = operation_timeout;
        cfg.operation_timeout = operation_timeout;
        let scheme_ok = ["redis://", "rediss://"]
            .iter()
            .any(|s| url.expose().starts_with(s));
        if !scheme_ok {
            return Err(LeaseError::Invalid(
                "url must start with redis:// or rediss://".into(),
            ));
        }
        let conns = Connections::new(&cfg).map_err(|e| match e {
            QueueError::Invalid(message) => LeaseError::Invalid(message),
            other => LeaseError::Invalid(other.to_string()),
        })?;
        Ok(RedisLease {
            holder: holder_id(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            ttl,
            key,
            conns,
            redacted_url: cfg.redacted_url(),
        })
    }

    async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, LeaseError> {
        self.conns
            .with_shared(async |c: &mut MultiplexedConnection| cmd.query_async::<T>(c).await)
            .await
            .map_err(|e| self.error(op, e))
    }

    async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, LeaseError> {
        self.conns
            .with_shared(async |c: &mut MultiplexedConnection| inv.invoke_async::<T>(c).await)
            .await
            .map_err(|e| self.error(op, e))
    }

    fn error(&self, op: &'static str, source: RedisError) -> LeaseError {
        LeaseError::Unavailable {
            op,
            key: self.key.clone(),
            source: Box::new(source),
        }
    }
}

#[async_trait]
impl LeaderLease for RedisLease {
    fn key(&self) -> &str {
        &self.key
    }

    /// `host:pid:random`, the value of the key while held.
    fn holder(&self) -> &str {
        &self.holder
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn try_acquire(&self) -> Result<bool, LeaseError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&self.key)
            .arg(&self.holder)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms);
        let set: Option<String> = self.query("acquire", &cmd).await?;
        if set.is_some() {
            return Ok(true);
        }
        // Ours already: a renewal whose reply was lost, or a release that failed. Taking
        // it back is safe (nobody else runs) and spares waiting out the ttl.
        self.renew().await
    }

    async fn renew(&self) -> Result<bool, LeaseError> {
        let mut inv = RENEW_SCRIPT.prepare_invoke();
        inv.key(&self.key).arg(&self.holder).arg(self.ttl_ms);
        let renewed: i64 = self.eval("renew", &inv).await?;
        Ok(renewed == 1)
    }

    async fn release(&self) -> Result<bool, LeaseError> {
        let mut inv = RELEASE_SCRIPT.prepare_invoke();
        inv.key(&self.key).arg(&self.holder);
        let deleted: i64 = self.eval("release", &inv).await?;
        Ok(deleted == 1)
    }

    async fn current_holder(&self) -> Result<Option<String>, LeaseError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(&self.key);
        self.query("read", &cmd).await
    }
}

/// `host:pid:random`, the random part fresh per call.
fn holder_id() -> String {
    format!(
        "{}:{}:{:08x}",
        crate::host_name(),
        std::process::id(),
        fastrand::u32(..)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_differ_and_name_the_process() {
        let a = holder_id();
        let b = holder_id();
        assert_ne!(a, b);
        assert!(a.contains(&format!(":{}:", std::process::id())), "{a}");
        assert!(a.starts_with(&format!("{}:", crate::host_name())), "{a}");
    }

    #[test]
    fn bad_settings_are_errors_and_never_show_the_password() {
        let url = Secret::new("redis://u:hunter2@127.0.0.1:6379");
        assert!(RedisLease::new(url.clone(), "", Duration::from_secs(1)).is_err());
        assert!(RedisLease::new(url.clone(), "k", Duration::from_millis(1)).is_err());
        let bad = RedisLease::new(
            Secret::new("http://u:hunter2@h"),
            "k",
            Duration::from_secs(1),
        );
        assert!(bad.is_err_and(|e| !e.to_string().contains("hunter2")));
        let ok = RedisLease::new(url, "k", Duration::from_secs(1));
        assert!(ok.is_ok_and(|l| !format!("{l:?}").contains("hunter2")));
    }
}
