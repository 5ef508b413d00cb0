//! Handler outcomes drive ack / retry / dead-letter / release; panics, timeouts,
//! backpressure, source acknowledgement, live resizing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runtime_contracts::{AdminError, FinalOutcome, PurgedDeadLetters, TaskError, TaskQueue};
use runtime_testkit::fakes::{
    FnHandler, RecordingAcknowledger, VecSource, memory_queue, reloadable_config,
};

use crate::{eventually, fast_platform, queue, runtime_with};

fn tasks(n: usize) -> Vec<runtime_contracts::Task> {
    (0..n)
        .map(|i| {
            runtime_contracts::Task::new("t", format!("{i}")).with_origin("s", format!("k{i}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_restarted_and_its_task_redelivered() {
    let q = queue(5);
    let handler = FnHandler::new(Duration::ZERO, |task, _| {
        if task.attempts == 0 {
            panic!("boom on first attempt");
        }
        Ok(())
    });
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::new("s", tasks(1))],
        handler.clone(),
        1,
    )
    .await;
    rt.start().await.unwrap();
    assert_eq!(handler.wait_calls(2, Duration::from_secs(10)).await, 2);
    assert!(
        eventually(Duration::from_secs(5), || {
            handle.supervisor().status()[0].processed == 1
        })
        .await
    );
    let pool = &handle.supervisor().status()[0];
    assert_eq!(pool.restarts, 1);
    assert_eq!(pool.failed, 1);
    assert!(pool.last_error.as_deref().unwrap_or("").contains("boom"));
    rt.stop().await;
    assert_eq!(q.stats().await.unwrap().acked_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_a_delay_waits_and_counts_the_attempt() {
    let q = queue(5);
    let handler = FnHandler::new(Duration::ZERO, |task, _| {
        if task.attempts == 0 {
            Err(TaskError::Retry {
                after: Some(Duration::from_millis(300)),
                reason: "later".into(),
            })
        } else {
            Ok(())
        }
    });
    let (rt, _, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::new("s", tasks(1))],
        handler.clone(),
        1,
    )
    .await;
    let started = Instant::now();
    rt.start().await.unwrap();
    assert_eq!(handler.wait_calls(2, Duration::from_secs(10)).await, 2);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let calls = handler.calls.lock().unwrap().clone();
    assert_eq!((calls[0].attempts, calls[1].attempts), (0, 1));
    rt.stop().await;
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.nacked_total, stats.acked_total), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_after_max_attempts_and_the_source_is_told() {
    let q = queue(3);
    let ack = RecordingAcknowledger::new();
    let handler = FnHandler::new(Duration::ZERO, |_, _| {
        Err(TaskError::Retry {
            after: Some(Duration::ZERO),
            reason: "always fails".into(),
        })
    });
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::with_acknowledger("s", tasks(1), ack.clone())],
        handler.clone(),
        1,
    )
    .await;
    rt.start().await.unwrap();
    assert_eq!(ack.wait_acks(1, Duration::from_secs(10)).await, 1);
    assert_eq!(handler.call_count(), 3);
    assert_eq!(
        ack.recorded()[0],
        (
            "k0".to_owned(),
            FinalOutcome::DeadLettered {
                reason: "always fails".into()
            }
        )
    );
    let dead = handle.control_plane().dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].letter.reason, "always fails");
    assert_eq!(handle.supervisor().status()[0].dead_lettered, 1);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_dead_letters_at_once() {
    let q = queue(5);
    let handler = FnHandler::new(Duration::ZERO, |_, _| Err(TaskError::reject("malformed")));
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::new("s", tasks(1))],
        handler.clone(),
        1,
    )
    .await;
    rt.start().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            handle.supervisor().status()[0].dead_lettered == 1
        })
        .await
    );
    assert_eq!(handler.call_count(), 1);
    rt.stop().await;
    assert_eq!(q.stats().await.unwrap().dead, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_does_not_use_up_attempts() {
    let q = queue(2);
    let down = Arc::new(AtomicUsize::new(5));
    let d = down.clone();
    let handler = FnHandler::new(Duration::ZERO, move |_, _| {
        if d.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            Err(TaskError::Unavailable {
                after: Some(Duration::from_millis(10)),
                reason: "store down".into(),
            })
        } else {
            Ok(())
        }
    });
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::new("s", tasks(1))],
        handler.clone(),
        1,
    )
    .await;
    rt.start().await.unwrap();
    assert_eq!(handler.wait_calls(6, Duration::from_secs(20)).await, 6);
    assert!(
        eventually(Duration::from_secs(5), || {
            handle.supervisor().status()[0].processed == 1
        })
        .await
    );
    assert!(
        handler
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|t| t.attempts == 0)
    );
    rt.stop().await;
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead, stats.acked_total), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_task_is_nacked() {
    let q = queue(5);
    let first = Arc::new(AtomicBool::new(true));
    let handler = Arc::new(SlowOnce { first });
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({"workers": {"task_timeout": "100ms"}})),
        q.clone(),
        vec![VecSource::new("s", tasks(1))],
        handler,
        1,
    )
    .await;
    rt.start().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            handle.supervisor().status()[0].processed == 1
        })
        .await
    );
    let pool = &handle.supervisor().status()[0];
    assert_eq!((pool.timeouts, pool.failed), (1, 1));
    rt.stop().await;
}

