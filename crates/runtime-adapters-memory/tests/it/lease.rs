//! The shared lease suite against the memory queue's process-local lease: every holder of
//! a case comes from one queue (the queue spans one process); two queues never contend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime_adapters_memory::{MemoryQueue, MemoryQueueConfig};
use runtime_contracts::{LeaderLease, TaskQueue};
use runtime_testkit::lease_conformance::{LeaseFactory, TTL};

#[derive(Default)]
struct Memory {
    queues: Mutex<HashMap<String, Arc<MemoryQueue>>>,
}

#[async_trait::async_trait]
impl LeaseFactory for Memory {
    async fn lease(&self, case: &str, ttl: Duration) -> Arc<dyn LeaderLease> {
        let queue = self
            .queues
            .lock()
            .unwrap()
            .entry(case.to_owned())
            .or_insert_with(|| {
                Arc::new(MemoryQueue::new(MemoryQueueConfig {
                    name: case.to_owned(),
                    ..MemoryQueueConfig::default()
                }))
            })
            .clone();
        queue.leader_lease("source:inbox", ttl).unwrap()
    }
}

runtime_testkit::lease_conformance_tests!(Memory::default());

#[tokio::test]
async fn two_memory_queues_never_share_a_lease() {
    let a = MemoryQueue::new(MemoryQueueConfig::default());
    let b = MemoryQueue::new(MemoryQueueConfig::default());
    let la = a.leader_lease("source:inbox", TTL).unwrap();
    let lb = b.leader_lease("source:inbox", TTL).unwrap();
    assert!(la.try_acquire().await.unwrap());
    assert!(lb.try_acquire().await.unwrap());
    assert!(a.leader_lease("", TTL).is_err());
    assert!(a.leader_lease("x", Duration::ZERO).is_err());
}
