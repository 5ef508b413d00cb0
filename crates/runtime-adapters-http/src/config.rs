//! `HttpConfig`: what the application maps its `[control]` section into.

use std::net::SocketAddr;
use std::time::Duration;

use runtime_contracts::{ConfigIssue, EndpointError, REDACTED, Secret};
use serde::{Deserialize, Serialize};

/// Settings of the HTTP control plane.
///
/// Unknown keys are ignored on purpose: the application may map a wider `[control]`
/// section (with `enabled`, for example) straight into this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Address to bind; loopback by default. A non-loopback address needs a token.
    pub bind: SocketAddr,
    /// Bearer token for `/admin/*`. Without one the admin routes answer 403.
    pub token: Option<Secret>,
    /// Largest request body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// Longest time a request may take; slower ones get 503.
    #[serde(with = "runtime_contracts::duration")]
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request head; slower connections are
    /// closed (slowloris).
    #[serde(with = "runtime_contracts::duration")]
    pub header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed (idle keep-alive).
    #[serde(with = "runtime_contracts::duration")]
    pub idle_timeout: Duration,
    /// Connections served at once; further ones are closed at accept, so idle clients
    /// cannot take the descriptors the sources need.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
        }
    }
}

impl HttpConfig {
    /// The settings [`HttpControlPlane::bind`](crate::HttpControlPlane::bind) refuses,
    /// checked without binding: a non-loopback address without a token, a zero body
    /// limit, a zero timeout or connection cap.
    ///
    /// # Errors
    /// [`EndpointError::Config`] naming the first unsafe or impossible setting.
    pub fn check(&self) -> Result<(), EndpointError> {
        let has_token = self.token.as_ref().is_some_and(|t| !t.is_empty());
        if !self.bind.ip().is_loopback() && !has_token {
            return Err(EndpointError::Config(format!(
                "refusing to serve the control plane on non-loopback address {} without a \
                 token: set control.token or bind 127.0.0.1",
                self.bind
            )));
        }
        if self.body_limit_bytes == 0 {
            return Err(EndpointError::Config(
                "control body limit must be at least 1 byte".into(),
            ));
        }
        if self.header_read_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err(EndpointError::Config(
                "control header_read_timeout and idle_timeout must be above zero".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(EndpointError::Config(
                "control max_connections must be at least 1".into(),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(EndpointError::Config(
                "control request timeout must be above zero".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_and_partial_sections() {
        let c: HttpConfig = serde_json::from_value(serde_json::json!({
            "bind": "127.0.0.1:9000", "token": "s3cret", "request_timeout": "5s", "enabled": true
        }))
        .unwrap();
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.body_limit_bytes, HttpConfig::default().body_limit_bytes);
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("s3cret"));
        // Secrets never print.
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&c).unwrap().contains("s3cret"));
    }
}

/// The control plane's keys, `[control]`, as an operator writes them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// `control.enabled`: whether to serve the control plane.
    pub enabled: bool,
    /// `control.bind`: address to bind.
    pub bind: SocketAddr,
    /// `control.token`: bearer token for `/admin/*`; without one the admin routes answer 403.
    pub token: Option<Secret>,
    /// `control.header_read_timeout`. Unset: [`HttpConfig`]'s default.
    #[serde(default, with = "runtime_contracts::duration::option")]
    pub header_read_timeout: Option<Duration>,
    /// `control.idle_timeout`. Unset: [`HttpConfig`]'s default.
    #[serde(default, with = "runtime_contracts::duration::option")]
    pub idle_timeout: Option<Duration>,
    /// `control.max_connections`. Unset: [`HttpConfig`]'s default.
    pub max_connections: Option<usize>,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            enabled: true,
            bind: HttpConfig::default().bind,
            token: None,
            header_read_timeout: None,
            idle_timeout: None,
            max_connections: None,
        }
    }
}

impl ControlSettings {
    /// Every problem, each with its key; no I/O. A disabled plane's address is not
    /// checked, since it is never bound.
    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let dur = |d: Duration| format!("{:?}", humantime::format_duration(d).to_string());
        if let Some(token) = &self.token
            && token.expose().trim().is_empty()
        {
            issues.push(ConfigIssue::new(
                "control.token",
                Some(REDACTED.into()),
                "expected a non-empty token; remove the key to turn the admin routes off",
            ));
        }
        for (key, d) in [
            ("control.header_read_timeout", self.header_read_timeout),
            ("control.idle_timeout", self.idle_timeout),
        ] {
            if let Some(d) = d.filter(|d| d.is_zero()) {
                issues.push(ConfigIssue::new(
                    key,
                    Some(dur(d)),
                    "expected a duration above zero, like \"10s\"",
                ));
            }
        }
        if self.max_connections == Some(0) {
            issues.push(ConfigIssue::new(
                "control.max_connections",
                Some("0".into()),
                "expected a whole number of at least 1",
            ));
        }
        if !issues.is_empty() {
            return issues;
        }
        match self.config().map(|c| c.check()) {
            None | Some(Ok(())) => Vec::new(),
            // An unsafe setting (a public address without a token) is the operator's config.
            Some(Err(EndpointError::Config(message))) => {
                vec![ConfigIssue::new("control.bind", None, message)]
            }
            Some(Err(other)) => vec![ConfigIssue::new("control", None, other.to_string())],
        }
    }

    /// The control plane's config; `None` when `control.enabled = false`. Unset keys keep
    /// the control plane's own defaults (defined once, in [`HttpConfig`]).
    pub fn config(&self) -> Option<HttpConfig> {
        if !self.enabled {
            return None;
        }
        let defaults = HttpConfig::default();
        Some(HttpConfig {
            bind: self.bind,
            token: self.token.clone(),
            header_read_timeout: self
                .header_read_timeout
                .unwrap_or(defaults.header_read_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(defaults.idle_timeout),
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            ..defaults
        })
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    fn keys(settings: ControlSettings) -> Vec<String> {
        settings.check().into_iter().map(|i| i.key).collect()
    }

    #[test]
    fn settings_name_each_bad_key() {
        assert!(keys(ControlSettings::default()).is_empty());
        let zero = ControlSettings {
            header_read_timeout: Some(Duration::ZERO),
            idle_timeout: Some(Duration::ZERO),
            max_connections: Some(0),
            token: Some(Secret::new("  ")),
            ..ControlSettings::default()
        };
        assert_eq!(
            keys(zero),
            [
                "control.token",
                "control.header_read_timeout",
                "control.idle_timeout",
                "control.max_connections"
            ]
        );
        let public = ControlSettings {
            bind: SocketAddr::from(([0, 0, 0, 0], 8080)),
            ..ControlSettings::default()
        };
        assert_eq!(keys(public.clone()), ["control.bind"]);
        // A disabled plane is never bound, so its address is not checked.
        let off = ControlSettings {
            enabled: false,
            ..public
        };
        assert!(keys(off.clone()).is_empty());
        assert!(off.config().is_none());
    }
}
