//! HTTP control plane for plba (axum) (work in progress).
