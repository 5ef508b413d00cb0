//! Configuration as layers of keyed values with origins, merged into snapshots.
//!
//! A [`ConfigProvider`] loads one layer (defaults, a file, a database table, the
//! environment). The core merges layers, later wins, into a [`ConfigSnapshot`], validates
//! it and hands it to modules, which read typed sections with serde. Every leaf keeps its
//! [`ConfigOrigin`], so an error can name the file and line, the environment variable or
//! the database row a bad value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where a configuration value came from.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ConfigOrigin {
    /// Built-in default.
    Default,
    /// A config file, with the line where the key is set if known.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: Option<u32>,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A row of a database config table.
    Database {
        /// The table.
        table: String,
        /// The row's key.
        key: String,
    },
    /// Anything else (a test, an admin call).
    Other(String),
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::Default => f.write_str("built-in default"),
            ConfigOrigin::File {
                path,
                line: Some(l),
            } => write!(f, "{}:{l}", path.display()),
            ConfigOrigin::File { path, line: None } => write!(f, "{}", path.display()),
            ConfigOrigin::Env { var } => write!(f, "environment variable {var}"),
            ConfigOrigin::Database { table, key } => {
                write!(f, "database table {table}, key {key:?}")
            }
            ConfigOrigin::Other(s) => f.write_str(s),
        }
    }
}

/// One leaf value and where it came from.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// The value (a scalar or an array; tables are split into dotted keys).
    pub value: serde_json::Value,
    /// Its origin.
    pub origin: ConfigOrigin,
}

/// One layer: dotted keys (`queue.capacity`) to values.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct ConfigLayer {
    /// Human name of the layer (`file ./bot.toml`, `env MOB_`).
    pub name: String,
    /// Leaves by dotted key.
    pub entries: BTreeMap<String, ConfigEntry>,
}

impl ConfigLayer {
    /// An empty layer.
    pub fn new(name: impl Into<String>) -> Self {
        ConfigLayer {
            name: name.into(),
            entries: BTreeMap::new(),
        }
    }

    /// Sets a leaf.
    pub fn set(&mut self, key: impl Into<String>, value: serde_json::Value, origin: ConfigOrigin) {
        self.entries
            .insert(key.into(), ConfigEntry { value, origin });
    }

    /// Sets `key` from text as an operator typed it (an environment variable, a database
    /// row): read by [`parse_value`]; a table (`{ a = 1 }`) becomes one leaf per field
    /// below `key`, as a file would give.
    pub fn set_raw(&mut self, key: &str, raw: &str, origin: ConfigOrigin) {
        match parse_value(raw) {
            serde_json::Value::Object(map) => {
                let sub = ConfigLayer::from_tree("", &serde_json::Value::Object(map), &origin);
                for (k, e) in sub.entries {
                    self.entries.insert(format!("{key}.{k}"), e);
                }
            }
            v => self.set(key, v, origin),
        }
    }

    /// Splits a JSON tree into dotted leaves (arrays stay whole), all with `origin`.
    pub fn from_tree(
        name: impl Into<String>,
        tree: &serde_json::Value,
        origin: &ConfigOrigin,
    ) -> Self {
        fn walk(
            prefix: &str,
            v: &serde_json::Value,
            origin: &ConfigOrigin,
            out: &mut BTreeMap<String, ConfigEntry>,
        ) {
            match v {
                serde_json::Value::Object(map) => {
                    for (k, v) in map {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, v, origin, out);
                    }
                }
                other => {
                    out.insert(
                        prefix.to_owned(),
                        ConfigEntry {
                            value: other.clone(),
                            origin: origin.clone(),
                        },
                    );
                }
            }
        }
        let mut layer = ConfigLayer::new(name);
        walk("", tree, origin, &mut layer.entries);
        layer
    }
}

/// Loads one configuration layer.
#[async_trait]
pub trait ConfigProvider: Send + Sync + 'static {
    /// What this provider reads (for messages), e.g. `file ./bot.toml`.
    fn describe(&self) -> String;

    /// Loads the layer now.
    async fn load(&self) -> Result<ConfigLayer, ConfigError>;

    /// Files to watch for changes (reload on change).
    fn watch_paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// One problem with one key.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ConfigIssue {
    /// Dotted key path (`queue.capacity`).
    pub key: String,
    /// Where the bad value came from, if known.
    pub origin: Option<ConfigOrigin>,
    /// The bad value as text, `***` for secrets, `None` when missing.
    pub value: Option<String>,
    /// What was expected.
    pub message: String,
}

