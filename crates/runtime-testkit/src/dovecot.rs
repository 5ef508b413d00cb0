//! A Dovecot IMAP server per test (work in progress).
