//! Configuration rows in a PostgreSQL or SQLite table.
//!
//! Layout (created by [`DatabaseProvider::create_table`], or at load with
//! `create_table = true`):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS plba_config (
//!     key        TEXT PRIMARY KEY,   -- dotted key: workers.concurrency
//!     value      TEXT NOT NULL,      -- a TOML value: 8, true, "imap-poll", [1, 2]; bare text is a string
//!     updated_at TIMESTAMPTZ NOT NULL DEFAULT now()   -- SQLite: TEXT DEFAULT CURRENT_TIMESTAMP
//! );
//! ```

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use runtime_contracts::{
    ConfigError, ConfigIssue, ConfigLayer, ConfigOrigin, ConfigProvider, ConfigSnapshot, Secret,
};
use serde::Deserialize;
use serde_json::Value;
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::value::redact_url;

/// The section that turns the database layer on.
pub const CONFIG_DB_SECTION: &str = "config_db";

/// The table name used when `config_db.table` is not set.
pub const DEFAULT_TABLE: &str = "plba_config";

/// `[config_db]`: where the database layer is. Without `url` there is no database layer.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigDbSettings {
    /// `postgres://...` or `sqlite://path` (a password in it is shown as `***`).
    pub url: Option<Secret>,
    /// Table (optionally `schema.table` on PostgreSQL).
    pub table: String,
    /// Create the table at load if missing (and the SQLite file).
    pub create_table: bool,
    /// How long to wait for a connection.
    #[serde(with = "runtime_contracts::duration")]
    pub connect_timeout: Duration,
}

