//! [`MemoryLimiter`]: key slots and rates within one process, for pools on the memory
//! queue (which is itself one process's).
//!
//! One mutex over two maps. A key's entry lives only while it has a slot held (expired
//! slots are dropped whenever the key is touched), a rate bucket only while its schedule
//! is ahead of now, so a stranger's endless supply of keys cannot grow the maps past the
//! slots and bookings actually live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_contracts::{KeySlot, LimitError, Rate, Reservation, TaskLimiter};

#[derive(Default)]
struct State {
    /// (scope, key) -> (holder, expires at).
    slots: HashMap<(String, String), Vec<(u64, Instant)>>,
    /// bucket -> the next free start.
    rates: HashMap<String, Instant>,
    /// Bookings since the rate map was last swept of buckets in the past.
    since_sweep: usize,
}

/// Key slots and rates for one process.
#[derive(Default)]
pub struct MemoryLimiter {
    state: Mutex<State>,
    next_holder: AtomicU64,
}

impl std::fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter").finish_non_exhaustive()
    }
}

impl MemoryLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The maps stay consistent between statements; a panic elsewhere cannot tear them.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn holder_number(slot: &KeySlot) -> Option<u64> {
    slot.holder.parse().ok()
}

#[async_trait]
impl TaskLimiter for MemoryLimiter {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn in_process(&self) -> bool {
        true
    }

    async fn acquire(
        &self,
        scope: &str,
        key: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Option<KeySlot>, LimitError> {
        let now = Instant::now();
        let mut state = self.lock();
        let held = state
            .slots
            .entry((scope.to_owned(), key.to_owned()))
            .or_default();
        held.retain(|(_, until)| *until > now);
        if held.len() >= limit as usize {
            return Ok(None);
        }
        let holder = self.next_holder.fetch_add(1, Ordering::Relaxed);
        held.push((holder, now + ttl));
        Ok(Some(KeySlot {
            scope: scope.to_owned(),
            key: key.to_owned(),
            holder: holder.to_string(),
        }))
    }

    async fn renew(&self, slot: &KeySlot, ttl: Duration) -> Result<bool, LimitError> {
        let now = Instant::now();
        let Some(holder) = holder_number(slot) else {
            return Ok(false);
        };
        let mut state = self.lock();
        let Some(held) = state.slots.get_mut(&(slot.scope.clone(), slot.key.clone())) else {
            return Ok(false);
        };
        match held
            .iter_mut()
            .find(|(h, until)| *h == holder && *until > now)
        {
            Some(entry) => {
                entry.1 = now + ttl;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn release(&self, slot: &KeySlot) -> Result<(), LimitError> {
        let Some(holder) = holder_number(slot) else {
            return Ok(());
        };
        let mut state = self.lock();
        let map_key = (slot.scope.clone(), slot.key.clone());
        if let Some(held) = state.slots.get_mut(&map_key) {
            held.retain(|(h, _)| *h != holder);
            if held.is_empty() {
                state.slots.remove(&map_key);
            }
        }
        Ok(())
    }

    async fn reserve(
        &self,
        bucket: &str,
        rate: Rate,
        ahead: Duration,
    ) -> Result<Reservation, LimitError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.since_sweep += 1;
        if state.since_sweep > 1024 {
            // Buckets whose schedule is in the past hold nothing a new one would not.
            state.since_sweep = 0;
            state.rates.retain(|_, next| *next > now);
        }
        let next = state.rates.get(bucket).copied().unwrap_or(now).max(now);
        let wait = next - now;
        if wait > ahead {
            return Ok(Reservation::Wait(wait - ahead));
        }
        state
            .rates
            .insert(bucket.to_owned(), next + rate.interval());
        Ok(Reservation::Go(wait))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn slots_are_limited_per_key_and_expire() {
        let l = MemoryLimiter::new();
        let ttl = Duration::from_millis(50);
        let a = l.acquire("p", "k", 2, ttl).await.unwrap().unwrap();
        let _b = l.acquire("p", "k", 2, ttl).await.unwrap().unwrap();
        assert!(l.acquire("p", "k", 2, ttl).await.unwrap().is_none());
        assert!(l.acquire("p", "other", 2, ttl).await.unwrap().is_some());
        l.release(&a).await.unwrap();
        let c = l.acquire("p", "k", 2, ttl).await.unwrap().unwrap();
        assert!(l.renew(&c, ttl).await.unwrap());
        tokio::time::sleep(ttl * 2).await;
        assert!(!l.renew(&c, ttl).await.unwrap(), "expired");
        assert!(l.acquire("p", "k", 2, ttl).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn reservations_are_spaced_by_the_interval() {
        let l = MemoryLimiter::new();
        let rate: Rate = "10/s".parse().unwrap();
        let ahead = Duration::from_millis(250);
        let mut waits = Vec::new();
        loop {
            match l.reserve("b", rate, ahead).await.unwrap() {
                Reservation::Go(w) => waits.push(w),
                Reservation::Wait(w) => {
                    assert!(w <= Duration::from_millis(100), "{w:?}");
                    break;
                }
            }
        }
        // now, +100, +200 (within 250 ms), then the next is too far ahead
        assert_eq!(waits.len(), 3, "{waits:?}");
        assert!(waits[2] > Duration::from_millis(180), "{waits:?}");
    }
}