struct SlowOnce {
    first: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl runtime_contracts::TaskHandler for SlowOnce {
    async fn handle(
        &self,
        _task: &runtime_contracts::Task,
        _ctx: &runtime_contracts::TaskContext<'_>,
    ) -> Result<(), TaskError> {
        if self.first.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_acknowledgement_follows_success_and_is_retried_when_it_fails() {
    let q = queue(5);
    let ack = RecordingAcknowledger::new();
    ack.fail_next.store(1, Ordering::SeqCst);
    let handler = FnHandler::new(Duration::ZERO, |_, ctx| {
        ctx.tag_outcome("special");
        Ok(())
    });
    let (rt, _, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::with_acknowledger("s", tasks(1), ack.clone())],
        handler.clone(),
        1,
    )
    .await;
    rt.start().await.unwrap();
    assert_eq!(ack.wait_acks(1, Duration::from_secs(10)).await, 1);
    // The failed acknowledgement sent the task back; the handler ran again, idempotently.
    assert_eq!(handler.call_count(), 2);
    assert!(
        handler
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|t| t.attempts == 0)
    );
    assert_eq!(
        ack.recorded()[0].1,
        FinalOutcome::Succeeded {
            tag: Some("special".into())
        }
    );
    rt.stop().await;
    assert_eq!(q.stats().await.unwrap().acked_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_holds_the_source_when_the_queue_is_full() {
    let q = memory_queue("q", 2, 3, Duration::from_secs(30));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let handler = Arc::new(Gated { gate: gate.clone() });
    let source = VecSource::new("s", tasks(10));
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![source.clone()],
        handler,
        1,
    )
    .await;
    rt.start().await.unwrap();
    let mut blocked = false;
    for _ in 0..500 {
        let stats = q.stats().await.unwrap();
        if stats.blocked_publishers >= 1 {
            blocked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(blocked, "the source should wait for room");
    let produced = handle.status().await.sources[0].produced;
    assert!(produced <= 2, "produced {produced} into a queue of 2");
    gate.add_permits(100);
    assert!(
        eventually(Duration::from_secs(10), || {
            handle.supervisor().status()[0].processed == 10
        })
        .await
    );
    rt.stop().await;
}

struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl runtime_contracts::TaskHandler for Gated {
    async fn handle(
        &self,
        _task: &runtime_contracts::Task,
        _ctx: &runtime_contracts::TaskContext<'_>,
    ) -> Result<(), TaskError> {
        let permit = self.gate.acquire().await.map_err(TaskError::retry)?;
        permit.forget();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_resizes_a_running_pool_without_losing_a_task() {
    let q = memory_queue("q", 1000, 3, Duration::from_secs(30));
    let platform = fast_platform(serde_json::json!({"workers": {"concurrency": 1}}));
    let (cfg, layer) = reloadable_config(platform.clone()).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let module = runtime_testkit::fakes::PartsModule {
        sources: vec![(VecSource::new("s", tasks(20)), "q".into())],
        pools: vec![runtime_contracts::PoolSpec {
            name: "p".into(),
            queue: "q".into(),
            handler: Arc::new(Gated { gate: gate.clone() }),
            concurrency: cfg.platform().workers.concurrency,
            task_timeout: Duration::from_secs(30),
        }],
        ..Default::default()
    };
    let rt = runtime_core::RuntimeManager::builder(cfg.clone())
        .queue(q.clone())
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    let handle = rt.handle();
    rt.start().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || handle.supervisor().status()[0]
            .busy
            == 1)
        .await
    );
    let mut changed = platform;
    changed["workers"]["concurrency"] = serde_json::json!(4);
    layer.set(changed);
    let report = cfg.reload().await;
    assert!(report.accepted, "{report:?}");
    assert!(
        report
            .changed_keys
            .contains(&"workers.concurrency".to_owned())
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let p = &handle.supervisor().status()[0];
            p.concurrency == 4 && p.busy == 4
        })
        .await
    );
    gate.add_permits(100);
    assert!(
        eventually(Duration::from_secs(10), || {
            handle.supervisor().status()[0].processed == 20
        })
        .await
    );
    rt.stop().await;
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.acked_total, stats.pending, stats.dead), (20, 0, 0));
}

