//! Typed sections out of a snapshot, with every problem named by key, source and value.
//!
//! serde stops at the first error. To list them all at once, extraction runs in rounds:
//! a bad leaf is reported, removed from a working copy (so the section's `#[serde(default)]`
//! fills it) and extraction runs again, until it succeeds or nothing more can be removed.
//! figment does the deserializing because its errors are structured (path, expected,
//! actual), so messages are built from parts and never echo a secret value.

use std::collections::BTreeSet;

use figment::Figment;
use figment::error::{Actual, Kind};
use figment::providers::Serialized;
use runtime_contracts::{
    ConfigError, ConfigIssue, ConfigOrigin, ConfigSnapshot, REDACTED, is_secret_key,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Validator;

/// Reads the section at `path` (missing = empty table, so defaults apply) as `T`.
///
/// Every problem is reported, each with its dotted key, where the value came from, the
/// value (`***` for secrets) and what was expected. Unknown keys are errors when `T`
/// says `#[serde(deny_unknown_fields)]`.
pub fn section<T: DeserializeOwned>(
    snapshot: &ConfigSnapshot,
    path: &str,
) -> Result<T, ConfigError> {
    let mut work = snapshot
        .get(path)
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    if !work.is_object() {
        return Err(ConfigError::Invalid(vec![issue(
            snapshot,
            path,
            format!("expected a table [{path}], found {}", json_kind(&work)),
        )]));
    }
    let mut issues: Vec<ConfigIssue> = Vec::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    // Each round removes one bad leaf; a section has far fewer keys than this.
    for _ in 0..256 {
        let error = match Figment::from(Serialized::defaults(&work)).extract::<T>() {
            Ok(value) if issues.is_empty() => return Ok(value),
            Ok(_) => break,
            Err(e) => e,
        };
        let mut fixed = false;
        for e in error {
            let mut rel: Vec<String> = e.path.clone();
            match &e.kind {
                Kind::UnknownField(name, _) if rel.last() != Some(name) => rel.push(name.clone()),
                Kind::MissingField(name) if rel.last().map(String::as_str) != Some(name) => {
                    rel.push(name.to_string())
                }
                _ => {}
            }
            let key = join(path, &rel);
            // Env vars and database rows are untyped text: `MOB_MAIL__USERNAME=123` parsed
            // as an integer, but the field wants a string, so it gets the text back.
            if let Kind::InvalidType(actual, expected) = &e.kind
                && expected.contains("string")
                && matches!(
                    actual,
                    Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) | Actual::Bool(_)
                )
                && matches!(
                    lookup_origin(snapshot, &key),
                    Some(ConfigOrigin::Env { .. } | ConfigOrigin::Database { .. })
                )
                && let Some(slot) = get_mut(&mut work, &rel)
                && !slot.is_string()
            {
                let text = match slot {
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => String::new(),
                };
                *slot = Value::String(text);
                fixed = true;
                continue;
            }
            if reported.insert(key.clone()) {
                issues.push(issue(snapshot, &key, describe(&key, &e.kind)));
            }
            if remove(&mut work, &rel) {
                fixed = true;
            }
        }
        if !fixed {
            break;
        }
    }
    if issues.is_empty() {
        issues.push(issue(snapshot, path, "cannot read this section".to_owned()));
    }
    Err(ConfigError::Invalid(issues))
}

/// A validator that checks the section at `path` reads as `T` (apps register one per
/// section they own).
pub fn section_validator<T: DeserializeOwned + 'static>(path: &'static str) -> Validator {
    std::sync::Arc::new(
        move |snapshot: &ConfigSnapshot| match section::<T>(snapshot, path) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(issues)) => issues,
            Err(other) => vec![issue(snapshot, path, other.to_string())],
        },
    )
}

/// An issue for `key` with its origin and its value (redacted) filled in from `snapshot`.
pub fn issue(snapshot: &ConfigSnapshot, key: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        key: key.to_owned(),
        origin: lookup_origin(snapshot, key),
        value: snapshot.get(key).and_then(|v| render_value(key, v)),
        message: message.into(),
    }
}

/// Fills the origin and value of issues a validator left empty, and redacts secret values
/// a validator put in by mistake.
pub(crate) fn complete(snapshot: &ConfigSnapshot, issues: &mut [ConfigIssue]) {
    for i in issues {
        if i.origin.is_none() {
            i.origin = lookup_origin(snapshot, &i.key);
        }
        match &i.value {
            None => i.value = snapshot.get(&i.key).and_then(|v| render_value(&i.key, v)),
            Some(text) if is_secret_key(&i.key) && text != REDACTED => {
                i.message = i.message.replace(text.as_str(), REDACTED);
                i.value = Some(REDACTED.to_owned());
            }
            Some(text) => i.value = Some(redact_url(text)),
        }
        if is_secret_key(&i.key)
            && let Some(Value::String(raw)) = snapshot.get(&i.key)
            && !raw.is_empty()
        {
            i.message = i.message.replace(raw.as_str(), REDACTED);
        }
    }
}

