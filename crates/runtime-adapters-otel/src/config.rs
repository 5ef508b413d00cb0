//! `OtelConfig`: which exporter, where, and how much to buffer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use runtime_contracts::{ConfigIssue, Secret};

use crate::OtelError;

/// Where spans go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExporterKind {
    /// Nothing is exported. [`OtelTraceFactory::new`](crate::OtelTraceFactory::new) refuses
    /// this value: with no exporter, use the core's id-only factory instead of this adapter.
    #[default]
    None,
    /// One JSON object per span and line on standard output.
    Stdout,
    /// OTLP over HTTP/protobuf to [`OtelConfig::otlp_endpoint`].
    Otlp,
}

/// Configuration of the exporting trace factory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtelConfig {
    /// Which exporter.
    pub exporter: ExporterKind,
    /// OTLP/HTTP base URL or full traces URL; `/v1/traces` is appended when missing.
    /// Plain `http://` only: this build carries no TLS stack (run a local collector).
    pub otlp_endpoint: String,
    /// Extra HTTP headers for the collector (for example an API key). Values are secrets:
    /// they never appear in logs, errors or printed config.
    pub headers: BTreeMap<String, Secret>,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Spans buffered for export; when full, new spans are dropped and counted. At most
    /// this many plus one batch are held in memory.
    pub max_queue_size: usize,
    /// Spans per export request.
    pub max_export_batch_size: usize,
    /// How long a partial batch waits before it is sent.
    #[serde(with = "runtime_contracts::duration")]
    pub scheduled_delay: Duration,
    /// Upper bound of one export request, retries included.
    #[serde(with = "runtime_contracts::duration")]
    pub export_timeout: Duration,
    /// Upper bound of [`flush`](runtime_contracts::TraceFactory::flush) at shutdown.
    #[serde(with = "runtime_contracts::duration")]
    pub flush_timeout: Duration,
}

impl Default for OtelConfig {
    fn default() -> Self {
        OtelConfig {
            exporter: ExporterKind::None,
            otlp_endpoint: "http://127.0.0.1:4318".to_owned(),
            headers: BTreeMap::new(),
            service_name: "plba".to_owned(),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
            flush_timeout: Duration::from_secs(5),
        }
    }
}

impl OtelConfig {
    /// The OTLP config for `endpoint`, everything else default.
    pub fn otlp(endpoint: impl Into<String>) -> Self {
        OtelConfig {
            exporter: ExporterKind::Otlp,
            otlp_endpoint: endpoint.into(),
            ..OtelConfig::default()
        }
    }

    /// The stdout config, everything else default.
    pub fn stdout() -> Self {
        OtelConfig {
            exporter: ExporterKind::Stdout,
            ..OtelConfig::default()
        }
    }

