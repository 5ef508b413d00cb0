//! [`MailOrderModule`]: what mail-order-bot registers with the runtime.
//!
//! One source (chosen only by `mail.source`), one worker pool running
//! [`OrderHandler`](crate::handler::OrderHandler) on the platform queue, the order store's
//! health contributor, the source's acknowledger (so a process that finishes a task files
//! its message), and a config subscriber that swaps the catalog on reload. The module asks
//! the runtime for the queue by name and never names a backend: several instances may
//! share one mailbox, so the source is registered as *exclusive*
//! ([`ModuleContext::add_exclusive_source`]), and the runtime runs it behind the queue
//! backend's leader lease (ttl `mail.leader_lease`): only the lease holder reads the
//! mailbox, while every instance runs workers and acknowledges.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use runtime_adapters_imap::{ImapMode, ImapSource};
use runtime_adapters_maildir::MaildirSource;
use runtime_contracts::{
    ApplicationModule, ConfigChange, ConfigSnapshot, ConfigSubscriber, ModuleContext, ModuleError,
    PoolSpec, Probe, Task, TaskContext, TaskError, TaskHandler, TaskSource,
};
use runtime_core::PlatformConfig;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{MailConfig, OrdersConfig, ReportsConfig, SourceKind};
use crate::handler::OrderHandler;
use crate::store::{OrderStore, StoreHealth};
use crate::summary::{DAILY_SUMMARY_ROUTE, SummaryHandler};

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

/// Builds the source `mail.source` names. This match is the only place where polling,
/// IDLE and Maildir differ. The runtime puts it behind the queue's leader lease. Every
/// task names its customer, for `[workers] concurrency_key = "customer"`.
pub fn build_source(mail: &MailConfig) -> Result<Arc<dyn TaskSource>, ModuleError> {
    Ok(Arc::new(crate::customer::CustomerHeader::new(
        build_mailbox_source(mail)?,
    )))
}

/// The mailbox source itself.
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

/// Runs the order handler (or, for the `daily-summary` route, the summary) and tells the
/// module each time a run finished.
struct CountingHandler {
    inner: Arc<OrderHandler>,
    summary: SummaryHandler,
    progress: Arc<Progress>,
}

#[async_trait]
impl TaskHandler for CountingHandler {
    async fn handle(&self, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        let result = if task.route == DAILY_SUMMARY_ROUTE {
            self.summary.handle(task, ctx).await
        } else {
            self.inner.handle(task, ctx).await
        };
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

        // Any number of instances may run; one at a time reads the mailbox. The runtime
        // registers the source's acknowledger in every instance, leader or not.
        let source = build_source(&mail)?;
        ctx.add_exclusive_source(source, queue.clone(), mail.leader_lease);

        let reports = ReportsConfig::from_snapshot(&snapshot)?;
        let counting = Arc::new(CountingHandler {
            inner: handler.clone(),
            summary: SummaryHandler::new(store.clone(), reports.dir),
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
        info!(
            source = mail.source.as_str(),
            leader_lease = ?mail.leader_lease,
            "mail-order-bot registered; the mailbox is read by the leader lease holder"
        );
        Ok(())
    }

    /// The mailbox (IMAP: connect, log in, select `mail.imap.mailbox`; Maildir: the
    /// directory exists) and the order database (connect and ping). Only called on a
    /// config the checks accepted, so the sections read.
    fn probes(&self, config: &ConfigSnapshot) -> Vec<Probe> {
        let mut probes = Vec::new();
        if let Ok(mail) = MailConfig::from_snapshot(config) {
            probes.push(match mail.source {
                SourceKind::Maildir => {
                    let dir = mail.maildir.clone();
                    Probe::new("mail", format!("maildir {}", dir.display()), async move {
                        match tokio::fs::metadata(&dir).await {
                            Ok(m) if m.is_dir() => Ok(()),
                            Ok(_) => Err("not a directory".to_owned()),
                            Err(e) => Err(e.to_string()),
                        }
                    })
                }
                SourceKind::ImapPoll | SourceKind::ImapIdle => {
                    let imap = mail.imap.clone();
                    let target = format!(
                        "imap {}:{} {}",
                        imap.host,
                        imap.effective_port(),
                        imap.mailbox
                    );
                    Probe::new("mail", target, async move {
                        runtime_adapters_imap::probe(&imap).await
                    })
                }
            });
        }
        if let Ok(orders) = OrdersConfig::from_snapshot(config) {
            let url = orders.database_url.clone();
            probes.push(Probe::new(
                "orders",
                runtime_contracts::redact_url(&url),
                async move {
                    let store = OrderStore::connect(&url).await?;
                    let pinged = store.ping().await;
                    store.close().await;
                    pinged
                },
            ));
        }
        probes
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
    fn the_source_is_the_mailbox_alone_and_the_runtime_adds_the_lease() {
        let source = build_source(&mail()).unwrap();
        assert_eq!(source.name(), SOURCE_NAME);
        assert!(!source.status().details.contains_key("leader"));
        assert!(
            source.acknowledger().is_some(),
            "every instance acknowledges"
        );
    }
}
