//! Text to values, and URLs without their passwords.

pub use runtime_contracts::redact_url;
pub use runtime_contracts::{parse_value, toml_to_json};

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
