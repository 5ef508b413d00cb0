//! One trace per task across the Redis queue and two runtimes: a producing runtime (the
//! source) and a consuming runtime (the worker) export to a real OTLP/HTTP receiver, and
//! the source, publish, process and handler spans share one trace with the right parents.

use std::sync::Arc;
use std::time::Duration;

use runtime_adapters_otel::{OtelConfig, OtelTraceFactory};
use runtime_adapters_redis::{RedisQueue, RedisQueueConfig};
use runtime_contracts::{PoolSpec, Task, TaskQueue, TraceFactory};
use runtime_core::RuntimeManager;
use runtime_testkit::fakes::{FnHandler, PartsModule, VecSource, config};
use runtime_testkit::otlp_receiver::OtlpReceiver;
use runtime_testkit::queue_conformance::unique_name;

use crate::harness::{delete_redis_queue, require_redis};

fn tracer(endpoint: String, service: &str) -> Arc<dyn TraceFactory> {
    Arc::new(
        OtelTraceFactory::new(OtelConfig {
            service_name: service.to_owned(),
            scheduled_delay: Duration::from_millis(50),
            ..OtelConfig::otlp(endpoint)
        })
        .unwrap(),
    )
}

async fn redis_queue(name: &str) -> Arc<dyn TaskQueue> {
    Arc::new(
        RedisQueue::connect(RedisQueueConfig::new("redis://127.0.0.1:6379/0", name))
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_crosses_the_redis_queue_between_two_runtimes() {
    require_redis();
    let receiver = OtlpReceiver::start().await.unwrap();
    let name = unique_name("mob-trace");
    let platform = serde_json::json!({"runtime": {"shutdown_timeout": "5s"}});

    // The producing runtime: a source, no workers.
    let producer = RuntimeManager::builder(config(platform.clone()).await)
        .queue(redis_queue(&name).await)
        .tracer(tracer(receiver.endpoint(), "producer"))
        .module(Arc::new(PartsModule {
            sources: vec![(
                VecSource::new("inbox", vec![Task::new("t", "x")]),
                name.clone(),
            )],
            ..Default::default()
        }))
        .handle_signals(false)
        .build();
    // The consuming runtime: a pool whose handler opens a span of its own.
    let handler = FnHandler::new(Duration::ZERO, |_, ctx| {
        ctx.child_span("store order").end();
        Ok(())
    });
    let consumer = RuntimeManager::builder(config(platform).await)
        .queue(redis_queue(&name).await)
        .tracer(tracer(receiver.endpoint(), "consumer"))
        .module(Arc::new(PartsModule {
            pools: vec![PoolSpec {
                name: "p".into(),
                queue: name.clone(),
                handler: handler.clone(),
                concurrency: 2,
                task_timeout: Duration::from_secs(5),
            }],
            ..Default::default()
        }))
        .handle_signals(false)
        .build();
    consumer.start().await.unwrap();
    producer.start().await.unwrap();
    assert_eq!(handler.wait_calls(1, Duration::from_secs(10)).await, 1);
    producer.stop().await;
    consumer.stop().await;

    let process_name = format!("process {name}");
    let publish_name = format!("publish {name}");
    let spans = receiver
        .wait_for_spans(
            |s| {
                [
                    "source inbox",
                    publish_name.as_str(),
                    process_name.as_str(),
                    "store order",
                ]
                .iter()
                .all(|n| s.iter().any(|x| x.name == *n))
            },
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let by = |n: &str| spans.iter().find(|s| s.name == n).unwrap().clone();
    let (source, publish, process, work) = (
        by("source inbox"),
        by(&publish_name),
        by(&process_name),
        by("store order"),
    );
    for s in [&publish, &process, &work] {
        assert_eq!(
            s.trace_id, source.trace_id,
            "{} is in another trace",
            s.name
        );
    }
    assert_eq!(publish.parent_span_id, Some(source.span_id));
    assert_eq!(process.parent_span_id, Some(publish.span_id));
    assert_eq!(work.parent_span_id, Some(process.span_id));
    assert_eq!(source.service_name.as_deref(), Some("producer"));
    assert_eq!(process.service_name.as_deref(), Some("consumer"));
    delete_redis_queue(&name);
}
