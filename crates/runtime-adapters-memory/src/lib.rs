//! In-memory bounded task queue for plba (work in progress).
