//! The serde configuration that builds a [`RedisQueue`](crate::RedisQueue).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use runtime_contracts::{ConfigIssue, QueueError, QueueShared, REDACTED, Secret};

/// How to reach Redis and how the queue behaves.
///
/// ```toml
/// [queue]
/// url = "rediss://worker:s3cret@redis.internal:6380/0"
/// name = "orders"
/// visibility_timeout = "30s"
/// max_attempts = 5
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisQueueConfig {
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS (server
    /// certificates are checked against the system's roots). A secret: never printed.
    pub url: Secret,
    /// Queue name; it becomes the hash tag `{name}` of every key of the queue.
    pub name: String,
    /// Key prefix before the hash tag (`plba` gives `plba:{orders}:ready`).
    #[serde(default = "defaults::key_prefix")]
    pub key_prefix: String,
    /// How long a delivery stays leased before it is given to another consumer.
    #[serde(
        default = "defaults::visibility_timeout",
        with = "runtime_contracts::duration"
    )]
    pub visibility_timeout: Duration,
    /// Failed attempts after which a task goes to the dead-letter set.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Multiplexed connections shared by all non-blocking calls of this process.
    #[serde(default = "defaults::connections")]
    pub connections: usize,
    /// Most connections held at once by idle consumers blocked waiting for work.
    #[serde(default = "defaults::wait_pool_size")]
    pub wait_pool_size: usize,
    /// Time limit to open a connection.
    #[serde(
        default = "defaults::connect_timeout",
        with = "runtime_contracts::duration"
    )]
    pub connect_timeout: Duration,
    /// Time limit of one call (a blocking wait gets this on top of its wait).
    #[serde(
        default = "defaults::operation_timeout",
        with = "runtime_contracts::duration"
    )]
    pub operation_timeout: Duration,
}

mod defaults {
    use std::time::Duration;

    pub(super) fn key_prefix() -> String {
        "plba".to_owned()
    }
    pub(super) fn visibility_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn max_attempts() -> u32 {
        5
    }
    pub(super) fn connections() -> usize {
        2
    }
    pub(super) fn wait_pool_size() -> usize {
        64
    }
    pub(super) fn connect_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub(super) fn operation_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

impl RedisQueueConfig {
    /// A configuration with defaults for everything but the URL and the name.
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        RedisQueueConfig {
            url: Secret::new(url.into()),
            name: name.into(),
            key_prefix: defaults::key_prefix(),
            visibility_timeout: defaults::visibility_timeout(),
            max_attempts: defaults::max_attempts(),
            connections: defaults::connections(),
            wait_pool_size: defaults::wait_pool_size(),
            connect_timeout: defaults::connect_timeout(),
            operation_timeout: defaults::operation_timeout(),
        }
    }

    /// Checks the values that would make the queue misbehave.
    pub fn validate(&self) -> Result<(), QueueError> {
        match self.check().into_iter().next() {
            Some(problem) => Err(QueueError::Invalid(problem.message)),
            None => Ok(()),
        }
    }

    /// Every problem [`RedisQueue::connect_lazy`](crate::RedisQueue::connect_lazy) would
    /// refuse, each with the field it is about, without any I/O: what a `check-config`
    /// reports. The URL is parsed exactly as the connection pool parses it.
    pub fn check(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        let mut bad = |field: &'static str, what: &str| {
            problems.push(FieldProblem {
                field,
                message: format!("redis queue config: {what}"),
            });
        };
        if self.name.is_empty() || self.name.contains(['{', '}']) {
            bad("name", "name must be non-empty and free of `{` and `}`");
        }
        if self.key_prefix.contains(['{', '}']) {
            bad("key_prefix", "key_prefix must be free of `{` and `}`");
        }
        if self.max_attempts == 0 {
            bad("max_attempts", "max_attempts must be at least 1");
        }
        if self.visibility_timeout < Duration::from_millis(1) {
            bad(
                "visibility_timeout",
                "visibility_timeout must be at least 1ms",
            );
        }
        if self.connections == 0 || self.wait_pool_size == 0 {
            bad(
                "connections",
                "connections and wait_pool_size must be at least 1",
            );
        }
        let url = self.url.expose();
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            bad("url", "url must start with redis:// or rediss://");
        } else if let Err(e) = crate::conn::parse_url(self) {
            problems.push(FieldProblem {
                field: "url",
                message: e.to_string(),
            });
        }
        problems
    }

    /// The URL without its user and password, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose())
    }
}

