//! The shared queue conformance suite, unchanged, against the real Redis on
//! 127.0.0.1:6379. Every case gets its own queue name (and so its own keys), deleted at
//! the end.

use std::sync::Arc;

use runtime_adapters_redis::RedisQueue;
use runtime_contracts::TaskQueue;
use runtime_testkit::queue_conformance::{QueueFactory, QueueOptions};

use crate::common;

struct Redis;

#[async_trait::async_trait]
impl QueueFactory for Redis {
    async fn make(&self, opts: QueueOptions) -> Arc<dyn TaskQueue> {
        let config = common::config(
            common::URL,
            &opts.name,
            opts.visibility_timeout,
            opts.max_attempts,
        );
        match RedisQueue::connect(config).await {
            Ok(q) => Arc::new(q),
            Err(e) => panic!(
                "redis is not reachable at 127.0.0.1:6379 ({e}); start it with \
                 `redis-server --daemonize yes` (Debian package redis-server)"
            ),
        }
    }

    fn bounded(&self) -> bool {
        false
    }

    async fn cleanup(&self, queue: &Arc<dyn TaskQueue>) {
        queue.close().await;
        common::cleanup(common::URL, queue.name()).await;
    }
}

runtime_testkit::queue_conformance_tests!(Redis);
