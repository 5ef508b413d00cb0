use runtime_adapters_config::FileProvider;
use runtime_contracts::{ConfigError, ConfigOrigin, ConfigProvider, ConfigSnapshot};
use serde_json::json;

use crate::write;

fn line_of(layer: &runtime_contracts::ConfigLayer, key: &str) -> Option<u32> {
    match &layer.entries.get(key)?.origin {
        ConfigOrigin::File { line, .. } => *line,
        _ => None,
    }
}

#[tokio::test]
async fn toml_keys_remember_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bot.toml",
        r#"# comment
workers.concurrency = 3

[queue]
backend = "redis"
capacity = 5          # trailing comment
limits = { soft = 1, hard = 2 }

[[orders.catalog]]
sku = "A-1"
price_cents = 100

[mail]
when = 1979-05-27T07:32:00Z
"#,
    );
    let layer = FileProvider::new(&path).load().await.unwrap();
    assert_eq!(line_of(&layer, "workers.concurrency"), Some(2));
    assert_eq!(line_of(&layer, "queue.backend"), Some(5));
    assert_eq!(line_of(&layer, "queue.capacity"), Some(6));
    assert_eq!(line_of(&layer, "queue.limits.hard"), Some(7));
    assert_eq!(line_of(&layer, "orders.catalog"), Some(9));
    let snap = ConfigSnapshot::from_layers(1, &[layer]);
    assert_eq!(snap.get("queue.capacity"), Some(&json!(5)));
    assert_eq!(
        snap.get("orders.catalog"),
        Some(&json!([{"sku": "A-1", "price_cents": 100}]))
    );
    assert_eq!(snap.get("mail.when"), Some(&json!("1979-05-27T07:32:00Z")));
    // How an error names the source.
    let origin = snap.origin("queue.capacity").unwrap().to_string();
    assert_eq!(origin, format!("{}:6", path.display()));
}

#[tokio::test]
async fn syntax_errors_give_line_and_column_but_no_excerpt() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.toml",
        "[mail]\npassword = \"hunter2\nhost = 1\n",
    );
    let err = FileProvider::new(&path).load().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConfigError::Load { .. }), "{text}");
    assert!(
        text.contains("bad.toml") && text.contains("line 2"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn a_missing_file_is_a_load_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileProvider::new(dir.path().join("nope.toml"))
        .load()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope.toml"), "{err}");
}

#[tokio::test]
async fn yaml_files_load_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bot.yaml",
        "# comment\nqueue:\n  backend: redis\n  capacity: 7\nworkers:\n  concurrency: 4\nmail:\n  folders: [a, b]\n",
    );
    let layer = FileProvider::new(&path).load().await.unwrap();
    assert_eq!(line_of(&layer, "queue.capacity"), Some(4));
    assert_eq!(line_of(&layer, "workers.concurrency"), Some(6));
    let snap = ConfigSnapshot::from_layers(1, &[layer]);
    assert_eq!(snap.get("queue.capacity"), Some(&json!(7)));
    assert_eq!(snap.get("mail.folders"), Some(&json!(["a", "b"])));
    let bad = write(dir.path(), "bad.yml", "queue:\n  capacity: [1\n");
    let err = FileProvider::new(&bad).load().await.unwrap_err();
    assert!(err.to_string().contains("bad.yml"), "{err}");
}

#[tokio::test]
async fn later_files_win() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.toml",
        "[queue]\ncapacity = 1\nname = \"a\"\n",
    );
    let b = write(dir.path(), "b.yaml", "queue:\n  capacity: 2\n");
    let layers = vec![
        FileProvider::new(&a).load().await.unwrap(),
        FileProvider::new(&b).load().await.unwrap(),
    ];
    let snap = ConfigSnapshot::from_layers(1, &layers);
    assert_eq!(snap.get("queue.capacity"), Some(&json!(2)));
    assert_eq!(snap.get("queue.name"), Some(&json!("a")));
    assert_eq!(
        snap.origin("queue.capacity").unwrap().to_string(),
        format!("{}:2", b.display())
    );
    assert_eq!(FileProvider::new(&a).watch_paths(), vec![a.clone()]);
}
