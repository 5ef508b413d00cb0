//! `[[schedules]]`: one entry's keys, read and checked without I/O.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use runtime_contracts::ConfigIssue;
use serde::{Deserialize, Serialize};

use crate::schedule::{Rule, Schedule, parse_cron};

/// The config section (an array of tables) the schedules live in.
pub const SECTION: &str = "schedules";

/// Shortest `every`: a schedule is not a busy loop.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// Longest `every` (a year); longer is a cron's job.
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);

/// Largest `payload`, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Longest `name` (it names a state file and a lease key).
pub const MAX_NAME_LEN: usize = 64;

/// What to do, at start or after a pause, about ticks that passed while nothing ran.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Misfire {
    /// Skip them; wait for the next tick.
    #[default]
    Skip,
    /// Run the latest of them once.
    Once,
}

impl Misfire {
    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::Once => "once",
        }
    }
}

/// One `[[schedules]]` entry as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Source name (status, pause/resume, state file, lease key).
    pub name: String,
    /// A 5-field cron expression; or `every`.
    pub cron: Option<String>,
    /// A fixed interval (`"10m"`); or `cron`.
    #[serde(with = "runtime_contracts::duration::option")]
    pub every: Option<Duration>,
    /// IANA zone the cron is read in.
    pub timezone: String,
    /// The task route handed to the app.
    pub route: String,
    /// `skip` or `once`.
    pub misfire: Misfire,
    /// The task payload (text), empty when not given.
    pub payload: Option<String>,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            name: String::new(),
            cron: None,
            every: None,
            timezone: "UTC".to_owned(),
            route: String::new(),
            misfire: Misfire::Skip,
            payload: None,
        }
    }
}

/// A checked schedule, ready to build a source from.
#[derive(Clone, Debug)]
pub struct ScheduleSpec {
    /// Source name.
    pub name: String,
    /// When it ticks.
    pub schedule: Schedule,
    /// The task route.
    pub route: String,
    /// After downtime.
    pub misfire: Misfire,
    /// The task payload.
    pub payload: Vec<u8>,
    /// How it was written, for status (`cron 0 7 * * *`, `every 10m`).
    pub describe: String,
}

