//! Real processes: a consumer killed with SIGKILL mid-task, and two processes sharing a
//! queue. The child is this very test binary, re-run with `--exact` on
//! [`child_consumer`] and told what to do through environment variables.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};
use runtime_contracts::{Task, TaskQueue};

use crate::common::{self, client, eventually, queue, unique};

const ENV_QUEUE: &str = "PLBA_REDIS_IT_CHILD_QUEUE";
const ENV_TAG: &str = "PLBA_REDIS_IT_CHILD_TAG";
const ENV_HANG_AT: &str = "PLBA_REDIS_IT_CHILD_HANG_AT";

/// Bookkeeping keys of a test (same hash tag as the queue, removed by `cleanup`).
fn key(name: &str, what: &str) -> String {
    format!("test:{{{name}}}:{what}")
}

fn spawn_child(name: &str, tag: &str, hang_at: Option<usize>) -> Child {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "processes::child_consumer",
        "--ignored",
        "--nocapture",
    ])
    .env(ENV_QUEUE, name)
    .env(ENV_TAG, tag)
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    if let Some(n) = hang_at {
        cmd.env(ENV_HANG_AT, n.to_string());
    }
    cmd.spawn().expect("spawn child consumer")
}

/// The child process. It consumes in batches of 10; per delivery it counts a start,
/// then (unless it is the one to hang on) performs the idempotent effect, a set add, and
/// acks that delivery. With `HANG_AT=n` it stops dead inside its n-th task, to be killed there. It
/// exits when the parent sets the `stop` key.
#[test]
#[ignore = "helper run as a child process by the tests in this module"]
fn child_consumer() {
    let Ok(name) = std::env::var(ENV_QUEUE) else {
        return;
    };
    let tag = std::env::var(ENV_TAG).unwrap_or_default();
    let hang_at: Option<usize> = std::env::var(ENV_HANG_AT).ok().and_then(|v| v.parse().ok());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let q = queue(&name, Duration::from_millis(500), 5).await;
        let mut c = client(common::URL).await;
        let _: () = c.sadd(key(&name, "ready"), &tag).await.unwrap();
        let mut handled = 0usize;
        loop {
            let stop: bool = c.exists(key(&name, "stop")).await.unwrap();
            if stop {
                break;
            }
            let batch = q.consume(10, Duration::from_millis(100)).await.unwrap();
            for d in batch {
                handled += 1;
                let id = d.task.id.to_string();
                let _: () = c.hincr(key(&name, "starts"), &id, 1).await.unwrap();
                let _: () = c.hincr(key(&name, "by-process"), &tag, 1).await.unwrap();
                if hang_at == Some(handled) {
                    // Mid-task: the effect is not done, the lease is held.
                    let _: () = c.set(key(&name, "hanging"), &id).await.unwrap();
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let _: () = c.sadd(key(&name, "done"), &id).await.unwrap();
                q.ack(&d).await.unwrap();
            }
        }
    });
}

async fn done_count(c: &mut redis::aio::MultiplexedConnection, name: &str) -> usize {
    c.scard(key(name, "done")).await.unwrap()
}

#[tokio::test]
async fn consumer_killed_mid_task_loses_nothing() {
    let name = unique("sigkill");
    let _cleanup = common::Cleanup(name.clone());
    let q = queue(&name, Duration::from_millis(500), 5).await;
    let mut c = client(common::URL).await;
    let tasks: Vec<Task> = (0..200).map(|i| Task::new("r", format!("{i}"))).collect();
    q.publish_batch(tasks.clone()).await.unwrap();

    let mut child = spawn_child(&name, "victim", Some(25));
    let mut c2 = c.clone();
    let n2 = name.clone();
    eventually(
        "the child to hang inside a task",
        Duration::from_secs(20),
        || {
            let mut c = c2.clone();
            let k = key(&n2, "hanging");
            async move { c.exists(k).await.unwrap_or(false) }
        },
    )
    .await
    .unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let hung: String = c2.get(key(&name, "hanging")).await.unwrap();

    // A consumer in this process finishes the work, the killed delivery included once its
    // lease runs out.
    let worker = queue(&name, Duration::from_millis(500), 5).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while done_count(&mut c, &name).await < tasks.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "work did not finish"
        );
        let batch = worker
            .consume(10, Duration::from_millis(200))
            .await
            .unwrap();
        for d in &batch {
            let id = d.task.id.to_string();
            let _: () = c.hincr(key(&name, "starts"), &id, 1).await.unwrap();
            let _: () = c.sadd(key(&name, "done"), &id).await.unwrap();
        }
        worker.ack_batch(&batch).await.unwrap();
    }
    let done: Vec<String> = c.smembers(key(&name, "done")).await.unwrap();
    let mut want: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
    let mut got = done.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "every task's effect happened exactly once");
    let starts: HashMap<String, u32> = c.hgetall(key(&name, "starts")).await.unwrap();
    assert_eq!(starts.get(&hung), Some(&2), "the killed task ran again");
    assert_eq!(
        starts.values().filter(|n| **n != 1).count(),
        1,
        "no other task ran twice"
    );
    let s = q.stats().await.unwrap();
    assert_eq!((s.pending, s.in_flight, s.acked_total), (0, 0, 200));
    // The hung task and the five not yet started in its batch of ten came back.
    assert_eq!((s.expired_total, s.nacked_total), (6, 0));
}

#[tokio::test]
async fn two_processes_share_a_queue_and_each_task_is_delivered_once() {
    let name = unique("twoproc");
    let _cleanup = common::Cleanup(name.clone());
    let q = queue(&name, Duration::from_secs(30), 5).await;
    let mut c = client(common::URL).await;
    let mut children = [spawn_child(&name, "a", None), spawn_child(&name, "b", None)];
    let c2 = c.clone();
    let n2 = name.clone();
    eventually("both children to start", Duration::from_secs(20), || {
        let mut c = c2.clone();
        let k = key(&n2, "ready");
        async move { c.scard::<_, usize>(k).await.unwrap_or(0) == 2 }
    })
    .await
    .unwrap();
    let tasks: Vec<Task> = (0..2000).map(|i| Task::new("r", format!("{i}"))).collect();
    for chunk in tasks.chunks(100) {
        q.publish_batch(chunk.to_vec()).await.unwrap();
    }
    let c3 = c.clone();
    let n3 = name.clone();
    eventually("all tasks to be done", Duration::from_secs(30), || {
        let mut c = c3.clone();
        let n = n3.clone();
        async move { done_count(&mut c, &n).await == 2000 }
    })
    .await
    .unwrap();
    let _: () = c.set(key(&name, "stop"), 1).await.unwrap();
    for child in &mut children {
        assert!(child.wait().unwrap().success(), "child failed");
    }
    let starts: HashMap<String, u32> = c.hgetall(key(&name, "starts")).await.unwrap();
    assert_eq!(starts.len(), 2000);
    assert!(
        starts.values().all(|n| *n == 1),
        "a task was delivered twice"
    );
    let by: HashMap<String, u32> = c.hgetall(key(&name, "by-process")).await.unwrap();
    assert!(
        by.get("a").copied().unwrap_or(0) > 0 && by.get("b").copied().unwrap_or(0) > 0,
        "{by:?}"
    );
    let s = q.stats().await.unwrap();
    assert_eq!(
        (s.pending, s.in_flight, s.acked_total, s.expired_total),
        (0, 0, 2000, 0)
    );
}