/// Fails its first `fail` calls (as an outage, or refusing for good) and records when
/// each call came.
struct FlakyAcknowledger {
    fail: usize,
    permanent: bool,
    calls: std::sync::Mutex<Vec<(Instant, FinalOutcome)>>,
}

impl FlakyAcknowledger {
    fn new(fail: usize, permanent: bool) -> Arc<Self> {
        Arc::new(FlakyAcknowledger {
            fail,
            permanent,
            calls: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<(Instant, FinalOutcome)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl runtime_contracts::SourceAcknowledger for FlakyAcknowledger {
    async fn acknowledge(
        &self,
        _key: &str,
        outcome: &FinalOutcome,
    ) -> Result<(), runtime_contracts::SourceError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((Instant::now(), outcome.clone()));
            calls.len()
        };
        if self.permanent && matches!(outcome, FinalOutcome::Succeeded { .. }) {
            return Err(runtime_contracts::SourceError::Permanent(
                "NO [CANNOT] bad folder".into(),
            ));
        }
        if n <= self.fail {
            return Err(runtime_contracts::SourceError::Unavailable {
                message: "server away".into(),
                source: None,
            });
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_acknowledgement_is_retried_with_growing_delays() {
    let q = queue(5);
    let ack = FlakyAcknowledger::new(4, false);
    let handler = FnHandler::new(Duration::ZERO, |_, _| Ok(()));
    let (rt, _, _) = runtime_with(
        fast_platform(serde_json::json!({
            "workers": {"retry_base": "50ms", "retry_max": "2s"}
        })),
        q.clone(),
        vec![VecSource::with_acknowledger("s", tasks(1), ack.clone())],
        handler.clone(),
        1,
    )
    .await;
    rt.start().await.unwrap();
    assert!(eventually(Duration::from_secs(10), || ack.calls().len() >= 5).await);
    rt.stop().await;
    let times: Vec<Instant> = ack.calls().iter().map(|c| c.0).collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Delays of retry n are drawn from [base*2^n/2, base*2^n]: the fourth is at least
    // 200 ms, while a streak reset by each handler success keeps every one under 50 ms.
    assert!(gaps[3] >= Duration::from_millis(200), "{gaps:?}");
    assert!(gaps[3] > gaps[0] && gaps[2] > gaps[0], "{gaps:?}");
    // Still an outage: no attempt counted, the task was acked in the end.
    assert!(
        handler
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|t| t.attempts == 0)
    );
    assert_eq!(q.stats().await.unwrap().acked_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanently_refused_acknowledgement_dead_letters_with_the_reason() {
    let q = queue(3);
    let ack = FlakyAcknowledger::new(0, true);
    let handler = FnHandler::new(Duration::ZERO, |_, _| Ok(()));
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::with_acknowledger("s", tasks(1), ack.clone())],
        handler.clone(),
        1,
    )
    .await;
    rt.start().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            handle.supervisor().status()[0].dead_lettered == 1
        })
        .await
    );
    let dead = handle.control_plane().dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].letter.reason.contains("NO [CANNOT] bad folder"),
        "{:?}",
        dead[0].letter
    );
    // One try per attempt, then the source hears of the dead letter; no loop.
    assert_eq!(handler.call_count(), 3);
    let calls = ack.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(matches!(calls[3].1, FinalOutcome::DeadLettered { .. }));
    let pool = &handle.supervisor().status()[0];
    assert_eq!(pool.failed, 3);
    assert!(
        pool.last_error
            .as_deref()
            .unwrap_or("")
            .contains("[CANNOT]")
    );
    rt.stop().await;
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.acked_total, 0);
}

