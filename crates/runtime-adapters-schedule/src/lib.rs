//! # runtime-adapters-schedule
//!
//! The scheduled source: `[[schedules]]` entries that publish one task per tick.
//!
//! ```text
//! ScheduleSettings --spec()--> ScheduleSpec (Schedule = cron | every, in an IANA zone)
//!                                   |
//!                 ScheduledSource::new(spec, SourceOptions { state_dir, .. })
//!                                   |  tick -> Task { route, payload, origin (name, tick) }
//!                                   v
//!                               TaskSink  ...  ScheduleAcknowledger (tick finished)
//! ```
//!
//! - **When**: [`Schedule`] is a 5-field cron read in the schedule's time zone, with DST
//!   gaps and repeats resolved by croner (a 02:30 job runs once on a spring-forward day,
//!   right after the gap, and once on a fall-back day), or `every` a fixed period counted
//!   from the Unix epoch, so all instances agree on the ticks.
//! - **Once per tick**: a tick's task carries the origin `(name, tick in RFC 3339 UTC)`
//!   and the unique key `schedule:<name>:<tick>`; queues refuse a second live task for it, and with a shared backend only the lease
//!   holder runs the source (the composition wraps it).
//! - **Restarts**: the last tick is kept in `<state_dir>/schedule-<name>.json`, written
//!   after each publish (atomically, by rename), so a restart repeats no tick; the ticks
//!   that passed while nothing ran are skipped or run once (the latest), as `misfire`
//!   says. With a queue that dies with the process, a tick published but never seen
//!   finished is published again at start.
//!
//! Key decision: the source keeps no timer per tick and wakes only for the next one; a
//! tick up to [`MISFIRE_GRACE`] late counts as due, not missed.

mod schedule;
mod settings;
mod source;

pub use schedule::{Rule, Schedule, parse_cron};
pub use settings::{
    MAX_EVERY, MAX_NAME_LEN, MAX_PAYLOAD_BYTES, MIN_EVERY, Misfire, SECTION, ScheduleSettings,
    ScheduleSpec,
};
pub use source::{
    MISFIRE_GRACE, ScheduleAcknowledger, ScheduledSource, SourceOptions, tick_key, unique_key,
};
