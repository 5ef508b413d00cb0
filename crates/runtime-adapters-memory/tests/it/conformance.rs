//! The queue conformance suite from `runtime-testkit`, run against [`MemoryQueue`].

use std::sync::Arc;

use async_trait::async_trait;
use runtime_adapters_memory::{MemoryQueue, MemoryQueueConfig};
use runtime_contracts::TaskQueue;
use runtime_testkit::queue_conformance::{QueueFactory, QueueOptions};

struct Memory;

#[async_trait]
impl QueueFactory for Memory {
    async fn make(&self, opts: QueueOptions) -> Arc<dyn TaskQueue> {
        Arc::new(MemoryQueue::new(MemoryQueueConfig {
            name: opts.name,
            capacity: opts.capacity,
            visibility_timeout: opts.visibility_timeout,
            max_attempts: opts.max_attempts,
            ..MemoryQueueConfig::default()
        }))
    }

    fn bounded(&self) -> bool {
        true
    }
}

runtime_testkit::queue_conformance_tests!(Memory);
