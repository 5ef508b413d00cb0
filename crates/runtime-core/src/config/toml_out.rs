//! Writes a configuration tree as TOML (for `print-config`), optionally with each value's
//! origin as a trailing comment. Small on purpose: config trees are tables, scalars and
//! arrays; `null` (an unset optional key) is written as a comment.

use std::collections::BTreeMap;
use std::fmt::Write;

use runtime_contracts::ConfigOrigin;
use serde_json::{Map, Value};

/// The tree as a TOML document. With `origins`, each leaf gets `# <origin>`.
pub fn to_toml(tree: &Value, origins: Option<&BTreeMap<String, ConfigOrigin>>) -> String {
    let mut out = String::new();
    if let Value::Object(map) = tree {
        table(&mut out, "", map, origins);
    }
    out
}

fn table(
    out: &mut String,
    path: &str,
    map: &Map<String, Value>,
    origins: Option<&BTreeMap<String, ConfigOrigin>>,
) {
    let full = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    for (k, v) in map {
        let is_table_array = matches!(v, Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object));
        if v.is_object() || is_table_array {
            continue;
        }
        if v.is_null() {
            let _ = writeln!(out, "# {} is not set", key(k));
            continue;
        }
        let _ = write!(out, "{} = {}", key(k), inline(v));
        if let Some(o) = origins.and_then(|o| o.get(&full(k))) {
            let _ = write!(out, "  # {o}");
        }
        out.push('\n');
    }
    for (k, v) in map {
        match v {
            Value::Object(sub) => {
                let p = full(k);
                let has_leaves = sub.values().any(|v| !v.is_object());
                if has_leaves || sub.is_empty() {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    let _ = writeln!(out, "[{}]", dotted(&p));
                }
                table(out, &p, sub, origins);
            }
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                let p = full(k);
                if let Some(o) = origins.and_then(|o| o.get(&p)) {
                    let _ = writeln!(out, "\n# {p}: {o}");
                }
                for item in items {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    let _ = writeln!(out, "[[{}]]", dotted(&p));
                    if let Value::Object(fields) = item {
                        for (fk, fv) in fields {
                            if !fv.is_null() {
                                let _ = writeln!(out, "{} = {}", key(fk), inline(fv));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn dotted(path: &str) -> String {
    path.split('.').map(key).collect::<Vec<_>>().join(".")
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        string(k)
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(inline)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} = {}", key(k), inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::providers::{Format, Toml};
    use serde_json::json;

    #[test]
    fn output_parses_back_to_the_same_tree() {
        let tree = json!({
            "top": 1,
            "queue": {"backend": "memory", "capacity": 10, "ratio": 0.5},
            "mail": {"password": "a\"b\\c\nd", "folders": ["x", "y"], "nested": {"deep": true}},
            "orders": {"catalog": [{"sku": "A-1", "price_cents": 100}, {"sku": "B", "price_cents": 5}]},
            "weird key": {"a.b": "q"}
        });
        let text = to_toml(&tree, None);
        let back: Value = Figment::from(Toml::string(&text))
            .extract()
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, tree, "{text}");
    }
}