impl Default for ConfigDbSettings {
    fn default() -> Self {
        ConfigDbSettings {
            url: None,
            table: DEFAULT_TABLE.to_owned(),
            create_table: false,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

enum Pool {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Postgres,
    Sqlite,
}

/// Reads the configuration layer from a key/value table.
pub struct DatabaseProvider {
    url: Secret,
    kind: Kind,
    table: String,
    create_table: bool,
    connect_timeout: Duration,
    pool: tokio::sync::Mutex<Option<Pool>>,
}

impl std::fmt::Debug for DatabaseProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl DatabaseProvider {
    /// A provider for `table` at `url` (`postgres://`, `postgresql://` or `sqlite:`).
    pub fn new(url: impl Into<String>, table: &str) -> Result<Self, ConfigError> {
        let url = url.into();
        let kind = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Kind::Postgres
        } else if url.starts_with("sqlite:") {
            Kind::Sqlite
        } else {
            return Err(ConfigError::Invalid(vec![ConfigIssue {
                key: format!("{CONFIG_DB_SECTION}.url"),
                origin: None,
                value: Some(format!("{:?}", redact_url(&url))),
                message: "expected a postgres://, postgresql:// or sqlite: URL".to_owned(),
            }]));
        };
        if !valid_table(table) {
            return Err(ConfigError::Invalid(vec![ConfigIssue {
                key: format!("{CONFIG_DB_SECTION}.table"),
                origin: None,
                value: Some(format!("{table:?}")),
                message:
                    "expected a table name of letters, digits and `_`, optionally `schema.table`"
                        .to_owned(),
            }]));
        }
        Ok(DatabaseProvider {
            url: Secret::new(url),
            kind,
            table: table.to_owned(),
            create_table: false,
            connect_timeout: Duration::from_secs(5),
            pool: tokio::sync::Mutex::new(None),
        })
    }

    /// Creates the table (and the SQLite file) at load when missing.
    pub fn create_table_on_load(mut self, yes: bool) -> Self {
        self.create_table = yes;
        self
    }

    /// How long to wait for a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The provider `[config_db]` asks for, or `None` without `config_db.url`. Pass it to
    /// the command line as a layer factory:
    /// `AppConfigSpec::layer(CONFIG_DB_SECTION, DatabaseProvider::from_bootstrap)`.
    pub fn from_bootstrap(
        snapshot: &ConfigSnapshot,
    ) -> Result<Option<Box<dyn ConfigProvider>>, ConfigError> {
        let settings = ConfigDbSettings::from_snapshot(snapshot)?;
        let Some(url) = settings.url.filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let provider = DatabaseProvider::new(url.expose(), &settings.table)
            .map_err(|e| with_origins(e, snapshot))?
            .create_table_on_load(settings.create_table)
            .connect_timeout(settings.connect_timeout);
        Ok(Some(Box::new(provider)))
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table if it does not exist.
    pub async fn create_table(&self) -> Result<(), ConfigError> {
        let ddl = match self.kind {
            Kind::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value TEXT NOT NULL, \
                 updated_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                self.table
            ),
            Kind::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {} (key TEXT PRIMARY KEY, value TEXT NOT NULL, \
                 updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                self.table
            ),
        };
        let guard = self.pool().await?;
        // The table name was checked to be an identifier in `new`.
        let result = match guard.as_ref() {
            Some(Pool::Pg(p)) => sqlx::query(AssertSqlSafe(ddl)).execute(p).await.map(drop),
            Some(Pool::Sqlite(p)) => sqlx::query(AssertSqlSafe(ddl)).execute(p).await.map(drop),
            None => Ok(()),
        };
        result.map_err(|e| self.load_error(format!("cannot create the table: {e}")))
    }

    /// Sets one key (value as TOML text, e.g. `8` or `"imap-poll"`): insert or replace.
    pub async fn set(&self, key: &str, value: &str) -> Result<(), ConfigError> {
        let guard = self.pool().await?;
        let result = match guard.as_ref() {
            Some(Pool::Pg(p)) => {
                let sql = format!(
                    "INSERT INTO {} (key, value) VALUES ($1, $2) ON CONFLICT (key) \
                     DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                    self.table
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(key)
                    .bind(value)
                    .execute(p)
                    .await
                    .map(drop)
            }
            Some(Pool::Sqlite(p)) => {
                let sql = format!(
                    "INSERT INTO {} (key, value) VALUES (?1, ?2) ON CONFLICT (key) \
                     DO UPDATE SET value = excluded.value, updated_at = CURRENT_TIMESTAMP",
                    self.table
                );
                sqlx::query(AssertSqlSafe(sql))
                    .bind(key)
                    .bind(value)
                    .execute(p)
                    .await
                    .map(drop)
            }
            None => Ok(()),
        };
        result.map_err(|e| self.load_error(format!("cannot write key {key:?}: {e}")))
    }

    /// Closes the connection (a later load opens a new one).
    pub async fn close(&self) {
        if let Some(pool) = self.pool.lock().await.take() {
            match pool {
                Pool::Pg(p) => p.close().await,
                Pool::Sqlite(p) => p.close().await,
            }
        }
    }

    async fn pool(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Pool>>, ConfigError> {
        let mut guard = self.pool.lock().await;
        if guard.is_none() {
            let url = self.url.expose();
            let pool = match self.kind {
                Kind::Postgres => PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(self.connect_timeout)
                    .connect(url)
                    .await
                    .map(Pool::Pg),
                Kind::Sqlite => {
                    let options = SqliteConnectOptions::from_str(url)
                        .map_err(|e| self.load_error(e.to_string()))?
                        .create_if_missing(self.create_table);
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(self.connect_timeout)
                        .connect_with(options)
                        .await
                        .map(Pool::Sqlite)
                }
            }
            .map_err(|e| self.load_error(format!("cannot connect: {e}")))?;
            *guard = Some(pool);
        }
        Ok(guard)
    }

    fn load_error(&self, message: String) -> ConfigError {
        ConfigError::Load {
            what: self.describe(),
            message,
        }
    }

    async fn rows(&self) -> Result<Vec<(String, String)>, ConfigError> {
        if self.create_table {
            self.create_table().await?;
        }
        let sql = format!("SELECT key, value FROM {} ORDER BY key", self.table);
        let guard = self.pool().await?;
        let query = async {
            match guard.as_ref() {
                Some(Pool::Pg(p)) => {
                    sqlx::query_as::<_, (String, String)>(AssertSqlSafe(sql))
                        .fetch_all(p)
                        .await
                }
                Some(Pool::Sqlite(p)) => {
                    sqlx::query_as::<_, (String, String)>(AssertSqlSafe(sql))
                        .fetch_all(p)
                        .await
                }
                None => Ok(Vec::new()),
            }
        };
        match tokio::time::timeout(self.connect_timeout * 2, query).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(self.load_error(format!("cannot read the table: {e}"))),
            Err(_) => Err(self.load_error("reading the table timed out".to_owned())),
        }
    }
}

#[async_trait]
impl ConfigProvider for DatabaseProvider {
    fn describe(&self) -> String {
        format!(
            "database {} table {}",
            redact_url(self.url.expose()),
            self.table
        )
    }

    async fn load(&self) -> Result<ConfigLayer, ConfigError> {
        let rows = self.rows().await?;
        let mut layer = ConfigLayer::new(self.describe());
        let mut issues = Vec::new();
        for (key, raw) in rows {
            let origin = ConfigOrigin::Database {
                table: self.table.clone(),
                key: key.clone(),
            };
            if !valid_key(&key) {
                issues.push(ConfigIssue {
                    key: key.clone(),
                    origin: Some(origin),
                    value: None,
                    message: "expected a dotted key of letters, digits, `_` and `-`, like workers.concurrency"
                        .to_owned(),
                });
                continue;
            }
            layer.set_raw(&key, &raw, origin);
        }
        if issues.is_empty() {
            Ok(layer)
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }
}

impl ConfigDbSettings {
    /// Reads `[config_db]`, every problem named with its source.
    pub fn from_snapshot(snapshot: &ConfigSnapshot) -> Result<Self, ConfigError> {
        let section = snapshot
            .get(CONFIG_DB_SECTION)
            .cloned()
            .unwrap_or_else(|| Value::Object(Default::default()));
        let mut issues = Vec::new();
        if let Value::Object(map) = &section {
            for (k, v) in map {
                let key = format!("{CONFIG_DB_SECTION}.{k}");
                let expected: Option<String> = match k.as_str() {
                    "url" | "table" if !v.is_string() => Some("expected a string".into()),
                    "create_table" if !v.is_boolean() => Some("expected true or false".into()),
                    "connect_timeout" => match v.as_str().map(runtime_contracts::duration::parse) {
                        Some(Ok(_)) => None,
                        Some(Err(message)) => Some(message),
                        None => Some("expected a duration like \"5s\"".into()),
                    },
                    "url" | "table" | "create_table" => None,
                    _ => Some(
                        "unknown key; known keys here: url, table, create_table, connect_timeout"
                            .into(),
                    ),
                };
                if let Some(message) = expected {
                    let value = match (k.as_str(), v) {
                        ("url", Value::String(s)) => Some(format!("{:?}", redact_url(s))),
                        (_, Value::Object(_)) => None,
                        _ => Some(v.to_string()),
                    };
                    issues.push(ConfigIssue {
                        key: key.clone(),
                        origin: snapshot.origin(&key).cloned(),
                        value,
                        message,
                    });
                }
            }
        } else {
            issues.push(ConfigIssue {
                key: CONFIG_DB_SECTION.to_owned(),
                origin: snapshot.origin(CONFIG_DB_SECTION).cloned(),
                value: None,
                message: "expected a table [config_db]".to_owned(),
            });
        }
        if !issues.is_empty() {
            return Err(ConfigError::Invalid(issues));
        }
        serde_json::from_value(section)
            .map_err(|e| ConfigError::invalid(CONFIG_DB_SECTION, e.to_string()))
    }
}

fn with_origins(error: ConfigError, snapshot: &ConfigSnapshot) -> ConfigError {
    match error {
        ConfigError::Invalid(mut issues) => {
            for i in &mut issues {
                if i.origin.is_none() {
                    i.origin = snapshot.origin(&i.key).cloned();
                }
            }
            ConfigError::Invalid(issues)
        }
        other => other,
    }
}

fn ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

fn valid_table(t: &str) -> bool {
    match t.split_once('.') {
        Some((schema, table)) => ident(schema) && ident(table),
        None => ident(t),
    }
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_table("plba_config") && valid_table("app.cfg"));
        assert!(!valid_table("x; DROP TABLE y") && !valid_table("a.b.c") && !valid_table("1x"));
        assert!(valid_key("workers.concurrency") && !valid_key("a..b") && !valid_key("a b"));
        assert!(DatabaseProvider::new("mysql://x", "t").is_err());
        assert!(DatabaseProvider::new("sqlite://x.db", "bad name").is_err());
    }
}
