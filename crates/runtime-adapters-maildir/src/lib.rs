//! Maildir task source for plba (work in progress).
