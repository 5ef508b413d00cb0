//! Test support for plba: conformance suites and real-server fixtures (work in progress).
