//! Reading one RFC 5322 message: who sent it, its identity, its body text and its CSV and
//! XLSX attachments.
//!
//! `mail-parser` does the MIME work (transfer encodings, charsets, encoded words). Two
//! things are ours: the choice of body text (plain parts win; HTML is converted only when
//! there is no plain part) and recovery of damaged parts, which `mail-parser` hands back
//! undecoded: a broken base64 part is decoded up to the first bad character, a
//! quoted-printable part leniently, so whatever was readable still counts.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

use super::MAX_ORDER_LINES;
use super::automated::MailSignals;
use super::html::html_to_text;
use super::lines::{LineItem, parse_csv_order};
use super::xlsx::parse_xlsx_order;

/// Message-IDs longer than this are replaced by their hash: a unique index on a huge
/// text value fails in PostgreSQL, and no real Message-ID is this long.
const MAX_MESSAGE_ID_LEN: usize = 255;

/// What the order logic needs from a message.
#[derive(Clone, PartialEq, Debug)]
pub struct ParsedMessage {
    /// The message identity: its `Message-ID` (without angle brackets), or
    /// `sha256:<hex>` of sender, date, subject and body when it has none.
    pub message_id: String,
    /// The `From` address, lower-cased (empty when the message has none).
    pub customer: String,
    /// The purchase-order reference from the subject (`PO: <ref>` or `PO#<ref>`).
    pub po_number: Option<String>,
    /// The decoded subject.
    pub subject: Option<String>,
    /// The readable content; `None` when no text could be decoded at all (or only the
    /// header was read).
    pub content: Option<MailContent>,
    /// What the header says about who (or what) sent it: bounces, auto-replies, lists.
    pub signals: MailSignals,
}

/// The readable content of a message.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct MailContent {
    /// The body text: the plain parts, or the text of the HTML parts when there is no
    /// plain part, one part after the other.
    pub text: String,
    /// CSV and XLSX attachments, read into order lines.
    pub sheets: Vec<SheetAttachment>,
}

/// One CSV or XLSX attachment. Its rows are read while the message is parsed and its
/// bytes are not kept: holding a decoded copy of a big attachment only to read it later
/// cost as much memory again as the attachment.
#[derive(Clone, PartialEq, Debug)]
pub struct SheetAttachment {
    /// Its file name, if it has one.
    pub name: Option<String>,
    /// Its order lines, at most `MAX_ORDER_LINES + 1` (enough to tell there are too
    /// many); `None` when its header names no `sku` and `qty` columns.
    pub lines: Option<Vec<LineItem>>,
    /// The attachment could not be read to its end (a damaged spreadsheet); `lines` holds
    /// what came before the damage.
    pub damaged: bool,
}

/// Parses a raw message. With `headers_only`, the body is neither read nor hashed (an
/// oversized message keeps the same identity whether the source sent all of it or only
/// its header).
pub fn parse_message(raw: &[u8], headers_only: bool) -> ParsedMessage {
    let parser = MessageParser::default();
    // mail-parser is fuzzed, but a panic on one hostile message must not take a worker
    // down with it: it becomes an unreadable message instead.
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let message = if headers_only {
            parser.parse_headers(raw)?
        } else {
            parser.parse(raw)?
        };
        Some(read(raw, &message, headers_only))
    }));
    match parsed {
        Ok(Some(parsed)) => parsed,
        Ok(None) | Err(_) => ParsedMessage {
            message_id: content_hash("", "", "", if headers_only { b"" } else { raw }),
            customer: String::new(),
            po_number: None,
            subject: None,
            content: None,
            signals: MailSignals::default(),
        },
    }
}

fn read(raw: &[u8], message: &Message<'_>, headers_only: bool) -> ParsedMessage {
    let customer = message
        .from()
        .or_else(|| message.sender())
        .and_then(|a| a.first())
        .and_then(|a| a.address.as_deref())
        .map(|a| a.trim().to_lowercase())
        .unwrap_or_default();
    let subject = message.subject().map(str::to_owned);
    let po_number = subject.as_deref().and_then(po_reference);

    let message_id = message_id(message).unwrap_or_else(|| {
        let date = message.header_raw(HeaderName::Date).unwrap_or_default();
        let subject = message.header_raw(HeaderName::Subject).unwrap_or_default();
        let body = if headers_only {
            &b""[..]
        } else {
            body_bytes(raw)
        };
        content_hash(&customer, date, subject, body)
    });

    let content = if headers_only {
        None
    } else {
        extract_content(raw, message)
    };
    ParsedMessage {
        message_id,
        customer,
        po_number,
        subject,
        content,
        signals: MailSignals::read(message),
    }
}

