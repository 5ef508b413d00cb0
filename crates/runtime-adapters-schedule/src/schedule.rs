//! When a schedule ticks: a 5-field cron in an IANA zone, or a fixed interval.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// What makes a schedule tick.
#[derive(Clone, Debug)]
pub enum Rule {
    /// A 5-field cron expression, matched against the wall clock of the schedule's zone.
    /// croner resolves DST: a time in a spring-forward gap runs once, right after the gap;
    /// a time repeated on a fall-back day runs once, at its first occurrence.
    Cron(Box<Cron>),
    /// Every `period` since the Unix epoch (UTC), so every instance agrees on the ticks
    /// whatever its start time or zone.
    Every(Duration),
}

/// A rule with its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    rule: Rule,
    zone: TimeZone,
}

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week).
///
/// # Errors
/// The parser's message when the expression is not one.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

impl Schedule {
    /// A schedule of `rule` in `zone`.
    pub fn new(rule: Rule, zone: TimeZone) -> Self {
        Schedule { rule, zone }
    }

    /// The time zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// The first tick strictly after `t`, if there is one.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.rule {
            Rule::Cron(cron) => cron
                .find_next_occurrence(&t.to_zoned(self.zone.clone()), false)
                .ok()
                .map(|z| z.timestamp()),
            Rule::Every(period) => {
                let p = period_ms(*period)?;
                let now = t.as_millisecond();
                let next = now.div_euclid(p).checked_add(1)?.checked_mul(p)?;
                Timestamp::from_millisecond(next).ok()
            }
        }
    }

    /// The last tick at or before `t`, if there is one.
    pub fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.rule {
            Rule::Cron(cron) => cron
                .find_previous_occurrence(&t.to_zoned(self.zone.clone()), true)
                .ok()
                .map(|z| z.timestamp()),
            Rule::Every(period) => {
                let p = period_ms(*period)?;
                let at = t.as_millisecond().div_euclid(p).checked_mul(p)?;
                Timestamp::from_millisecond(at).ok()
            }
        }
    }

    /// `t` on the wall clock of the schedule's zone, RFC 3339 with the offset and the
    /// zone's name (RFC 9557: `2026-12-06T08:00:00+01:00[Europe/Berlin]`).
    pub fn local(&self, t: Timestamp) -> String {
        t.to_zoned(self.zone.clone()).to_string()
    }
}

fn period_ms(period: Duration) -> Option<i64> {
    i64::try_from(period.as_millis()).ok().filter(|p| *p > 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cron(expr: &str, zone: &str) -> Schedule {
        Schedule::new(
            Rule::Cron(Box::new(parse_cron(expr).unwrap())),
            TimeZone::get(zone).unwrap(),
        )
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Every tick of `s` in `[from, to)`, walking as the source does.
    fn ticks(s: &Schedule, from: &str, to: &str) -> Vec<String> {
        let (mut t, end) = (ts(from), ts(to));
        let mut out = Vec::new();
        while let Some(n) = s.next_after(t) {
            if n >= end {
                break;
            }
            out.push(
                n.to_zoned(s.zone().clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string(),
            );
            t = n;
        }
        out
    }

    #[test]
    fn a_0230_job_runs_once_on_the_spring_forward_day() {
        // Europe/Berlin, 2026-03-29: 02:00 jumps to 03:00, so 02:30 does not exist.
        let s = cron("30 2 * * *", "Europe/Berlin");
        let got = ticks(&s, "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z");
        assert_eq!(
            got,
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00", // once, right after the gap
                "2026-03-30T02:30:00+02:00",
            ]
        );
    }

    #[test]
    fn a_0230_job_runs_once_on_the_fall_back_day() {
        // Europe/Berlin, 2026-10-25: 03:00 goes back to 02:00, so 02:30 happens twice.
        let s = cron("30 2 * * *", "Europe/Berlin");
        let got = ticks(&s, "2026-10-23T12:00:00Z", "2026-10-26T12:00:00Z");
        assert_eq!(
            got,
            [
                "2026-10-24T02:30:00+02:00",
                "2026-10-25T02:30:00+02:00", // the first 02:30 only
                "2026-10-26T02:30:00+01:00",
            ]
        );
    }

    #[test]
    fn us_zones_follow_their_own_transition_days() {
        // America/New_York springs forward on 2026-03-08, three weeks before Europe.
        let s = cron("30 2 * * *", "America/New_York");
        let got = ticks(&s, "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z");
        assert_eq!(
            got,
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
    }

    #[test]
    fn the_latest_tick_is_found_backwards_across_a_gap() {
        let s = cron("30 2 * * *", "Europe/Berlin");
        let latest = s.latest_at_or_before(ts("2026-03-29T12:00:00Z")).unwrap();
        assert_eq!(s.local(latest), "2026-03-29T03:00:00+02:00[Europe/Berlin]");
        let exact = ts("2026-03-30T00:30:00Z");
        assert_eq!(s.latest_at_or_before(exact), Some(exact));
    }

    #[test]
    fn every_ticks_on_multiples_of_the_period_since_the_epoch() {
        let s = Schedule::new(Rule::Every(Duration::from_secs(600)), TimeZone::UTC);
        assert_eq!(
            s.next_after(ts("2026-12-06T21:03:10Z")),
            Some(ts("2026-12-06T21:10:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-12-06T21:10:00Z")),
            Some(ts("2026-12-06T21:20:00Z"))
        );
        assert_eq!(
            s.latest_at_or_before(ts("2026-12-06T21:19:59Z")),
            Some(ts("2026-12-06T21:10:00Z"))
        );
    }

    #[test]
    fn only_five_field_crons_parse() {
        assert!(parse_cron("0 7 * * *").is_ok());
        assert!(parse_cron("0 0 7 * * *").unwrap_err().contains("5 fields"));
        assert!(parse_cron("0 7 * *").unwrap_err().contains("5 fields"));
        assert!(parse_cron("61 7 * * *").is_err());
        assert!(parse_cron("0 7 * * moon").is_err());
    }
}
