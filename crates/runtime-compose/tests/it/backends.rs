//! A queue backend from outside runtime-compose (the testkit's example) plugs in with one
//! registration line and is chosen by `queue.backend`, like the built-in ones: its keys
//! are checked by name, a runtime runs on it, and without the line its tag is refused.

use std::sync::Arc;
use std::time::Duration;

use runtime_compose::{Backends, fill_effective, plan, plan_with};
use runtime_contracts::{ConfigError, ConfigLayer, ConfigOrigin, ConfigSnapshot, PoolSpec, Task};
use runtime_core::RuntimeManager;
use runtime_testkit::example_backend::ExampleQueueSettings;
use runtime_testkit::fakes::{FnHandler, PartsModule, VecSource, config};
use serde_json::{Value, json};

fn snap(tree: Value) -> ConfigSnapshot {
    ConfigSnapshot::from_layers(
        1,
        &[ConfigLayer::from_tree("t", &tree, &ConfigOrigin::Default)],
    )
}

/// The one registration line.
fn with_example() -> Backends {
    Backends::builtin().with_queue::<ExampleQueueSettings>()
}

fn issues(result: Result<runtime_compose::Plan, ConfigError>) -> Vec<(String, String)> {
    match result {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(issues)) => {
            issues.into_iter().map(|i| (i.key, i.message)).collect()
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn the_example_backend_is_chosen_by_config_and_its_keys_are_checked() {
    let tree = json!({"queue": {"backend": "example", "example_capacity": 3, "name": "ex"}});
    let planned = plan_with(&with_example(), &snap(tree), "test").unwrap();
    assert_eq!(planned.queue.backend(), "example");
    assert_eq!(planned.queue.effective(), json!({"example_capacity": 3}));
    let queue = planned.build_queue().unwrap();
    assert_eq!((queue.name(), queue.backend()), ("ex", "example"));
    assert!(with_example().queue_tags().contains(&"example"));

    // Its own check, named by its key; a misspelt key of it gets a suggestion.
    let bad = json!({"queue": {"backend": "example", "example_capacity": 0}});
    let found = issues(plan_with(&with_example(), &snap(bad), "test"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "queue.example_capacity");
    let typo = json!({"queue": {"backend": "example", "example_capacty": 2}});
    let found = issues(plan_with(&with_example(), &snap(typo), "test"));
    assert_eq!(found[0].0, "queue.example_capacty");
    assert!(found[0].1.contains("example_capacity"), "{found:?}");

    // Another backend chosen: its keys are still known (not "unknown key").
    let other = json!({"queue": {"backend": "memory", "example_capacity": 2}});
    assert!(plan_with(&with_example(), &snap(other), "test").is_ok());
}

#[test]
fn without_the_registration_line_the_tag_and_its_keys_are_refused() {
    let tree = json!({"queue": {"backend": "example", "example_capacity": 3}});
    let found = issues(plan(&snap(tree), "test"));
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"queue.backend"), "{found:?}");
    assert!(keys.contains(&"queue.example_capacity"), "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_runs_tasks_and_an_exclusive_source_on_the_example_backend() {
    let tree = json!({"queue": {"backend": "example", "name": "ex"}});
    let planned = plan_with(&with_example(), &snap(tree), "test").unwrap();
    let queue = planned.build_queue().unwrap();
    let handler = FnHandler::new(Duration::ZERO, |_, _| Ok(()));
    let module = PartsModule {
        exclusive_sources: vec![(
            VecSource::new("s", vec![Task::new("t", "1"), Task::new("t", "2")]),
            "ex".into(),
            Duration::from_secs(3),
        )],
        pools: vec![PoolSpec {
            name: "p".into(),
            queue: "ex".into(),
            handler: handler.clone(),
            concurrency: 1,
            task_timeout: Duration::from_secs(5),
        }],
        ..Default::default()
    };
    let rt = RuntimeManager::builder(config(json!({"queue": {"name": "ex"}})).await)
        .queue(queue)
        .module(Arc::new(module))
        .handle_signals(false)
        .build();
    let handle = rt.handle();
    rt.start().await.unwrap();
    assert_eq!(handler.wait_calls(2, Duration::from_secs(10)).await, 2);
    let status = handle.status().await;
    assert_eq!(status.queues[0].backend, "example");
    assert_eq!(status.sources[0].details["leader"], true);
    rt.stop().await;
}

/// `print-config` shows an adapter's own defaults the configuration leaves out, keeps what
/// it sets, and never a secret.
#[test]
fn the_effective_tree_holds_adapter_defaults_and_no_secret() {
    let tree = json!({"queue": {"backend": "example"}});
    let snapshot = snap(tree);
    let mut printed = snapshot.redacted();
    fill_effective(&with_example(), &snapshot, &mut printed);
    assert_eq!(printed["queue"]["example_capacity"], 16);
    assert_eq!(printed["queue"]["backend"], "example");

    let tree = json!({"queue": {"backend": "redis", "redis_url": "redis://u:hunter2@h:6379/0"}});
    let snapshot = snap(tree);
    let mut printed = snapshot.redacted();
    fill_effective(&Backends::builtin(), &snapshot, &mut printed);
    let text = printed.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("redis_url"), "{text}");
}
