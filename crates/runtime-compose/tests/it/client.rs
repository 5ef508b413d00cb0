//! The client enqueues typed jobs that a runtime, elsewhere, consumes through a router:
//! memory (the runtime's own queue shared in process) and Redis (a client built from
//! config, a runtime on its own queue instance in another task).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_compose::client::{Client, EnqueueOptions, MAX_BATCH};
use runtime_contracts::{
    ConfigError, Job, JobHandler, PoolSpec, Router, Task, TaskContext, TaskError, TaskQueue,
};
use runtime_core::RuntimeManager;
use runtime_testkit::fakes::{PartsModule, config};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize, Deserialize)]
struct Greet {
    text: String,
}
impl Job for Greet {
    const ROUTE: &'static str = "greet";
}

#[derive(Debug, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}
impl Job for Add {
    const ROUTE: &'static str = "add";
}

/// Sends what it handled, with the time it ran and the task's headers.
struct Recorder(mpsc::UnboundedSender<(String, Instant, Task)>);

#[async_trait]
impl JobHandler<Greet> for Recorder {
    async fn handle(&self, job: Greet, task: &Task, _: &TaskContext<'_>) -> Result<(), TaskError> {
        let _ = self.0.send((job.text, Instant::now(), task.clone()));
        Ok(())
    }
}

#[async_trait]
impl JobHandler<Add> for Recorder {
    async fn handle(&self, job: Add, task: &Task, _: &TaskContext<'_>) -> Result<(), TaskError> {
        let sum = job
            .a
            .checked_add(job.b)
            .ok_or_else(|| TaskError::reject("overflow"))?;
        let _ = self.0.send((sum.to_string(), Instant::now(), task.clone()));
        Ok(())
    }
}

fn platform(queue: serde_json::Value) -> serde_json::Value {
    json!({
        "queue": queue,
        "workers": {"retry_base": "20ms", "retry_max": "100ms", "task_timeout": "5s"},
        "runtime": {"shutdown_timeout": "5s"},
    })
}

/// A runtime with one pool on `queue` whose handler is a router of `Greet` and `Add`.
async fn runtime(
    tree: serde_json::Value,
    queue: Arc<dyn TaskQueue>,
) -> (
    RuntimeManager,
    mpsc::UnboundedReceiver<(String, Instant, Task)>,
) {
    let cfg = config(tree).await;
    let (tx, rx) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder(tx));
    let router = Router::new()
        .job::<Greet>(recorder.clone())
        .and_then(|r| r.job::<Add>(recorder))
        .unwrap();
    let module = PartsModule {
        pools: vec![PoolSpec {
            name: "jobs".into(),
            queue: queue.name().to_owned(),
            handler: Arc::new(router),
            concurrency: 2,
            task_timeout: Duration::from_secs(5),
        }],
        ..Default::default()
    };
    let rt = RuntimeManager::builder(cfg)
        .queue(queue)
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    rt.start().await.unwrap();
    (rt, rx)
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<(String, Instant, Task)>,
) -> (String, Instant, Task) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a handled job in time")
        .expect("the runtime is running")
}

