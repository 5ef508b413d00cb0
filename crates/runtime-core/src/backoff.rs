//! The runtime's retry delays are the contracts' [`Backoff`], shared with the adapters.

pub use runtime_contracts::Backoff;