    /// Checks sizes, durations and the endpoint.
    pub fn validate(&self) -> Result<(), OtelError> {
        let bad = |field: &'static str, reason: &str| {
            Err(OtelError::Config {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.max_queue_size == 0 {
            return bad("max_queue_size", "must be at least 1");
        }
        if self.max_export_batch_size == 0 {
            return bad("max_export_batch_size", "must be at least 1");
        }
        if self.scheduled_delay.is_zero() {
            return bad("scheduled_delay", "must be positive");
        }
        if self.export_timeout.is_zero() {
            return bad("export_timeout", "must be positive");
        }
        if self.service_name.trim().is_empty() {
            return bad("service_name", "must not be empty");
        }
        if self.exporter == ExporterKind::Otlp {
            self.traces_url()?;
            for (name, value) in &self.headers {
                let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if name.is_empty() || !name.bytes().all(token) {
                    return Err(OtelError::Config {
                        field: "headers",
                        reason: format!("invalid header name {name:?}"),
                    });
                }
                // Visible ASCII and inner spaces only; the value itself is never printed.
                let value = value.expose();
                if !value
                    .bytes()
                    .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
                {
                    return Err(OtelError::Config {
                        field: "headers",
                        reason: format!("invalid value for header {name:?}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The URL spans are posted to: the endpoint with `/v1/traces` appended when missing.
    pub fn traces_url(&self) -> Result<String, OtelError> {
        let endpoint = self.otlp_endpoint.trim();
        let bad = |reason: &str| {
            Err(OtelError::Config {
                field: "otlp_endpoint",
                reason: reason.to_owned(),
            })
        };
        if endpoint.starts_with("https://") {
            return bad(
                "https is not supported by this build (no TLS stack): use http:// to a local collector",
            );
        }
        let Some(rest) = endpoint.strip_prefix("http://") else {
            return bad("must start with http://");
        };
        if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
            return bad("must name a host");
        }
        let base = endpoint.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            Ok(base.to_owned())
        } else {
            Ok(format!("{base}/v1/traces"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_path_is_appended_once() {
        for (given, want) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
            ("http://c:4318/otlp", "http://c:4318/otlp/v1/traces"),
        ] {
            assert_eq!(
                OtelConfig::otlp(given).traces_url().ok().as_deref(),
                Some(want)
            );
        }
        for bad in ["https://c:4318", "c:4318", "http://", "http:///x"] {
            assert!(OtelConfig::otlp(bad).traces_url().is_err(), "{bad}");
        }
    }

    #[test]
    fn header_values_stay_out_of_errors_and_debug() {
        let mut cfg = OtelConfig::otlp("http://127.0.0.1:4318");
        cfg.headers
            .insert("x-api-key".into(), Secret::new("hunter2\n"));
        let err = cfg
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("x-api-key"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn deserializes_with_defaults() {
        let cfg: OtelConfig = serde_json::from_value(serde_json::json!({
            "exporter": "otlp",
            "scheduled_delay": "200ms",
            "headers": {"authorization": "Bearer s3cret"}
        }))
        .unwrap_or_default();
        assert_eq!(cfg.exporter, ExporterKind::Otlp);
        assert_eq!(cfg.scheduled_delay, Duration::from_millis(200));
        assert_eq!(cfg.max_queue_size, 2048);
        assert!(serde_json::to_string(&cfg).is_ok_and(|s| !s.contains("s3cret")));
    }
}

/// The OTel exporter's own keys of `[tracing]`; the exporter tag (`tracing.exporter`) is
/// read by the composition, which passes it in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtelSettings {
    /// `tracing.otlp_endpoint`: base URL; `/v1/traces` is appended when missing.
    pub otlp_endpoint: String,
}

impl Default for OtelSettings {
    fn default() -> Self {
        OtelSettings {
            otlp_endpoint: OtelConfig::default().otlp_endpoint,
        }
    }
}

impl OtelSettings {
    /// Every problem, each with its key; no I/O.
    pub fn check(&self, exporter: ExporterKind, service_name: &str) -> Vec<ConfigIssue> {
        if exporter == ExporterKind::Otlp
            && !(self.otlp_endpoint.starts_with("http://")
                || self.otlp_endpoint.starts_with("https://"))
        {
            return vec![ConfigIssue::new(
                "tracing.otlp_endpoint",
                Some(format!("{:?}", self.otlp_endpoint)),
                "expected an http:// or https:// URL (tracing.exporter is \"otlp\")",
            )];
        }
        match self.config(exporter, service_name).validate() {
            Ok(()) => Vec::new(),
            Err(error) => {
                let key = match &error {
                    OtelError::Config {
                        field: "otlp_endpoint",
                        ..
                    } => "tracing.otlp_endpoint",
                    _ => "tracing.exporter",
                };
                vec![ConfigIssue::new(key, None, error.to_string())]
            }
        }
    }

    /// The exporter's config from these settings.
    pub fn config(&self, exporter: ExporterKind, service_name: &str) -> OtelConfig {
        OtelConfig {
            exporter,
            otlp_endpoint: self.otlp_endpoint.clone(),
            service_name: service_name.to_owned(),
            ..OtelConfig::default()
        }
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    fn keys(endpoint: &str, exporter: ExporterKind) -> Vec<String> {
        let settings = OtelSettings {
            otlp_endpoint: endpoint.into(),
        };
        settings
            .check(exporter, "svc")
            .into_iter()
            .map(|i| i.key)
            .collect()
    }

    #[test]
    fn settings_name_each_bad_key() {
        assert!(keys("http://127.0.0.1:4318", ExporterKind::Otlp).is_empty());
        for bad in ["ftp://collector", "http://", "https://collector:4318"] {
            assert_eq!(
                keys(bad, ExporterKind::Otlp),
                ["tracing.otlp_endpoint"],
                "{bad}"
            );
        }
        // The endpoint is not used by the stdout exporter.
        assert!(keys("ftp://collector", ExporterKind::Stdout).is_empty());
    }
}