fn message_id(message: &Message<'_>) -> Option<String> {
    let id = message
        .message_id()
        .map(str::to_owned)
        .or_else(|| {
            // A malformed Message-ID (no angle brackets, stray spaces) is still an identity.
            message
                .header_raw(HeaderName::MessageId)
                .map(|raw| collapse_ws(raw).trim_matches(['<', '>', ' ']).to_owned())
        })
        .filter(|id| !id.trim().is_empty())?;
    if id.len() > MAX_MESSAGE_ID_LEN {
        let mut hash = Sha256::new();
        hash.update(id.as_bytes());
        return Some(format!("sha256:{}", hex(&hash.finalize())));
    }
    Some(id)
}

/// `sha256:<hex>` over a versioned, normalised serialisation: header values with runs of
/// whitespace collapsed (folding differs between servers) and the body with CRLF turned
/// into LF and trailing whitespace cut (IMAP serves CRLF, Maildir stores LF). The same
/// message hashes the same in every process and every version of this program.
fn content_hash(sender: &str, date: &str, subject: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"mail-order-bot/v1\n");
    for field in [sender, date, subject] {
        hash.update(collapse_ws(field).as_bytes());
        hash.update(b"\n");
    }
    // Trimming the raw body first gives the same bytes as trimming after the CR-LF
    // rewrite (CR is whitespace too); hashing the runs between CR-LFs then needs no copy
    // of a body that may be 25 MiB.
    let end = body
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let body = &body[..end];
    let mut run_start = 0;
    for (i, pair) in body.windows(2).enumerate() {
        if pair == b"\r\n" {
            hash.update(&body[run_start..i]);
            run_start = i + 1;
        }
    }
    hash.update(&body[run_start..]);
    format!("sha256:{}", hex(&hash.finalize()))
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// The raw body: everything after the first empty line (all of it when there is no
/// empty line, so that junk without a header still hashes by its content).
fn body_bytes(raw: &[u8]) -> &[u8] {
    let mut line_start = 0;
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\n' {
            let line = &raw[line_start..i];
            if line.is_empty() || line == b"\r" {
                return &raw[i + 1..];
            }
            line_start = i + 1;
        }
    }
    raw
}

/// The purchase-order reference in a subject: `PO: <ref>` or `PO#<ref>` (`PO` as a word,
/// any case, spaces allowed around the `:` or `#`); the reference is the token of letters,
/// digits and `-` after it.
pub fn po_reference(subject: &str) -> Option<String> {
    let chars: Vec<char> = subject.chars().collect();
    let mut i = 0;
    while i + 1 < chars.len() {
        let is_po = chars[i].eq_ignore_ascii_case(&'p') && chars[i + 1].eq_ignore_ascii_case(&'o');
        let word_start = i == 0 || !chars[i - 1].is_alphanumeric();
        if is_po && word_start {
            let mut j = i + 2;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            if j < chars.len() && (chars[j] == ':' || chars[j] == '#') {
                j += 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let start = j;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '-') {
                    j += 1;
                }
                let token: String = chars[start..j].iter().collect();
                let token = token.trim_matches('-');
                if !token.is_empty() {
                    return Some(token.to_owned());
                }
            }
        }
        i += 1;
    }
    None
}

