//! The source conformance suite over a schedule ticking every second.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtime_adapters_schedule::{ScheduleSettings, ScheduledSource, SourceOptions};
use runtime_contracts::{Task, TaskSource};
use runtime_testkit::source_conformance::SourceFixture;

/// A schedule every second with its state dir; items are its ticks.
pub struct Every {
    dir: tempfile::TempDir,
}

impl Every {
    pub async fn start() -> Every {
        Every {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

pub fn every_second(name: &str) -> runtime_adapters_schedule::ScheduleSpec {
    ScheduleSettings {
        name: name.into(),
        every: Some(Duration::from_secs(1)),
        route: "tick".into(),
        ..ScheduleSettings::default()
    }
    .spec("schedules[0]")
    .unwrap()
}

#[async_trait]
impl SourceFixture for Every {
    async fn source(&self) -> Arc<dyn TaskSource> {
        Arc::new(ScheduledSource::new(
            every_second("each-second"),
            SourceOptions {
                state_dir: self.dir.path().to_owned(),
                // The suite's queue outlives a restart, like a durable one.
                redeliver_unfinished: true,
            },
        ))
    }

    async fn add_item(&self) -> Option<String> {
        None
    }

    fn item_of(&self, task: &Task) -> String {
        task.origin
            .as_ref()
            .map(|o| o.key.clone())
            .unwrap_or_default()
    }

    async fn is_done(&self, item: &str) -> bool {
        let file = self.dir.path().join("schedule-each-second.json");
        let Ok(text) = std::fs::read_to_string(file) else {
            return false;
        };
        let state: serde_json::Value = serde_json::from_str(&text).unwrap();
        let finished = state["last_finished"].as_str().map(str::to_owned);
        let item: jiff::Timestamp = item.parse().unwrap();
        finished.is_some_and(|f| f.parse::<jiff::Timestamp>().unwrap() >= item)
    }

    fn latency(&self) -> Duration {
        Duration::from_millis(1500)
    }
}

runtime_testkit::source_conformance_tests!(Every::start());
