//! The order domain: pure, synchronous and fast. It turns the raw bytes of one email into
//! an [`Order`] (accepted with priced lines, or rejected with a reason) and knows nothing
//! about queues, mailboxes or databases.
//!
//! * [`mime`] reads the message with `mail-parser`: customer, purchase-order reference,
//!   identity (Message-ID or a content hash), body text (plain, or derived from HTML) and
//!   CSV and XLSX attachments ([`xlsx`]: calamine, bounded). Damaged MIME is read as far
//!   as it goes.
//! * [`automated`] tells bounces and auto-replies (not orders: `ignored`) and the senders
//!   that must get no automatic reply (RFC 3834 loop rules).
//! * [`lines`] is the order-line grammar (`SKU x QTY`, `QTY x SKU`, `SKU: QTY`, ...) and the
//!   CSV reader. Both stop one line past [`MAX_ORDER_LINES`] and read CSV row by row, so
//!   a message's parsed form stays small whatever its size.
//! * [`catalog`] says which SKUs exist and what they cost.
//! * [`order`] decides the outcome exactly as the spec's table says.
//!
//! [`process_message`] runs all of it. It never panics on input: the MIME parser runs under
//! `catch_unwind` as a last line of defence, and a message it cannot read at all becomes a
//! rejected order (`unreadable_message`), not an error. Callers run it on a blocking thread.

pub mod automated;
pub mod catalog;
pub mod html;
pub mod lines;
pub mod mime;
pub mod order;
pub mod xlsx;

use std::sync::atomic::AtomicBool;

pub use catalog::{Catalog, CatalogError, CatalogItem};
pub use lines::{LineItem, parse_csv_order, parse_order_lines};
pub use mime::{MailContent, ParsedMessage, parse_message};
pub use order::{Order, OrderLine, OrderStatus, RejectReason, evaluate};

/// The task header an upstream source sets when it did not fetch a message because it is
/// larger than its limit (the payload then holds only the message header), and the default
/// of that limit (25 MiB): both the contracts', shared with the sources.
pub use runtime_contracts::{DEFAULT_MAX_MESSAGE_BYTES, OVERSIZE_HEADER};

/// Largest quantity an order line may have.
pub const MAX_QUANTITY: u64 = 10_000;

/// Most order lines (body lines plus CSV rows) one message may have; more is rejected as
/// `too_many_lines`. A stranger controls the count, so it bounds the work per message.
pub const MAX_ORDER_LINES: usize = 10_000;

/// Longest customer address, in characters (64 local + `@` + 255 domain, RFC 5321's
/// parts); a longer `From` is rejected as `invalid_sender` rather than stored.
pub const MAX_CUSTOMER_CHARS: usize = 320;

/// Longest purchase-order reference, in characters; a longer one is rejected as
/// `po_too_long` rather than stored (no real PO number comes close).
pub const MAX_PO_CHARS: usize = 128;

/// Turns one raw message into an order.
///
/// `reported_size` is the size the source saw when it sent only the header (the
/// [`OVERSIZE_HEADER`] task header); such a message, or one whose raw bytes exceed
/// `max_message_bytes`, is rejected as `too_large` from its header alone.
pub fn process_message(
    raw: &[u8],
    catalog: &Catalog,
    max_message_bytes: u64,
    reported_size: Option<u64>,
) -> Order {
    match read_within_limit(raw, max_message_bytes, reported_size) {
        Ok(parsed) => evaluate(&parsed, catalog),
        Err(rejected) => *rejected,
    }
}

/// [`process_message`] that gives up (returns `None`) soon after `cancel` is set, so a
/// task timeout stops the work on the blocking thread instead of leaving it to burn a core.
pub fn process_message_until(
    raw: &[u8],
    catalog: &Catalog,
    max_message_bytes: u64,
    reported_size: Option<u64>,
    cancel: &AtomicBool,
) -> Option<Order> {
    match read_within_limit(raw, max_message_bytes, reported_size) {
        Ok(parsed) => order::evaluate_until(&parsed, catalog, cancel),
        Err(rejected) => Some(*rejected),
    }
}