/// The body text and CSV attachments, or `None` when nothing could be decoded.
fn extract_content(raw: &[u8], message: &Message<'_>) -> Option<MailContent> {
    // Parts are appended to one string each instead of collected and joined: a join
    // copies the whole body once more.
    let mut plain: Option<String> = None;
    let mut html: Option<String> = None;
    let mut sheets: Vec<SheetAttachment> = Vec::new();
    let mut readable = false;

    // Body candidates in document order: what mail-parser chose as text and HTML bodies,
    // plus damaged text parts it gave up on (it files those as attachments).
    let mut candidates: Vec<usize> = message
        .text_body
        .iter()
        .chain(message.html_body.iter())
        .map(|&id| id as usize)
        .collect();
    for (id, part) in message.parts.iter().enumerate() {
        if part.is_encoding_problem && is_damaged_body(part) {
            candidates.push(id);
        }
    }
    candidates.sort_unstable();
    candidates.dedup();

    for (id, part) in message.parts.iter().enumerate() {
        if is_csv(part) {
            if let Some(text) = csv_text(raw, part) {
                readable = true;
                sheets.push(SheetAttachment {
                    name: part.attachment_name().map(str::to_owned),
                    lines: parse_csv_order(&text, MAX_ORDER_LINES + 1),
                    damaged: false,
                });
            }
            continue;
        }
        if is_xlsx(part) {
            // A damaged transfer encoding leaves no trustworthy bytes to unzip.
            let read = if part.is_encoding_problem {
                Default::default()
            } else {
                parse_xlsx_order(part.contents(), MAX_ORDER_LINES + 1)
            };
            readable = true;
            sheets.push(SheetAttachment {
                name: part.attachment_name().map(str::to_owned),
                damaged: read.damaged || part.is_encoding_problem,
                lines: read.lines,
            });
            continue;
        }
        if candidates.binary_search(&id).is_err() {
            continue;
        }
        if part.is_encoding_problem {
            if let Some((text, is_html)) = recover_text(raw, part) {
                readable = true;
                if is_html {
                    append_part(&mut html, &html_to_text(&text));
                } else {
                    append_part(&mut plain, &text);
                }
            }
            continue;
        }
        match &part.body {
            PartType::Text(text) => {
                readable = true;
                append_part(&mut plain, text);
            }
            PartType::Html(text) => {
                readable = true;
                append_part(&mut html, &html_to_text(text));
            }
            _ => {}
        }
    }

    if !readable {
        return None;
    }
    Some(MailContent {
        text: plain.or(html).unwrap_or_default(),
        sheets,
    })
}

/// Appends one body part, parts separated by a newline.
fn append_part(body: &mut Option<String>, part: &str) {
    match body {
        Some(body) => {
            body.push('\n');
            body.push_str(part);
        }
        None => *body = Some(part.to_owned()),
    }
}

fn content_type_is(part: &MessagePart<'_>, ctype: &str, subtype: &str) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.c_type.eq_ignore_ascii_case(ctype)
            && ct
                .c_subtype
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
    })
}

/// `text/csv` (and its aliases), or any type with a `*.csv` file name.
fn is_csv(part: &MessagePart<'_>) -> bool {
    if matches!(part.body, PartType::Multipart(_) | PartType::Message(_)) {
        return false;
    }
    content_type_is(part, "text", "csv")
        || content_type_is(part, "application", "csv")
        || content_type_is(part, "text", "comma-separated-values")
        || part
            .attachment_name()
            .is_some_and(|n| n.trim().to_ascii_lowercase().ends_with(".csv"))
}

/// The OOXML spreadsheet type, or any type with a `*.xlsx` file name.
fn is_xlsx(part: &MessagePart<'_>) -> bool {
    if matches!(part.body, PartType::Multipart(_) | PartType::Message(_)) {
        return false;
    }
    content_type_is(
        part,
        "application",
        "vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ) || part
        .attachment_name()
        .is_some_and(|n| n.trim().to_ascii_lowercase().ends_with(".xlsx"))
}

/// A damaged part that was meant as body text: text/plain, text/html or no type, and not
/// declared an attachment.
fn is_damaged_body(part: &MessagePart<'_>) -> bool {
    let declared_attachment = part
        .content_disposition()
        .is_some_and(|cd| cd.c_type.eq_ignore_ascii_case("attachment"));
    let texty = part.content_type().is_none()
        || content_type_is(part, "text", "plain")
        || content_type_is(part, "text", "html");
    texty && !declared_attachment && !matches!(part.body, PartType::Multipart(_))
}

/// Re-decodes a damaged part from its raw bytes: transfer encoding leniently, then the
/// charset. Returns the text and whether it is HTML; `None` when nothing was readable.
fn recover_text(raw: &[u8], part: &MessagePart<'_>) -> Option<(String, bool)> {
    let start = part.offset_body as usize;
    let end = (part.offset_end as usize).min(raw.len());
    let bytes = raw.get(start..end.max(start))?;
    let decoded: Cow<'_, [u8]> = match part.content_transfer_encoding() {
        Some(cte) if cte.eq_ignore_ascii_case("base64") => Cow::Owned(lenient_base64(bytes)),
        Some(cte) if cte.eq_ignore_ascii_case("quoted-printable") => {
            Cow::Owned(lenient_quoted_printable(bytes))
        }
        _ => Cow::Borrowed(bytes),
    };
    let charset = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::to_owned);
    let text = decode_charset(&decoded, charset.as_deref()).into_owned();
    if text.trim().is_empty() {
        return None;
    }
    Some((text, content_type_is(part, "text", "html")))
}

