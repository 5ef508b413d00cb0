#![allow(clippy::unwrap_used, clippy::expect_used)]

use runtime_contracts::{ConfigError, ConfigLayer, ConfigOrigin};
use serde_json::{Value, json};

use super::*;

fn snap(tree: Value) -> ConfigSnapshot {
    ConfigSnapshot::from_layers(
        1,
        &[ConfigLayer::from_tree("t", &tree, &ConfigOrigin::Default)],
    )
}

fn keys(tree: Value) -> Vec<String> {
    match plan(&snap(tree), "test") {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(issues)) => issues.into_iter().map(|i| i.key).collect(),
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn the_defaults_plan_a_memory_queue_id_traces_and_a_loopback_control_plane() {
    let plan = plan(&snap(json!({})), "test").unwrap();
    assert_eq!(plan.queue.backend(), "memory");
    assert!(matches!(plan.tracer, TracerPlan::Ids));
    assert!(plan.control.is_some());
}

#[test]
fn a_redis_url_the_queue_cannot_use_is_named_by_its_key_without_its_password() {
    assert_eq!(
        keys(json!({"queue": {"backend": "redis", "redis_url": "redis+unix:///tmp/r.sock"}})),
        ["queue.redis_url"]
    );
    let tree =
        json!({"queue": {"backend": "redis", "redis_url": "redis://user:hunter2@host:notaport/0"}});
    let Err(ConfigError::Invalid(issues)) = plan(&snap(tree), "test") else {
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
    let tree = json!({
        "queue": {"backend": "redis", "redis_url": "redis+unix:///tmp/r.sock"},
        "tracing": {"exporter": "otlp", "otlp_endpoint": "https://collector:4318"},
        "control": {"bind": "0.0.0.0:8080"},
    });
    assert_eq!(
        keys(tree),
        ["queue.redis_url", "tracing.otlp_endpoint", "control.bind"]
    );
}

#[test]
fn a_disabled_control_plane_is_not_checked_or_bound() {
    let tree = json!({"control": {"enabled": false, "bind": "0.0.0.0:8080"}});
    assert!(plan(&snap(tree), "test").unwrap().control.is_none());
}

#[test]
fn unknown_keys_of_adapter_sections_are_named_with_a_suggestion() {
    let tree = json!({
        "queue": {"capacty": 5, "redis_url": "redis://127.0.0.1:6379/0"},
        "tracing": {"otlp_endpiont": "http://x"},
        "control": {"bnd": "127.0.0.1:1"},
    });
    let Err(ConfigError::Invalid(issues)) = plan(&snap(tree), "test") else {
        panic!("accepted")
    };
    let found: Vec<(&str, &str)> = issues
        .iter()
        .map(|i| (i.key.as_str(), i.message.as_str()))
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].0 == "queue.capacty" && found[0].1.contains("did you mean `capacity`?"));
    assert!(found[1].0 == "tracing.otlp_endpiont" && found[1].1.contains("`otlp_endpoint`"));
    assert!(found[2].0 == "control.bnd" && found[2].1.contains("did you mean `bind`?"));
}

#[test]
fn a_backend_tag_that_does_not_exist_lists_the_ones_that_do() {
    let Err(ConfigError::Invalid(issues)) =
        plan(&snap(json!({"queue": {"backend": "nats"}})), "test")
    else {
        panic!("accepted")
    };
    assert_eq!(issues[0].key, "queue.backend");
    assert!(
        issues[0]
            .message
            .contains("expected one of \"memory\", \"redis\""),
        "{}",
        issues[0].message
    );
}

#[tokio::test]
async fn a_plan_builds_what_it_planned() {
    let tree = json!({"control": {"bind": "127.0.0.1:0"}, "tracing": {"exporter": "stdout"}});
    let plan = plan(&snap(tree), "test").unwrap();
    assert_eq!(plan.build_queue().unwrap().name(), "tasks");
    plan.build_tracer().unwrap();
    let (plane, fallback) = plan.bind_control(false).await.unwrap().unwrap();
    assert_ne!(plane.local_addr().port(), 0);
    assert!(fallback.is_none());
}
