//! Redis task queue for plba (work in progress).
