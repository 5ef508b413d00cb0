//! A runtime-neutral stop signal.

use async_trait::async_trait;

/// Tells a long-running component (a source, an endpoint) to stop. The core implements
/// it on its async runtime; components select on [`StopSignal::stopped`].
#[async_trait]
pub trait StopSignal: Send + Sync {
    /// True once stop was requested.
    fn is_stopped(&self) -> bool;
    /// Completes once stop is requested (at once if it already was).
    async fn stopped(&self);
}
