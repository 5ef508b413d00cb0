//! The application's configuration sections, `[mail]` and `[orders]`, and how the whole
//! configuration is put together ([`config_spec`]).
//!
//! `[mail]` holds the keys of the IMAP adapter ([`ImapConfig::KEYS`]) plus three of its
//! own: `source` (which source runs: the only switch between polling, IDLE and Maildir),
//! `maildir` (the directory for `source = "maildir"`) and `leader_lease` (how long the
//! Redis lease that lets one of several instances read the mailbox lasts). The section is read twice, once as
//! [`MailConfig`]'s own keys and once as [`ImapConfig`] (which ignores keys it does not
//! know), so every error keeps its exact key and `file:line`; unknown keys are caught by
//! [`validate_mail`] with a "did you mean".
//!
//! `[orders]` is [`OrdersConfig`]: the database URL and the catalog (a CSV file or inline
//! `[[orders.catalog]]` entries). Its validator loads the catalog, so a bad price in the
//! CSV fails `check-config` with the CSV's own `file:line`.
//!
//! Paths given in a config file are relative to that file's directory: the `*_file` keys
//! (`mail.password_file`, `mail.ca_file`, `control.token_file`, `orders.catalog_file`),
//! `mail.maildir`, and the file in a `sqlite:` URL (`orders.database_url`,
//! `config_db.url`). See [`config_spec`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use runtime_adapters_config::{CONFIG_DB_SECTION, DatabaseProvider, FileProvider};
use runtime_adapters_imap::ImapConfig;
use runtime_adapters_maildir::MaildirConfig;
use runtime_contracts::{ConfigError, ConfigIssue, ConfigSnapshot};
use runtime_core::cli::{AppConfigSpec, resolve_path};
use runtime_core::config::{Validator, issue, section, suggest};
use serde::{Deserialize, Serialize};

use crate::domain::{Catalog, CatalogItem};

/// The embedded defaults (the lowest layer).
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

/// Environment variables overriding any key: `MOB_MAIL__PASSWORD` sets `mail.password`.
pub const ENV_PREFIX: &str = "MOB_";

/// The application's own top-level sections (beside the platform's and `config_db`).
pub const APP_SECTIONS: [&str; 3] = ["mail", "orders", "reports"];

/// Which source feeds the queue. Changing it is a configuration change only.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// IMAP, searching every `poll_interval`.
    ImapPoll,
    /// IMAP IDLE (falls back to polling when the server lacks IDLE).
    ImapIdle,
    /// A local Maildir directory, watched for changes.
    #[default]
    Maildir,
}

impl SourceKind {
    /// The name used in config (`imap-poll`, `imap-idle`, `maildir`).
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ImapPoll => "imap-poll",
            SourceKind::ImapIdle => "imap-idle",
            SourceKind::Maildir => "maildir",
        }
    }

    /// True for the IMAP sources.
    pub fn is_imap(self) -> bool {
        !matches!(self, SourceKind::Maildir)
    }
}

/// Default of `mail.leader_lease`.
pub const DEFAULT_LEADER_LEASE: Duration = Duration::from_secs(15);

/// Shortest `mail.leader_lease` accepted: the leader renews every third of it, and a
/// renewal must answer within two thirds, which a slow Redis can miss below a second.
pub const MIN_LEADER_LEASE: Duration = Duration::from_secs(1);

/// The IMAP keyword on messages whose task was dead-lettered (`mail.failed_keyword`); the
/// adapter has no default for this word of ours.
pub const DEFAULT_FAILED_KEYWORD: &str = "$OrderBotFailed";

/// `[mail]` read as [`ImapConfig`], with the application's default keyword when the key
/// is not set (an explicit value, even an empty one, is kept and validated).
fn imap_section(snapshot: &ConfigSnapshot) -> Result<ImapConfig, ConfigError> {
    let mut imap: ImapConfig = section(snapshot, "mail")?;
    if snapshot.get("mail.failed_keyword").is_none() {
        imap.failed_keyword = DEFAULT_FAILED_KEYWORD.to_owned();
    }
    Ok(imap)
}

