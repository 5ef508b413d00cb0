//! Integration tests of the IMAP source and acknowledger against a real Dovecot
//! (`runtime_testkit::dovecot`; needs `/usr/sbin/dovecot`, see the fixture's error).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ack;
mod batch;
mod conformance;
mod idle;
mod poll;
mod support;
mod tls;
