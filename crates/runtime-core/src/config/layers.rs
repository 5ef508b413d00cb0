//! The layers the core can read itself: built-in defaults, the environment, and plain
//! files (without line numbers; `runtime-adapters-config` has the loader that records
//! them).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use figment::Figment;
use figment::providers::{Format, Toml, Yaml};
pub use runtime_contracts::parse_value;
use runtime_contracts::{ConfigError, ConfigLayer, ConfigOrigin, ConfigProvider};
use serde_json::Value;

/// The application's built-in defaults, an embedded TOML document.
pub struct DefaultsProvider {
    toml: String,
}

impl DefaultsProvider {
    /// Defaults from a TOML document (usually `include_str!("defaults.toml")`).
    pub fn new(toml: impl Into<String>) -> Self {
        DefaultsProvider { toml: toml.into() }
    }
}

#[async_trait]
impl ConfigProvider for DefaultsProvider {
    fn describe(&self) -> String {
        "built-in defaults".to_owned()
    }

    async fn load(&self) -> Result<ConfigLayer, ConfigError> {
        let tree: Value = Figment::from(Toml::string(&self.toml))
            .extract()
            .map_err(|e| ConfigError::Load {
                what: self.describe(),
                message: e.to_string(),
            })?;
        Ok(ConfigLayer::from_tree(
            self.describe(),
            &tree,
            &ConfigOrigin::Default,
        ))
    }
}

/// Environment variables with a prefix: `MOB_MAIL__PASSWORD` sets `mail.password`
/// (`__` nests, names are lower-cased). Values are read as TOML values (`8`, `true`,
/// `"text"`, `[1, 2]`); anything that is not valid TOML is taken as plain text, so
/// `MOB_MAIL__HOST=mail.example.com` needs no quotes.
pub struct EnvProvider {
    prefix: String,
    source: Option<EnvSource>,
}

/// Where an [`EnvProvider`] reads variables from instead of the process environment
/// (called at every load, so reloads see changes).
pub type EnvSource = std::sync::Arc<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

impl EnvProvider {
    /// Reads the process environment. `prefix` is `MOB` or `MOB_`.
    pub fn new(prefix: &str) -> Self {
        EnvProvider {
            prefix: normalize_prefix(prefix),
            source: None,
        }
    }

    /// Reads the given variables instead of the process environment.
    pub fn with_vars(prefix: &str, vars: Vec<(String, String)>) -> Self {
        Self::with_source(prefix, std::sync::Arc::new(move || vars.clone()))
    }

    /// Reads variables from `source` instead of the process environment (embedding,
    /// tests: `std::env::set_var` is `unsafe` in edition 2024).
    pub fn with_source(prefix: &str, source: EnvSource) -> Self {
        EnvProvider {
            prefix: normalize_prefix(prefix),
            source: Some(source),
        }
    }

    /// The dotted key a variable sets, if it has the prefix and a well-formed name.
    pub fn key_for(&self, var: &str) -> Option<String> {
        let rest = var.strip_prefix(&self.prefix)?;
        let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(parts.join("."))
    }

    /// The variable that sets a dotted key (`mail.password` -> `MOB_MAIL__PASSWORD`).
    pub fn var_for(&self, key: &str) -> String {
        format!(
            "{}{}",
            self.prefix,
            key.split('.')
                .map(str::to_ascii_uppercase)
                .collect::<Vec<_>>()
                .join("__")
        )
    }
}

fn normalize_prefix(prefix: &str) -> String {
    if prefix.is_empty() || prefix.ends_with('_') {
        prefix.to_owned()
    } else {
        format!("{prefix}_")
    }
}

#[async_trait]
impl ConfigProvider for EnvProvider {
    fn describe(&self) -> String {
        format!("environment {}*", self.prefix)
    }

    async fn load(&self) -> Result<ConfigLayer, ConfigError> {
        let mut layer = ConfigLayer::new(self.describe());
        let vars: Vec<(String, String)> = match &self.source {
            Some(source) => source()
                .into_iter()
                .filter(|(name, _)| name.starts_with(&self.prefix))
                .collect(),
            None => {
                let mut out = Vec::new();
                for (name, value) in std::env::vars_os() {
                    let Some(name) = name.to_str() else { continue };
                    if !name.starts_with(&self.prefix) {
                        continue;
                    }
                    match value.into_string() {
                        Ok(v) => out.push((name.to_owned(), v)),
                        Err(_) => {
                            return Err(ConfigError::Load {
                                what: self.describe(),
                                message: format!("variable {name} is not valid UTF-8"),
                            });
                        }
                    }
                }
                out
            }
        };
        for (name, raw) in vars {
            let Some(key) = self.key_for(&name) else {
                continue;
            };
            layer.set_raw(&key, &raw, ConfigOrigin::Env { var: name.clone() });
        }
        Ok(layer)
    }
}

/// A TOML or YAML file (by extension: `.yaml` / `.yml` is YAML, anything else TOML),
/// read with figment. It does not know lines; `runtime-adapters-config`'s `FileProvider`
/// does, and apps normally pass that one to the command line.
pub struct PlainFileProvider {
    path: PathBuf,
}

impl PlainFileProvider {
    /// A provider for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        PlainFileProvider { path: path.into() }
    }

    /// Boxed, to pass as a file loader.
    pub fn boxed(path: &Path) -> Box<dyn ConfigProvider> {
        Box::new(PlainFileProvider::new(path))
    }
}

#[async_trait]
impl ConfigProvider for PlainFileProvider {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn load(&self) -> Result<ConfigLayer, ConfigError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| ConfigError::Load {
                what: self.describe(),
                message: e.to_string(),
            })?;
        let yaml = matches!(
            self.path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let figment = if yaml {
            Figment::from(Yaml::string(&text))
        } else {
            Figment::from(Toml::string(&text))
        };
        let tree: Value = figment.extract().map_err(|e| ConfigError::Load {
            what: self.describe(),
            message: e.to_string(),
        })?;
        let origin = ConfigOrigin::File {
            path: self.path.clone(),
            line: None,
        };
        Ok(ConfigLayer::from_tree(self.describe(), &tree, &origin))
    }

    fn watch_paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_parse_as_toml_or_text() {
        assert_eq!(parse_value("8"), json!(8));
        assert_eq!(parse_value("true"), json!(true));
        assert_eq!(parse_value("\"8\""), json!("8"));
        assert_eq!(parse_value("[1, 2]"), json!([1, 2]));
        assert_eq!(parse_value("30s"), json!("30s"));
        assert_eq!(parse_value("mail.example.com"), json!("mail.example.com"));
        assert_eq!(parse_value(""), json!(""));
        assert_eq!(parse_value("1\nx = 2"), json!("1\nx = 2"));
    }

    #[test]
    fn env_names_map_to_keys() {
        let p = EnvProvider::new("MOB");
        assert_eq!(
            p.key_for("MOB_MAIL__PASSWORD").as_deref(),
            Some("mail.password")
        );
        assert_eq!(
            p.key_for("MOB_QUEUE__VISIBILITY_TIMEOUT").as_deref(),
            Some("queue.visibility_timeout")
        );
        assert_eq!(p.key_for("MOBX_A"), None);
        assert_eq!(p.key_for("MOB_A____B"), None);
        assert_eq!(p.var_for("mail.password_file"), "MOB_MAIL__PASSWORD_FILE");
    }
}
