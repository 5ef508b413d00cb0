//! The serde configuration of an IMAP source and acknowledger.

use std::path::PathBuf;
use std::time::Duration;

use runtime_contracts::{ConfigError, ConfigIssue, REDACTED, Secret, read_secret_file};
use serde::{Deserialize, Serialize};

/// How the connection is secured.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Implicit TLS from the first byte (IMAPS, port 993).
    #[default]
    Tls,
    /// Plain connection upgraded with `STARTTLS` before login (port 143).
    Starttls,
    /// No encryption (tests, loopback relays).
    None,
}

/// IMAP settings. Unknown keys are ignored rather than refused, because an application's
/// section usually holds its own keys beside these (which source to use, a local
/// directory); [`ImapConfig::KEYS`] lists the keys read here so an application can check
/// for typos itself.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ImapConfig {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// Server port; default 993 with `tls`, 143 otherwise.
    pub port: Option<u16>,
    /// `tls` | `starttls` | `none`.
    pub tls: TlsMode,
    /// Login name.
    pub username: String,
    /// Password (or use `password_file`).
    pub password: Option<Secret>,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// Mailbox to watch (`/` between levels, like the folders).
    pub mailbox: String,
    /// Time between polls (poll mode, and the IDLE fallback).
    #[serde(with = "runtime_contracts::duration")]
    pub poll_interval: Duration,
    /// Folder for successfully handled messages (`""` = leave in place).
    pub processed_folder: String,
    /// Folder for messages whose success was tagged `rejected` (`""` = `processed_folder`).
    pub rejected_folder: String,
    /// Folder for dead-lettered messages (`""` = leave in place).
    pub failed_folder: String,
    /// Larger messages are not downloaded: their task carries only the header.
    pub max_message_bytes: u64,
    /// Keyword set on dead-lettered messages; such messages are never produced again.
    /// Required: the word is the application's (its config supplies it), not an adapter
    /// default.
    pub failed_keyword: String,
    /// Extra trusted CA certificates (PEM), beside the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Messages per `UID FETCH`.
    pub fetch_batch: usize,
    /// How often all unseen mail is searched again, not only above the checkpoint (finds
    /// messages whose task was lost, for example with a non-durable queue).
    #[serde(with = "runtime_contracts::duration")]
    pub rescan_interval: Duration,
    /// IDLE is ended and issued again after this long (RFC 2177: before 29 minutes).
    #[serde(with = "runtime_contracts::duration")]
    pub idle_reissue: Duration,
    /// With no server message for this long while idling (Dovecot sends `* OK Still here`
    /// every two minutes), the link is probed and, if silent, reconnected.
    #[serde(with = "runtime_contracts::duration")]
    pub idle_inactivity_timeout: Duration,
    /// Bound on connecting and logging in.
    #[serde(with = "runtime_contracts::duration")]
    pub connect_timeout: Duration,
    /// Bound on any one command.
    #[serde(with = "runtime_contracts::duration")]
    pub command_timeout: Duration,
    /// First reconnect delay; doubles up to `reconnect_max`, with jitter.
    #[serde(with = "runtime_contracts::duration")]
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    #[serde(with = "runtime_contracts::duration")]
    pub reconnect_max: Duration,
    /// Connections the acknowledger may keep (opened when first needed). Concurrent
    /// acknowledgements are batched, one batch per mailbox at a time (parallel writers
    /// to one mailbox only wait on the server's locks), so this bounds how many mailboxes
    /// are worked on at once. Default 4.
    pub ack_connections: usize,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            host: String::new(),
            port: None,
            tls: TlsMode::Tls,
            username: String::new(),
            password: None,
            password_file: None,
            mailbox: "INBOX".to_owned(),
            poll_interval: Duration::from_secs(30),
            processed_folder: String::new(),
            rejected_folder: String::new(),
            failed_folder: String::new(),
            max_message_bytes: runtime_contracts::DEFAULT_MAX_MESSAGE_BYTES,
            failed_keyword: String::new(),
            ca_file: None,
            fetch_batch: 100,
            rescan_interval: Duration::from_secs(300),
            idle_reissue: Duration::from_secs(25 * 60),
            idle_inactivity_timeout: Duration::from_secs(5 * 60),
            connect_timeout: Duration::from_secs(20),
            command_timeout: Duration::from_secs(60),
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(60),
            ack_connections: 4,
        }
    }
}

