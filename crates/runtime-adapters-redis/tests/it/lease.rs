//! The leader lease: the shared lease suite against the real Redis (each holder through
//! its own `RedisQueue`, as another process would open it), then what only Redis does:
//! the key expires on its own, an outage stops the leader and it leads again once Redis
//! is back, and without Redis nobody leads. Each case uses its own queue name.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands};

use runtime_adapters_redis::{RedisLease, RedisQueue};
use runtime_contracts::{HealthStatus, LeaderLease, Secret, TaskQueue, TaskSource};
use runtime_testkit::lease_conformance::{Contender, LeaseFactory, Overlap, TTL, WITHIN};

use crate::common::{self, Cleanup, RedisServer, URL, eventually, unique};

/// The lease name the cases use (the runtime's is `source:<name>`).
const NAME: &str = "source:inbox";

fn queue(url: &str, name: &str) -> RedisQueue {
    let config = common::config(url, name, Duration::from_secs(30), 3);
    RedisQueue::connect_lazy(config).unwrap()
}

fn lease_key(name: &str) -> String {
    format!("plba:{{{name}}}:lease:{NAME}")
}

struct Redis;

#[async_trait]
impl LeaseFactory for Redis {
    async fn lease(&self, case: &str, ttl: Duration) -> Arc<dyn LeaderLease> {
        // Fails loudly when Redis is down rather than letting every case time out.
        let _ = common::client(URL).await;
        queue(URL, case).leader_lease(NAME, ttl).unwrap()
    }

    async fn overwrite(&self, case: &str, holder: Option<&str>) -> bool {
        let mut r = common::client(URL).await;
        let key = lease_key(case);
        match holder {
            Some(holder) => {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(holder)
                    .arg("PX")
                    .arg(60_000)
                    .query_async(&mut r)
                    .await
                    .unwrap();
            }
            None => {
                let _: () = r.del(&key).await.unwrap();
            }
        }
        true
    }

    async fn cleanup(&self, case: &str) {
        drop(Cleanup(case.to_owned()));
    }
}

runtime_testkit::lease_conformance_tests!(Redis);

#[tokio::test]
async fn the_lease_key_sits_under_the_queue_and_expires_on_its_own() {
    let name = unique("lease-key");
    let _cleanup = Cleanup(name.clone());
    let lease = queue(URL, &name).leader_lease(NAME, TTL).unwrap();
    assert_eq!(lease.key(), lease_key(&name));
    assert!(lease.try_acquire().await.unwrap());
    let mut r = common::client(URL).await;
    let holder: String = r.get(lease.key()).await.unwrap();
    assert_eq!(holder, lease.holder());
    let pttl: i64 = r.pttl(lease.key()).await.unwrap();
    assert!(
        pttl > 0 && pttl <= 1000,
        "the key expires on its own: {pttl}"
    );
    assert!(queue(URL, &name).leader_lease("", TTL).is_err());
    assert!(lease.release().await.unwrap());
}

#[tokio::test]
async fn losing_redis_stops_the_leader_and_it_leads_again_when_redis_is_back() {
    let mut server = RedisServer::start(&[]).unwrap();
    let url = server.url();
    let overlap = Arc::new(Overlap::default());
    let lease = Arc::new(RedisLease::new(Secret::new(url.as_str()), "lease", TTL).unwrap());
    let mut c = Contender::start(lease, &overlap);
    eventually("leading", WITHIN, || async { c.recorder.running() })
        .await
        .unwrap();

    server.stop().unwrap();
    eventually("the source stops", WITHIN, || async {
        c.recorder.stops() == 1 && !c.source.is_leader()
    })
    .await
    .unwrap();
    assert!(c.source.status().details.contains_key("lease_error"));
    let health = c.source.health().unwrap().check().await;
    assert_eq!(health.status, HealthStatus::Up, "a standby is healthy");

    server.restart().unwrap();
    eventually("leading again", WITHIN, || async { c.recorder.runs() == 2 })
        .await
        .unwrap();
    assert!(!c.source.status().details.contains_key("lease_error"));
    c.stop().await.unwrap();
}

#[tokio::test]
async fn without_redis_nobody_leads_and_nothing_panics() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let overlap = Arc::new(Overlap::default());
    let mut contenders = [
        Contender::start(
            queue(&url, "lease").leader_lease(NAME, TTL).unwrap(),
            &overlap,
        ),
        Contender::start(
            queue(&url, "lease").leader_lease(NAME, TTL).unwrap(),
            &overlap,
        ),
    ];
    // Two failed attempts each: the standby loop keeps going after an error.
    eventually("both saw redis down", WITHIN, || async {
        contenders
            .iter()
            .all(|c| c.source.status().details.contains_key("lease_error"))
    })
    .await
    .unwrap();
    let error = contenders[0].source.status().details["lease_error"].clone();
    assert!(
        error.as_str().is_some_and(|e| e.contains("acquire")),
        "{error}"
    );
    for c in &contenders {
        assert!(!c.source.is_leader());
        assert_eq!(c.recorder.runs(), 0);
        assert_eq!(
            c.source.health().unwrap().check().await.status,
            HealthStatus::Up
        );
    }
    for c in &mut contenders {
        c.stop().await.unwrap();
    }
    assert_eq!(overlap.max_active(), 0);
}
