//! [`RedisQueue`]: the [`TaskQueue`] implementation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::Connection;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, FromRedisValue, Script, ScriptInvocation, Value};
use futures_util::future::try_join_all;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use runtime_contracts::{
    DeadLetter, Delivery, LeaderLease, Lease, LeaseError, NackOutcome, PublishOutcome, QueueError,
    QueueStats, Secret, Task, TaskId, TaskQueue, now_millis,
};

use crate::config::RedisQueueConfig;
use crate::conn::{Connections, is_connection_error};
use crate::keys::Keys;
use crate::lease::RedisLease;
use crate::scripts::{
    ACK_SCRIPT, CONSUME_SCRIPT, DEAD_SCRIPT, PUBLISH_SCRIPT, SETTLE_SCRIPT, STATS_SCRIPT,
};

/// Most tasks one script call publishes, consumes or acks: keeps each call well under
/// Lua's argument limit and keeps Redis responsive to other clients.
const CHUNK: usize = 500;

/// A task queue in Redis, shared by any number of processes.
///
/// Cheap to share behind an `Arc`; all methods take `&self`.
pub struct RedisQueue {
    name: String,
    keys: Keys,
    conns: Connections,
    consumer: String,
    visibility_ms: u64,
    max_attempts: u32,
    operation_timeout: Duration,
    closed: AtomicBool,
    wait_seq: AtomicU64,
    /// For the leader leases, which open their own connection (see [`RedisLease::new`]).
    url: Secret,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("name", &self.name)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Builds the queue and checks that Redis answers.
    pub async fn connect(config: RedisQueueConfig) -> Result<RedisQueue, QueueError> {
        let queue = Self::connect_lazy(config)?;
        queue.ping().await?;
        info!(
            queue = %queue.name,
            consumer = %queue.consumer,
            "redis queue connected"
        );
        Ok(queue)
    }

