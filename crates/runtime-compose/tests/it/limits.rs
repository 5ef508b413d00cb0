//! Pool limits through the real composition (`plan` -> `build_queue` + `build_limiter`):
//! per-key concurrency and rates on the memory backend in process, and on Redis across
//! processes (children are this test binary, re-run with `PLBA_LIMITS_CHILD` set).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_redis::redis;
use runtime_contracts::{PoolSpec, Task, TaskContext, TaskError, TaskHandler, TaskQueue};
use runtime_core::{RuntimeHandle, RuntimeManager};
use runtime_testkit::fakes::{PartsModule, config};
use serde_json::{Value, json};

const REDIS: &str = "redis://127.0.0.1:6379";
const CHILD_ENV: &str = "PLBA_LIMITS_CHILD";

fn unique(tag: &str) -> String {
    format!("lim-{tag}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Runs of the handler: key, start and end (µs since the epoch), attempts.
#[derive(Default)]
struct Recorder {
    runs: Mutex<Vec<(String, u64, u64, u32)>>,
    running: Mutex<HashMap<String, usize>>,
    max_overlap: Mutex<HashMap<String, usize>>,
    /// Tasks whose payload is "hold" never finish (a holder to kill).
    work: Duration,
    hot_work: Duration,
    file: Option<PathBuf>,
}

#[async_trait]
impl TaskHandler for Recorder {
    async fn handle(&self, task: &Task, _ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        let key = task.headers.get("k").unwrap_or("").to_owned();
        let start = now_us();
        {
            let mut running = self.running.lock().unwrap();
            let n = running.entry(key.clone()).or_default();
            *n += 1;
            let mut max = self.max_overlap.lock().unwrap();
            let m = max.entry(key.clone()).or_default();
            *m = (*m).max(*n);
        }
        if let Some(file) = &self.file {
            append(file, &format!("start {key} {start}\n"));
        }
        if &task.payload[..] == b"hold" {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(if key == "hot" {
            self.hot_work
        } else {
            self.work
        })
        .await;
        let end = now_us();
        *self.running.lock().unwrap().get_mut(&key).unwrap() -= 1;
        if let Some(file) = &self.file {
            append(file, &format!("run {key} {start} {end}\n"));
        }
        self.runs
            .lock()
            .unwrap()
            .push((key, start, end, task.attempts));
        Ok(())
    }
}

fn append(file: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    f.write_all(line.as_bytes()).unwrap();
}

fn memory_tree(workers: Value) -> Value {
    json!({
        "queue": {"backend": "memory", "name": "q", "visibility_timeout": "3s"},
        "workers": workers,
        "runtime": {"shutdown_timeout": "2s"},
    })
}

fn redis_tree(name: &str, workers: Value) -> Value {
    json!({
        "queue": {"backend": "redis", "name": name, "redis_url": REDIS, "visibility_timeout": "3s"},
        "workers": workers,
        "runtime": {"shutdown_timeout": "2s"},
    })
}

/// A runtime over the composed queue and limiter, one pool `p` running `handler`.
async fn runtime(
    tree: Value,
    handler: Arc<dyn TaskHandler>,
) -> (RuntimeManager, Arc<dyn TaskQueue>) {
    let cfg = config(tree).await;
    let plan = runtime_compose::plan(&cfg.current(), "limits-test").unwrap();
    let queue = plan.build_queue().unwrap();
    let platform = cfg.platform();
    let module = PartsModule {
        pools: vec![PoolSpec {
            name: "p".into(),
            queue: queue.name().into(),
            handler,
            concurrency: platform.workers.concurrency,
            task_timeout: Duration::from_secs(60),
        }],
        ..Default::default()
    };
    let rt = RuntimeManager::builder(cfg)
        .queue(queue.clone())
        .limiter(plan.build_limiter().unwrap())
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    (rt, queue)
}

fn keyed(key: &str, payload: &str) -> Task {
    let mut t = Task::new("t", payload.to_owned());
    t.headers.insert("k", key.to_owned());
    t
}

async fn wait_runs(rec: &Recorder, n: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let got = rec.runs.lock().unwrap().len();
        if got >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn cleanup(name: &str) {
    let mut c = redis_client().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("plba:{{{name}}}*"))
        .query_async(&mut c)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

async fn redis_client() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!("redis is not reachable at 127.0.0.1:6379 ({e}); start it with `redis-server --daemonize yes`")
        })
}

fn limits_of(handle: &RuntimeHandle) -> runtime_contracts::PoolLimitsStatus {
    handle.supervisor().status()[0].limits.clone().unwrap()
}

/// Process CPU time (user + system) from /proc, for idleness checks.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_key_limit_holds_and_other_keys_keep_flowing() {
    let rec = Arc::new(Recorder {
        work: Duration::from_millis(5),
        hot_work: Duration::from_millis(20),
        ..Default::default()
    });
    let workers = json!({"concurrency": 16, "concurrency_key": "k", "per_key": 1});
    let (rt, queue) = runtime(memory_tree(workers), rec.clone()).await;
    // The hot key first, so its tasks fill the workers' first batches.
    let mut tasks: Vec<Task> = (0..40).map(|i| keyed("hot", &format!("h{i}"))).collect();
    tasks.extend((0..200).map(|i| keyed(&format!("c{}", i % 50), &format!("o{i}"))));
    queue.publish_batch(tasks).await.unwrap();
    let started = now_us();
    rt.start().await.unwrap();
    assert_eq!(wait_runs(&rec, 240, Duration::from_secs(20)).await, 240);
    let handle = rt.handle();
    let limits = limits_of(&handle);
    rt.stop().await;

    let max = rec.max_overlap.lock().unwrap().clone();
    assert!(
        max.values().all(|m| *m == 1),
        "a key ran twice at once: {max:?}"
    );
    let runs = rec.runs.lock().unwrap().clone();
    assert!(runs.iter().all(|r| r.3 == 0), "waiting counted an attempt");
    let last_other = runs
        .iter()
        .filter(|r| r.0 != "hot")
        .map(|r| r.2)
        .max()
        .unwrap();
    let last_hot = runs
        .iter()
        .filter(|r| r.0 == "hot")
        .map(|r| r.2)
        .max()
        .unwrap();
    // 40 hot tasks take 800 ms one after another; the 200 others, spread over 15 other
    // workers, about 70 ms: they must not queue behind the hot key.
    assert!(
        last_other - started < (last_hot - started) / 2,
        "other keys waited for the hot one: others done after {} ms, hot after {} ms",
        (last_other - started) / 1000,
        (last_hot - started) / 1000
    );
    assert!(limits.key_waits_total >= 30, "{limits:?}");
    assert_eq!(limits.waiting, 0);
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.acked_total, stats.nacked_total), (240, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_an_idle_pool_whose_tasks_all_wait_burns_no_cpu() {
    let rec = Arc::new(Recorder {
        hot_work: Duration::from_secs(3),
        ..Default::default()
    });
    let workers = json!({"concurrency": 16, "concurrency_key": "k", "per_key": 1});
    let (rt, queue) = runtime(memory_tree(workers), rec.clone()).await;
    let tasks: Vec<Task> = (0..500).map(|i| keyed("hot", &format!("h{i}"))).collect();
    queue.publish_batch(tasks).await.unwrap();
    rt.start().await.unwrap();
    let handle = rt.handle();
    // Everything consumed: one task runs, the rest wait for its slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    while limits_of(&handle).waiting < 499 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(limits_of(&handle).waiting, 499);
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_time() - before;
    assert!(
        used <= Duration::from_millis(60),
        "waiting burnt {used:?} of CPU in 2 s"
    );
    assert_eq!(rec.runs.lock().unwrap().len(), 0);
    rt.stop().await;
    // Stopping handed every waiting task back (the holder may have finished within the
    // grace period), none counted an attempt.
    let stats = queue.stats().await.unwrap();
    let left = stats.pending + stats.in_flight + stats.delayed;
    assert_eq!(left + stats.acked_total, 500, "{stats:?}");
    assert!(left >= 499, "{stats:?}");
    assert_eq!(stats.nacked_total, 0);
}

/// Starts within `window` of a steady run at `rate` per second.
fn starts_in(runs: &[(String, u64, u64, u32)], from: u64, window: Duration) -> usize {
    let to = from + window.as_micros() as u64;
    runs.iter().filter(|r| r.1 >= from && r.1 < to).count()
}

async fn rate_holds(trees: Vec<Value>, queue_name: Option<&str>) {
    let rec = Arc::new(Recorder::default());
    let mut rts = Vec::new();
    let mut queue = None;
    for tree in trees {
        let (rt, q) = runtime(tree, rec.clone()).await;
        queue.get_or_insert(q);
        rts.push(rt);
    }
    let queue = queue.unwrap();
    let tasks: Vec<Task> = (0..1200)
        .map(|i| keyed(&format!("c{}", i % 7), &i.to_string()))
        .collect();
    queue.publish_batch(tasks).await.unwrap();
    for rt in &rts {
        rt.start().await.unwrap();
    }
    let window = Duration::from_secs(10);
    // Skip the first 500 ms (start-up), then count over 10 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let from = now_us();
    tokio::time::sleep(window + Duration::from_millis(300)).await;
    let handle = rts[0].handle();
    let limits = limits_of(&handle);
    for rt in &rts {
        rt.stop().await;
    }
    let runs = rec.runs.lock().unwrap().clone();
    let n = starts_in(&runs, from, window);
    // 50/s over 10 s
    assert!((450..=550).contains(&n), "{n} starts in 10 s at 50/s");
    assert!(limits.rate_waits_total > 0 || rts.len() > 1, "{limits:?}");
    assert!(runs.iter().all(|r| r.3 == 0), "waiting counted an attempt");
    if let Some(name) = queue_name {
        cleanup(name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_rate_limit_within_ten_percent_over_ten_seconds() {
    rate_holds(
        vec![memory_tree(json!({"concurrency": 16, "rate": "50/s"}))],
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rate_limit_holds_across_two_runtimes_within_ten_percent_over_ten_seconds() {
    let name = unique("rate");
    let tree = redis_tree(&name, json!({"concurrency": 8, "rate": "50/s"}));
    rate_holds(vec![tree.clone(), tree], Some(&name)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_per_key_rate_limits_each_key() {
    let rec = Arc::new(Recorder::default());
    let workers = json!({"concurrency": 8, "concurrency_key": "k", "per_key": 4, "rate": "10/s", "rate_per_key": true});
    let (rt, queue) = runtime(memory_tree(workers), rec.clone()).await;
    let mut tasks: Vec<Task> = (0..60).map(|i| keyed("a", &i.to_string())).collect();
    tasks.extend((0..60).map(|i| keyed("b", &i.to_string())));
    queue.publish_batch(tasks).await.unwrap();
    rt.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from = now_us();
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let handle = rt.handle();
    let limits = limits_of(&handle);
    rt.stop().await;
    let runs = rec.runs.lock().unwrap().clone();
    for key in ["a", "b"] {
        let of_key: Vec<_> = runs.iter().filter(|r| r.0 == key).cloned().collect();
        let n = starts_in(&of_key, from, Duration::from_secs(3));
        assert!(
            (27..=33).contains(&n),
            "key {key}: {n} starts in 3 s at 10/s"
        );
    }
    assert!(
        limits.rate_waits_total > 0 && limits.handed_back_total > 0,
        "{limits:?}"
    );
    assert!(runs.iter().all(|r| r.3 == 0), "waiting counted an attempt");
}

// ---- Redis, across processes ----

/// The child process: one runtime on the Redis queue named in the environment, until
/// the queue has acked `PLBA_LIMITS_TOTAL` tasks (or for ever in "hold" mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_child() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return; // only a child does anything
    };
    let file = PathBuf::from(std::env::var("PLBA_LIMITS_FILE").unwrap());
    let total: u64 = std::env::var("PLBA_LIMITS_TOTAL").unwrap().parse().unwrap();
    let rec = Arc::new(Recorder {
        work: Duration::from_millis(10),
        hot_work: Duration::from_millis(10),
        file: Some(file),
        ..Default::default()
    });
    let workers =
        json!({"concurrency": 4, "concurrency_key": "k", "per_key": 1, "lease_renewal": "500ms"});
    let (rt, queue) = runtime(redis_tree(&name, workers), rec).await;
    rt.start().await.unwrap();
    while queue.stats().await.map(|s| s.acked_total).unwrap_or(0) < total {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rt.stop().await;
}

fn spawn_child(name: &str, file: &Path, total: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["limits::limits_child", "--exact", "--nocapture"])
        .env(CHILD_ENV, name)
        .env("PLBA_LIMITS_FILE", file)
        .env("PLBA_LIMITS_TOTAL", total.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_exit(children: &mut [Child], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for c in children.iter_mut() {
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                assert!(status.success(), "child failed: {status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("a child did not finish in {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_per_key_limit_holds_across_four_processes() {
    let name = unique("perkey");
    let dir = tempfile::tempdir().unwrap();
    // 10 keys x 20 tasks; 4 processes x 4 workers would run each key 16 times at once
    // without the limit.
    let cfg = config(redis_tree(&name, json!({}))).await;
    let queue = runtime_compose::plan(&cfg.current(), "t")
        .unwrap()
        .build_queue()
        .unwrap();
    let tasks: Vec<Task> = (0..200)
        .map(|i| keyed(&format!("c{}", i % 10), &i.to_string()))
        .collect();
    queue.publish_batch(tasks).await.unwrap();
    let mut children: Vec<Child> = (0..4)
        .map(|i| spawn_child(&name, &dir.path().join(format!("child{i}")), 200))
        .collect();
    wait_exit(&mut children, Duration::from_secs(60)).await;

    let mut runs: HashMap<String, Vec<(u64, u64, usize)>> = HashMap::new();
    let mut processes_used = 0;
    for i in 0..4 {
        let text =
            std::fs::read_to_string(dir.path().join(format!("child{i}"))).unwrap_or_default();
        let mut ran_here = false;
        for line in text.lines().filter(|l| l.starts_with("run ")) {
            let parts: Vec<&str> = line.split(' ').collect();
            runs.entry(parts[1].to_owned()).or_default().push((
                parts[2].parse().unwrap(),
                parts[3].parse().unwrap(),
                i,
            ));
            ran_here = true;
        }
        processes_used += usize::from(ran_here);
    }
    assert_eq!(runs.values().map(Vec::len).sum::<usize>(), 200);
    assert!(
        processes_used >= 2,
        "only {processes_used} process(es) ran tasks"
    );
    for (key, mut spans) in runs {
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "key {key}: a run in process {} started before one in process {} ended",
                w[1].2,
                w[0].2
            );
        }
    }
    cleanup(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_killed_holders_key_slot_is_freed_within_the_lease_time() {
    let name = unique("kill");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("holder");
    let cfg = config(redis_tree(&name, json!({}))).await;
    let plan = runtime_compose::plan(&cfg.current(), "t").unwrap();
    let queue = plan.build_queue().unwrap();
    let limiter = plan.build_limiter().unwrap().unwrap();
    queue.publish(keyed("k", "hold")).await.unwrap();
    let mut child = spawn_child(&name, &file, u64::MAX);
    // The child's handler writes "start" once it holds the slot and runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&file)
        .unwrap_or_default()
        .contains("start k")
    {
        assert!(
            Instant::now() < deadline,
            "the child never started the task"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ttl = Duration::from_secs(3);
    assert!(
        limiter.acquire("p", "k", 1, ttl).await.unwrap().is_none(),
        "the running child holds the key's slot"
    );
    // Renewals keep it past one lease-renewal period (500 ms) and more.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(
        limiter.acquire("p", "k", 1, ttl).await.unwrap().is_none(),
        "renewed while running"
    );
    child.kill().unwrap(); // SIGKILL: no release, no goodbye
    child.wait().unwrap();
    let killed = Instant::now();
    let slot = loop {
        if let Some(slot) = limiter.acquire("p", "k", 1, ttl).await.unwrap() {
            break slot;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "the slot outlived its lease"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // The child renewed for 3 x 500 ms: free within that after the kill.
    assert!(
        killed.elapsed() <= Duration::from_millis(1500 + 300),
        "{:?}",
        killed.elapsed()
    );
    limiter.release(&slot).await.unwrap();
    cleanup(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tasks_waiting_on_another_processes_slot_burn_no_cpu_and_run_once_it_is_free() {
    let name = unique("orphan");
    let rec = Arc::new(Recorder::default());
    let workers = json!({"concurrency": 16, "concurrency_key": "k", "per_key": 1});
    let tree = redis_tree(&name, workers);
    let cfg = config(tree.clone()).await;
    let other = runtime_compose::plan(&cfg.current(), "t")
        .unwrap()
        .build_limiter()
        .unwrap()
        .unwrap();
    // "Another process" holds the key's only slot.
    let held = other
        .acquire("p", "k", 1, Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let (rt, queue) = runtime(tree, rec.clone()).await;
    let tasks: Vec<Task> = (0..300).map(|i| keyed("k", &i.to_string())).collect();
    queue.publish_batch(tasks).await.unwrap();
    rt.start().await.unwrap();
    let handle = rt.handle();
    let deadline = Instant::now() + Duration::from_secs(10);
    while limits_of(&handle).waiting < 300 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(limits_of(&handle).waiting, 300);
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_time() - before;
    assert!(
        used <= Duration::from_millis(100),
        "waiting burnt {used:?} of CPU in 2 s"
    );
    assert!(rec.runs.lock().unwrap().is_empty());
    other.release(&held).await.unwrap();
    assert_eq!(wait_runs(&rec, 300, Duration::from_secs(20)).await, 300);
    let max = rec.max_overlap.lock().unwrap().clone();
    assert_eq!(max.get("k"), Some(&1));
    rt.stop().await;
    cleanup(&name).await;
}