async fn wait_dead(queue: &dyn TaskQueue, n: u64) {
    let deadline = Instant::now() + WAIT;
    while queue.stats().await.unwrap().dead < n {
        assert!(Instant::now() < deadline, "{n} dead letters in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_enqueued_in_process_run_and_bad_ones_are_dead_lettered_without_retry() {
    let tree = platform(json!({"backend": "memory", "name": "typed-memory"}));
    let snapshot = config(tree.clone()).await.current();
    let queue = runtime_compose::plan(&snapshot, "t")
        .unwrap()
        .build_queue()
        .unwrap();
    let (rt, mut rx) = runtime(tree, queue.clone()).await;
    let client = Client::new(queue.clone());

    let one = client.enqueue(&Greet { text: "hi".into() }).await.unwrap();
    assert!(!one.duplicate);
    let adds = [Add { a: 1, b: 2 }, Add { a: 3, b: 4 }];
    let many = client
        .enqueue_batch(&adds, &EnqueueOptions::default().header("customer", "c1"))
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (text, _, task) = next(&mut rx).await;
        if task.route == "add" {
            assert_eq!(task.headers.get("customer"), Some("c1"));
        }
        seen.push(text);
    }
    seen.sort();
    assert_eq!(seen, ["3", "7", "hi"]);

    // An unknown route and a payload that is not an `Add`: dead letters at once.
    client
        .enqueue_task(Task::new("resize", "{}"))
        .await
        .unwrap();
    client
        .enqueue_task(Task::new("add", r#"{"a":1}"#))
        .await
        .unwrap();
    wait_dead(queue.as_ref(), 2).await;
    let dead = queue.dead_letters(10).await.unwrap();
    let mut reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    reasons.sort();
    assert!(
        reasons[0].contains(r#"payload of route "add" does not decode"#),
        "{reasons:?}"
    );
    assert!(reasons[0].contains("missing field `b`"), "{reasons:?}");
    assert!(
        reasons[1].contains(r#"unknown route "resize""#),
        "{reasons:?}"
    );
    assert!(dead.iter().all(|d| d.task.attempts == 0), "never retried");
    assert_eq!(queue.stats().await.unwrap().nacked_total, 0);
    rt.stop().await;

    // Outside the runtime's process a memory queue is nobody's: the client says so.
    let error = Client::from_config(&snapshot, "t").unwrap_err();
    let runtime_compose::ComposeError::Config(ConfigError::Invalid(issues)) = error else {
        panic!("expected a config error, got {error}");
    };
    assert_eq!(issues[0].key, "queue.backend", "{issues:?}");
}

/// Deletes a Redis queue's keys (`plba:{name}:*`).
fn delete_redis_queue(name: &str) {
    let keys = std::process::Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("plba:{{{name}}}:*")])
        .output()
        .expect("redis-cli, to clean up the test's keys");
    for key in String::from_utf8_lossy(&keys.stdout).lines() {
        let _ = std::process::Command::new("redis-cli")
            .args(["del", key])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_built_from_config_enqueues_into_redis_for_a_runtime_elsewhere() {
    let name = format!("typed-client-{}", std::process::id());
    let tree = platform(json!({"backend": "redis", "name": name}));
    let snapshot = config(tree.clone()).await.current();
    // The client and the runtime each build their own queue from the same keys.
    let client = Client::from_config(&snapshot, "producer").unwrap();
    client.queue().ping().await.unwrap_or_else(|e| {
        panic!("these tests need Redis on 127.0.0.1:6379 (apt-get install redis-server): {e}")
    });
    let consumer = runtime_compose::plan(&snapshot, "t")
        .unwrap()
        .build_queue()
        .unwrap();
    assert_eq!(client.queue().backend(), "redis");

    let delay = Duration::from_millis(600);
    let started = Instant::now();
    let late = client
        .enqueue_with(
            &Greet {
                text: "late".into(),
            },
            &EnqueueOptions::default().delay(delay),
        )
        .await
        .unwrap();
    let adds: Vec<Add> = (0..MAX_BATCH as i64 + 5)
        .map(|i| Add { a: i, b: 0 })
        .collect();
    let batch = client
        .enqueue_batch(&adds, &EnqueueOptions::default())
        .await
        .unwrap();
    assert_eq!(batch.len(), adds.len());
    assert!(batch.iter().all(|e| !e.duplicate));

    let (rt, mut rx) = runtime(tree, consumer.clone()).await;
    let mut sums = Vec::new();
    let mut late_at = None;
    for _ in 0..adds.len() + 1 {
        let (text, at, task) = next(&mut rx).await;
        if task.id == late.id {
            late_at = Some(at);
        } else {
            sums.push(text.parse::<i64>().unwrap());
        }
    }
    sums.sort();
    assert_eq!(sums, (0..MAX_BATCH as i64 + 5).collect::<Vec<_>>());
    let late_at = late_at.expect("the delayed job ran");
    assert!(
        late_at - started >= delay,
        "ran {:?} after enqueue",
        late_at - started
    );
    // The handler reports before the worker acks: wait for the last ack.
    let deadline = Instant::now() + WAIT;
    while consumer.stats().await.unwrap().acked_total < adds.len() as u64 + 1 {
        assert!(Instant::now() < deadline, "every job acked in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        consumer.stats().await.unwrap().acked_total,
        adds.len() as u64 + 1
    );
    rt.stop().await;
    client.close().await;
    delete_redis_queue(&name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_key_enqueues_once_and_every_duplicate_names_the_first_task() {
    let tree = platform(json!({"backend": "memory", "name": "typed-unique"}));
    let snapshot = config(tree).await.current();
    let queue = runtime_compose::plan(&snapshot, "t")
        .unwrap()
        .build_queue()
        .unwrap();
    let client = Client::new(queue.clone());
    let unique = EnqueueOptions::default().unique_key("invoice-7");
    let first = client
        .enqueue_with(&Greet { text: "a".into() }, &unique)
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = client
        .enqueue_with(&Greet { text: "b".into() }, &unique)
        .await
        .unwrap();
    assert_eq!(
        again,
        runtime_compose::client::Enqueued {
            id: first.id,
            duplicate: true
        }
    );
    let batch = client
        .enqueue_batch(
            &[Greet { text: "c".into() }, Greet { text: "d".into() }],
            &unique,
        )
        .await
        .unwrap();
    assert!(
        batch.iter().all(|e| e.duplicate && e.id == first.id),
        "{batch:?}"
    );
    assert_eq!(queue.stats().await.unwrap().published_total, 1);
    // The answer is the control plane's JSON shape.
    assert_eq!(
        serde_json::to_value(again).unwrap(),
        json!({"id": first.id.to_string(), "duplicate": true})
    );
    // A key the queue would refuse is refused before any I/O, naming the problem.
    let empty = client
        .enqueue_with(
            &Greet { text: "x".into() },
            &EnqueueOptions::default().unique_key(""),
        )
        .await
        .unwrap_err();
    assert!(empty.to_string().contains("unique_key is empty"), "{empty}");
    assert_eq!(queue.stats().await.unwrap().published_total, 1);
}

#[test]
fn options_shape_the_task_and_nothing_else() {
    let trace = runtime_contracts::TraceContext {
        trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
        span_id: 0x00f067aa0ba902b7,
        sampled: true,
        trace_state: None,
    };
    let options = EnqueueOptions::default()
        .delay(Duration::from_secs(60))
        .header("customer", "c1")
        .trace(trace.clone());
    let before = runtime_contracts::now_millis();
    let task = Client::task(&Add { a: 1, b: 2 }, &options).unwrap();
    assert_eq!(task.route, "add");
    assert_eq!(task.payload, br#"{"a":1,"b":2}"#);
    assert_eq!(task.headers.get("customer"), Some("c1"));
    assert_eq!(task.trace_context(), Some(trace));
    let not_before = task.not_before_ms.unwrap();
    assert!(
        (before + 60_000..before + 61_000).contains(&not_before),
        "{not_before}"
    );
    // Without options: a plain task, due now, in a new trace of its own.
    let plain = Client::task(&Add { a: 1, b: 2 }, &EnqueueOptions::default()).unwrap();
    assert!(plain.headers.is_empty() && plain.not_before_ms.is_none() && plain.trace.is_none());
}
