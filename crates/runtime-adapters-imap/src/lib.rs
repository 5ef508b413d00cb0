//! IMAP polling and IDLE task sources for plba (work in progress).