impl ScheduleSettings {
    /// Checks the values serde cannot and builds the spec; every problem is reported with
    /// its key under `prefix` (`schedules[0]`).
    ///
    /// # Errors
    /// One issue per bad key.
    pub fn spec(&self, prefix: &str) -> Result<ScheduleSpec, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut bad = |key: &str, value: Option<String>, message: String| {
            issues.push(ConfigIssue {
                key: format!("{prefix}.{key}"),
                origin: None,
                value,
                message,
            });
        };
        let quoted = |s: &str| Some(format!("{s:?}"));
        if !valid_name(&self.name) {
            bad(
                "name",
                quoted(&self.name),
                format!(
                    "expected 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', not starting with '.'"
                ),
            );
        }
        if self.route.trim().is_empty() {
            bad(
                "route",
                quoted(&self.route),
                "expected the task route, like \"daily-summary\"".to_owned(),
            );
        }
        let zone = match TimeZone::get(&self.timezone) {
            Ok(zone) => Some(zone),
            Err(_) => {
                bad(
                    "timezone",
                    quoted(&self.timezone),
                    "unknown time zone; expected an IANA name like \"Europe/Berlin\" or \"UTC\""
                        .to_owned(),
                );
                None
            }
        };
        let rule = match (&self.cron, self.every) {
            (Some(_), Some(_)) => {
                bad(
                    "every",
                    None,
                    "set either cron or every, not both".to_owned(),
                );
                None
            }
            (None, None) => {
                bad(
                    "cron",
                    None,
                    "missing: set cron (\"0 7 * * *\") or every (\"10m\")".to_owned(),
                );
                None
            }
            (Some(expr), None) => match parse_cron(expr) {
                Ok(cron) => Some(Rule::Cron(Box::new(cron))),
                Err(message) => {
                    bad(
                        "cron",
                        quoted(expr),
                        format!("not a cron expression: {message}"),
                    );
                    None
                }
            },
            (None, Some(every)) if !(MIN_EVERY..=MAX_EVERY).contains(&every) => {
                bad(
                    "every",
                    quoted(&runtime_contracts::duration::format(every)),
                    "expected a duration from 1s to 366 days".to_owned(),
                );
                None
            }
            (None, Some(every)) => Some(Rule::Every(every)),
        };
        let payload = self.payload.clone().unwrap_or_default().into_bytes();
        if payload.len() > MAX_PAYLOAD_BYTES {
            bad(
                "payload",
                None,
                format!(
                    "{} bytes; at most {MAX_PAYLOAD_BYTES} allowed",
                    payload.len()
                ),
            );
        }
        let schedule = match (rule, zone) {
            (Some(rule), Some(zone)) => {
                let schedule = Schedule::new(rule, zone);
                if schedule.next_after(Timestamp::now()).is_none() {
                    bad(
                        "cron",
                        self.cron.as_deref().and_then(quoted),
                        "this schedule never ticks".to_owned(),
                    );
                }
                Some(schedule)
            }
            _ => None,
        };
        match schedule {
            Some(schedule) if issues.is_empty() => Ok(ScheduleSpec {
                name: self.name.clone(),
                schedule,
                route: self.route.clone(),
                misfire: self.misfire,
                payload,
                describe: match (&self.cron, self.every) {
                    (Some(expr), _) => format!("cron {expr}"),
                    (_, Some(every)) => {
                        format!("every {}", runtime_contracts::duration::format(every))
                    }
                    _ => String::new(),
                },
            }),
            _ => Err(issues),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn keys(s: ScheduleSettings) -> Vec<String> {
        match s.spec("schedules[0]") {
            Ok(_) => Vec::new(),
            Err(issues) => issues.into_iter().map(|i| i.key).collect(),
        }
    }

    fn good() -> ScheduleSettings {
        ScheduleSettings {
            name: "daily-summary".into(),
            cron: Some("0 7 * * *".into()),
            timezone: "Europe/Berlin".into(),
            route: "daily-summary".into(),
            ..ScheduleSettings::default()
        }
    }

    #[test]
    fn a_good_schedule_builds() {
        assert!(good().spec("schedules[0]").is_ok());
    }

    #[test]
    fn each_bad_value_is_named_by_its_key() {
        let cases: Vec<(ScheduleSettings, &str)> = vec![
            (
                ScheduleSettings {
                    cron: Some("0 7 * *".into()),
                    ..good()
                },
                "schedules[0].cron",
            ),
            (
                ScheduleSettings {
                    timezone: "Mars/Olympus".into(),
                    ..good()
                },
                "schedules[0].timezone",
            ),
            (
                ScheduleSettings {
                    every: Some(Duration::from_secs(60)),
                    ..good()
                },
                "schedules[0].every",
            ),
            (
                ScheduleSettings {
                    cron: None,
                    ..good()
                },
                "schedules[0].cron",
            ),
            (
                ScheduleSettings {
                    cron: None,
                    every: Some(Duration::from_millis(10)),
                    ..good()
                },
                "schedules[0].every",
            ),
            (
                ScheduleSettings {
                    name: "../etc".into(),
                    ..good()
                },
                "schedules[0].name",
            ),
            (
                ScheduleSettings {
                    route: String::new(),
                    ..good()
                },
                "schedules[0].route",
            ),
            (
                ScheduleSettings {
                    cron: Some("0 0 30 2 *".into()),
                    ..good()
                },
                "schedules[0].cron",
            ),
        ];
        for (settings, key) in cases {
            assert_eq!(keys(settings.clone()), vec![key.to_owned()], "{settings:?}");
        }
    }
}