/// One problem of a [`RedisQueueConfig`]: the field (as named in the struct) and what is
/// wrong. The message never holds the URL's password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    /// The struct field, e.g. `url`.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// `scheme://user:password@host/..` -> `scheme://***@host/..`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            runtime_contracts::redact_url(&format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]))
        }
        None => runtime_contracts::redact_url(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("rediss://u:p@w@h:6380/1"),
            "rediss://***@h:6380/1"
        );
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("nonsense"), "***");
    }

    #[test]
    fn config_reads_from_toml_like_json_and_never_prints_the_url() {
        let c: RedisQueueConfig = serde_json::from_value(serde_json::json!({
            "url": "redis://u:secret@localhost:6379",
            "name": "orders",
            "visibility_timeout": "2s",
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.visibility_timeout, Duration::from_secs(2));
        assert_eq!(c.max_attempts, 5);
        assert!(c.validate().is_ok());
        let printed = format!("{c:?} {}", serde_json::to_string(&c).unwrap_or_default());
        assert!(!printed.contains("secret"), "{printed}");
        let mut bad = c.clone();
        bad.name = "a{b}".into();
        assert!(bad.validate().is_err());
    }
}

/// The Redis queue's own keys of `[queue]` (`queue.backend = "redis"`); the keys every
/// backend shares come in as [`QueueShared`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisQueueSettings {
    /// `queue.redis_url` (may hold a password: shown as `***`).
    pub redis_url: Secret,
}

impl Default for RedisQueueSettings {
    fn default() -> Self {
        RedisQueueSettings {
            redis_url: Secret::new("redis://127.0.0.1:6379/0"),
        }
    }
}

impl RedisQueueSettings {
    /// Every problem the queue would refuse, each with its key; no I/O.
    pub fn check(&self, shared: &QueueShared) -> Vec<ConfigIssue> {
        let url = self.redis_url.expose();
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://"))
        {
            return vec![ConfigIssue::new(
                "queue.redis_url",
                Some(format!("{:?}", runtime_contracts::redact_url(url))),
                "expected a URL like \"redis://127.0.0.1:6379/0\" (queue.backend is \"redis\")",
            )];
        }
        self.config(shared)
            .check()
            .into_iter()
            .map(|p| {
                let key = match p.field {
                    "url" => "queue.redis_url",
                    "name" => "queue.name",
                    "max_attempts" => "queue.max_attempts",
                    "visibility_timeout" => "queue.visibility_timeout",
                    // Fields without a key of their own keep their defaults.
                    _ => "queue",
                };
                ConfigIssue::new(key, None, p.message)
            })
            .collect()
    }

    /// The queue's config from these settings and the shared `[queue]` keys.
    pub fn config(&self, shared: &QueueShared) -> RedisQueueConfig {
        RedisQueueConfig {
            visibility_timeout: shared.visibility_timeout,
            max_attempts: shared.max_attempts,
            ..RedisQueueConfig::new(self.redis_url.expose(), shared.name.clone())
        }
    }
}

impl runtime_contracts::QueueBackendSettings for RedisQueueSettings {
    const BACKEND: &'static str = "redis";

    fn check(&self, shared: &QueueShared) -> Vec<ConfigIssue> {
        RedisQueueSettings::check(self, shared)
    }

    /// A lazily connecting [`RedisQueue`](crate::RedisQueue).
    fn build(
        &self,
        shared: &QueueShared,
    ) -> Result<std::sync::Arc<dyn runtime_contracts::TaskQueue>, QueueError> {
        Ok(std::sync::Arc::new(crate::RedisQueue::connect_lazy(
            self.config(shared),
        )?))
    }

    fn target(&self) -> String {
        runtime_contracts::redact_url(self.redis_url.expose())
    }

    /// Key slots and rates shared through the queue's Redis.
    fn limiter(
        &self,
        shared: &QueueShared,
    ) -> Result<Option<std::sync::Arc<dyn runtime_contracts::TaskLimiter>>, QueueError> {
        Ok(Some(std::sync::Arc::new(crate::RedisLimiter::new(
            &self.config(shared),
        )?)))
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    fn shared(name: &str) -> QueueShared {
        QueueShared {
            name: name.into(),
            visibility_timeout: Duration::from_secs(60),
            max_attempts: 5,
        }
    }

    fn keys(url: &str, name: &str) -> Vec<String> {
        let settings = RedisQueueSettings {
            redis_url: Secret::new(url),
        };
        settings
            .check(&shared(name))
            .into_iter()
            .map(|i| i.key)
            .collect()
    }

    #[test]
    fn settings_name_each_bad_key_without_the_password() {
        assert!(keys("redis://127.0.0.1:6379/0", "tasks").is_empty());
        assert_eq!(keys("http://u:pw@x/0", "tasks"), ["queue.redis_url"]);
        assert_eq!(
            keys("redis+unix:///tmp/r.sock", "tasks"),
            ["queue.redis_url"]
        );
        assert_eq!(keys("redis://127.0.0.1:6379/0", "a{b}"), ["queue.name"]);
        let issues = RedisQueueSettings {
            redis_url: Secret::new("redis://u:hunter2@host:notaport/0"),
        }
        .check(&shared("tasks"));
        assert_eq!(issues[0].key, "queue.redis_url");
        assert!(!format!("{issues:?}").contains("hunter2"), "{issues:?}");
    }
}
