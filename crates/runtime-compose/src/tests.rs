#![allow(clippy::unwrap_used, clippy::expect_used)]

use runtime_contracts::{ConfigError, Secret};
use runtime_core::config::{PlatformConfig, QueueBackend, TraceExporter};

use super::*;

fn keys(platform: &PlatformConfig) -> Vec<String> {
    match plan(platform, "test") {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(issues)) => issues.into_iter().map(|i| i.key).collect(),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn the_defaults_plan_a_memory_queue_id_traces_and_a_loopback_control_plane() {
    let plan = plan(&PlatformConfig::default(), "test").unwrap();
    assert!(matches!(plan.queue, QueuePlan::Memory(_)));
    assert!(matches!(plan.tracer, TracerPlan::Ids));
    assert!(plan.control.is_some());
}

#[test]
fn a_redis_url_the_queue_cannot_use_is_named_by_its_key_without_its_password() {
    let mut p = PlatformConfig::default();
    p.queue.backend = QueueBackend::Redis;
    p.queue.redis_url = Secret::new("redis+unix:///tmp/r.sock");
    assert_eq!(keys(&p), ["queue.redis_url"]);
    p.queue.redis_url = Secret::new("redis://user:hunter2@host:notaport/0");
    let Err(ConfigError::Invalid(issues)) = plan(&p, "test") else {
        panic!("accepted")
    };
    assert_eq!(issues[0].key, "queue.redis_url");
    assert!(
        !issues[0].message.contains("hunter2"),
        "{}",
        issues[0].message
    );
}

#[test]
fn several_bad_components_are_all_reported() {
    let mut p = PlatformConfig::default();
    p.queue.backend = QueueBackend::Redis;
    p.queue.redis_url = Secret::new("redis+unix:///tmp/r.sock");
    p.tracing.exporter = TraceExporter::Otlp;
    p.tracing.otlp_endpoint = "https://collector:4318".into();
    p.control.bind = "0.0.0.0:8080".parse().unwrap();
    assert_eq!(
        keys(&p),
        ["queue.redis_url", "tracing.otlp_endpoint", "control.bind"]
    );
}

#[test]
fn a_disabled_control_plane_is_not_checked_or_bound() {
    let mut p = PlatformConfig::default();
    p.control.enabled = false;
    p.control.bind = "0.0.0.0:8080".parse().unwrap();
    assert!(plan(&p, "test").unwrap().control.is_none());
}

#[tokio::test]
async fn a_plan_builds_what_it_planned() {
    let mut p = PlatformConfig::default();
    p.control.bind = "127.0.0.1:0".parse().unwrap();
    p.tracing.exporter = TraceExporter::Stdout;
    let plan = plan(&p, "test").unwrap();
    assert_eq!(plan.build_queue().unwrap().name(), "tasks");
    plan.build_tracer().unwrap();
    let (plane, fallback) = plan.bind_control(false).await.unwrap().unwrap();
    assert_ne!(plane.local_addr().port(), 0);
    assert!(fallback.is_none());
}
