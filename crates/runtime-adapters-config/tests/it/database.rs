use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use runtime_adapters_config::{CONFIG_DB_SECTION, DatabaseProvider, FileProvider};
use runtime_contracts::{ConfigError, ConfigLayer, ConfigOrigin, ConfigProvider, ConfigSnapshot};
use serde_json::json;
use sqlx::Connection;

use crate::write;

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A schema of its own on the real PostgreSQL, dropped at the end.
struct PgSchema {
    name: String,
}

impl PgSchema {
    async fn create() -> PgSchema {
        let name = unique("cfgtest");
        let mut conn = sqlx::PgConnection::connect(PG).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed at {PG} (trust auth, database `test`): {e}. \
                 Start it, e.g. `service postgresql start`"
            )
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        PgSchema { name }
    }

    async fn drop_it(self) {
        let mut conn = sqlx::PgConnection::connect(PG).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

async fn fill(db: &DatabaseProvider) {
    db.create_table().await.unwrap();
    db.set("workers.concurrency", "12").await.unwrap();
    db.set("mail.source", "imap-idle").await.unwrap();
    db.set("mail.host", "\"db.example\"").await.unwrap();
    db.set("queue.visibility_timeout", "90s").await.unwrap();
    db.set("mail.folders", "[\"a\", \"b\"]").await.unwrap();
    db.set("tracing.level", "\"debug\"").await.unwrap();
    db.set("tracing.level", "\"warn\"").await.unwrap(); // replaces
}

async fn check_layer(db: &DatabaseProvider, table: &str) {
    let layer = db.load().await.unwrap();
    let snap = ConfigSnapshot::from_layers(1, &[layer]);
    assert_eq!(snap.get("workers.concurrency"), Some(&json!(12)));
    assert_eq!(snap.get("mail.source"), Some(&json!("imap-idle")));
    assert_eq!(snap.get("mail.host"), Some(&json!("db.example")));
    assert_eq!(snap.get("queue.visibility_timeout"), Some(&json!("90s")));
    assert_eq!(snap.get("mail.folders"), Some(&json!(["a", "b"])));
    assert_eq!(snap.get("tracing.level"), Some(&json!("warn")));
    assert_eq!(
        snap.origin("workers.concurrency"),
        Some(&ConfigOrigin::Database {
            table: table.to_owned(),
            key: "workers.concurrency".to_owned()
        })
    );
}

/// defaults < file < database < environment, with the real file and database layers.
async fn check_precedence(db: &DatabaseProvider) {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bot.toml",
        "[workers]\nconcurrency = 3\n[mail]\nhost = \"file.example\"\nport = 143\n",
    );
    let defaults = ConfigLayer::from_tree(
        "defaults",
        &json!({"workers": {"concurrency": 1}, "mail": {"port": 993, "username": "orders"}, "tracing": {"level": "info"}}),
        &ConfigOrigin::Default,
    );
    let mut env = ConfigLayer::new("env");
    env.set(
        "tracing.level",
        json!("error"),
        ConfigOrigin::Env {
            var: "MOB_TRACING__LEVEL".into(),
        },
    );
    let layers = vec![
        defaults,
        FileProvider::new(&file).load().await.unwrap(),
        db.load().await.unwrap(),
        env,
    ];
    let snap = ConfigSnapshot::from_layers(1, &layers);
    assert_eq!(
        snap.get("mail.username"),
        Some(&json!("orders")),
        "defaults"
    );
    assert_eq!(
        snap.get("mail.port"),
        Some(&json!(143)),
        "file over defaults"
    );
    assert_eq!(
        snap.get("mail.host"),
        Some(&json!("db.example")),
        "database over file"
    );
    assert_eq!(
        snap.get("workers.concurrency"),
        Some(&json!(12)),
        "database over file"
    );
    assert_eq!(
        snap.get("tracing.level"),
        Some(&json!("error")),
        "environment over database"
    );
}

