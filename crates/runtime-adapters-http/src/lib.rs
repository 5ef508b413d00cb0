//! # runtime-adapters-http
//!
//! The runtime's control plane over HTTP (axum). This is the only crate that knows HTTP:
//! it serves any [`ControlPlane`](runtime_contracts::ControlPlane) (the core's
//! `ControlPlaneService`) and knows nothing of the core itself.
//!
//! * [`HttpConfig`] — address (127.0.0.1:8080 by default), admin token, body limit,
//!   request timeout; the application maps its `[control]` section into it.
//! * [`HttpControlPlane`] — a [`ControlEndpoint`](runtime_contracts::ControlEndpoint).
//!   [`HttpControlPlane::bind`] checks the config and binds at once, so a taken port or
//!   an unsafe setting fails start-up before anything runs; `serve` answers until the
//!   runtime's stop signal (the runtime stops it last, so health keeps answering — and
//!   readiness shows 503 — while the runtime drains).
//!
//! Routes: `GET /health/live`, `/health/ready`, `/health`, `/status`, `/metrics`
//! (Prometheus text, documented in `docs/metrics.md`), and under `/admin` (bearer token):
//! pause/resume a source, reload config, list/retry/delete/purge dead letters, resize a
//! pool, shut down.
//!
//! The key design decision: every answer that is not a success has one JSON shape,
//! `{"error": {"code": N, "message": "..."}}`, enforced by an outer middleware that also
//! rewrites axum's own plain-text rejections (unknown path, wrong method, bad JSON, body
//! too large), so clients never parse two error formats and bad input never becomes a
//! 500. Admin tokens are compared through their SHA-256 digests in constant time and
//! audit lines name the caller by a digest prefix, never by the token.

mod auth;
mod config;
mod error;
mod fds;
mod metrics;
mod process;
mod routes;
mod server;

pub use config::{ControlSettings, HttpConfig};
pub use server::HttpControlPlane;
