//! [`LocalLease`]: the memory queue's leader lease, a table in process memory.
//!
//! The memory queue lives in one process, so its lease only has to arbitrate between
//! holders in that process (two exclusive sources on one name, tests). It keeps the
//! contract's semantics all the same, expiry included, so code written against a shared
//! backend's lease behaves the same here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use runtime_contracts::{LeaderLease, LeaseError};

/// Who holds each key and until when. Shared by every lease of one queue.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    held: Mutex<HashMap<String, (String, Instant)>>,
}

/// Makes each [`LocalLease`] its own holder.
static NEXT_HOLDER: AtomicU64 = AtomicU64::new(1);

impl LeaseTable {
    /// Runs `f` on the entry of `key`, expired entries removed first.
    fn with<T>(&self, key: &str, f: impl FnOnce(&mut Option<(String, Instant)>) -> T) -> T {
        // Nothing panics under this lock; a poisoned table is still consistent.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut entry = held
            .remove(key)
            .filter(|(_, until)| *until > Instant::now());
        let out = f(&mut entry);
        if let Some(e) = entry {
            held.insert(key.to_owned(), e);
        }
        out
    }
}

/// A leader lease on one key of a memory queue's [`LeaseTable`].
#[derive(Debug)]
pub struct LocalLease {
    table: Arc<LeaseTable>,
    key: String,
    holder: String,
    ttl: Duration,
}

impl LocalLease {
    pub(crate) fn new(
        table: Arc<LeaseTable>,
        key: String,
        ttl: Duration,
    ) -> Result<Self, LeaseError> {
        if key.is_empty() {
            return Err(LeaseError::Invalid("key must not be empty".into()));
        }
        if ttl.is_zero() {
            return Err(LeaseError::Invalid("ttl must be above zero".into()));
        }
        Ok(LocalLease {
            table,
            key,
            holder: format!(
                "local:{}:{}",
                std::process::id(),
                NEXT_HOLDER.fetch_add(1, Ordering::Relaxed)
            ),
            ttl,
        })
    }

    fn take(&self, entry: &mut Option<(String, Instant)>) {
        *entry = Some((self.holder.clone(), Instant::now() + self.ttl));
    }
}

#[async_trait]
impl LeaderLease for LocalLease {
    fn key(&self) -> &str {
        &self.key
    }

    fn holder(&self) -> &str {
        &self.holder
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn try_acquire(&self) -> Result<bool, LeaseError> {
        Ok(self.table.with(&self.key, |entry| match entry {
            Some((holder, _)) if *holder != self.holder => false,
            _ => {
                self.take(entry);
                true
            }
        }))
    }

    async fn renew(&self) -> Result<bool, LeaseError> {
        Ok(self.table.with(&self.key, |entry| match entry {
            Some((holder, _)) if *holder == self.holder => {
                self.take(entry);
                true
            }
            _ => false,
        }))
    }

    async fn release(&self) -> Result<bool, LeaseError> {
        Ok(self.table.with(&self.key, |entry| match entry {
            Some((holder, _)) if *holder == self.holder => {
                *entry = None;
                true
            }
            _ => false,
        }))
    }

    async fn current_holder(&self) -> Result<Option<String>, LeaseError> {
        Ok(self
            .table
            .with(&self.key, |entry| entry.as_ref().map(|(h, _)| h.clone())))
    }
}
