//! Limits a worker pool keeps across every process that shares a backend: key slots (at
//! most `n` tasks with one concurrency key running at once) and rates (`"50/s"`).
//!
//! A [`TaskLimiter`] is a capability of a backend, built beside its queue: the memory
//! adapter's holds in one process, the Redis adapter's across processes. A backend that
//! has none offers none, and a configuration that asks for limits on it is refused.
//!
//! * A [`KeySlot`] is a lease on one of the `limit` slots of a key. It expires `ttl` after
//!   it was taken or last renewed, so a holder that dies frees its slot within the ttl;
//!   a live holder renews it while its task runs.
//! * A rate is kept as a schedule (GCRA's "theoretical arrival time"): each
//!   [`TaskLimiter::reserve`] books the next free start time, spaced `per / count` apart.
//!   A booking at most `ahead` away is granted ([`Reservation::Go`], start after the wait);
//!   a later one is not made ([`Reservation::Wait`], ask again then). The booking is
//!   spaced from the schedule, not from when the task really started, so a task that
//!   starts late does not cost the rate a slot.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A rate: `count` tasks per `per` (`"50/s"`, `"1000/m"`, `"10/h"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Tasks per period, at least 1.
    pub count: u32,
    /// The period: a second, a minute, an hour or a day.
    pub per: Duration,
}

/// What a rate string must look like (one text for the parser and the docs).
pub const RATE_SYNTAX: &str = "expected a rate like \"50/s\", \"1000/m\", \"10/h\" or \"100/d\" (a whole number from 1 to 1000000 per unit)";

/// The most tasks per period a rate accepts: far above what one backend runs.
const MAX_RATE_COUNT: u32 = 1_000_000;

impl Rate {
    /// The time between two starts at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Rate, String> {
        let (count, unit) = text.trim().split_once('/').ok_or(RATE_SYNTAX)?;
        let count: u32 = count.trim().parse().map_err(|_| RATE_SYNTAX)?;
        if count == 0 || count > MAX_RATE_COUNT {
            return Err(RATE_SYNTAX.to_owned());
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(RATE_SYNTAX.to_owned()),
        };
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => "d",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(RATE_SYNTAX)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A held slot of a key: what renew and release need. `holder` is unique per slot taken,
/// so a slot taken twice by one process is two holders.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeySlot {
    /// The limit's scope (the pool's name).
    pub scope: String,
    /// The concurrency key (the header's value).
    pub key: String,
    /// This holder's id.
    pub holder: String,
}

/// The answer of [`TaskLimiter::reserve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Booked: start the task after this wait (zero: now).
    Go(Duration),
    /// The next free start is further than `ahead`; nothing was booked. Ask again after
    /// this wait.
    Wait(Duration),
}

/// Errors of a limiter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The backend cannot be reached now; the caller waits and asks again (it never
    /// fails the task for it).
    #[error("limiter backend unavailable: {message}")]
    Unavailable {
        /// What happened (no secrets).
        message: String,
        /// The cause.
        #[source]
        source: Option<crate::BoxError>,
    },
}

impl LimitError {
    /// A backend outage with its cause.
    pub fn unavailable(message: impl Into<String>, source: impl Into<crate::BoxError>) -> Self {
        LimitError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// Key slots and rates, shared by every process that uses the same backend.
#[async_trait]
pub trait TaskLimiter: Send + Sync + 'static {
    /// The backend kind (`memory`, `redis`).
    fn backend(&self) -> &'static str;

    /// True when the limiter's state lives in this process alone (the memory backend,
    /// whose queue is one process's too): a pool may then count its key slots itself and
    /// skip `acquire`/`release`, since no other process shares them. Default false.
    fn in_process(&self) -> bool {
        false
    }

    /// Takes one of the `limit` slots of `key` in `scope` for `ttl`. `Ok(None)`: all are
    /// held. Expired slots count as free.
    async fn acquire(
        &self,
        scope: &str,
        key: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Option<KeySlot>, LimitError>;

    /// Extends a held slot to `ttl` from now. `Ok(false)`: it expired and is gone (the
    /// task keeps running; the limit may be exceeded once, which at-least-once allows).
    async fn renew(&self, slot: &KeySlot, ttl: Duration) -> Result<bool, LimitError>;

    /// Many renewals in one call where the backend can; one answer per slot.
    async fn renew_many(&self, slots: &[KeySlot], ttl: Duration) -> Result<Vec<bool>, LimitError> {
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            out.push(self.renew(slot, ttl).await?);
        }
        Ok(out)
    }

    /// Gives a slot back. Releasing one that expired is not an error.
    async fn release(&self, slot: &KeySlot) -> Result<(), LimitError>;

    /// Books a start for `rate` in the bucket `bucket` (the pool, or the pool and a key)
    /// if the next free start is at most `ahead` from now.
    async fn reserve(
        &self,
        bucket: &str,
        rate: Rate,
        ahead: Duration,
    ) -> Result<Reservation, LimitError>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let r: Rate = "50/s".parse().unwrap();
        assert_eq!(r.count, 50);
        assert_eq!(r.interval(), Duration::from_millis(20));
        assert_eq!(r.to_string(), "50/s");
        let r: Rate = " 1000 / m ".parse().unwrap();
        assert_eq!(r.per, Duration::from_secs(60));
        assert_eq!(r.to_string(), "1000/m");
        for bad in [
            "",
            "50",
            "0/s",
            "-1/s",
            "50/x",
            "50/",
            "/s",
            "1.5/s",
            "2000000/s",
        ] {
            assert_eq!(bad.parse::<Rate>(), Err(RATE_SYNTAX.to_owned()), "{bad:?}");
        }
    }
}
