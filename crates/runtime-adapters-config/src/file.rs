//! Config files: TOML (with the line of every key) and YAML.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use runtime_contracts::{ConfigError, ConfigLayer, ConfigOrigin, ConfigProvider};
use serde_json::Value;
use toml::de::{DeTable, DeValue};

/// The format of a config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

impl FileFormat {
    /// By extension: `.yaml` / `.yml` is YAML, anything else TOML.
    pub fn from_path(path: &Path) -> FileFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                FileFormat::Yaml
            }
            _ => FileFormat::Toml,
        }
    }
}

/// One config file. Every leaf's origin names the file and the line of its key, so an
/// error reads `bot.toml:12`.
#[derive(Clone, Debug)]
pub struct FileProvider {
    path: PathBuf,
    format: FileFormat,
}

impl FileProvider {
    /// A provider for `path`, format by extension.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        FileProvider {
            format: FileFormat::from_path(&path),
            path,
        }
    }

    /// Boxed, to pass as the command line's file loader
    /// (`AppConfigSpec::file_loader(FileProvider::boxed)`).
    pub fn boxed(path: &Path) -> Box<dyn ConfigProvider> {
        Box::new(FileProvider::new(path))
    }

    /// Parses `text` as if it were this file's content.
    pub fn parse(&self, text: &str) -> Result<ConfigLayer, ConfigError> {
        let (tree, lines) = match self.format {
            FileFormat::Toml => parse_toml(text).map_err(|m| self.load_error(m))?,
            FileFormat::Yaml => parse_yaml(text).map_err(|m| self.load_error(m))?,
        };
        let mut layer = ConfigLayer::from_tree(
            self.describe(),
            &tree,
            &ConfigOrigin::File {
                path: self.path.clone(),
                line: None,
            },
        );
        for (key, entry) in layer.entries.iter_mut() {
            if let ConfigOrigin::File { line, .. } = &mut entry.origin {
                *line = lines.get(key).copied();
            }
        }
        Ok(layer)
    }

    fn load_error(&self, message: String) -> ConfigError {
        ConfigError::Load {
            what: self.describe(),
            message,
        }
    }
}

#[async_trait]
impl ConfigProvider for FileProvider {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn load(&self) -> Result<ConfigLayer, ConfigError> {
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| self.load_error(e.to_string()))?;
        self.parse(&text)
    }

    fn watch_paths(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
}

type Lines = BTreeMap<String, u32>;

/// The tree and the line of every leaf key. Syntax errors give line and column but no
/// excerpt of the file: the excerpt could hold a secret.
fn parse_toml(text: &str) -> Result<(Value, Lines), String> {
    let at = |span: Option<std::ops::Range<usize>>| match span {
        Some(s) => {
            let (l, c) = line_col(text, s.start);
            format!("line {l}, column {c}: ")
        }
        None => String::new(),
    };
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("{}{}", at(e.span()), e.message()))?;
    let tree = crate::value::toml_to_json(toml::Value::Table(table));
    let mut lines = Lines::new();
    if let Ok(doc) = DeTable::parse(text) {
        walk_toml("", doc.get_ref(), text, &mut lines);
    }
    Ok((tree, lines))
}

fn walk_toml(prefix: &str, table: &DeTable<'_>, text: &str, lines: &mut Lines) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        match v.get_ref() {
            DeValue::Table(sub) => walk_toml(&key, sub, text, lines),
            _ => {
                lines.insert(key, line_col(text, k.span().start).0);
            }
        }
    }
}

fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    (line, col)
}

fn parse_yaml(text: &str) -> Result<(Value, Lines), String> {
    let tree: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        // figment's YAML parser; its errors name line and column.
        figment::Figment::from(
            <figment::providers::Yaml as figment::providers::Format>::string(text),
        )
        .extract()
        .map_err(|e| e.to_string())?
    };
    if !tree.is_object() {
        return Err("expected a mapping at the top of the file".to_owned());
    }
    Ok((tree, yaml_lines(text)))
}

/// Lines of block-style YAML keys, from indentation. Flow style and anchors are valid
/// YAML but get no line (the origin then names only the file).
fn yaml_lines(text: &str) -> Lines {
    let mut lines = Lines::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        if trimmed.starts_with('-') {
            continue;
        }
        let Some(colon) = trimmed.find(':') else {
            continue;
        };
        let after = &trimmed[colon + 1..];
        if !(after.is_empty() || after.starts_with([' ', '\t'])) {
            continue;
        }
        let name = trimmed[..colon].trim().trim_matches(['"', '\'']);
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let key = stack
            .iter()
            .map(|(_, k)| k.as_str())
            .chain(std::iter::once(name))
            .collect::<Vec<_>>()
            .join(".");
        lines.insert(key.clone(), n as u32 + 1);
        stack.push((indent, name.to_owned()));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keys_get_lines() {
        let lines =
            yaml_lines("# c\nqueue:\n  capacity: 5\n  name: q\nworkers:\n  concurrency: 2\n");
        assert_eq!(lines.get("queue.capacity"), Some(&3));
        assert_eq!(lines.get("queue.name"), Some(&4));
        assert_eq!(lines.get("workers.concurrency"), Some(&6));
    }
}