impl ConfigIssue {
    /// An issue for `key`; the configuration manager fills in the origin (and the value
    /// when `value` is `None`).
    pub fn new(key: impl Into<String>, value: Option<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            key: key.into(),
            origin: None,
            value,
            message: message.into(),
        }
    }
}

/// What every queue backend shares of `[queue]` (core reads it; each backend's own keys
/// are its adapter's settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueShared {
    /// `queue.name`.
    pub name: String,
    /// `queue.visibility_timeout`: a delivery not settled within it is delivered again.
    pub visibility_timeout: std::time::Duration,
    /// `queue.max_attempts`: failed attempts before dead-letter.
    pub max_attempts: u32,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)?;
        if let Some(v) = &self.value {
            write!(f, " = {v}")?;
        }
        if let Some(o) = &self.origin {
            write!(f, " (from {o})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// One or more values are wrong; all problems found are listed.
    #[error("invalid configuration:\n{}", .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
    /// A layer could not be read at all (missing file, syntax error, database down).
    #[error("cannot load {what}: {message}")]
    Load {
        /// The provider (`file ./bot.toml`).
        what: String,
        /// What went wrong, with line and column where known.
        message: String,
    },
}

impl ConfigError {
    /// A single-issue error.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid(vec![ConfigIssue {
            key: key.into(),
            origin: None,
            value: None,
            message: message.into(),
        }])
    }
}

/// True for key names that hold secrets: their values never reach output.
pub fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    // `password_file` names where a secret is, not the secret: showing it helps operators.
    if last.ends_with("_file") {
        return false;
    }
    [
        "password",
        "token",
        "secret",
        "api_key",
        "apikey",
        "credentials",
    ]
    .iter()
    .any(|s| last == *s || last.ends_with(&format!("_{s}")))
        || last.contains("password")
}

/// Hides the secrets in a URL or connection string, wherever in it they hide:
/// the password of the userinfo (`postgres://app:pw@db/x` -> `postgres://app:***@db/x`),
/// secret query keys (`redis://h/0?password=pw` -> `redis://h/0?password=***`) and the
/// secret keys of a keyword DSN (`host=db password=pw` -> `host=db password=***`).
pub fn redact_url(text: &str) -> String {
    match text.find("://") {
        Some(scheme_end) => redact_query(&redact_userinfo(text, scheme_end)),
        None => redact_keywords(text),
    }
}

fn redact_userinfo(text: &str, scheme_end: usize) -> String {
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return text.to_owned();
    };
    format!(
        "{}{}:***{}",
        &text[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

/// Whether a query or DSN key names a secret (`password`, `pass`, `pwd`, `token`, ...).
fn is_secret_param(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    matches!(
        key.as_str(),
        "pass" | "pwd" | "passwd" | "key" | "auth" | "sig" | "signature"
    ) || [
        "password",
        "secret",
        "token",
        "api_key",
        "apikey",
        "credential",
    ]
    .iter()
    .any(|s| key.contains(s))
}

fn redact_query(text: &str) -> String {
    let Some(q) = text.find('?') else {
        return text.to_owned();
    };
    let (head, rest) = text.split_at(q + 1);
    let (query, fragment) = match rest.find('#') {
        Some(h) => rest.split_at(h),
        None => (rest, ""),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}{}{fragment}", query.join("&"))
}

/// Keyword DSNs (`host=db user=app password='a b'`): each secret value, quoted or not,
/// becomes `***`. Text without `key=value` words comes back unchanged.
fn redact_keywords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq]
            .rfind(|c: char| c.is_whitespace() || c == ';' || c == ',' || c == '"')
            .map_or(0, |i| i + 1);
        let key = &rest[key_start..eq];
        out.push_str(&rest[..=eq]);
        let value = &rest[eq + 1..];
        if key.is_empty() || !is_secret_param(key) {
            rest = value;
            continue;
        }
        let end = match value.chars().next() {
            Some(quote @ ('\'' | '"')) => value[1..].find(quote).map_or(value.len(), |i| i + 2),
            _ => value
                .find(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | '"' | '\''))
                .unwrap_or(value.len()),
        };
        out.push_str(REDACTED);
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn secrets_are_hidden_wherever_they_hide() {
        for (given, shown) in [
            (
                "postgres://app:pw@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            (
                "postgres://app@h/x?password=pw",
                "postgres://app@h/x?password=***",
            ),
            (
                "redis://h/0?password=pw&db=1",
                "redis://h/0?password=***&db=1",
            ),
            (
                "https://h/p?access_token=t#frag",
                "https://h/p?access_token=***#frag",
            ),
            ("http://h/p?page=2", "http://h/p?page=2"),
            (
                "host=db user=app password=pw port=5432",
                "host=db user=app password=*** port=5432",
            ),
            (
                "host=db password='a b c' dbname=x",
                "host=db password=*** dbname=x",
            ),
            (
                "cannot connect to \"host=db pass=pw\"",
                "cannot connect to \"host=db pass=***\"",
            ),
            ("plain text", "plain text"),
            ("a=b c=d", "a=b c=d"),
        ] {
            assert_eq!(redact_url(given), shown, "{given}");
        }
    }
}