/// The keys of `[mail]` that are the application's own (the rest are [`ImapConfig`]'s).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default)]
struct MailOwnKeys {
    source: SourceKind,
    maildir: PathBuf,
    #[serde(with = "runtime_contracts::duration")]
    leader_lease: Duration,
}

impl Default for MailOwnKeys {
    fn default() -> Self {
        MailOwnKeys {
            source: SourceKind::default(),
            maildir: PathBuf::new(),
            leader_lease: DEFAULT_LEADER_LEASE,
        }
    }
}

const MAIL_OWN_KEYS: [&str; 3] = ["source", "maildir", "leader_lease"];

/// `[mail]`: where order emails come from.
#[derive(Clone, PartialEq, Debug)]
pub struct MailConfig {
    /// Which source runs.
    pub source: SourceKind,
    /// The Maildir for `source = "maildir"`.
    pub maildir: PathBuf,
    /// With the Redis queue: how long the lease that makes one instance the mailbox
    /// reader lasts without renewal (a dead leader is replaced within about 1.4 times it).
    pub leader_lease: Duration,
    /// The IMAP keys; `poll_interval`, `max_message_bytes` and the folders also apply to
    /// the Maildir source.
    pub imap: ImapConfig,
}

impl MailConfig {
    /// Reads `[mail]` (types only; [`validate_mail`] checks the values).
    pub fn from_snapshot(snapshot: &ConfigSnapshot) -> Result<MailConfig, ConfigError> {
        let own: MailOwnKeys = section(snapshot, "mail")?;
        let imap = imap_section(snapshot)?;
        Ok(MailConfig {
            source: own.source,
            maildir: own.maildir,
            leader_lease: own.leader_lease,
            imap,
        })
    }

    /// The Maildir source's configuration.
    pub fn maildir_config(&self) -> MaildirConfig {
        MaildirConfig {
            path: self.maildir.clone(),
            poll_interval: self.imap.poll_interval,
            max_message_bytes: self.imap.max_message_bytes,
            processed_folder: self.imap.processed_folder.clone(),
            rejected_folder: self.imap.rejected_folder.clone(),
            failed_folder: self.imap.failed_folder.clone(),
            ..MaildirConfig::default()
        }
    }

    /// Largest message read whole; larger ones are rejected as `too_large`.
    pub fn max_message_bytes(&self) -> u64 {
        self.imap.max_message_bytes
    }
}

/// `[reports]`: where the daily summary (`route = "daily-summary"`) writes its files.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsConfig {
    /// Directory of `orders-<YYYY-MM-DD>.csv` (relative in a config file: to its
    /// directory); created when missing.
    pub dir: PathBuf,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            dir: PathBuf::from("./var/reports"),
        }
    }
}

impl ReportsConfig {
    /// Reads `[reports]`.
    pub fn from_snapshot(snapshot: &ConfigSnapshot) -> Result<ReportsConfig, ConfigError> {
        section(snapshot, "reports")
    }
}

/// `[orders]`: where orders go and what can be ordered.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB` (a password in it shows as `***`).
    pub database_url: String,
    /// A CSV file `sku,name,price_cents` (relative in a config file: to its directory).
    pub catalog_file: Option<PathBuf>,
    /// Inline catalog entries (`[[orders.catalog]]`), instead of a file.
    pub catalog: Vec<CatalogItem>,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            database_url: "sqlite://./var/orders.db".to_owned(),
            catalog_file: None,
            catalog: Vec::new(),
        }
    }
}

/// Why the catalog cannot be built, with the key to blame.
#[derive(Debug)]
pub struct CatalogProblem {
    /// `orders.catalog_file` or `orders.catalog`.
    pub key: &'static str,
    /// What is wrong (names the CSV's file:line or the entry's index).
    pub message: String,
}

impl OrdersConfig {
    /// Reads `[orders]`.
    pub fn from_snapshot(snapshot: &ConfigSnapshot) -> Result<OrdersConfig, ConfigError> {
        section(snapshot, "orders")
    }