/// Dead-letters `n` tasks in `q` by hand (no runtime running).
async fn kill(q: &Arc<runtime_testkit::fakes::MemoryQueue>, n: usize) {
    for i in 0..n {
        q.publish(runtime_contracts::Task::new("t", format!("{i}")))
            .await
            .unwrap();
        let d = q.consume(1, Duration::from_secs(1)).await.unwrap();
        q.dead_letter(&d[0], "hopeless").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_empties_the_dead_sets_of_every_queue_or_one_and_counts_each() {
    let a = memory_queue("a", 100, 3, Duration::from_secs(2));
    let b = memory_queue("b", 100, 3, Duration::from_secs(2));
    let rt = runtime_core::RuntimeManager::builder(
        runtime_testkit::fakes::config(fast_platform(serde_json::json!({}))).await,
    )
    .queue(a.clone())
    .queue(b.clone())
    .handle_signals(false)
    .build();
    let plane = rt.handle().control_plane();
    kill(&a, 2).await;
    kill(&b, 1).await;

    let err = plane.purge_dead_letters(Some("ghost")).await.unwrap_err();
    assert!(
        matches!(err, AdminError::NotFound(ref m) if m.contains("ghost")),
        "{err:?}"
    );
    assert_eq!(
        a.stats().await.unwrap().dead,
        2,
        "an unknown queue purges nothing"
    );

    let one = plane.purge_dead_letters(Some("b")).await.unwrap();
    assert_eq!(one, vec![purged("b", 1)]);
    assert_eq!(a.stats().await.unwrap().dead, 2, "only the named queue");

    kill(&b, 1).await;
    let all = plane.purge_dead_letters(None).await.unwrap();
    assert_eq!(all, vec![purged("a", 2), purged("b", 1)]);
    for q in [&a, &b] {
        let s = q.stats().await.unwrap();
        assert_eq!((s.dead, s.pending, s.in_flight), (0, 0, 0));
    }
    assert!(plane.dead_letters(None, 10).await.unwrap().is_empty());
}

fn purged(queue: &str, purged: u64) -> PurgedDeadLetters {
    PurgedDeadLetters {
        queue: queue.into(),
        purged,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_is_not_retried_and_its_source_is_told() {
    use runtime_contracts::{CancelOutcome, TaskState};
    let q = queue(5);
    let ack = RecordingAcknowledger::new();
    // Runs 1 s, then fails when it was cancelled meanwhile: without the cancel, a
    // failure would be retried.
    let handler = FnHandler::new(Duration::from_millis(1000), |_, ctx| {
        if ctx.is_cancelled() {
            Err(TaskError::retry("stopped"))
        } else {
            Ok(())
        }
    });
    let work = tasks(2);
    let (running, pending) = (work[0].id, work[1].id);
    let (rt, handle, _) = runtime_with(
        fast_platform(serde_json::json!({})),
        q.clone(),
        vec![VecSource::with_acknowledger("s", work, ack.clone())],
        handler.clone(),
        1,
    )
    .await;
    rt.start().await.unwrap();
    let plane = handle.control_plane();
    let mut state = TaskState::Unknown;
    for _ in 0..250 {
        state = plane.task(running).await.unwrap().state;
        if state == TaskState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, TaskState::Running);
    assert_eq!(plane.task(pending).await.unwrap().state, TaskState::Pending);
    assert_eq!(
        plane.cancel_task(pending).await.unwrap(),
        CancelOutcome::Removed
    );
    assert_eq!(
        plane.cancel_task(running).await.unwrap(),
        CancelOutcome::Signalled
    );
    assert_eq!(ack.wait_acks(2, Duration::from_secs(10)).await, 2);
    let told = FinalOutcome::DeadLettered {
        reason: "cancelled by an operator".into(),
    };
    let mut recorded = ack.recorded();
    recorded.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        recorded,
        vec![("k0".to_owned(), told.clone()), ("k1".to_owned(), told)]
    );
    let s = q.stats().await.unwrap();
    assert_eq!(
        (s.pending, s.in_flight, s.delayed, s.dead),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.cancelled_total, 2);
    assert_eq!(s.nacked_total, 0, "a cancelled task counted an attempt");
    assert_eq!(handler.call_count(), 1, "the cancelled task ran again");
    assert_eq!(
        plane.cancel_task(running).await.unwrap(),
        CancelOutcome::Unknown
    );
    rt.stop().await;
}
