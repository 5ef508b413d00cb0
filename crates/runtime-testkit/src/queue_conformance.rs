//! The queue conformance suite (work in progress).
