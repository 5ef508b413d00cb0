//! Stop signals: the runtime's implementation of [`StopSignal`] and OS signal handling.

use std::sync::Arc;

use async_trait::async_trait;
use runtime_contracts::StopSignal;
use tokio_util::sync::CancellationToken;

/// A cancellation token that components see as a [`StopSignal`]. Children stop when
/// their parent does, so one runtime-wide stop reaches every component.
#[derive(Clone, Debug, Default)]
pub struct StopToken(CancellationToken);

impl StopToken {
    /// A new, unfired token.
    pub fn new() -> Self {
        StopToken(CancellationToken::new())
    }

    /// A token that fires with this one (and can also fire alone).
    pub fn child(&self) -> StopToken {
        StopToken(self.0.child_token())
    }

    /// Fires the token.
    pub fn stop(&self) {
        self.0.cancel();
    }

    /// True once fired.
    pub fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes when fired.
    pub async fn stopped(&self) {
        self.0.cancelled().await
    }

    /// This token as a shareable [`StopSignal`].
    pub fn signal(&self) -> Arc<dyn StopSignal> {
        Arc::new(self.clone())
    }
}

#[async_trait]
impl StopSignal for StopToken {
    fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }
    async fn stopped(&self) {
        self.0.cancelled().await
    }
}

/// SIGINT and SIGTERM (Ctrl-C elsewhere), listened for from the moment this is made: the
/// handlers are installed here, not on a first poll, so a signal that arrives right after
/// start-up is caught rather than killing the process by its default action.
pub struct Termination {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Termination {
    /// Starts listening. Needs a Tokio runtime.
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => None,
            };
            Termination { streams }
        }
        #[cfg(not(unix))]
        {
            Termination {}
        }
    }

    /// The next signal's name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            match &mut self.streams {
                Some((int, term)) => tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                },
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                    "SIGINT"
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}

/// Completes on the first SIGINT or SIGTERM (Ctrl-C elsewhere), returning its name.
pub async fn termination() -> &'static str {
    Termination::listen().next().await
}

/// The cancellation signal of one running task, as its handler sees it
/// ([`TaskContext::cancellation`](runtime_contracts::TaskContext)). Made per task without
/// an allocation (a flag and a `Notify`, no shared token): most tasks are never
/// cancelled, and a busy pool makes millions.
#[derive(Debug, Default)]
pub(crate) struct CancelFlag {
    fired: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl CancelFlag {
    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn fire(&self) {
        self.fired.store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }
}

#[async_trait]
impl StopSignal for CancelFlag {
    fn is_stopped(&self) -> bool {
        self.is_fired()
    }
    async fn stopped(&self) {
        loop {
            // Register before looking, so a fire in between is not missed.
            let mut woke = std::pin::pin!(self.notify.notified());
            woke.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            woke.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_flag_wakes_its_waiter() {
        let flag = std::sync::Arc::new(CancelFlag::default());
        assert!(!flag.is_stopped());
        let waiter = {
            let flag = flag.clone();
            tokio::spawn(async move { flag.stopped().await })
        };
        tokio::task::yield_now().await;
        flag.fire();
        assert!(flag.is_stopped());
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(woke.is_ok_and(|r| r.is_ok()), "the waiter did not wake");
        // Fired already: returns at once.
        flag.stopped().await;
    }
}