/// The text of a CSV part, borrowed from the parsed message where it can be.
fn csv_text<'p>(raw: &[u8], part: &'p MessagePart<'_>) -> Option<Cow<'p, str>> {
    if part.is_encoding_problem {
        return recover_text(raw, part).map(|(text, _)| Cow::Owned(text));
    }
    match &part.body {
        PartType::Text(text) | PartType::Html(text) => {
            Some(Cow::Borrowed(text.trim_start_matches('\u{feff}')))
        }
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
            let charset = part
                .content_type()
                .and_then(|ct| ct.attribute("charset"))
                .map(str::to_owned);
            Some(decode_charset(bytes, charset.as_deref()))
        }
        _ => None,
    }
}

/// Bytes to text: a BOM wins, then the declared charset, then UTF-8, then Windows-1252
/// (what spreadsheet exports without a declared charset usually are). Valid UTF-8
/// declared as UTF-8 (or not declared) is borrowed, not copied.
fn decode_charset<'b>(bytes: &'b [u8], charset: Option<&str>) -> Cow<'b, str> {
    let (bytes, bom_charset): (&[u8], Option<&str>) = match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => (rest, Some("utf-8")),
        [0xFF, 0xFE, ..] => (bytes, Some("utf-16le")),
        [0xFE, 0xFF, ..] => (bytes, Some("utf-16be")),
        _ => (bytes, None),
    };
    let charset = bom_charset.or(charset);
    let utf8_or_none =
        charset.is_none_or(|c| c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8"));
    if utf8_or_none && let Ok(text) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    if let Some(decoder) = charset.and_then(|c| charset_decoder(c.as_bytes())) {
        let mut text = decoder(bytes);
        // In place: `trim_start_matches(..).to_owned()` copied the whole text once more.
        if text.starts_with('\u{feff}') {
            text.replace_range(..'\u{feff}'.len_utf8(), "");
        }
        return Cow::Owned(text);
    }
    match charset_decoder(b"windows-1252") {
        Some(decoder) => Cow::Owned(decoder(bytes)),
        None => String::from_utf8_lossy(bytes),
    }
}

/// Base64 decoded up to the first character outside the alphabet (whitespace is
/// skipped): "as far as it goes".
fn lenient_base64(input: &[u8]) -> Vec<u8> {
    fn value(b: u8) -> Option<u32> {
        match b {
            b'A'..=b'Z' => Some((b - b'A') as u32),
            b'a'..=b'z' => Some((b - b'a' + 26) as u32),
            b'0'..=b'9' => Some((b - b'0' + 52) as u32),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut n = 0;
    for &b in input {
        if b.is_ascii_whitespace() {
            continue;
        }
        let Some(v) = value(b) else { break };
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

/// Quoted-printable where a malformed escape stays literal.
fn lenient_quoted_printable(input: &[u8]) -> Vec<u8> {
    fn hex_value(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        match (input.get(i + 1), input.get(i + 2)) {
            (Some(b'\n'), _) => i += 2,
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(&h), Some(&l)) => match (hex_value(h), hex_value(l)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn po_reference_forms() {
        assert_eq!(
            po_reference("Order PO: 4711-A please"),
            Some("4711-A".into())
        );
        assert_eq!(po_reference("PO#88"), Some("88".into()));
        assert_eq!(po_reference("po # ab-12, thanks"), Some("ab-12".into()));
        assert_eq!(po_reference("Expo: 2024"), None);
        assert_eq!(po_reference("PO: "), None);
        assert_eq!(po_reference("Order"), None);
    }

    #[test]
    fn lenient_decoders() {
        assert_eq!(lenient_base64(b"SGVsbG8g\r\nV29y!!bGQ="), b"Hello Wor");
        assert_eq!(lenient_base64(b"SGk="), b"Hi");
        assert_eq!(lenient_quoted_printable(b"a=3Db=\r\nc=ZZ"), b"a=bc=ZZ");
    }

    #[test]
    fn body_starts_after_the_first_empty_line() {
        assert_eq!(body_bytes(b"A: b\r\n\r\nbody\r\n"), b"body\r\n");
        assert_eq!(body_bytes(b"A: b\n\nbody"), b"body");
        assert_eq!(body_bytes(b"junk"), b"junk");
    }

    #[test]
    fn hash_ignores_line_endings_and_folding() {
        let a = content_hash("a@b", "Mon, 1 Jan 2024", "Hi  there", b"x\r\ny\r\n\r\n");
        let b = content_hash("a@b", "Mon,  1 Jan 2024", "Hi there", b"x\ny\n");
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        // Pinned: the identity must never change between versions (computed independently).
        assert_eq!(
            a,
            "sha256:e77917bb0eabf8332ec1f1e25af9d886d8b6b59f39c39f89780ff6fb8429df5d"
        );
    }
}