#[tokio::test]
async fn sqlite_file_layer_reads_rows_as_dotted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.db");
    let url = format!("sqlite://{}", path.display());
    let db = DatabaseProvider::new(&url, "plba_config")
        .unwrap()
        .create_table_on_load(true);
    fill(&db).await;
    assert!(path.exists());
    check_layer(&db, "plba_config").await;
    check_precedence(&db).await;

    // A malformed key is an error naming the row.
    db.set("bad key", "1").await.unwrap();
    let Err(ConfigError::Invalid(issues)) = db.load().await else {
        panic!("a bad row must be rejected")
    };
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0]
            .to_string()
            .contains("database table plba_config, key \"bad key\""),
        "{}",
        issues[0]
    );
    db.close().await;

    // Without create_table a missing table is a load error.
    let other = DatabaseProvider::new(&url, "missing_table").unwrap();
    let err = other.load().await.unwrap_err();
    assert!(err.to_string().contains("cannot read the table"), "{err}");
    other.close().await;
}

#[tokio::test]
async fn postgres_layer_reads_rows_as_dotted_keys() {
    let schema = PgSchema::create().await;
    let table = format!("{}.plba_config", schema.name);
    let db = DatabaseProvider::new(PG, &table).unwrap();
    fill(&db).await;
    check_layer(&db, &table).await;
    check_precedence(&db).await;
    // A changed row is seen by the next load (reload).
    db.set("workers.concurrency", "13").await.unwrap();
    let snap = ConfigSnapshot::from_layers(1, &[db.load().await.unwrap()]);
    assert_eq!(snap.get("workers.concurrency"), Some(&json!(13)));
    db.close().await;
    schema.drop_it().await;
}

#[tokio::test]
async fn unreachable_database_is_a_load_error_without_the_password() {
    let db = DatabaseProvider::new("postgres://app:s3cretpw@127.0.0.1:1/x", "plba_config")
        .unwrap()
        .connect_timeout(Duration::from_secs(1));
    let err = db.load().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConfigError::Load { .. }), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
    assert!(
        !text.contains("s3cretpw") && text.contains("app:***@"),
        "{text}"
    );
    assert!(!format!("{db:?}").contains("s3cretpw"));
}

#[tokio::test]
async fn the_database_layer_is_configured_by_config_db() {
    let snap = |tree: serde_json::Value| {
        ConfigSnapshot::from_layers(
            1,
            &[ConfigLayer::from_tree(
                "file",
                &tree,
                &ConfigOrigin::File {
                    path: "bot.toml".into(),
                    line: Some(4),
                },
            )],
        )
    };
    assert!(
        DatabaseProvider::from_bootstrap(&snap(json!({})))
            .unwrap()
            .is_none()
    );
    let p = DatabaseProvider::from_bootstrap(&snap(json!({
        CONFIG_DB_SECTION: {"url": "postgres://u:pw@127.0.0.1/x", "table": "cfg", "connect_timeout": "3s"}
    })))
    .unwrap()
    .unwrap();
    assert_eq!(
        p.describe(),
        "database postgres://u:***@127.0.0.1/x table cfg"
    );

    let Err(ConfigError::Invalid(issues)) = DatabaseProvider::from_bootstrap(&snap(json!({
        CONFIG_DB_SECTION: {"url": "postgres://u:pw@h/x", "table": "x; drop table y", "tabel": 1, "create_table": "yes"}
    }))) else {
        panic!("bad [config_db] must be rejected")
    };
    let text = issues
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("config_db.tabel") && text.contains("unknown key"),
        "{text}"
    );
    assert!(
        text.contains("config_db.create_table") && text.contains("bot.toml:4"),
        "{text}"
    );
    let Err(ConfigError::Invalid(issues)) = DatabaseProvider::from_bootstrap(&snap(json!({
        CONFIG_DB_SECTION: {"url": "mysql://u:pw@h/x"}
    }))) else {
        panic!("an unsupported URL must be rejected")
    };
    let text = issues[0].to_string();
    assert!(
        text.contains("config_db.url") && text.contains("bot.toml:4") && !text.contains(":pw@"),
        "{text}"
    );
}
