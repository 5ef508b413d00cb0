//! Queue stats for `status()`, gathered in the background so a stalled backend cannot
//! stall the control plane.
//!
//! Each `status()` starts one stats call per queue (unless one is still running) and waits
//! for it briefly; what it has not got by then comes from the last answer, with its age.
//! `/status` and `/metrics` thus answer within [`STATS_WAIT`] even while Redis hangs, and
//! say how old the numbers are instead of blocking for the backend's timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use runtime_contracts::{QueueStats, TaskQueue};

/// How long `status()` waits for fresh stats before it answers with the last ones.
/// A healthy backend answers in about a millisecond.
pub(crate) const STATS_WAIT: Duration = Duration::from_millis(250);
/// A stats call still running after this is abandoned; the next `status()` starts anew.
pub(crate) const STATS_TIMEOUT: Duration = Duration::from_secs(2);

type Refresh = Shared<BoxFuture<'static, ()>>;

/// The last stats of each queue and the call gathering the next.
#[derive(Default)]
pub(crate) struct QueueStatsCache {
    slots: Mutex<HashMap<String, Slot>>,
}

struct Slot {
    /// The last answer and when it came.
    last: Option<(QueueStats, Instant)>,
    /// When stats were first asked for (the age of "nothing known yet").
    since: Instant,
    /// The stats call in flight, shared by every `status()` waiting on it.
    refresh: Option<Refresh>,
}

impl QueueStatsCache {
    /// The freshest stats of `queue` available within [`STATS_WAIT`], and their age.
    /// A queue that never answered shows its name and backend with zeros, aged from the
    /// first time it was asked.
    pub(crate) async fn get(
        self: &Arc<Self>,
        queue: &Arc<dyn TaskQueue>,
    ) -> (QueueStats, Duration) {
        let refresh = self.refresh(queue);
        // Not finished in time: the call goes on in the background and updates the slot.
        let _ = tokio::time::timeout(STATS_WAIT, refresh).await;
        let slots = self.lock();
        match slots.get(queue.name()) {
            Some(Slot {
                last: Some((stats, at)),
                ..
            }) => (stats.clone(), at.elapsed()),
            slot => (
                QueueStats {
                    name: queue.name().to_owned(),
                    backend: queue.backend().to_owned(),
                    ..Default::default()
                },
                slot.map(|s| s.since.elapsed()).unwrap_or_default(),
            ),
        }
    }

    /// The stats call in flight for `queue`, started if there is none.
    fn refresh(self: &Arc<Self>, queue: &Arc<dyn TaskQueue>) -> Refresh {
        let mut slots = self.lock();
        let slot = slots
            .entry(queue.name().to_owned())
            .or_insert_with(|| Slot {
                last: None,
                since: Instant::now(),
                refresh: None,
            });
        if let Some(refresh) = &slot.refresh {
            return refresh.clone();
        }
        let cache = self.clone();
        let q = queue.clone();
        // The slot's lock is held until the refresh is recorded, so `settle` (which takes
        // it) always runs after.
        let task = tokio::spawn(async move {
            // A panicking backend must still settle the slot, or no refresh would start again.
            let call = std::panic::AssertUnwindSafe(q.stats()).catch_unwind();
            let stats = match tokio::time::timeout(STATS_TIMEOUT, call).await {
                Ok(Ok(Ok(stats))) => Some(stats),
                _ => None,
            };
            cache.settle(q.name(), stats);
        });
        let refresh = async move {
            let _ = task.await;
        }
        .boxed()
        .shared();
        slot.refresh = Some(refresh.clone());
        refresh
    }

    fn settle(&self, name: &str, stats: Option<QueueStats>) {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(name) {
            slot.refresh = None;
            match stats {
                Some(stats) => slot.last = Some((stats, Instant::now())),
                None => tracing::debug!(
                    queue = name,
                    "queue stats unavailable; status shows the last ones"
                ),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
