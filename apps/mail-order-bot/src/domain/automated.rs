//! Mail that machines send: bounces and auto-replies are not orders, and nothing automatic
//! gets an automatic answer (RFC 3834, the spec's "Loop safety").
//!
//! Two questions, asked of the header alone (so an oversized message is judged the same):
//! * [`MailSignals::automated`]: is this a delivery status notification
//!   (`multipart/report; report-type=delivery-status`) or an auto-reply
//!   (`Auto-Submitted: auto-replied`, `X-Autoreply`)? Such a message becomes an `ignored`
//!   order with reason `bounce` or `auto_reply`.
//! * [`MailSignals::no_reply`]: may a reply go to its sender? Not to anything
//!   `Auto-Submitted` other than `no`, `Precedence: bulk | junk | list`, list mail
//!   (`List-Id`), an empty return path (`<>`), `MAILER-DAEMON` or `postmaster`, nor to our
//!   own address. `Auto-Submitted: auto-generated` (a shop system that emails its orders)
//!   is still an order; it only gets no reply.

use mail_parser::{HeaderName, Message, MimeHeaders};

/// A message that is not an order at all.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Automated {
    /// A delivery status notification.
    Bounce,
    /// An automatic answer (out of office, ticket receipt).
    AutoReply,
}

/// Why a message must get no automatic reply; the words are stored as the reason of a
/// suppressed reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NoReply {
    /// `Auto-Submitted` other than `no`.
    AutoSubmitted,
    /// `Precedence: bulk`, `junk` or `list`.
    Precedence,
    /// A `List-Id` (or `List-Unsubscribe`) header: mail from a list.
    ListMail,
    /// The return path is empty (`<>`): a bounce address.
    EmptyReturnPath,
    /// From `MAILER-DAEMON` or `postmaster`.
    DaemonSender,
    /// From our own address.
    OwnAddress,
    /// No usable sender address at all.
    NoSender,
}

impl NoReply {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            NoReply::AutoSubmitted => "auto_submitted",
            NoReply::Precedence => "precedence",
            NoReply::ListMail => "list_mail",
            NoReply::EmptyReturnPath => "empty_return_path",
            NoReply::DaemonSender => "daemon_sender",
            NoReply::OwnAddress => "own_address",
            NoReply::NoSender => "no_sender",
        }
    }
}

/// The header facts both questions need, read once while the message is parsed.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct MailSignals {
    /// `Auto-Submitted`, lower-cased, without parameters (`auto-replied`).
    pub auto_submitted: Option<String>,
    /// `X-Autoreply` (or `X-Autorespond`) is present with a value other than `no`.
    pub x_autoreply: bool,
    /// `Precedence`, lower-cased.
    pub precedence: Option<String>,
    /// A `List-Id` or `List-Unsubscribe` header is present.
    pub list: bool,
    /// `Return-Path`, trimmed, without angle brackets (`Some("")` for `<>`).
    pub return_path: Option<String>,
    /// The top-level type is `multipart/report; report-type=delivery-status`.
    pub delivery_status: bool,
}