    fn catalog_path(&self) -> Option<&Path> {
        self.catalog_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
    }

    /// Builds the catalog from the file or the inline entries (exactly one of them).
    pub fn load_catalog(&self) -> Result<Catalog, CatalogProblem> {
        match (self.catalog_path(), self.catalog.is_empty()) {
            (Some(_), false) => Err(CatalogProblem {
                key: "orders.catalog_file",
                message: "set either orders.catalog_file or [[orders.catalog]] entries, not both"
                    .to_owned(),
            }),
            (Some(path), true) => Catalog::from_csv_file(path).map_err(|e| CatalogProblem {
                key: "orders.catalog_file",
                message: e.to_string(),
            }),
            (None, false) => {
                Catalog::from_items(self.catalog.iter().cloned()).map_err(|e| CatalogProblem {
                    key: "orders.catalog",
                    message: e.to_string(),
                })
            }
            (None, true) => Err(CatalogProblem {
                key: "orders.catalog_file",
                message: "no catalog: set orders.catalog_file to a CSV file \
                          (sku,name,price_cents) or add [[orders.catalog]] entries"
                    .to_owned(),
            }),
        }
    }
}

/// Checks `[mail]`: types, unknown keys, and the values the chosen source needs.
pub fn validate_mail(snapshot: &ConfigSnapshot) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let own = collect(section::<MailOwnKeys>(snapshot, "mail"), &mut issues);
    let imap = collect(imap_section(snapshot), &mut issues);

    if let Some(serde_json::Value::Object(map)) = snapshot.get("mail") {
        let known: Vec<&str> = MAIL_OWN_KEYS
            .iter()
            .chain(ImapConfig::KEYS.iter())
            .copied()
            .collect();
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            let mut message = "unknown key".to_owned();
            match suggest(key, known.iter().copied()) {
                Some(s) => message.push_str(&format!("; did you mean `{s}`?")),
                None => message.push_str(&format!("; known keys here: {}", known.join(", "))),
            }
            issues.push(issue(snapshot, &format!("mail.{key}"), message));
        }
    }

    let (Some(own), Some(imap)) = (own, imap) else {
        return issues;
    };
    // Checked whatever the queue backend, so switching to Redis cannot surface it late.
    if own.leader_lease < MIN_LEADER_LEASE {
        issues.push(issue(
            snapshot,
            "mail.leader_lease",
            "must be at least 1s (the leader renews it every third, and a renewal must \
             answer within two thirds)",
        ));
    }
    if own.source.is_imap() {
        if let Err(ConfigError::Invalid(found)) = imap.validate() {
            issues.extend(found.into_iter().map(|mut i| {
                i.key = format!("mail.{}", i.key);
                i
            }));
        }
        if let Some(ca) = &imap.ca_file
            && let Err(e) = std::fs::metadata(ca)
        {
            issues.push(issue(
                snapshot,
                "mail.ca_file",
                format!("cannot read {}: {e}", ca.display()),
            ));
        }
    } else {
        let mail = MailConfig {
            source: own.source,
            maildir: own.maildir.clone(),
            leader_lease: own.leader_lease,
            imap: imap.clone(),
        };
        // The adapter's own rules (a path that is a file, zero sizes), under this
        // section's key names, with the value's origin.
        if let Err(ConfigError::Invalid(found)) = mail.maildir_config().validate() {
            issues.extend(found.into_iter().map(|i| {
                let key = match i.key.as_str() {
                    "path" => "mail.maildir".to_owned(),
                    other => format!("mail.{other}"),
                };
                issue(snapshot, &key, i.message)
            }));
        }
    }
    issues
}

/// Checks `[orders]`: types, the database URL and the catalog.
pub fn validate_orders(snapshot: &ConfigSnapshot) -> Vec<ConfigIssue> {
    check_orders(snapshot, true)
}

/// [`validate_orders`] for commands that only read the store (`orders`): no catalog is
/// needed, but one that is configured must still load.
pub fn validate_orders_store(snapshot: &ConfigSnapshot) -> Vec<ConfigIssue> {
    check_orders(snapshot, false)
}

