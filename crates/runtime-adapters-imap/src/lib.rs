//! # runtime-adapters-imap
//!
//! An IMAP mailbox as a plba task source, and the acknowledger that completes each
//! message once its task's outcome is final. Domain-agnostic: it knows IMAP, not what the
//! mail means.
//!
//! ## Concepts
//!
//! * [`ImapSource`] watches one mailbox. One implementation, two ways to wait
//!   ([`ImapMode`]): `Poll` searches every `poll_interval`; `Idle` holds an IMAP IDLE
//!   (RFC 2177), re-issued before 29 minutes, with a client-side inactivity timeout, and
//!   falls back to polling when the server lacks IDLE. Either way the same *catch-up* runs
//!   after every wake-up and every (re)connect: IDLE notifications are only hints.
//! * **Checkpoint**: (mailbox, UIDVALIDITY, highest UID published), in memory. A catch-up
//!   searches `UID <last+1>:* UNSEEN UNKEYWORD <failed_keyword>`; at start, after a
//!   UIDVALIDITY change and every `rescan_interval` it searches all unseen mail instead,
//!   which finds messages whose tasks were lost. Re-finding a message whose task is still
//!   queued is harmless: the queue refuses a second live task with the same origin, and
//!   handlers are idempotent. Everything is by UID, never by sequence number.
//! * **Fetch**: `RFC822.SIZE` first; messages up to `max_message_bytes` are fetched with
//!   `BODY.PEEK[]` (never setting `\Seen`) in batches; larger ones are *not* downloaded:
//!   their task carries only `BODY.PEEK[HEADER]` and the header [`HEADER_OVERSIZE`] with
//!   the size, so the application can reject them.
//! * **Tasks**: route [`ROUTE`], payload = the raw message, origin = (source name,
//!   [`MessageKey`] text, e.g. `INBOX;UIDVALIDITY=1795680860;UID=42;MID=<a@b>`), headers
//!   [`HEADER_UID`], [`HEADER_UIDVALIDITY`], [`HEADER_MAILBOX`], [`HEADER_SIZE`].
//! * [`ImapAcknowledger`] works from the key alone over its own connections, so it runs in
//!   any process and never waits behind the IDLE connection: `\Seen` (+ move) on success,
//!   the failure keyword (+ move) on dead-letter; idempotent. Folder paths (the watched
//!   `mailbox` too) use `/` between levels and are written with the server's hierarchy
//!   delimiter (`LIST "" ""`), so `Orders/Processed` is `Orders.Processed` on Dovecot's
//!   Maildir++ layout; keys and the mailbox header carry the server's spelling. A `NO` the
//!   server gives for good (`[CANNOT]`, `[NONEXISTENT]`, any code not marked temporary by
//!   RFC 5530) is [`SourceError::Permanent`](runtime_contracts::SourceError): the runtime
//!   counts it as a failed attempt and dead-letters at the limit instead of retrying for
//!   ever. A message is moved before it is marked `\Seen` (its copy is flagged in the
//!   folder), so a move that fails or is cut off leaves it unseen, to be found again.
//!
//! ## Key design decision
//!
//! Reconnection lives inside [`ImapSource::run`](runtime_contracts::TaskSource::run):
//! any network or protocol error drops the connection and reconnects with exponential
//! backoff and jitter (state `reconnecting`, visible in status and health), keeping the
//! checkpoint across reconnects. `run` returns `Ok` when stop fires and an error only when
//! the queue is closed for good. Nothing is marked on the server by the source itself:
//! the mailbox changes only through the acknowledger, after the task's outcome is final.
//!
//! Mailbox names are sent as quoted strings (ASCII names; modified UTF-7 is not applied).

mod ack;
mod config;
mod conn;
mod key;
mod source;

pub use ack::{ImapAcknowledger, TAG_REJECTED};
pub use config::{ImapConfig, TlsMode};
pub use conn::{ImapError, probe};
pub use key::{MessageKey, ParseKeyError};
pub use source::{
    HEADER_MAILBOX, HEADER_OVERSIZE, HEADER_SIZE, HEADER_UID, HEADER_UIDVALIDITY, ImapMode,
    ImapSource, ROUTE,
};