/// Where the value at `key` came from: the key itself, else its nearest ancestor, else
/// its first descendant (for a table).
pub fn lookup_origin(snapshot: &ConfigSnapshot, key: &str) -> Option<ConfigOrigin> {
    let mut k = key;
    loop {
        if let Some(o) = snapshot.origin(k) {
            return Some(o.clone());
        }
        match k.rfind('.') {
            Some(at) => k = &k[..at],
            None => break,
        }
    }
    let prefix = format!("{key}.");
    snapshot
        .origins
        .range(prefix.clone()..)
        .next()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, o)| o.clone())
}

/// The value as an operator would write it (`"text"`, `8`, `true`), `***` for secrets and
/// URL passwords hidden; `None` for tables.
pub fn render_value(key: &str, v: &Value) -> Option<String> {
    match v {
        Value::Object(_) => None,
        Value::Null => None,
        _ if is_secret_key(key) => Some(REDACTED.to_owned()),
        Value::String(s) => Some(format!("{:?}", redact_url(s))),
        other => Some(redact_url(&other.to_string())),
    }
}

pub use runtime_contracts::redact_url;

fn describe(key: &str, kind: &Kind) -> String {
    match kind {
        Kind::InvalidType(actual, expected) => {
            format!(
                "expected {}, found {}",
                friendly(expected),
                actual_kind(actual)
            )
        }
        Kind::InvalidValue(_, expected) => format!("expected {}", friendly(expected)),
        Kind::InvalidLength(n, expected) => format!("expected {expected}, found {n} items"),
        Kind::UnknownVariant(_, variants) => format!(
            "expected one of {}",
            variants
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Kind::UnknownField(name, fields) => {
            let mut m = format!("unknown key; known keys here: {}", fields.join(", "));
            if let Some(s) = suggest(name, fields.iter().copied()) {
                m.push_str(&format!("; did you mean `{s}`?"));
            }
            m
        }
        Kind::MissingField(_) => "required key is missing".to_owned(),
        Kind::DuplicateField(_) => "key is set twice".to_owned(),
        Kind::Message(m) if m.contains("socket address") => {
            "expected an address like \"127.0.0.1:8080\"".to_owned()
        }
        Kind::Message(m) if is_secret_key(key) => {
            // Custom messages may quote the value; for a secret, keep only the kind.
            let _ = m;
            "invalid value".to_owned()
        }
        Kind::Message(m) => m.clone(),
        other => other.to_string(),
    }
}

fn friendly(expected: &str) -> String {
    let range = |lo: &str, hi: &str| format!("a whole number from {lo} to {hi}");
    match expected {
        "u8" => range("0", "255"),
        "u16" => range("0", "65535"),
        "u32" => range("0", "4294967295"),
        "u64" | "usize" => "a whole number of 0 or more".to_owned(),
        "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a duration" => "a duration like \"30s\", \"5m\" or \"1h 30m\"".to_owned(),
        other => other.to_owned(),
    }
}

fn actual_kind(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        _ => "another kind of value",
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

fn join(prefix: &str, rel: &[String]) -> String {
    let mut parts: Vec<&str> = Vec::with_capacity(rel.len() + 1);
    if !prefix.is_empty() {
        parts.push(prefix);
    }
    parts.extend(rel.iter().map(String::as_str));
    parts.join(".")
}

fn get_mut<'a>(tree: &'a mut Value, rel: &[String]) -> Option<&'a mut Value> {
    rel.iter().try_fold(tree, |node, k| match node {
        Value::Object(map) => map.get_mut(k),
        Value::Array(items) => k.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

fn remove(tree: &mut Value, rel: &[String]) -> bool {
    let Some((last, parents)) = rel.split_last() else {
        return false;
    };
    match get_mut(tree, parents) {
        Some(Value::Object(map)) => map.remove(last).is_some(),
        Some(Value::Array(items)) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// The closest candidate within an edit distance of 2, for "did you mean".
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://app:pw@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("plain text"), "plain text");
    }

    #[test]
    fn suggestions_are_close_words() {
        let known = ["workers", "queue", "runtime"];
        assert_eq!(suggest("workrs", known.iter().copied()), Some("workers"));
        assert_eq!(suggest("zzzzzzz", known.iter().copied()), None);
    }
}