    /// Builds the queue without talking to Redis; the first call connects. Use it when
    /// the process should start (and report not ready) while Redis is away.
    pub fn connect_lazy(config: RedisQueueConfig) -> Result<RedisQueue, QueueError> {
        config.validate()?;
        let conns = Connections::new(&config)?;
        debug!(queue = %config.name, url = %config.redacted_url(), "redis queue configured");
        Ok(RedisQueue {
            url: config.url.clone(),
            keys: Keys::new(&config.key_prefix, &config.name),
            name: config.name,
            conns,
            consumer: consumer_id().to_owned(),
            visibility_ms: u64::try_from(config.visibility_timeout.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            max_attempts: config.max_attempts,
            operation_timeout: config.operation_timeout,
            closed: AtomicBool::new(false),
            wait_seq: AtomicU64::new(0),
        })
    }

    /// This process's consumer identity (host, pid and a random part), recorded with
    /// each lease and in the `consumers` key.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Every Redis key of this queue, for inspection and clean-up.
    pub fn keys(&self) -> Vec<String> {
        self.keys.all().to_vec()
    }

    fn invocation(&self, script: &'static Script) -> ScriptInvocation<'static> {
        let mut inv = script.prepare_invoke();
        for k in self.keys.all() {
            inv.key(k.as_str());
        }
        inv
    }

    fn check_open(&self) -> Result<(), QueueError> {
        if self.closed.load(Ordering::Acquire) {
            Err(QueueError::Closed)
        } else {
            Ok(())
        }
    }

    /// Runs a script on a shared connection.
    async fn eval<T: FromRedisValue>(
        &self,
        what: &'static str,
        inv: &ScriptInvocation<'static>,
    ) -> Result<T, QueueError> {
        self.check_open()?;
        self.conns
            .with_shared(async |c: &mut MultiplexedConnection| inv.invoke_async::<T>(c).await)
            .await
            .map_err(|e| self.outage(what, e))
    }

    /// Runs one plain command on a shared connection.
    async fn query<T: FromRedisValue>(
        &self,
        what: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, QueueError> {
        self.check_open()?;
        self.conns
            .with_shared(async |c: &mut MultiplexedConnection| cmd.query_async::<T>(c).await)
            .await
            .map_err(|e| self.outage(what, e))
    }

    fn outage(&self, what: &str, e: redis::RedisError) -> QueueError {
        if !is_connection_error(&e) {
            warn!(queue = %self.name, error = %e, "redis {what} failed");
        }
        QueueError::unavailable(format!("redis {what} failed on queue {}", self.name), e)
    }

    /// Takes up to `max` tasks without waiting. Returns the deliveries and, when there
    /// were none, the hint (ms until something may become ready, -1 for never).
    async fn take(&self, max: usize) -> Result<(Vec<Delivery>, i64), QueueError> {
        let mut inv = self.invocation(&CONSUME_SCRIPT);
        inv.arg(max).arg(self.visibility_ms).arg(&self.consumer);
        let items: Vec<Value> = self.eval("consume", &inv).await?;
        let mut it = items.into_iter();
        let hint = match it.next() {
            Some(Value::Int(h)) => h,
            _ => return Err(QueueError::Corrupt("bad consume reply".into())),
        };
        let mut out = Vec::with_capacity(it.len() / 3);
        while let (Some(id), Some(json), Some(token)) = (it.next(), it.next(), it.next()) {
            let (Value::BulkString(id), Value::BulkString(json), Value::BulkString(token)) =
                (id, json, token)
            else {
                return Err(QueueError::Corrupt("bad consume reply".into()));
            };
            let token = std::str::from_utf8(&token)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| QueueError::Corrupt("bad lease token".into()))?;
            let id_text = String::from_utf8_lossy(&id).into_owned();
            match serde_json::from_slice::<Task>(&json) {
                Ok(mut task) => {
                    if let Ok(id) = id_text.parse::<TaskId>() {
                        task.id = id;
                    }
                    out.push(Delivery {
                        task,
                        lease: Lease(token),
                    });
                }
                Err(e) => self.bury_corrupt(&id_text, token, json, e).await,
            }
        }
        Ok((out, hint))
    }

    /// A stored task that does not decode can never be handled: move it to the dead
    /// letters with its raw bytes, so an operator sees it and the queue moves on.
    async fn bury_corrupt(&self, id: &str, token: u64, raw: Vec<u8>, e: serde_json::Error) {
        let reason = format!("corrupt task data: {e}");
        warn!(queue = %self.name, task = %id, %reason, "dead-lettering undecodable task");
        let mut task = Task::new("corrupt", raw);
        if let Ok(parsed) = id.parse::<TaskId>() {
            task.id = parsed;
        }
        let letter = DeadLetter {
            task,
            reason,
            failed_at_ms: now_millis(),
        };
        let Ok(json) = serde_json::to_vec(&letter) else {
            return;
        };
        let mut inv = self.invocation(&SETTLE_SCRIPT);
        inv.arg("dead")
            .arg(id)
            .arg(token)
            .arg("")
            .arg(json)
            .arg("0");
        if let Err(error) = self.eval::<i64>("dead-letter", &inv).await {
            warn!(queue = %self.name, task = %id, %error, "dead-lettering undecodable task failed");
        }
    }

    /// Blocks until a doorbell token arrives or `block` passes.
    ///
    /// Redis checks blocking timeouts only every 100 ms (`hz 10`), so the precise timer
    /// runs here: when it fires, a token pushed to this wait's private key (same hash
    /// tag) ends the `BLPOP` at once and the connection stays usable.
    async fn wait_for_work(&self, block: Duration) -> Result<(), QueueError> {
        let conn = self.conns.exclusive().await?;
        let mut guard = WaitGuard {
            conn: Some(conn),
            clean: false,
        };
        let private = format!(
            "{}:{}:{}",
            self.keys.wake(),
            self.consumer,
            self.wait_seq.fetch_add(1, Ordering::Relaxed)
        );
        // The server-side timeout is only a backstop.
        let backstop = block + self.operation_timeout;
        let Some(conn) = guard.conn.as_mut() else {
            return Ok(());
        };
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(self.keys.wake())
            .arg(&private)
            .arg(format!("{:.3}", backstop.as_secs_f64()));
        let blpop = cmd.query_async::<Value>(conn);
        tokio::pin!(blpop);
        let woke = tokio::select! {
            r = &mut blpop => Some(r),
            () = tokio::time::sleep(block) => None,
        };
        let result = match woke {
            Some(r) => r,
            None => {
                let mut poke = redis::pipe();
                poke.cmd("RPUSH")
                    .arg(&private)
                    .arg("1")
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&private)
                    .arg(60_000)
                    .ignore();
                self.conns
                    .with_shared(async |c: &mut MultiplexedConnection| {
                        poke.query_async::<()>(c).await
                    })
                    .await
                    .map_err(|e| self.outage("wake", e))?;
                match tokio::time::timeout(self.operation_timeout, &mut blpop).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(QueueError::Unavailable {
                            message: format!("redis wait timed out on queue {}", self.name),
                            source: None,
                        });
                    }
                }
            }
        };
        match result {
            Ok(_) => {
                guard.clean = true;
                Ok(())
            }
            Err(e) => Err(self.outage("wait", e)),
        }
    }

    fn origin_field(task: &Task) -> String {
        task.origin
            .as_ref()
            .and_then(|o| serde_json::to_string(&[&o.source, &o.key]).ok())
            .unwrap_or_default()
    }

    async fn settle(
        &self,
        what: &'static str,
        inv: ScriptInvocation<'static>,
        id: TaskId,
    ) -> Result<(), QueueError> {
        match self.eval::<i64>(what, &inv).await? {
            1 => Ok(()),
            _ => Err(QueueError::LeaseLost(id)),
        }
    }

    async fn bury(
        &self,
        delivery: &Delivery,
        reason: &str,
        counted_nack: bool,
    ) -> Result<(), QueueError> {
        let letter = DeadLetter {
            task: delivery.task.clone(),
            reason: reason.to_owned(),
            failed_at_ms: now_millis(),
        };
        let json = serde_json::to_vec(&letter).map_err(|e| QueueError::Corrupt(e.to_string()))?;
        let mut inv = self.invocation(&SETTLE_SCRIPT);
        inv.arg("dead")
            .arg(delivery.task.id.to_string())
            .arg(delivery.lease.0)
            .arg(Self::origin_field(&delivery.task))
            .arg(json)
            .arg(if counted_nack { "1" } else { "0" });
        self.settle("dead-letter", inv, delivery.task.id).await
    }

    async fn publish_chunk(
        &self,
        mut conn: MultiplexedConnection,
        slot: usize,
        tasks: &[Task],
    ) -> Result<Vec<PublishOutcome>, QueueError> {
        let mut inv = self.invocation(&PUBLISH_SCRIPT);
        inv.arg(tasks.len());
        for t in tasks {
            let json = serde_json::to_vec(t).map_err(|e| QueueError::Corrupt(e.to_string()))?;
            inv.arg(t.id.to_string())
                .arg(json)
                .arg(Self::origin_field(t))
                .arg(t.not_before_ms.unwrap_or(0));
        }
        let flags: Vec<String> = match inv.invoke_async(&mut conn).await {
            Ok(v) => v,
            Err(e) => {
                self.conns.forget(slot, &e);
                return Err(self.outage("publish", e));
            }
        };
        flags
            .into_iter()
            .map(|f| {
                if f.is_empty() {
                    Ok(PublishOutcome::Enqueued)
                } else {
                    f.parse::<TaskId>()
                        .map(|existing| PublishOutcome::Duplicate { existing })
                        .map_err(|_| QueueError::Corrupt(format!("bad publish reply {f:?}")))
                }
            })
            .collect()
    }
}

