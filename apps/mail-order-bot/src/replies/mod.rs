//! Replies to customers: what a confirmation or a rejection says and how its message is
//! built. Delivery (the outbox and the SMTP sender) builds on this.
//!
//! * [`ReplyKind`] is `accepted` or `rejected`, the stored words of `replies.kind`.
//! * [`reason_text`] puts a reject reason in words a customer understands.
//! * [`templates`] renders the text (built-in or from `replies.templates_dir`).
//! * [`compose`] builds the RFC 5322 message (lettre): `In-Reply-To` and `References` name
//!   the customer's message, `Auto-Submitted: auto-replied` tells every careful mail system
//!   not to answer it, and the `Message-ID` is derived from the order's identity
//!   ([`reply_message_id`]), so a reply sent again after an unknown outcome is recognisably
//!   the same message.
//! * Whether a sender may get a reply at all is `domain::automated::MailSignals::no_reply`.

pub mod templates;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use sha2::{Digest, Sha256};

use crate::domain::{Catalog, Order, OrderStatus, RejectReason};
pub use templates::{LineView, ReplyView, TemplateError, Templates};

/// Which reply an order gets.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ReplyKind {
    /// The confirmation of an accepted order.
    Accepted,
    /// The notice of a rejected one.
    Rejected,
}

impl ReplyKind {
    /// The stored word (`replies.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Accepted => "accepted",
            ReplyKind::Rejected => "rejected",
        }
    }

    /// The reply an order gets: none for an ignored one (bounces, auto-replies).
    pub fn for_order(order: &Order) -> Option<ReplyKind> {
        match order.status {
            OrderStatus::Accepted => Some(ReplyKind::Accepted),
            OrderStatus::Rejected => Some(ReplyKind::Rejected),
            OrderStatus::Ignored => None,
        }
    }

    /// Its template file name.
    pub fn file(self) -> &'static str {
        match self {
            ReplyKind::Accepted => "accepted.txt",
            ReplyKind::Rejected => "rejected.txt",
        }
    }
}

/// A reject reason in words a customer understands.
pub fn reason_text(reason: &RejectReason) -> String {
    match reason {
        RejectReason::NoOrderLines => {
            "we found no order lines in your message (one line per product, such as \
             \"WIDGET-1 x 3\")."
                .into()
        }
        RejectReason::UnknownSku(sku) => format!("we do not know the product code {sku}."),
        RejectReason::InvalidQuantity(sku) => format!(
            "the quantity for {sku} must be a whole number from 1 to {}.",
            crate::domain::MAX_QUANTITY
        ),
        RejectReason::UnreadableMessage => "we could not read your message.".into(),
        RejectReason::TooLarge => "your message is too large for us to read.".into(),
        RejectReason::TooManyLines => format!(
            "it has more than {} order lines; please split it into several orders.",
            crate::domain::MAX_ORDER_LINES
        ),
        RejectReason::NoSender | RejectReason::InvalidSender => {
            "we could not tell which address it came from.".into()
        }
        RejectReason::PoTooLong => format!(
            "its purchase-order reference is longer than {} characters.",
            crate::domain::MAX_PO_CHARS
        ),
        RejectReason::UnreadableAttachment => {
            "we could not read the attached spreadsheet (it seems damaged).".into()
        }
        RejectReason::Bounce | RejectReason::AutoReply => {
            "it was an automatic message, not an order.".into()
        }
    }
}

/// Cents as a decimal amount (`1250` -> `12.50`).
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// What the templates see of `order`; catalog names where the catalog has them.
pub fn view(order: &Order, subject: Option<&str>, catalog: &Catalog) -> ReplyView {
    let lines = order
        .lines
        .iter()
        .map(|line| LineView {
            sku: line.sku.clone(),
            name: catalog
                .get(&line.sku)
                .map(|item| item.name.clone())
                .unwrap_or_default(),
            quantity: line.quantity,
            unit_price: money(line.unit_price_cents),
            total: money(
                line.unit_price_cents
                    .saturating_mul(i64::from(line.quantity)),
            ),
        })
        .collect();
    ReplyView {
        customer: order.customer.clone(),
        po: order.po_number.clone().unwrap_or_default(),
        subject: subject.unwrap_or_default().to_owned(),
        lines,
        total: money(order.total_cents),
        reason: order
            .reason
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        reason_text: order.reason.as_ref().map(reason_text).unwrap_or_default(),
    }
}

/// The `Message-ID` of the reply of `kind` to the message whose identity is `message_id`
/// (without angle brackets): the same inputs give the same id in every process, so a
/// second send after a crash is the same message, which receiving systems de-duplicate.
pub fn reply_message_id(message_id: &str, kind: ReplyKind, from: &Mailbox) -> String {
    let mut hash = Sha256::new();
    hash.update(b"mail-order-bot/reply/v1\n");
    hash.update(message_id.as_bytes());
    hash.update(b"\n");
    hash.update(kind.as_str().as_bytes());
    let digest = hash.finalize();
    let token: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<reply-{}-{token}@{}>", kind.as_str(), from.email.domain())
}

/// Why a reply message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The customer's address is not one a message can go to.
    #[error("the customer address {0:?} cannot be replied to")]
    BadRecipient(String),
    /// The message could not be assembled.
    #[error("cannot build the reply: {0}")]
    Build(String),
}

/// One reply, ready to send.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Its `Message-ID`, with angle brackets.
    pub message_id: String,
    /// The recipient.
    pub to: String,
    /// The whole RFC 5322 message.
    pub message: Vec<u8>,
}

/// The customer message a reply answers.
#[derive(Clone, Copy, Debug)]
pub struct Original<'a> {
    /// Its identity (the order's `message_id`).
    pub message_id: &'a str,
    /// Its subject, if any.
    pub subject: Option<&'a str>,
}