impl ImapConfig {
    /// Every key this configuration reads.
    pub const KEYS: &'static [&'static str] = &[
        "host",
        "port",
        "tls",
        "username",
        "password",
        "password_file",
        "mailbox",
        "poll_interval",
        "processed_folder",
        "rejected_folder",
        "failed_folder",
        "max_message_bytes",
        "failed_keyword",
        "ca_file",
        "fetch_batch",
        "rescan_interval",
        "idle_reissue",
        "idle_inactivity_timeout",
        "connect_timeout",
        "command_timeout",
        "reconnect_min",
        "reconnect_max",
        "ack_connections",
    ];

    /// The port to connect to.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Tls => 993,
            TlsMode::Starttls | TlsMode::None => 143,
        })
    }

    /// Checks the values; every problem is listed (keys relative to this section).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        let mut bad = |key: &str, value: Option<String>, message: &str| {
            issues.push(ConfigIssue {
                key: key.to_owned(),
                origin: None,
                value,
                message: message.to_owned(),
            });
        };
        if self.host.trim().is_empty() {
            bad("host", None, "a server host name is required");
        }
        if self.username.is_empty() {
            bad("username", None, "a login name is required");
        }
        match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => bad(
                "password",
                Some(REDACTED.into()),
                "set either password or password_file, not both",
            ),
            (None, None) => bad("password", None, "password or password_file is required"),
            _ => {}
        }
        if self.mailbox.is_empty() {
            bad("mailbox", None, "a mailbox name is required");
        }
        for (key, value) in [
            ("mailbox", &self.mailbox),
            ("processed_folder", &self.processed_folder),
            ("rejected_folder", &self.rejected_folder),
            ("failed_folder", &self.failed_folder),
        ] {
            if value.chars().any(|c| c.is_control()) {
                bad(
                    key,
                    Some(value.clone()),
                    "control characters are not allowed",
                );
            }
        }
        if !is_atom(&self.failed_keyword) {
            bad(
                "failed_keyword",
                Some(self.failed_keyword.clone()),
                "an IMAP keyword (an atom such as $Failed) is required",
            );
        }
        if self.poll_interval.is_zero() {
            bad("poll_interval", Some("0s".into()), "must be above zero");
        }
        if self.max_message_bytes == 0 {
            bad("max_message_bytes", Some("0".into()), "must be above zero");
        }
        if self.fetch_batch == 0 {
            bad("fetch_batch", Some("0".into()), "must be at least 1");
        }
        if self.ack_connections == 0 {
            bad("ack_connections", Some("0".into()), "must be at least 1");
        }
        if self.idle_reissue.is_zero() || self.idle_reissue >= Duration::from_secs(29 * 60) {
            bad(
                "idle_reissue",
                Some(humantime::format_duration(self.idle_reissue).to_string()),
                "must be above zero and below 29m (RFC 2177)",
            );
        }
        for (key, d) in [
            ("idle_inactivity_timeout", self.idle_inactivity_timeout),
            ("connect_timeout", self.connect_timeout),
            ("command_timeout", self.command_timeout),
            ("rescan_interval", self.rescan_interval),
        ] {
            if d.is_zero() {
                bad(key, Some("0s".into()), "must be above zero");
            }
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            bad(
                "reconnect_max",
                None,
                "reconnect_min must be above zero and reconnect_max at least reconnect_min",
            );
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(issues))
        }
    }

    /// The password, read from `password_file` if that is how it is given.
    pub fn resolve_password(&self) -> Result<Secret, ConfigError> {
        if let Some(p) = &self.password {
            return Ok(p.clone());
        }
        let Some(path) = &self.password_file else {
            return Err(ConfigError::invalid(
                "password",
                "password or password_file is required",
            ));
        };
        read_secret_file(path).map_err(|e| {
            ConfigError::Invalid(vec![ConfigIssue {
                key: "password_file".into(),
                origin: None,
                value: Some(path.display().to_string()),
                message: format!("cannot read: {e}"),
            }])
        })
    }
}

/// An IMAP atom: no spaces, parentheses, braces, quotes, wildcards or backslashes.
fn is_atom(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\' | b'%' | b'*' | b']')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn defaults_and_validation() {
        let cfg: ImapConfig = serde_json::from_value(serde_json::json!({
            "host": "imap.example.com", "username": "u", "password": "p", "failed_keyword": "$F",
            "poll_interval": "5s", "source": "imap-poll", "maildir": "./x"
        }))
        .unwrap_or_default();
        assert_eq!(cfg.effective_port(), 993);
        assert_eq!(cfg.poll_interval, Duration::from_secs(5));
        assert_eq!(cfg.mailbox, "INBOX");
        assert!(cfg.validate().is_ok());
        assert!(!format!("{cfg:?}").contains("\"p\""));

        let bad = ImapConfig {
            failed_keyword: "bad word".into(),
            ..ImapConfig::default()
        };
        let Err(ConfigError::Invalid(issues)) = bad.validate() else {
            panic!("expected issues");
        };
        let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
        assert!(keys.contains(&"host") && keys.contains(&"password"));
        assert!(keys.contains(&"failed_keyword"));
    }

    #[test]
    fn the_failure_keyword_is_the_applications_not_a_default() {
        let cfg = ImapConfig {
            host: "h".into(),
            username: "u".into(),
            password: Some(Secret::new("p")),
            ..ImapConfig::default()
        };
        let Err(ConfigError::Invalid(issues)) = cfg.validate() else {
            panic!("expected issues");
        };
        let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["failed_keyword"]);
    }

    #[test]
    fn a_password_file_must_be_a_small_regular_file() {
        let with = |path: &str| ImapConfig {
            password: None,
            password_file: Some(path.into()),
            ..ImapConfig::default()
        };
        // Before the bound, /dev/zero never returned and ate memory.
        let err = with("/dev/zero")
            .resolve_password()
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 70 * 1024]).unwrap();
        let err = with(big.to_str().unwrap())
            .resolve_password()
            .unwrap_err()
            .to_string();
        assert!(err.contains("larger than"), "{err}");
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "s3cret\n").unwrap();
        let secret = with(ok.to_str().unwrap()).resolve_password().unwrap();
        assert_eq!(secret.expose(), "s3cret");
    }
}
