//! Text to values, and URLs without their passwords.

use serde_json::Value;

/// Reads text as a TOML value (`8`, `true`, `"x"`, `[1, 2]`, `{ a = 1 }`); text that is
/// not one is returned as a string, so `imap-poll` and `30s` need no quotes.
pub fn parse_value(raw: &str) -> Value {
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
pub fn toml_to_json(v: toml::Value) -> Value {
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

pub use runtime_contracts::redact_url;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_parse_as_toml_or_text() {
        assert_eq!(parse_value("8"), json!(8));
        assert_eq!(parse_value("\"8\""), json!("8"));
        assert_eq!(parse_value("imap-poll"), json!("imap-poll"));
        assert_eq!(parse_value("[\"a\", \"b\"]"), json!(["a", "b"]));
        assert_eq!(redact_url("postgres://u:p@h/d"), "postgres://u:***@h/d");
    }
}
