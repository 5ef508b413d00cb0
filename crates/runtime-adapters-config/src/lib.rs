//! File and database configuration loaders for plba (work in progress).