/// The merged, validated configuration at one point in time.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct ConfigSnapshot {
    /// Increments with every accepted reload.
    pub version: u64,
    /// The merged tree.
    pub tree: serde_json::Value,
    /// The origin of every leaf, by dotted key.
    pub origins: BTreeMap<String, ConfigOrigin>,
}

impl ConfigSnapshot {
    /// Merges layers, later wins, into a snapshot.
    pub fn from_layers(version: u64, layers: &[ConfigLayer]) -> Self {
        let mut tree = serde_json::Value::Object(serde_json::Map::new());
        let mut origins = BTreeMap::new();
        for layer in layers {
            for (key, entry) in &layer.entries {
                set_path(&mut tree, key, entry.value.clone());
                // A leaf that replaced a table (or the reverse) drops the stale origins.
                origins.retain(|k: &String, _| !k.starts_with(&format!("{key}.")));
                origins.insert(key.clone(), entry.origin.clone());
            }
        }
        ConfigSnapshot {
            version,
            tree,
            origins,
        }
    }

    /// The subtree at a dotted path, if present.
    pub fn get(&self, path: &str) -> Option<&serde_json::Value> {
        if path.is_empty() {
            return Some(&self.tree);
        }
        path.split('.').try_fold(&self.tree, |v, k| v.get(k))
    }

    /// Deserializes the section at `path` (missing = empty table, so defaults apply).
    pub fn section<T: DeserializeOwned>(&self, path: &str) -> Result<T, ConfigError> {
        let value = self
            .get(path)
            .cloned()
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
        serde_json::from_value(value).map_err(|e| {
            ConfigError::Invalid(vec![ConfigIssue {
                key: path.to_owned(),
                origin: None,
                value: None,
                message: e.to_string(),
            }])
        })
    }

    /// Where the value at a dotted key came from.
    pub fn origin(&self, key: &str) -> Option<&ConfigOrigin> {
        self.origins.get(key)
    }

    /// A copy of the tree fit to show (control plane, `print-config`): secret keys as
    /// `***`, passwords inside URLs and connection strings hidden ([`redact_url`]).
    pub fn redacted(&self) -> serde_json::Value {
        use serde_json::Value;
        fn walk(key: &str, v: &mut Value) {
            match v {
                Value::Object(map) => {
                    for (k, child) in map.iter_mut() {
                        let path = if key.is_empty() {
                            k.clone()
                        } else {
                            format!("{key}.{k}")
                        };
                        walk(&path, child);
                    }
                }
                Value::Array(items) => {
                    if is_secret_key(key) {
                        *v = Value::from(REDACTED);
                    } else {
                        for item in items {
                            walk(key, item);
                        }
                    }
                }
                Value::Null => {}
                Value::String(s) if !is_secret_key(key) => *s = redact_url(s),
                other if is_secret_key(key) => *other = Value::from(REDACTED),
                _ => {}
            }
        }
        let mut tree = self.tree.clone();
        walk("", &mut tree);
        tree
    }
}

fn set_path(tree: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    let mut node = tree;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_object() {
            *node = serde_json::Value::Object(serde_json::Map::new());
        }
        let serde_json::Value::Object(map) = node else {
            return;
        };
        if parts.peek().is_none() {
            map.insert(part.to_owned(), value);
            return;
        }
        node = map
            .entry(part.to_owned())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    }
}

/// A change of configuration, as subscribers see it.
#[derive(Clone, Debug)]
pub struct ConfigChange {
    /// The configuration before.
    pub old: Arc<ConfigSnapshot>,
    /// The configuration now.
    pub new: Arc<ConfigSnapshot>,
    /// Dotted keys whose value changed, were added or removed.
    pub changed_keys: Vec<String>,
}

impl ConfigChange {
    /// True if any changed key is at or below `prefix`.
    pub fn touches(&self, prefix: &str) -> bool {
        self.changed_keys
            .iter()
            .any(|k| k == prefix || k.starts_with(&format!("{prefix}.")))
    }
}

