//! [`MailOrderModule`]: what mail-order-bot registers with the runtime.
//!
//! One source (chosen only by `mail.source`), one worker pool running
//! [`OrderHandler`](crate::handler::OrderHandler) on the platform queue, the order store's
//! health contributor, the source's acknowledger (so a process that finishes a task files
//! its message), and a config subscriber that swaps the catalog on reload. The module asks
//! the runtime for the queue by name; the backend matters in one spot only,
//! [`build_source`]: with the Redis queue several instances may share one mailbox, so the
//! source runs behind a leader lease in that Redis ([`LeaderSource`]) and only the lease
//! holder reads the mailbox, while every instance runs workers and acknowledges.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use runtime_adapters_imap::{ImapMode, ImapSource};
use runtime_adapters_maildir::MaildirSource;
use runtime_adapters_redis::{LeaderSource, RedisLease, RedisQueueConfig, RedisQueueSettings};
use runtime_contracts::{
    ApplicationModule, ConfigChange, ConfigSnapshot, ConfigSubscriber, ModuleContext, ModuleError,
    PoolSpec, Task, TaskContext, TaskError, TaskHandler, TaskSource,
};
use runtime_core::PlatformConfig;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{MailConfig, OrdersConfig, SourceKind};
use crate::handler::OrderHandler;
use crate::store::{OrderStore, StoreHealth};

/// The registered name of the mail source (and of its acknowledger).
pub const SOURCE_NAME: &str = "mail";

/// The name of the worker pool.
pub const POOL_NAME: &str = "orders";

/// The mail-order-bot application module.
pub struct MailOrderModule {
    store: Mutex<Option<OrderStore>>,
    progress: Arc<Progress>,
}

/// Counts finished handler runs and wakes whoever watches.
struct Progress {
    tx: watch::Sender<u64>,
    count: AtomicU64,
}

impl Progress {
    fn bump(&self) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        self.tx.send_replace(n);
    }
}