fn check_orders(snapshot: &ConfigSnapshot, need_catalog: bool) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let Some(orders) = collect(OrdersConfig::from_snapshot(snapshot), &mut issues) else {
        return issues;
    };
    let url = orders.database_url.trim();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        issues.push(issue(
            snapshot,
            "orders.database_url",
            "expected sqlite://PATH or postgres://USER@HOST/DB",
        ));
    }
    let configured = orders.catalog_path().is_some() || !orders.catalog.is_empty();
    if (need_catalog || configured)
        && let Err(problem) = orders.load_catalog()
    {
        issues.push(issue(snapshot, problem.key, problem.message));
    }
    issues
}

/// The SQLite file a `sqlite:` URL names (`None` for other databases and in-memory).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let (_, rest) = sqlite_parts(url)?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// `sqlite://x.db` as (`sqlite://`, `x.db`); `None` for other URLs.
fn sqlite_parts(url: &str) -> Option<(&'static str, &str)> {
    let url = url.trim();
    match url.strip_prefix("sqlite://") {
        Some(rest) => Some(("sqlite://", rest)),
        None => url.strip_prefix("sqlite:").map(|rest| ("sqlite:", rest)),
    }
}

/// [`PathResolver`](runtime_core::cli::PathResolver) for database URLs: the relative
/// file of a `sqlite:` URL is joined to `base`; other URLs stay as written.
pub fn resolve_sqlite_url(url: &str, base: &Path) -> Option<String> {
    let file = sqlite_file(url)?;
    let resolved = resolve_path(file.to_str()?, base)?;
    let (scheme, rest) = sqlite_parts(url)?;
    let query = rest.find('?').map_or("", |i| &rest[i..]);
    Some(format!("{scheme}{resolved}{query}"))
}

fn collect<T>(result: Result<T, ConfigError>, issues: &mut Vec<ConfigIssue>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(ConfigError::Invalid(mut found)) => {
            issues.append(&mut found);
            None
        }
        Err(other) => {
            issues.push(ConfigIssue {
                key: String::new(),
                origin: None,
                value: None,
                message: other.to_string(),
            });
            None
        }
    }
}

/// The name the bot reports itself under (config messages, trace service name).
pub const APP_NAME: &str = "mail-order-bot";

/// The validators of the application's sections, and composition's check of the platform
/// ones (queue, tracer, control plane): what `run` would refuse, `check-config` refuses.
pub fn validators() -> Vec<Validator> {
    vec![
        std::sync::Arc::new(validate_mail),
        std::sync::Arc::new(validate_orders),
        runtime_core::config::section_validator::<ReportsConfig>("reports"),
        runtime_compose::validator(APP_NAME),
    ]
}

/// How mail-order-bot's configuration is put together: embedded defaults < `--config`
/// files (with line numbers) < the optional database layer (`[config_db]`) < `MOB_*`
/// environment variables.
///
/// Relative paths in a config file are relative to its directory (the module docs list
/// the keys); the `*_file` keys are the runtime's rule, the others are declared here.
pub fn config_spec() -> AppConfigSpec {
    spec_with(validators())
}

/// [`config_spec`] for commands that only read the order store: the platform's checks
/// and `[orders]`'s store, but no catalog (`orders` works right after `demo`, which
/// brings its own) and no `[mail]`.
pub fn store_reader_spec() -> AppConfigSpec {
    // Not `[mail]`: listing orders must work where, say, the IMAP password is not set.
    spec_with(vec![std::sync::Arc::new(validate_orders_store)])
}