/// Parses the message, or rejects it as `too_large` from its header alone.
fn read_within_limit(
    raw: &[u8],
    max_message_bytes: u64,
    reported_size: Option<u64>,
) -> Result<ParsedMessage, Box<Order>> {
    let oversized = reported_size.is_some() || raw.len() as u64 > max_message_bytes;
    let parsed = parse_message(raw, oversized);
    if oversized {
        // A huge bounce is still a bounce: rejecting it would invite a reply to a robot.
        let order = Order::ignored(&parsed)
            .unwrap_or_else(|| Order::rejected(&parsed, RejectReason::TooLarge));
        return Err(Box::new(order));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::from_items([CatalogItem {
            sku: "A-1".into(),
            name: "a".into(),
            price_cents: 100,
        }])
        .unwrap_or_default()
    }

    fn order(raw: &[u8]) -> Order {
        process_message(raw, &catalog(), DEFAULT_MAX_MESSAGE_BYTES, None)
    }

    fn reason(raw: &[u8]) -> Option<String> {
        order(raw).reason.map(|r| r.to_string())
    }

    #[test]
    fn a_message_without_a_sender_is_rejected_as_no_sender() {
        // No header at all: the whole text is the body.
        let headerless = order(b"\nA-1 x 2\n");
        assert_eq!(headerless.reason, Some(RejectReason::NoSender));
        assert_eq!(headerless.customer, "");
        assert_eq!(
            reason(b"Subject: hi\r\nMessage-ID: <a@b>\r\n\r\nA-1 x 2\r\n").as_deref(),
            Some("no_sender")
        );
        assert_eq!(
            reason(b"From: Buyer <buyer@x.example>\r\n\r\nA-1 x 2\r\n"),
            None
        );
    }

    #[test]
    fn an_oversized_customer_or_po_is_rejected_and_not_stored() {
        let long_po = "P".repeat(MAX_PO_CHARS + 1);
        let raw = format!("From: b@x.example\r\nSubject: PO: {long_po}\r\n\r\nA-1 x 2\r\n");
        let rejected = order(raw.as_bytes());
        assert_eq!(rejected.reason, Some(RejectReason::PoTooLong));
        assert_eq!(rejected.po_number, None);
        let at_cap = "P".repeat(MAX_PO_CHARS);
        let raw = format!("From: b@x.example\r\nSubject: PO: {at_cap}\r\n\r\nA-1 x 2\r\n");
        assert_eq!(order(raw.as_bytes()).po_number, Some(at_cap));

        let long_local = "c".repeat(MAX_CUSTOMER_CHARS);
        let raw = format!("From: <{long_local}@x.example>\r\n\r\nA-1 x 2\r\n");
        let rejected = order(raw.as_bytes());
        assert_eq!(rejected.reason, Some(RejectReason::InvalidSender));
        assert_eq!(rejected.customer, "");
    }

    #[test]
    fn an_undecodable_sender_is_rejected_never_stored_as_replacement_characters() {
        let raw = b"From: M\xfcller <m\xfcller@x.example>\r\n\r\nA-1 x 2\r\n";
        let rejected = order(raw);
        assert_eq!(rejected.reason, Some(RejectReason::InvalidSender));
        assert!(!rejected.customer.contains('\u{fffd}'));
        // An undecodable display name does not matter; the address is clean.
        let raw = b"From: M\xfcller <mueller@x.example>\r\n\r\nA-1 x 2\r\n";
        let accepted = order(raw);
        assert_eq!(accepted.reason, None);
        assert_eq!(accepted.customer, "mueller@x.example");
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    /// A message with a CSV attachment of `rows` order rows, 8-bit and base64.
    fn csv_mail(rows: usize, base64: bool) -> Vec<u8> {
        let mut csv = String::from("sku,qty\r\n");
        for i in 0..rows {
            csv.push_str(&format!("SKU-{i:07},1\r\n"));
        }
        let (cte, body) = if base64 {
            ("base64", lenient_encode(csv.as_bytes()))
        } else {
            ("8bit", csv)
        };
        format!(
            "From: b@x.example\r\nMessage-ID: <big@x>\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
             Content-Type: text/plain\r\n\r\nattached\r\n--b\r\n\
             Content-Type: text/csv\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    /// MIME base64: lines of 76 characters.
    fn lenient_encode(input: &[u8]) -> String {
        use base64::Engine as _;
        input
            .chunks(57)
            .map(|line| base64::engine::general_purpose::STANDARD.encode(line) + "\r\n")
            .collect()
    }

    #[test]
    fn a_huge_csv_attachment_keeps_one_line_past_the_cap_not_every_row() {
        // Every row used to be materialised (strings per cell, then a line item per row):
        // a 13.8 MB CSV mail peaked at 488 MB. Now the parsed form is capped.
        for base64 in [false, true] {
            let raw = csv_mail(5 * MAX_ORDER_LINES, base64);
            let parsed = parse_message(&raw, false);
            let content = parsed.content.unwrap_or_default();
            assert_eq!(content.sheets.len(), 1, "base64 {base64}");
            let lines = content.sheets[0].lines.as_ref().map_or(0, Vec::len);
            assert_eq!(lines, MAX_ORDER_LINES + 1, "base64 {base64}");
            let catalog = Catalog::default();
            assert_eq!(
                process_message(&raw, &catalog, u64::MAX, None).reason,
                Some(RejectReason::TooManyLines)
            );
        }
        // Under the cap every row counts.
        let parsed = parse_message(&csv_mail(3, false), false);
        let content = parsed.content.unwrap_or_default();
        assert_eq!(content.sheets[0].lines.as_ref().map(Vec::len), Some(3));
    }

    #[test]
    fn a_huge_body_keeps_one_line_past_the_cap() {
        let body: String = (0..3 * MAX_ORDER_LINES)
            .map(|i| format!("SKU-{i:07} x 1\n"))
            .collect();
        assert_eq!(
            parse_order_lines(&body, MAX_ORDER_LINES + 1).len(),
            MAX_ORDER_LINES + 1
        );
    }
}