impl std::fmt::Debug for MailOrderModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailOrderModule")
            .field("finished", &self.progress.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for MailOrderModule {
    fn default() -> Self {
        MailOrderModule::new()
    }
}

impl MailOrderModule {
    /// A module that reads everything from the configuration at registration.
    pub fn new() -> Self {
        MailOrderModule {
            store: Mutex::new(None),
            progress: Arc::new(Progress {
                tx: watch::channel(0).0,
                count: AtomicU64::new(0),
            }),
        }
    }

    /// A counter of handler runs that finished (stored, rejected or failed), for waiting
    /// on progress without polling (the demo's "wait until every sample is processed").
    pub fn finished(&self) -> watch::Receiver<u64> {
        self.progress.tx.subscribe()
    }

    /// The order store, once registered.
    pub fn store(&self) -> Option<OrderStore> {
        self.store.lock().ok().and_then(|s| s.clone())
    }
}

/// The Redis key of the leader lease for the mail source on queue `queue_name`:
/// `plba:{<queue>}:lease:source:mail`. It sits under the queue's prefix and hash tag, so
/// instances that share a queue share the lease, two bots on two queues in one Redis do
/// not, and deleting the queue's keys (`plba:{<queue>}:*`) takes the lease along.
pub fn leader_lease_key(queue_name: &str) -> String {
    let prefix = RedisQueueConfig::new("", queue_name).key_prefix;
    format!("{prefix}:{{{queue_name}}}:lease:source:{SOURCE_NAME}")
}

/// The `queue.backend` tag of the Redis queue, whose processes share one mailbox lease.
const REDIS_BACKEND: &str = "redis";

/// The Redis queue's settings when `[queue]` chose it: the leader lease lives there.
pub fn redis_queue(snapshot: &ConfigSnapshot) -> Result<Option<RedisQueueSettings>, ModuleError> {
    let platform = PlatformConfig::from_snapshot(snapshot)?;
    if platform.queue.backend != REDIS_BACKEND {
        return Ok(None);
    }
    Ok(Some(runtime_compose::read_settings(snapshot, "queue")?))
}

/// Builds the source `mail.source` names. This match is the only place where polling,
/// IDLE and Maildir differ. With the Redis queue (`redis` given) the source is wrapped in
/// a [`LeaderSource`] on [`leader_lease_key`] (ttl `mail.leader_lease`): any number of
/// instances may run, one reads the mailbox. The memory queue means one process, so no
/// lease.
pub fn build_source(
    mail: &MailConfig,
    queue_name: &str,
    redis: Option<&RedisQueueSettings>,
) -> Result<Arc<dyn TaskSource>, ModuleError> {
    // Every task names its customer, for `[workers] concurrency_key = "customer"`.
    let inner: Arc<dyn TaskSource> = Arc::new(crate::customer::CustomerHeader::new(
        build_mailbox_source(mail)?,
    ));
    match redis {
        None => Ok(inner),
        Some(redis) => {
            // No Redis call here: an unreachable Redis only keeps this instance standby.
            let lease = RedisLease::new(
                redis.redis_url.clone(),
                leader_lease_key(queue_name),
                mail.leader_lease,
            )
            .map_err(|e| ModuleError::setup("cannot set up the mailbox leader lease", e))?;
            Ok(Arc::new(LeaderSource::new(inner, lease)))
        }
    }
}

/// The mailbox source itself, before any lease.
fn build_mailbox_source(mail: &MailConfig) -> Result<Arc<dyn TaskSource>, ModuleError> {
    Ok(match mail.source {
        SourceKind::Maildir => Arc::new(MaildirSource::new(mail.maildir_config(), SOURCE_NAME)),
        SourceKind::ImapPoll => Arc::new(ImapSource::new(
            SOURCE_NAME,
            mail.imap.clone(),
            ImapMode::Poll,
        )?),
        SourceKind::ImapIdle => Arc::new(ImapSource::new(
            SOURCE_NAME,
            mail.imap.clone(),
            ImapMode::Idle,
        )?),
    })
}

/// Runs the order handler and tells the module each time a run finished.
struct CountingHandler {
    inner: Arc<OrderHandler>,
    progress: Arc<Progress>,
}

#[async_trait]
impl TaskHandler for CountingHandler {
    async fn handle(&self, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        let result = self.inner.handle(task, ctx).await;
        self.progress.bump();
        result
    }
}

/// Swaps the catalog when `[orders]` changes.
struct CatalogReloader {
    handler: Arc<OrderHandler>,
}

impl ConfigSubscriber for CatalogReloader {
    fn on_change(&self, change: &ConfigChange) {
        if !change.touches("orders.catalog") && !change.touches("orders.catalog_file") {
            return;
        }
        let loaded = OrdersConfig::from_snapshot(&change.new)
            .map_err(|e| e.to_string())
            .and_then(|o| o.load_catalog().map_err(|p| p.message));
        match loaded {
            Ok(catalog) => {
                info!(items = catalog.len(), "catalog reloaded");
                self.handler.replace_catalog(catalog);
            }
            Err(error) => warn!(%error, "catalog reload failed; keeping the old catalog"),
        }
    }
}

#[async_trait]
impl ApplicationModule for MailOrderModule {
    fn name(&self) -> &str {
        "mail-order-bot"
    }

    async fn register(&self, ctx: &mut ModuleContext) -> Result<(), ModuleError> {
        let snapshot = ctx.config().clone();
        let platform = PlatformConfig::from_snapshot(&snapshot)?;
        let mail = MailConfig::from_snapshot(&snapshot)?;
        let orders = OrdersConfig::from_snapshot(&snapshot)?;
        let catalog = orders.load_catalog().map_err(|p| {
            ModuleError::Config(runtime_contracts::ConfigError::invalid(p.key, p.message))
        })?;

        // Lazy: the process starts (not ready) while the database is down, and catches up.
        let store = OrderStore::connect_lazy(&orders.database_url)
            .map_err(|e| ModuleError::setup("cannot set up the order store", e))?;
        let handler = Arc::new(OrderHandler::new(
            store.clone(),
            catalog,
            mail.max_message_bytes(),
        ));
        let queue = platform.queue.name.clone();
        if ctx.queue(&queue).is_none() {
            return Err(ModuleError::Setup {
                message: format!("queue {queue:?} is not configured"),
                source: None,
            });
        }

        let redis = redis_queue(&snapshot)?;
        let source = build_source(&mail, &platform.queue.name, redis.as_ref())?;
        if let Some(ack) = source.acknowledger() {
            ctx.add_acknowledger(SOURCE_NAME, ack);
        }
        ctx.add_source(source, queue.clone());

        let counting = Arc::new(CountingHandler {
            inner: handler.clone(),
            progress: self.progress.clone(),
        });
        ctx.add_pool(PoolSpec {
            name: POOL_NAME.to_owned(),
            queue,
            handler: counting,
            concurrency: platform.workers.concurrency,
            task_timeout: platform.workers.task_timeout,
        });
        ctx.add_health(Arc::new(StoreHealth::new(store.clone())));
        ctx.subscribe(Arc::new(CatalogReloader { handler }));

        if let Ok(mut s) = self.store.lock() {
            *s = Some(store);
        }
        match redis {
            Some(_) => info!(
                source = mail.source.as_str(),
                lease_key = %leader_lease_key(&platform.queue.name),
                leader_lease = ?mail.leader_lease,
                "mail-order-bot registered; the mailbox is read by the leader lease holder"
            ),
            None => {
                info!(source = mail.source.as_str(), "mail-order-bot registered")
            }
        }
        Ok(())
    }

    async fn stop(&self) {
        let store = self.store.lock().ok().and_then(|mut s| s.take());
        if let Some(store) = store {
            store.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use runtime_contracts::{ConfigLayer, ConfigOrigin};
    use serde_json::json;

    fn mail() -> MailConfig {
        let snap = ConfigSnapshot::from_layers(
            1,
            &[ConfigLayer::from_tree(
                "t",
                &json!({"mail": {"source": "maildir", "maildir": "/nonexistent/md", "leader_lease": "3s"}}),
                &ConfigOrigin::Default,
            )],
        );
        MailConfig::from_snapshot(&snap).unwrap()
    }

    #[test]
    fn lease_key_shares_the_queue_prefix_and_hash_tag() {
        assert_eq!(
            leader_lease_key("mail-orders"),
            "plba:{mail-orders}:lease:source:mail"
        );
    }

    #[test]
    fn only_the_redis_queue_puts_the_source_behind_a_lease() {
        let source = build_source(&mail(), "tasks", None).unwrap();
        assert_eq!(source.name(), SOURCE_NAME);
        assert!(!source.status().details.contains_key("leader"));

        // Builds without Redis: the lease connects lazily.
        let redis = RedisQueueSettings {
            redis_url: runtime_contracts::Secret::new("redis://127.0.0.1:1/0"),
        };
        let source = build_source(&mail(), "q1", Some(&redis)).unwrap();
        assert_eq!(source.name(), SOURCE_NAME);
        assert!(
            source.acknowledger().is_some(),
            "every instance acknowledges"
        );
        let details = source.status().details;
        assert_eq!(details.get("leader"), Some(&json!(false)));
        assert_eq!(
            details.get("lease_key"),
            Some(&json!("plba:{q1}:lease:source:mail"))
        );
        assert_eq!(details.get("lease_ttl_ms"), Some(&json!(3000)));
    }
}