/// Gets told about accepted configuration changes.
pub trait ConfigSubscriber: Send + Sync + 'static {
    /// Called after a valid new configuration was accepted. Apply what can change live.
    fn on_change(&self, change: &ConfigChange);
}

/// A secret string: `Debug`, `Display` and `Serialize` show `***`. Read it with
/// [`Secret::expose`] at the one place that needs it.
///
/// A secret read from a file (`password_file`, `token_file`) comes from a regular file of
/// at most [`MAX_SECRET_FILE_BYTES`]: `/dev/zero` or a FIFO would never end, and a huge
/// file is a mistake, not a password.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

/// The largest secret file any component reads (64 KiB).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// What a secret shows as wherever it is printed, logged or serialized.
pub const REDACTED: &str = "***";

/// Reads a secret file (`password_file`, `token_file`), trimming the trailing newline
/// editors and `echo` add: only a regular file of at most [`MAX_SECRET_FILE_BYTES`].
///
/// Blocking `std::fs` on purpose: the one reader every component shares, and contracts
/// bring no async runtime (call it from `spawn_blocking` in async code).
pub fn read_secret_file(path: &std::path::Path) -> std::io::Result<Secret> {
    use std::io::Read;
    // Checked before opening: opening a FIFO blocks until a writer comes.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_SECRET_FILE_BYTES} bytes"
        )));
    }
    Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
}

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// Reads text as a TOML value (`8`, `true`, `"x"`, `[1, 2]`, `{ a = 1 }`); text that is
/// not one is returned as a string, so `memory` and `30s` need no quotes.
pub fn parse_value(raw: &str) -> serde_json::Value {
    use serde_json::Value;
    if raw.contains(['\n', '\r']) {
        return Value::String(raw.to_owned());
    }
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) if t.len() == 1 => t
            .remove("v")
            .map(toml_to_json)
            .unwrap_or_else(|| Value::String(raw.to_owned())),
        _ => Value::String(raw.to_owned()),
    }
}

/// A TOML value as JSON (datetimes become their text).
pub fn toml_to_json(v: toml::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn later_layers_win_and_keep_origins() {
        let a = ConfigLayer::from_tree(
            "defaults",
            &json!({"queue": {"capacity": 10, "backend": "memory"}}),
            &ConfigOrigin::Default,
        );
        let mut b = ConfigLayer::new("env");
        b.set(
            "queue.capacity",
            json!(20),
            ConfigOrigin::Env {
                var: "MOB_QUEUE__CAPACITY".into(),
            },
        );
        let snap = ConfigSnapshot::from_layers(1, &[a, b]);
        assert_eq!(snap.get("queue.capacity"), Some(&json!(20)));
        assert_eq!(snap.get("queue.backend"), Some(&json!("memory")));
        assert!(matches!(
            snap.origin("queue.capacity"),
            Some(ConfigOrigin::Env { .. })
        ));
    }

    #[test]
    fn secrets_are_redacted() {
        let snap = ConfigSnapshot::from_layers(
            1,
            &[ConfigLayer::from_tree(
                "t",
                &json!({"store": {"password": "hunter2", "host": "h"}, "control": {"token": "t0k"}}),
                &ConfigOrigin::Default,
            )],
        );
        let text = snap.redacted().to_string();
        assert!(!text.contains("hunter2") && !text.contains("t0k"));
        assert!(text.contains("\"h\""));
        assert_eq!(format!("{:?}", Secret::new("x")), "***");
        assert!(is_secret_key("store.password") && is_secret_key("control.token"));
        assert!(!is_secret_key("store.password_file") && !is_secret_key("store.host"));
    }

    /// The snapshot's redaction is the one the control plane and `print-config` show:
    /// passwords inside URLs and secret lists are hidden too.
    #[test]
    fn redaction_hides_url_passwords_and_secret_lists() {
        let snap = ConfigSnapshot::from_layers(
            1,
            &[ConfigLayer::from_tree(
                "t",
                &json!({
                    "store": {"url": "postgres://app:hunter2@db/app"},
                    "control": {"api_key": ["k3y"]},
                }),
                &ConfigOrigin::Default,
            )],
        );
        let tree = snap.redacted();
        let text = tree.to_string();
        assert!(!text.contains("hunter2") && !text.contains("k3y"), "{text}");
        assert_eq!(tree["store"]["url"], "postgres://app:***@db/app");
        assert_eq!(tree["control"]["api_key"], "***");
    }
}
