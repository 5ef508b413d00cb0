//! [`RedisLimiter`]: key slots and rates for worker pools, shared by every process that
//! uses the same Redis and queue name.
//!
//! * The slots of one key are a sorted set, holder -> expiry (ms, Redis's clock).
//!   Taking one first drops expired holders, so a holder that died (kill -9) frees its
//!   slot when its expiry passes, without anyone cleaning up; a live holder renews all
//!   its slots in one script call. The set itself expires after the longest lease, so
//!   keys nobody uses again leave nothing behind.
//! * A rate bucket is one string: the next free start (µs, Redis's clock). A booking
//!   reads it, books `max(next, now)` if that is at most `ahead` away and moves it one
//!   interval on (GCRA with no burst). Redis's `TIME` is every process's clock, so
//!   machines with skewed clocks still share one schedule.
//!
//! Every call is one Lua script, so it is atomic across processes. Key layout:
//! `<prefix>:{<queue>}:limit:slots:<pool>:<key>` and `<prefix>:{<queue>}:limit:rate:<bucket>`;
//! a key longer than 200 bytes is replaced by its SHA-256, bounding key size whatever a
//! task header holds.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{FromRedisValue, RedisError, Script, ScriptInvocation};
use runtime_contracts::{KeySlot, LimitError, QueueError, Rate, Reservation, TaskLimiter};
use sha2::Digest;

use crate::config::RedisQueueConfig;
use crate::conn::Connections;

/// Redis's clock in ms, as every script below reads it.
const NOW_MS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// `KEYS[1]` slots zset. `ARGV`: limit, ttl ms, holder. Returns 1 when taken.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{NOW_MS}
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"
    ))
});

/// `KEYS` slots zsets; `ARGV`: ttl ms, then one holder per key. One 0/1 per key.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{NOW_MS}
local ttl = tonumber(ARGV[1])
local out = {{}}
for i, key in ipairs(KEYS) do
  local until_ms = redis.call('ZSCORE', key, ARGV[i + 1])
  if until_ms and tonumber(until_ms) > now then
    redis.call('ZADD', key, now + ttl, ARGV[i + 1])
    if redis.call('PTTL', key) < ttl then
      redis.call('PEXPIRE', key, ttl)
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"
    ))
});

/// `KEYS[1]` slots zset; `ARGV[1]` holder.
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('ZREM', KEYS[1], ARGV[1])"));

/// `KEYS[1]` rate bucket; `ARGV`: interval µs, ahead µs. Returns {1, wait µs} when
/// booked, {0, retry in µs} when not.
static RESERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local ahead = tonumber(ARGV[2])
local next_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if next_at < now then next_at = now end
local wait = next_at - now
if wait > ahead then
  return {0, wait - ahead}
end
local later = next_at + interval
redis.call('SET', KEYS[1], string.format('%d', later), 'PX', math.floor((later - now) / 1000) + 1000)
return {1, wait}
",
    )
});

/// Keys longer than this are stored by their SHA-256.
const MAX_KEY_BYTES: usize = 200;

/// Key slots and rates in Redis.
pub struct RedisLimiter {
    conns: Connections,
    base: String,
    holder_prefix: String,
    next_holder: AtomicU64,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// A limiter beside the queue `config` names (same URL, prefix and queue name).
    /// Connects lazily: an unreachable Redis shows as unavailable calls, never a panic.
    pub fn new(config: &RedisQueueConfig) -> Result<Self, QueueError> {
        let mut cfg = config.clone();
        cfg.connections = 1;
        cfg.wait_pool_size = 1;
        let conns = Connections::new(&cfg)?;
        let base = if cfg.key_prefix.is_empty() {
            format!("{{{}}}:limit", cfg.name)
        } else {
            format!("{}:{{{}}}:limit", cfg.key_prefix, cfg.name)
        };
        Ok(RedisLimiter {
            conns,
            base,
            holder_prefix: format!(
                "{}:{}:{:08x}",
                crate::host_name(),
                std::process::id(),
                fastrand::u32(..)
            ),
            next_holder: AtomicU64::new(0),
        })
    }

    fn slots_key(&self, scope: &str, key: &str) -> String {
        format!("{}:slots:{}:{}", self.base, bounded(scope), bounded(key))
    }

    fn rate_key(&self, bucket: &str) -> String {
        format!("{}:rate:{}", self.base, bounded(bucket))
    }

    async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, LimitError> {
        self.conns
            .with_shared(async |c: &mut MultiplexedConnection| inv.invoke_async::<T>(c).await)
            .await
            .map_err(|e: RedisError| {
                LimitError::unavailable(format!("redis limiter {op} failed"), e)
            })
    }
}

fn bounded(part: &str) -> std::borrow::Cow<'_, str> {
    if part.len() <= MAX_KEY_BYTES {
        return part.into();
    }
    let digest = sha2::Sha256::digest(part.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}").into()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[async_trait]
impl TaskLimiter for RedisLimiter {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn acquire(
        &self,
        scope: &str,
        key: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Option<KeySlot>, LimitError> {
        let holder = format!(
            "{}:{}",
            self.holder_prefix,
            self.next_holder.fetch_add(1, Ordering::Relaxed)
        );
        let mut inv = ACQUIRE.prepare_invoke();
        inv.key(self.slots_key(scope, key))
            .arg(limit)
            .arg(millis(ttl))
            .arg(&holder);
        let taken: i64 = self.eval("acquire", &inv).await?;
        Ok((taken == 1).then(|| KeySlot {
            scope: scope.to_owned(),
            key: key.to_owned(),
            holder,
        }))
    }

    async fn renew(&self, slot: &KeySlot, ttl: Duration) -> Result<bool, LimitError> {
        Ok(self
            .renew_many(std::slice::from_ref(slot), ttl)
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    async fn renew_many(&self, slots: &[KeySlot], ttl: Duration) -> Result<Vec<bool>, LimitError> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = RENEW.prepare_invoke();
        inv.arg(millis(ttl));
        for slot in slots {
            inv.key(self.slots_key(&slot.scope, &slot.key))
                .arg(&slot.holder);
        }
        let renewed: Vec<i64> = self.eval("renew", &inv).await?;
        Ok(renewed.into_iter().map(|r| r == 1).collect())
    }

    async fn release(&self, slot: &KeySlot) -> Result<(), LimitError> {
        let mut inv = RELEASE.prepare_invoke();
        inv.key(self.slots_key(&slot.scope, &slot.key))
            .arg(&slot.holder);
        let _: i64 = self.eval("release", &inv).await?;
        Ok(())
    }

    async fn reserve(
        &self,
        bucket: &str,
        rate: Rate,
        ahead: Duration,
    ) -> Result<Reservation, LimitError> {
        let mut inv = RESERVE.prepare_invoke();
        inv.key(self.rate_key(bucket))
            .arg(micros(rate.interval()).max(1))
            .arg(micros(ahead));
        let (booked, wait): (i64, i64) = self.eval("reserve", &inv).await?;
        let wait = Duration::from_micros(u64::try_from(wait).unwrap_or(0));
        Ok(if booked == 1 {
            Reservation::Go(wait)
        } else {
            Reservation::Wait(wait)
        })
    }
}
