//! The origin key that names one message, and small IMAP text helpers.
//!
//! Key format (after RFC 5092's IMAP URL path, `;`-separated, with `%`, `;` and control
//! characters percent-encoded in the mailbox and Message-ID):
//!
//! ```text
//! INBOX;UIDVALIDITY=1795680860;UID=42;MID=<abc@example.com>
//! ```
//!
//! The `MID` part is present when the message has a `Message-ID`; the acknowledger uses it
//! to find the message again after a UIDVALIDITY change. The key of a message never
//! changes while it stays in its mailbox, so the queue's origin dedupe works on it.

use std::fmt;

/// One message at the server: mailbox, UIDVALIDITY epoch, UID and Message-ID if any.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MessageKey {
    /// The mailbox.
    pub mailbox: String,
    /// The mailbox's UIDVALIDITY when the UID was read.
    pub uidvalidity: u32,
    /// The UID.
    pub uid: u32,
    /// The `Message-ID` header value (with angle brackets), if the message has one.
    pub message_id: Option<String>,
}

/// The text was not a key this adapter made.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("malformed imap origin key {0:?}")]
pub struct ParseKeyError(pub String);

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};UIDVALIDITY={};UID={}",
            encode(&self.mailbox),
            self.uidvalidity,
            self.uid
        )?;
        if let Some(mid) = &self.message_id {
            write!(f, ";MID={}", encode(mid))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for MessageKey {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseKeyError(s.to_owned());
        let mut parts = s.split(';');
        let mailbox = decode(parts.next().ok_or_else(err)?).ok_or_else(err)?;
        let uidvalidity = parts
            .next()
            .and_then(|p| p.strip_prefix("UIDVALIDITY="))
            .and_then(|v| v.parse().ok())
            .ok_or_else(err)?;
        let uid = parts
            .next()
            .and_then(|p| p.strip_prefix("UID="))
            .and_then(|v| v.parse().ok())
            .ok_or_else(err)?;
        let message_id = match parts.next() {
            None => None,
            Some(p) => Some(decode(p.strip_prefix("MID=").ok_or_else(err)?).ok_or_else(err)?),
        };
        if mailbox.is_empty() || uid == 0 || parts.next().is_some() {
            return Err(err());
        }
        Ok(MessageKey {
            mailbox,
            uidvalidity,
            uid,
            message_id,
        })
    }
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == ';' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The `Message-ID` of a raw message (header only is enough), unfolded and trimmed.
pub(crate) fn message_id(raw: &[u8]) -> Option<String> {
    let mut value: Option<Vec<u8>> = None;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // end of the header
        }
        if let Some(v) = value.as_mut() {
            if line[0] == b' ' || line[0] == b'\t' {
                v.extend_from_slice(line);
                continue;
            }
            break;
        }
        if line.len() >= 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            value = Some(line[11..].to_vec());
        }
    }
    let text = String::from_utf8_lossy(&value?).into_owned();
    let text: String = text.split_whitespace().collect::<Vec<_>>().join("");
    (!text.is_empty() && text.len() <= 998).then_some(text)
}

/// A UID set in IMAP syntax with ranges: `1:5,7,9:10`. `uids` must be sorted.
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// A quoted IMAP string.
pub(crate) fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for key in [
            MessageKey {
                mailbox: "INBOX".into(),
                uidvalidity: 1795680860,
                uid: 42,
                message_id: Some("<a;b%c@example.com>".into()),
            },
            MessageKey {
                mailbox: "Archive;2024/Q1".into(),
                uidvalidity: 1,
                uid: 7,
                message_id: None,
            },
        ] {
            let text = key.to_string();
            assert_eq!(text.parse::<MessageKey>(), Ok(key));
        }
        assert_eq!(
            "INBOX;UIDVALIDITY=5;UID=6;MID=<x@y>"
                .parse::<MessageKey>()
                .map(|k| k.to_string()),
            Ok("INBOX;UIDVALIDITY=5;UID=6;MID=<x@y>".to_owned())
        );
        for bad in [
            "",
            "INBOX",
            "INBOX;UID=1",
            "INBOX;UIDVALIDITY=1;UID=x",
            "INBOX;UIDVALIDITY=1;UID=2;X=1",
        ] {
            assert!(bad.parse::<MessageKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn message_id_is_found_and_unfolded() {
        let raw =
            b"From: a@b\r\nMessage-Id:\r\n <x@y.z>\r\nSubject: s\r\n\r\nMessage-ID: <body@no>\r\n";
        assert_eq!(message_id(raw).as_deref(), Some("<x@y.z>"));
        assert_eq!(message_id(b"From: a\r\n\r\nMessage-ID: <b>"), None);
    }

    #[test]
    fn uid_sets_use_ranges() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }
}