/// Builds the reply of `kind` with text `body`, from `from`, to `to`.
pub fn compose(
    kind: ReplyKind,
    from: &Mailbox,
    to: &str,
    original: Original<'_>,
    body: String,
) -> Result<Reply, ComposeError> {
    let recipient: Mailbox = to
        .parse()
        .map_err(|_| ComposeError::BadRecipient(to.to_owned()))?;
    let message_id = reply_message_id(original.message_id, kind, from);
    let subject = match original.subject.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")) => s.to_owned(),
        Some(s) => format!("Re: {s}"),
        None => match kind {
            ReplyKind::Accepted => "Your order".to_owned(),
            ReplyKind::Rejected => "Your order could not be accepted".to_owned(),
        },
    };
    let mut builder = Message::builder()
        .from(from.clone())
        .to(recipient)
        .subject(subject)
        .message_id(Some(message_id.clone()))
        .header(AutoSubmitted)
        .header(ContentType::TEXT_PLAIN)
        .date_now();
    // A content hash is our identity for a message without a Message-ID: nothing to
    // thread to.
    if !original.message_id.starts_with("sha256:") {
        let parent = format!("<{}>", original.message_id);
        builder = builder.in_reply_to(parent.clone()).references(parent);
    }
    let message = builder
        .body(body)
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Reply {
        message_id,
        to: to.to_owned(),
        message: message.formatted(),
    })
}

/// `Auto-Submitted: auto-replied` (RFC 3834): automatic answers are never answered.
#[derive(Clone, Copy, Debug)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-replied".to_owned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::{CatalogItem, OrderLine, parse_message};

    fn order(status: OrderStatus, reason: Option<RejectReason>) -> Order {
        Order {
            message_id: "m-1@acme.example".into(),
            customer: "buyer@acme.example".into(),
            po_number: Some("4711".into()),
            status,
            reason,
            lines: vec![OrderLine {
                sku: "WIDGET-1".into(),
                quantity: 3,
                unit_price_cents: 1250,
            }],
            total_cents: 3750,
        }
    }

    #[test]
    fn a_reply_threads_to_its_order_and_says_it_is_automatic() {
        let from: Mailbox = "Orders <orders@shop.example>".parse().unwrap();
        let catalog = Catalog::from_items([CatalogItem {
            sku: "WIDGET-1".into(),
            name: "Widget, blue".into(),
            price_cents: 1250,
        }])
        .unwrap();
        let order = order(OrderStatus::Accepted, None);
        let text = Templates::builtin()
            .render(
                ReplyKind::Accepted,
                &view(&order, Some("Order PO: 4711"), &catalog),
            )
            .unwrap();
        let original = Original {
            message_id: &order.message_id,
            subject: Some("Order PO: 4711"),
        };
        let reply = compose(ReplyKind::Accepted, &from, &order.customer, original, text).unwrap();
        // Read it back as the customer's mail program would.
        let parsed = mail_parser::MessageParser::default()
            .parse(&reply.message)
            .unwrap();
        assert_eq!(parsed.in_reply_to().as_text(), Some("m-1@acme.example"));
        assert_eq!(parsed.references().as_text(), Some("m-1@acme.example"));
        assert_eq!(parsed.subject(), Some("Re: Order PO: 4711"));
        assert_eq!(
            parsed.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        let body = parsed.body_text(0).unwrap();
        assert!(
            body.contains("3 x WIDGET-1 (Widget, blue) at 12.50: 37.50"),
            "{body}"
        );
        // Our own reply, read back by our own parser, is an auto-reply: never an order.
        let ours = parse_message(&reply.message, false);
        assert!(ours.signals.automated().is_some());
        // The same order gives the same Message-ID; the other kind another one.
        let again = reply_message_id(&order.message_id, ReplyKind::Accepted, &from);
        assert_eq!(reply.message_id, again);
        assert_eq!(
            parsed.message_id().map(|id| format!("<{id}>")),
            Some(again.clone())
        );
        assert_ne!(
            reply_message_id(&order.message_id, ReplyKind::Rejected, &from),
            again
        );
    }

    #[test]
    fn reasons_are_in_words_and_ignored_orders_get_no_reply() {
        assert_eq!(
            reason_text(&RejectReason::UnknownSku("ZZ-9".into())),
            "we do not know the product code ZZ-9."
        );
        assert_eq!(
            ReplyKind::for_order(&order(OrderStatus::Ignored, Some(RejectReason::Bounce))),
            None
        );
        assert_eq!(
            ReplyKind::for_order(&order(OrderStatus::Rejected, Some(RejectReason::TooLarge))),
            Some(ReplyKind::Rejected)
        );
        assert_eq!(money(3750), "37.50");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-120), "-1.20");
    }

    #[test]
    fn a_hostile_subject_or_address_cannot_inject_headers() {
        let from: Mailbox = "orders@shop.example".parse().unwrap();
        let original = Original {
            message_id: "sha256:abc",
            subject: Some("hi\r\nBcc: victim@example.com"),
        };
        let reply = compose(
            ReplyKind::Rejected,
            &from,
            "buyer@acme.example",
            original,
            "x".into(),
        )
        .unwrap();
        let parsed = mail_parser::MessageParser::default()
            .parse(&reply.message)
            .unwrap();
        assert!(parsed.bcc().is_none());
        assert!(parsed.in_reply_to().is_empty(), "no parent to thread to");
        assert!(matches!(
            compose(
                ReplyKind::Rejected,
                &from,
                "x@y\r\nBcc: v@e",
                original,
                "x".into()
            ),
            Err(ComposeError::BadRecipient(_))
        ));
    }
}
