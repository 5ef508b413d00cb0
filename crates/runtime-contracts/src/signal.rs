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

/// A signal that never fires: for a [`TaskContext`](crate::TaskContext) built outside a
/// worker (tests, a handler called directly).
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverStopped;

#[async_trait]
impl StopSignal for NeverStopped {
    fn is_stopped(&self) -> bool {
        false
    }
    async fn stopped(&self) {
        std::future::pending::<()>().await
    }
}
