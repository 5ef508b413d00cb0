//! # mail-order-bot
//!
//! Turns order emails into orders. A source (IMAP or Maildir) publishes each message as a
//! task; a worker runs [`handler::OrderHandler`], which parses the message off the async
//! threads ([`domain`]), decides the outcome, and saves it idempotently ([`store`]).
//!
//! * [`domain`]: pure and synchronous. Raw RFC 5322 bytes in, an [`domain::Order`] out
//!   (accepted with priced lines, or rejected with the spec's reason). No I/O.
//! * [`store`]: the `orders` / `order_lines` tables on SQLite or PostgreSQL (picked from the
//!   URL), migrations at start-up, `save` idempotent by message identity in one
//!   transaction, and errors that tell an outage from a failure.
//! * [`handler`]: the runtime's `TaskHandler`. An outage of the store is
//!   `TaskError::Unavailable` (no attempt used); a rejected order is a success tagged
//!   `rejected` so the mailbox files it apart.
//!
//! Key decision: the message identity (Message-ID, else a versioned content hash) is the
//! idempotency key, so any redelivery — after a crash, a lost lease, a failed mailbox
//! update — re-runs the handler safely and never orders twice.

pub mod domain;
pub mod handler;
pub mod store;