/// Returns the pooled connection of a blocking wait only when no reply is pending on it;
/// otherwise detaches it, so the next user never waits behind an orphaned `BLPOP`.
struct WaitGuard {
    conn: Option<Connection>,
    clean: bool,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if !self.clean
            && let Some(c) = self.conn.take()
        {
            drop(Connection::take(c));
        }
    }
}

/// The consumer identity of this process: host, pid and 32 random bits, so two replicas
/// (or a restarted process with a recycled pid) never share it.
fn consumer_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let host = crate::host_name();
        let random = fastrand::u32(..);
        format!("{host}:{}:{random:08x}", std::process::id())
    })
}

fn stat(map: &[(String, u64)], field: &str) -> u64 {
    map.iter().find(|(k, _)| k == field).map_or(0, |(_, v)| *v)
}

#[async_trait]
impl TaskQueue for RedisQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn publish(&self, task: Task) -> Result<PublishOutcome, QueueError> {
        let mut out = self.publish_batch(vec![task]).await?;
        out.pop()
            .ok_or_else(|| QueueError::Corrupt("empty publish reply".into()))
    }

    async fn publish_batch(&self, tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
        self.check_open()?;
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let (slot, conn) = self
            .conns
            .shared()
            .await
            .map_err(|e| self.outage("publish", e))?;
        // All chunks go out on one multiplexed connection at once: one pipeline, in order.
        let chunks = tasks
            .chunks(CHUNK)
            .map(|c| self.publish_chunk(conn.clone(), slot, c));
        let outcomes = try_join_all(chunks).await?;
        Ok(outcomes.into_iter().flatten().collect())
    }

    async fn consume(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(CHUNK);
        let deadline = Instant::now() + wait;
        loop {
            let (deliveries, hint) = self.take(max).await?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(deliveries);
            }
            let mut block = deadline - now;
            if hint == 0 {
                continue;
            }
            if hint > 0 {
                block = block.min(Duration::from_millis(hint as u64));
            }
            self.wait_for_work(block).await?;
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.ack_batch(std::slice::from_ref(delivery)).await
    }

    async fn ack_batch(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        let mut first_lost = None;
        for chunk in deliveries.chunks(CHUNK) {
            let mut inv = self.invocation(&ACK_SCRIPT);
            inv.arg(chunk.len());
            for d in chunk {
                inv.arg(d.task.id.to_string())
                    .arg(d.lease.0)
                    .arg(Self::origin_field(&d.task));
            }
            let lost: Vec<String> = self.eval("ack", &inv).await?;
            if first_lost.is_none() {
                first_lost = lost.first().and_then(|id| id.parse::<TaskId>().ok());
            }
        }
        match first_lost {
            Some(id) => Err(QueueError::LeaseLost(id)),
            None => Ok(()),
        }
    }

    async fn nack(
        &self,
        delivery: &Delivery,
        retry_delay: Option<Duration>,
        error: &str,
    ) -> Result<NackOutcome, QueueError> {
        let mut task = delivery.task.clone();
        task.attempts = task.attempts.saturating_add(1);
        if task.attempts >= self.max_attempts {
            let failed = Delivery {
                task,
                lease: delivery.lease,
            };
            self.bury(&failed, error, true).await?;
            return Ok(NackOutcome::DeadLettered);
        }
        let delay_ms = retry_delay.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        task.not_before_ms = (delay_ms > 0).then(|| now_millis().saturating_add(delay_ms));
        let json = serde_json::to_vec(&task).map_err(|e| QueueError::Corrupt(e.to_string()))?;
        let mut inv = self.invocation(&SETTLE_SCRIPT);
        inv.arg("requeue")
            .arg(task.id.to_string())
            .arg(delivery.lease.0)
            .arg(json)
            .arg(delay_ms)
            .arg("nacked_total")
            .arg("0");
        self.settle("nack", inv, task.id).await?;
        Ok(NackOutcome::Requeued)
    }

    async fn release(
        &self,
        delivery: &Delivery,
        delay: Option<Duration>,
    ) -> Result<(), QueueError> {
        let delay_ms = delay.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut inv = self.invocation(&SETTLE_SCRIPT);
        inv.arg("requeue")
            .arg(delivery.task.id.to_string())
            .arg(delivery.lease.0)
            .arg("")
            .arg(delay_ms)
            .arg("released_total")
            .arg("1");
        self.settle("release", inv, delivery.task.id).await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        self.bury(delivery, reason, false).await
    }

    async fn extend_lease(&self, delivery: &Delivery, by: Duration) -> Result<(), QueueError> {
        let by_ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut inv = self.invocation(&SETTLE_SCRIPT);
        inv.arg("extend")
            .arg(delivery.task.id.to_string())
            .arg(delivery.lease.0)
            .arg(by_ms);
        self.settle("extend lease", inv, delivery.task.id).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let inv = self.invocation(&STATS_SCRIPT);
        let items: Vec<Value> = self.eval("stats", &inv).await?;
        let bad = || QueueError::Corrupt("bad stats reply".into());
        let mut ints = Vec::with_capacity(5);
        let mut counters = Vec::new();
        let mut it = items.into_iter();
        for v in it.by_ref().take(5) {
            ints.push(u64::from_redis_value(v).map_err(|_| bad())?);
        }
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let k = String::from_redis_value(k).map_err(|_| bad())?;
            let v = u64::from_redis_value(v).map_err(|_| bad())?;
            counters.push((k, v));
        }
        let [ready, in_flight, delayed, due, dead] = ints[..] else {
            return Err(bad());
        };
        Ok(QueueStats {
            name: self.name.clone(),
            backend: "redis".to_owned(),
            pending: ready + due,
            in_flight,
            delayed: delayed.saturating_sub(due),
            dead,
            capacity: None,
            blocked_publishers: 0,
            published_total: stat(&counters, "published_total"),
            acked_total: stat(&counters, "acked_total"),
            nacked_total: stat(&counters, "nacked_total"),
            released_total: stat(&counters, "released_total"),
            dead_lettered_total: stat(&counters, "dead_lettered_total"),
            expired_total: stat(&counters, "expired_total"),
            cancelled_total: stat(&counters, "cancelled_total"),
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut inv = self.invocation(&DEAD_SCRIPT);
        inv.arg("list").arg(limit);
        let raw: Vec<Option<Vec<u8>>> = self.eval("dead letters", &inv).await?;
        raw.into_iter()
            .flatten()
            .map(|j| {
                serde_json::from_slice::<DeadLetter>(&j)
                    .map_err(|e| QueueError::Corrupt(format!("dead letter: {e}")))
            })
            .collect()
    }

    async fn retry_dead_letter(&self, id: TaskId) -> Result<bool, QueueError> {
        let mut get = redis::cmd("HGET");
        get.arg(&self.keys.all()[7]).arg(id.to_string());
        let raw: Option<Vec<u8>> = self.query("retry dead letter", &get).await?;
        let Some(raw) = raw else {
            return Ok(false);
        };
        let letter: DeadLetter = serde_json::from_slice(&raw)
            .map_err(|e| QueueError::Corrupt(format!("dead letter: {e}")))?;
        let mut task = letter.task;
        task.attempts = 0;
        task.not_before_ms = None;
        let json = serde_json::to_vec(&task).map_err(|e| QueueError::Corrupt(e.to_string()))?;
        let mut inv = self.invocation(&DEAD_SCRIPT);
        inv.arg("retry")
            .arg(id.to_string())
            .arg(json)
            .arg(Self::origin_field(&task));
        Ok(self.eval::<i64>("retry dead letter", &inv).await? == 1)
    }

    async fn delete_dead_letter(&self, id: TaskId) -> Result<bool, QueueError> {
        let mut inv = self.invocation(&DEAD_SCRIPT);
        inv.arg("delete").arg(id.to_string());
        Ok(self.eval::<i64>("delete dead letter", &inv).await? == 1)
    }

    async fn purge_dead_letters(&self) -> Result<u64, QueueError> {
        let mut inv = self.invocation(&DEAD_SCRIPT);
        inv.arg("purge");
        self.eval("purge dead letters", &inv).await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.query::<String>("ping", &redis::cmd("PING"))
            .await
            .map(drop)
    }

    async fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.conns.close();
            debug!(queue = %self.name, "redis queue closed");
        }
    }

    /// A [`RedisLease`] on this queue's key `<prefix>:{<queue>}:lease:<name>`.
    fn leader_lease(&self, name: &str, ttl: Duration) -> Result<Arc<dyn LeaderLease>, LeaseError> {
        if name.is_empty() {
            return Err(LeaseError::Invalid("name must not be empty".into()));
        }
        Ok(Arc::new(RedisLease::new(
            self.url.clone(),
            self.keys.lease(name),
            ttl,
        )?))
    }
}