impl MailSignals {
    /// Reads the signals from a parsed header.
    pub fn read(message: &Message<'_>) -> MailSignals {
        let text = |name: &str| {
            message
                .header_raw(name)
                .map(|v| v.trim().to_ascii_lowercase())
        };
        let auto_submitted = text("Auto-Submitted")
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
        let x_autoreply = ["X-Autoreply", "X-Autorespond"]
            .iter()
            .any(|h| text(h).is_some_and(|v| v != "no"));
        let precedence = text("Precedence");
        let list = ["List-Id", "List-Unsubscribe"]
            .iter()
            .any(|h| text(h).is_some());
        let return_path = message.header_raw(HeaderName::ReturnPath).map(|v| {
            v.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
                .to_owned()
        });
        let delivery_status = message.content_type().is_some_and(|ct| {
            ct.c_type.eq_ignore_ascii_case("multipart")
                && ct
                    .c_subtype
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                && ct
                    .attribute("report-type")
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("delivery-status"))
        });
        MailSignals {
            auto_submitted,
            x_autoreply,
            precedence,
            list,
            return_path,
            delivery_status,
        }
    }

    /// A bounce or an auto-reply: not an order.
    pub fn automated(&self) -> Option<Automated> {
        if self.delivery_status {
            return Some(Automated::Bounce);
        }
        if self.auto_submitted.as_deref() == Some("auto-replied") || self.x_autoreply {
            return Some(Automated::AutoReply);
        }
        None
    }

    /// Why `sender` (lower-cased, as parsed) must get no automatic reply, if so. `own` is
    /// our own address (any case).
    pub fn no_reply(&self, sender: &str, own: &str) -> Option<NoReply> {
        if self.auto_submitted.as_deref().is_some_and(|v| v != "no") || self.x_autoreply {
            return Some(NoReply::AutoSubmitted);
        }
        if self
            .precedence
            .as_deref()
            .is_some_and(|p| matches!(p, "bulk" | "junk" | "list"))
        {
            return Some(NoReply::Precedence);
        }
        if self.list {
            return Some(NoReply::ListMail);
        }
        if self.return_path.as_deref() == Some("") {
            return Some(NoReply::EmptyReturnPath);
        }
        let sender = sender.trim();
        let Some((local, _domain)) = sender.rsplit_once('@') else {
            return Some(NoReply::NoSender);
        };
        if local.eq_ignore_ascii_case("mailer-daemon") || local.eq_ignore_ascii_case("postmaster") {
            return Some(NoReply::DaemonSender);
        }
        if !own.trim().is_empty() && sender.eq_ignore_ascii_case(own.trim()) {
            return Some(NoReply::OwnAddress);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use mail_parser::MessageParser;

    use super::*;

    const OWN: &str = "orders@shop.example";

    /// `(extra header lines, content type or "", automated, no_reply)` for a message from
    /// `sender`.
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<Automated>,
        Option<NoReply>,
    );

    fn judge(sender: &str, headers: &str, ctype: &str) -> (Option<Automated>, Option<NoReply>) {
        let ctype = if ctype.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {ctype}\r\n")
        };
        let raw = format!(
            "From: Someone <{sender}>\r\nTo: {OWN}\r\nSubject: x\r\n{headers}{ctype}\r\nA-1 x 1\r\n"
        );
        let message = MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap_or_default();
        let signals = MailSignals::read(&message);
        let sender = message
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address.as_deref())
            .unwrap_or_default()
            .to_lowercase();
        (signals.automated(), signals.no_reply(&sender, OWN))
    }

    #[test]
    fn the_loop_rules_over_many_header_sets() {
        use Automated::*;
        use NoReply::*;
        let b = "buyer@acme.example";
        let dsn = "multipart/report; report-type=delivery-status; boundary=\"b\"";
        let cases: &[Case] = &[
            // Plain customer mail: an order, and it gets a reply.
            (b, "", "", None, None),
            (b, "Auto-Submitted: no\r\n", "", None, None),
            (b, "Auto-Submitted: No\r\n", "", None, None),
            (b, "Precedence: first-class\r\n", "", None, None),
            (b, "Precedence: normal\r\n", "", None, None),
            (b, "Return-Path: <buyer@acme.example>\r\n", "", None, None),
            (b, "X-Autoreply: no\r\n", "", None, None),
            (b, "Reply-To: other@acme.example\r\n", "", None, None),
            (b, "", "text/plain; charset=utf-8", None, None),
            (b, "", "multipart/mixed; boundary=\"b\"", None, None),
            (
                b,
                "",
                "multipart/report; report-type=disposition-notification; boundary=\"b\"",
                None,
                None,
            ),
            ("TOTAL-1@acme.example", "", "", None, None),
            ("daemon@acme.example", "", "", None, None),
            ("orders@other.example", "", "", None, None),
            // Auto-replies: not orders, no reply.
            (
                b,
                "Auto-Submitted: auto-replied\r\n",
                "",
                Some(AutoReply),
                Some(AutoSubmitted),
            ),
            (
                b,
                "Auto-Submitted: Auto-Replied\r\n",
                "",
                Some(AutoReply),
                Some(AutoSubmitted),
            ),
            (
                b,
                "Auto-Submitted: auto-replied; owner-email=\"x@y\"\r\n",
                "",
                Some(AutoReply),
                Some(AutoSubmitted),
            ),
            (
                b,
                "X-Autoreply: yes\r\n",
                "",
                Some(AutoReply),
                Some(AutoSubmitted),
            ),
            (
                b,
                "X-Autoreply: YES\r\n",
                "",
                Some(AutoReply),
                Some(AutoSubmitted),
            ),
            (
                b,
                "X-Autorespond: vacation\r\n",
                "",
                Some(AutoReply),
                Some(AutoSubmitted),
            ),
            (
                b,
                "Auto-Submitted: auto-replied\r\nPrecedence: bulk\r\n",
                "",
                Some(AutoReply),
                Some(AutoSubmitted),
            ),
            // Generated, not replied: still an order, but no reply.
            (
                b,
                "Auto-Submitted: auto-generated\r\n",
                "",
                None,
                Some(AutoSubmitted),
            ),
            (
                b,
                "Auto-Submitted: auto-notified\r\n",
                "",
                None,
                Some(AutoSubmitted),
            ),
            (
                b,
                "Auto-Submitted: something-else\r\n",
                "",
                None,
                Some(AutoSubmitted),
            ),
            // Bounces: delivery status notifications.
            (
                "mailer-daemon@mx.acme.example",
                "",
                dsn,
                Some(Bounce),
                Some(DaemonSender),
            ),
            (
                "MAILER-DAEMON@mx.acme.example",
                "Return-Path: <>\r\n",
                dsn,
                Some(Bounce),
                Some(EmptyReturnPath),
            ),
            (
                "postmaster@acme.example",
                "",
                dsn,
                Some(Bounce),
                Some(DaemonSender),
            ),
            (
                b,
                "",
                "multipart/report; report-type=\"delivery-status\"; boundary=b",
                Some(Bounce),
                None,
            ),
            (
                b,
                "",
                "Multipart/Report; Report-Type=Delivery-Status; boundary=b",
                Some(Bounce),
                None,
            ),
            (
                b,
                "Return-Path: <>\r\n",
                dsn,
                Some(Bounce),
                Some(EmptyReturnPath),
            ),
            // Bulk and list mail.
            (b, "Precedence: bulk\r\n", "", None, Some(Precedence)),
            (b, "Precedence: Junk\r\n", "", None, Some(Precedence)),
            (b, "Precedence: list\r\n", "", None, Some(Precedence)),
            (
                b,
                "List-Id: Buyers <buyers.acme.example>\r\n",
                "",
                None,
                Some(ListMail),
            ),
            (
                b,
                "List-Unsubscribe: <mailto:leave@acme.example>\r\n",
                "",
                None,
                Some(ListMail),
            ),
            (
                b,
                "List-Id: <a.b>\r\nPrecedence: list\r\n",
                "",
                None,
                Some(Precedence),
            ),
            // Return paths and senders.
            (b, "Return-Path: <>\r\n", "", None, Some(EmptyReturnPath)),
            (b, "Return-Path: < >\r\n", "", None, Some(EmptyReturnPath)),
            (
                b,
                "Return-Path: <bounce+123@acme.example>\r\n",
                "",
                None,
                None,
            ),
            (
                "mailer-daemon@acme.example",
                "",
                "",
                None,
                Some(DaemonSender),
            ),
            (
                "Mailer-Daemon@acme.example",
                "",
                "",
                None,
                Some(DaemonSender),
            ),
            ("postmaster@acme.example", "", "", None, Some(DaemonSender)),
            ("POSTMASTER@acme.example", "", "", None, Some(DaemonSender)),
            ("orders@shop.example", "", "", None, Some(OwnAddress)),
            ("Orders@Shop.Example", "", "", None, Some(OwnAddress)),
            ("not-an-address", "", "", None, Some(NoSender)),
        ];
        assert!(cases.len() >= 40, "{} header sets", cases.len());
        for (sender, headers, ctype, automated, no_reply) in cases {
            assert_eq!(
                judge(sender, headers, ctype),
                (*automated, *no_reply),
                "from {sender:?} with {headers:?} {ctype:?}"
            );
        }
    }
}
