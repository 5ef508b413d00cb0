//! Durations in configuration: human-readable (`"30s"`, `"5m"`, `"1h 30m"`) and bounded.
//!
//! Every duration key of every section (core, adapters, apps) reads through this module
//! (`#[serde(with = "runtime_contracts::duration")]`), so one bound holds everywhere: a
//! value such as `"18446744073709551615s"` parses as a `Duration` but overflows the first
//! `Instant + d`, which would panic at run time instead of failing `check-config`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// The longest duration any configuration key accepts (365 days). Far above every real
/// timeout or interval, far below what `Instant`/`SystemTime` arithmetic can hold.
pub const MAX: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Parses a duration as written in configuration and checks it against [`MAX`]. The
/// error text names what was expected and never quotes the input.
pub fn parse(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|_| "expected a duration like \"30s\", \"5m\" or \"1h 30m\"".to_owned())?;
    check(d)
}

/// Checks a duration against [`MAX`].
pub fn check(d: Duration) -> Result<Duration, String> {
    if d > MAX {
        Err(format!(
            "expected a duration of at most {} ({} days)",
            humantime::format_duration(MAX),
            MAX.as_secs() / 86_400
        ))
    } else {
        Ok(d)
    }
}

/// Formats a duration as configuration writes it (`"1m 30s"`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// serde: writes a duration as text.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

/// serde: reads a duration from text, bounded by [`MAX`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).map_err(E::custom)
        }
    }
    d.deserialize_str(Visitor)
}

/// The same for `Option<Duration>` (`#[serde(with = "runtime_contracts::duration::option")]`).
pub mod option {
    use super::*;

    /// serde: writes an optional duration as text (or nothing).
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// serde: reads an optional duration, bounded by [`MAX`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super")] Duration);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, serde::Serialize, PartialEq)]
    struct S {
        #[serde(with = "super")]
        d: Duration,
    }

    #[test]
    fn durations_are_bounded() {
        let read = |t: &str| serde_json::from_value::<S>(serde_json::json!({ "d": t }));
        assert_eq!(read("30s").map(|s| s.d).ok(), Some(Duration::from_secs(30)));
        assert_eq!(read("365days").map(|s| s.d).ok(), Some(MAX));
        for bad in ["18446744073709551615s", "366days", "2y", "soon", ""] {
            let e = read(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("expected a duration"), "{bad}: {e}");
            assert!(!e.contains(bad) || bad.is_empty(), "{bad} quoted in {e}");
        }
        let text = serde_json::to_string(&S {
            d: Duration::from_secs(90),
        })
        .unwrap_or_default();
        assert_eq!(text, r#"{"d":"1m 30s"}"#);
    }
}
