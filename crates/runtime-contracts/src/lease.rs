//! The leader lease: at most one holder at a time, across every process that shares it.
//!
//! A queue backend that several processes share offers one per name
//! ([`TaskQueue::leader_lease`](crate::TaskQueue::leader_lease)), so a module can ask for
//! an *exclusive* source ([`ModuleContext::add_exclusive_source`](crate::ModuleContext::add_exclusive_source))
//! without naming a backend: the runtime runs that source only while its process holds
//! the lease. The backend decides where the lease lives (a Redis key, a PostgreSQL row,
//! a NATS KV entry, a table in process memory).

use std::time::Duration;

use async_trait::async_trait;

use crate::error::BoxError;

/// Errors of a [`LeaderLease`]. No variant carries a secret (a URL's user or password).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The key or ttl is unusable.
    #[error("invalid lease: {0}")]
    Invalid(String),
    /// The backend could not be reached or refused the call; the holder counts as not
    /// holding the lease until a call succeeds again.
    #[error("lease {op} failed on {key}")]
    Unavailable {
        /// What was attempted (`acquire`, `renew`, `release`, `read`).
        op: &'static str,
        /// The lease key.
        key: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The queue backend offers no leader lease.
    #[error("queue backend {backend:?} offers no leader lease")]
    Unsupported {
        /// The backend kind ([`TaskQueue::backend`](crate::TaskQueue::backend)).
        backend: String,
    },
}

/// A lease that at most one holder has at a time.
///
/// Semantics every implementation keeps (checked by the lease suite in
/// `runtime-testkit`):
/// * each `LeaderLease` value is its own holder, with a [`holder`](LeaderLease::holder)
///   id unique across processes (two leases on one key in one process are two holders);
/// * [`try_acquire`](LeaderLease::try_acquire) takes a free lease, or extends one this
///   holder has already, for `ttl`; it never takes one another holder has;
/// * [`renew`](LeaderLease::renew) and [`release`](LeaderLease::release) act only while
///   the lease is still this holder's, so nobody extends or drops someone else's lease;
/// * a holder that stops renewing loses the lease `ttl` after its last acquire or renew,
///   measured by the backend, so a crashed holder is replaced without anyone's help.
///
/// Calls must answer within a third of the ttl (time out inside the implementation), so
/// a renewal can never outlast the lease it renews.
#[async_trait]
pub trait LeaderLease: Send + Sync + 'static {
    /// The lease key, as the backend stores it (for status and logs).
    fn key(&self) -> &str;

    /// This holder's id: the value the backend records while the lease is held.
    fn holder(&self) -> &str;

    /// How long the lease lasts without renewal.
    fn ttl(&self) -> Duration;

    /// Takes the lease if it is free, or extends it if it is this holder's already.
    /// `Ok(false)`: another holder has it.
    async fn try_acquire(&self) -> Result<bool, LeaseError>;

    /// Extends the lease by the ttl if it is still this holder's. `Ok(false)`: it expired
    /// or another holder has it.
    async fn renew(&self) -> Result<bool, LeaseError>;

    /// Gives the lease up if it is this holder's, so another takes over at once.
    /// `Ok(false)`: it was not (expired, or another holder has it).
    async fn release(&self) -> Result<bool, LeaseError>;

    /// Who holds the lease now, if anyone.
    async fn current_holder(&self) -> Result<Option<String>, LeaseError>;
}