fn spec_with(validators: Vec<Validator>) -> AppConfigSpec {
    let mut spec = AppConfigSpec::new(APP_NAME, ENV_PREFIX, DEFAULTS_TOML)
        .sections(&APP_SECTIONS)
        .file_loader(FileProvider::boxed)
        .layer(CONFIG_DB_SECTION, DatabaseProvider::from_bootstrap)
        .path_key("mail.maildir", resolve_path)
        .path_key("reports.dir", resolve_path)
        .path_key("orders.database_url", resolve_sqlite_url)
        .path_key(&format!("{CONFIG_DB_SECTION}.url"), resolve_sqlite_url);
    for v in validators {
        spec = spec.validator(v);
    }
    spec
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use runtime_contracts::{ConfigLayer, ConfigOrigin};
    use serde_json::json;

    fn snapshot(tree: serde_json::Value) -> ConfigSnapshot {
        ConfigSnapshot::from_layers(
            1,
            &[ConfigLayer::from_tree(
                "t",
                &tree,
                &ConfigOrigin::File {
                    path: "bot.toml".into(),
                    line: Some(3),
                },
            )],
        )
    }

    #[test]
    fn mail_section_reads_both_halves() {
        let snap = snapshot(json!({"mail": {
            "source": "imap-idle", "host": "mx", "username": "u", "password": "p",
            "poll_interval": "2s", "maildir": "/tmp/md", "processed_folder": "Done"
        }}));
        assert!(
            validate_mail(&snap).is_empty(),
            "{:?}",
            validate_mail(&snap)
        );
        let mail = MailConfig::from_snapshot(&snap).unwrap();
        assert_eq!(mail.source, SourceKind::ImapIdle);
        assert_eq!(mail.imap.host, "mx");
        assert_eq!(mail.maildir_config().processed_folder, "Done");
        assert_eq!(
            mail.maildir_config().poll_interval,
            std::time::Duration::from_secs(2)
        );
    }

    #[test]
    fn mail_problems_are_all_listed() {
        let snap = snapshot(json!({"mail": {
            "source": "imap-poll", "pol_interval": "2s", "port": "many"
        }}));
        let issues = validate_mail(&snap);
        let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
        assert!(keys.contains(&"mail.pol_interval"), "{keys:?}");
        assert!(keys.contains(&"mail.port"), "{keys:?}");
        let typo = issues
            .iter()
            .find(|i| i.key == "mail.pol_interval")
            .unwrap();
        assert!(typo.message.contains("poll_interval"), "{}", typo.message);

        let snap = snapshot(json!({"mail": {"source": "imap-poll"}}));
        let keys: Vec<_> = validate_mail(&snap).into_iter().map(|i| i.key).collect();
        assert!(keys.contains(&"mail.host".to_owned()), "{keys:?}");
        assert!(keys.contains(&"mail.password".to_owned()), "{keys:?}");

        let snap = snapshot(json!({"mail": {"source": "pop3"}}));
        let keys: Vec<_> = validate_mail(&snap).into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["mail.source".to_owned()]);
    }

    #[test]
    fn a_maildir_that_is_a_file_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mail");
        std::fs::write(&file, "x").unwrap();
        let snap = snapshot(json!({"mail": {"source": "maildir", "maildir": file}}));
        let issues = validate_mail(&snap);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].key, "mail.maildir");
        assert!(issues[0].message.contains("is a file"), "{issues:?}");
        assert!(issues[0].origin.is_some(), "names bot.toml:3: {issues:?}");
        let snap = snapshot(json!({"mail": {"source": "maildir"}}));
        let keys: Vec<_> = validate_mail(&snap).into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["mail.maildir".to_owned()]);
    }

    #[test]
    fn leader_lease_is_humantime_and_at_least_a_second() {
        let snap = snapshot(json!({"mail": {"maildir": "/tmp/md"}}));
        assert_eq!(
            MailConfig::from_snapshot(&snap).unwrap().leader_lease,
            DEFAULT_LEADER_LEASE
        );
        let snap = snapshot(json!({"mail": {"maildir": "/tmp/md", "leader_lease": "2500ms"}}));
        assert!(validate_mail(&snap).is_empty());
        assert_eq!(
            MailConfig::from_snapshot(&snap).unwrap().leader_lease,
            std::time::Duration::from_millis(2500)
        );
        for bad in ["500ms", "0s"] {
            let snap = snapshot(json!({"mail": {"maildir": "/tmp/md", "leader_lease": bad}}));
            let issues = validate_mail(&snap);
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert_eq!(issues[0].key, "mail.leader_lease");
            assert!(issues[0].message.contains("at least 1s"), "{issues:?}");
            assert!(issues[0].origin.is_some(), "names bot.toml:3: {issues:?}");
        }
        let snap = snapshot(json!({"mail": {"maildir": "/tmp/md", "leader_lease": "soon"}}));
        let keys: Vec<_> = validate_mail(&snap).into_iter().map(|i| i.key).collect();
        assert!(keys.iter().any(|k| k.starts_with("mail")), "{keys:?}");
    }

    #[test]
    fn orders_catalog_rules() {
        let snap = snapshot(json!({"orders": {"database_url": "mysql://x"}}));
        let keys: Vec<_> = validate_orders(&snap).into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["orders.database_url", "orders.catalog_file"]);

        let snap = snapshot(json!({"orders": {
            "catalog": [{"sku": "A-1", "name": "a", "price_cents": 5}]
        }}));
        assert!(validate_orders(&snap).is_empty());
        let orders = OrdersConfig::from_snapshot(&snap).unwrap();
        assert_eq!(orders.load_catalog().unwrap().len(), 1);

        let snap = snapshot(json!({"orders": {
            "catalog": [{"sku": "A-1", "price_cents": 5}], "catalog_file": "x.csv"
        }}));
        assert_eq!(validate_orders(&snap).len(), 1);
    }

    #[test]
    fn sqlite_urls_resolve_relative_files_only() {
        assert_eq!(
            sqlite_file("sqlite://./var/orders.db"),
            Some(PathBuf::from("./var/orders.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:/tmp/x.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x@y/z"), None);
        let base = Path::new("/etc/bot");
        assert_eq!(
            resolve_sqlite_url("sqlite://./var/o.db?mode=rwc", base).as_deref(),
            Some("sqlite:///etc/bot/./var/o.db?mode=rwc")
        );
        assert_eq!(
            resolve_sqlite_url("sqlite:o.db", base).as_deref(),
            Some("sqlite:/etc/bot/o.db")
        );
        for unchanged in ["sqlite:///abs/o.db", "sqlite::memory:", "postgres://u@h/db"] {
            assert_eq!(resolve_sqlite_url(unchanged, base), None, "{unchanged}");
        }
    }

    /// The embedded defaults alone, as a snapshot.
    fn defaults_snapshot() -> ConfigSnapshot {
        ConfigSnapshot::from_layers(
            1,
            &[ConfigLayer::from_tree(
                "d",
                &serde_json::to_value(toml::from_str::<toml::Value>(DEFAULTS_TOML).unwrap())
                    .unwrap(),
                &ConfigOrigin::Default,
            )],
        )
    }

    #[test]
    fn defaults_are_valid_but_for_the_catalog() {
        let snap = defaults_snapshot();
        assert!(
            validate_mail(&snap).is_empty(),
            "{:?}",
            validate_mail(&snap)
        );
        let keys: Vec<_> = validate_orders(&snap).into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["orders.catalog_file"]);
    }

    #[test]
    fn the_failure_keyword_and_size_limit_are_the_apps_defaults() {
        // The IMAP adapter has no default keyword: it comes from these defaults.
        let snap = defaults_snapshot();
        let mail = MailConfig::from_snapshot(&snap).unwrap();
        assert_eq!(mail.imap.failed_keyword, "$OrderBotFailed");
        let explicit = snapshot(json!({"mail": {"failed_keyword": "$Gone"}}));
        let imap = MailConfig::from_snapshot(&explicit).unwrap().imap;
        assert_eq!(imap.failed_keyword, "$Gone");
        assert_eq!(
            mail.max_message_bytes(),
            crate::domain::DEFAULT_MAX_MESSAGE_BYTES
        );
        assert_eq!(
            mail.maildir_config().max_message_bytes,
            mail.max_message_bytes()
        );
    }
}
