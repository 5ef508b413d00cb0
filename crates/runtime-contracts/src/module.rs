//! Application modules and what they register.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{ConfigIssue, ConfigSnapshot, ConfigSubscriber};
use crate::error::ModuleError;
use crate::handler::TaskHandler;
use crate::health::HealthContributor;
use crate::queue::TaskQueue;
use crate::source::{SourceAcknowledger, TaskSource};
use crate::trace::TraceFactory;

/// Describes a business application to the runtime: which config it needs and what it
/// runs. The runtime calls `validate` at start-up, before anything runs (its issues fail
/// the start as a configuration error), and on every reload after that (its issues
/// reject the reload); `register` once at start-up, after the platform's queues exist.
#[async_trait]
pub trait ApplicationModule: Send + Sync + 'static {
    /// Module name (for status and logs).
    fn name(&self) -> &str;

    /// Checks the application's config sections; every problem found is returned, so an
    /// operator sees them all at once.
    fn validate(&self, _config: &ConfigSnapshot) -> Vec<ConfigIssue> {
        Vec::new()
    }

    /// Registers sources, pools, acknowledgers and health contributors.
    async fn register(&self, ctx: &mut ModuleContext) -> Result<(), ModuleError>;

    /// Called once at the end of shutdown, after workers stopped: close stores.
    async fn stop(&self) {}
}

/// A source to run, and the queue it publishes into.
#[derive(Clone)]
pub struct SourceSpec {
    /// The source.
    pub source: Arc<dyn TaskSource>,
    /// The queue's name.
    pub queue: String,
    /// `Some(ttl)`: an exclusive source. It runs only while this process holds the
    /// queue's leader lease `source:<name>` ([`TaskQueue::leader_lease`]), which lasts
    /// `ttl` without renewal; other processes stand by and take over when it goes.
    pub lease_ttl: Option<Duration>,
}

/// A worker pool: `concurrency` workers take tasks from `queue` and run `handler`.
#[derive(Clone)]
pub struct PoolSpec {
    /// Pool name.
    pub name: String,
    /// The queue's name.
    pub queue: String,
    /// The handler.
    pub handler: Arc<dyn TaskHandler>,
    /// How many tasks run at once.
    pub concurrency: usize,
    /// A task running longer is cut off and counted as a failed attempt.
    pub task_timeout: Duration,
}

/// Everything modules registered, for the core to start.
#[derive(Default)]
pub struct Registrations {
    /// Sources to run.
    pub sources: Vec<SourceSpec>,
    /// Pools to run.
    pub pools: Vec<PoolSpec>,
    /// Extra queues (beyond the platform's).
    pub queues: Vec<Arc<dyn TaskQueue>>,
    /// Acknowledgers by source name (sources' own are added by the core).
    pub acknowledgers: Vec<(String, Arc<dyn SourceAcknowledger>)>,
    /// Health contributors.
    pub health: Vec<Arc<dyn HealthContributor>>,
    /// Config subscribers.
    pub subscribers: Vec<Arc<dyn ConfigSubscriber>>,
}

/// What a module sees while registering.
pub struct ModuleContext {
    config: Arc<ConfigSnapshot>,
    queues: BTreeMap<String, Arc<dyn TaskQueue>>,
    tracer: Arc<dyn TraceFactory>,
    registrations: Registrations,
}

impl ModuleContext {
    /// A context over the platform's queues and tracer (built by the core).
    pub fn new(
        config: Arc<ConfigSnapshot>,
        queues: BTreeMap<String, Arc<dyn TaskQueue>>,
        tracer: Arc<dyn TraceFactory>,
    ) -> Self {
        ModuleContext {
            config,
            queues,
            tracer,
            registrations: Registrations::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<ConfigSnapshot> {
        &self.config
    }

    /// A queue by name (the platform's, or one registered earlier).
    pub fn queue(&self, name: &str) -> Option<Arc<dyn TaskQueue>> {
        self.queues.get(name).cloned()
    }

    /// Names of the known queues.
    pub fn queue_names(&self) -> Vec<String> {
        self.queues.keys().cloned().collect()
    }

    /// The trace factory.
    pub fn tracer(&self) -> Arc<dyn TraceFactory> {
        self.tracer.clone()
    }

    /// Registers a queue of the module's own.
    pub fn add_queue(&mut self, queue: Arc<dyn TaskQueue>) {
        self.queues.insert(queue.name().to_owned(), queue.clone());
        self.registrations.queues.push(queue);
    }

    /// Registers a source publishing into `queue`. Its acknowledger and health
    /// contributor, if any, are registered with it.
    pub fn add_source(&mut self, source: Arc<dyn TaskSource>, queue: impl Into<String>) {
        self.registrations.sources.push(SourceSpec {
            source,
            queue: queue.into(),
            lease_ttl: None,
        });
    }

    /// Registers a source that runs in one process at a time among all that share
    /// `queue`: the runtime wraps it in the queue backend's leader lease (ttl `lease_ttl`),
    /// so the module never names a backend. Every process still registers the source's
    /// acknowledger, so each settles the tasks it handled, leader or not. A backend without
    /// a lease fails the start.
    pub fn add_exclusive_source(
        &mut self,
        source: Arc<dyn TaskSource>,
        queue: impl Into<String>,
        lease_ttl: Duration,
    ) {
        self.registrations.sources.push(SourceSpec {
            source,
            queue: queue.into(),
            lease_ttl: Some(lease_ttl),
        });
    }

    /// Registers a worker pool.
    pub fn add_pool(&mut self, pool: PoolSpec) {
        self.registrations.pools.push(pool);
    }

    /// Registers an acknowledger for tasks from the source named `source` without running
    /// that source here (a process that only works, or a standby).
    pub fn add_acknowledger(
        &mut self,
        source: impl Into<String>,
        acknowledger: Arc<dyn SourceAcknowledger>,
    ) {
        self.registrations
            .acknowledgers
            .push((source.into(), acknowledger));
    }

    /// Registers a health contributor.
    pub fn add_health(&mut self, contributor: Arc<dyn HealthContributor>) {
        self.registrations.health.push(contributor);
    }

    /// Registers a config subscriber.
    pub fn subscribe(&mut self, subscriber: Arc<dyn ConfigSubscriber>) {
        self.registrations.subscribers.push(subscriber);
    }

    /// Hands the registrations to the core.
    pub fn finish(self) -> Registrations {
        self.registrations
    }
}
