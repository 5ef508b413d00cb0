//! `[[schedules]]` through the validator path: each bad value named by its key and file.

use runtime_contracts::{ConfigError, ConfigOrigin};
use runtime_core::cli::{self, AppConfigSpec, ConfigArgs};

fn spec() -> AppConfigSpec {
    AppConfigSpec::new("testapp", "PLBA_TSCHED_", "").validator(runtime_compose::validator("testapp"))
}

async fn load(text: &str) -> Result<runtime_compose::Plan, Vec<(String, String)>> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.toml");
    std::fs::write(&file, text).unwrap();
    match cli::load_config(&spec(), &ConfigArgs { config: vec![file.clone()] }).await {
        Ok(m) => Ok(runtime_compose::plan(&m.current(), "testapp").unwrap()),
        Err(ConfigError::Invalid(issues)) => {
            for i in &issues {
                assert!(
                    matches!(&i.origin, Some(ConfigOrigin::File { path, .. }) if path == &file),
                    "{i:?} names no file"
                );
            }
            Err(issues.into_iter().map(|i| (i.key, i.message)).collect())
        }
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn good_schedules_are_planned() {
    let plan = load(
        r#"
[[schedules]]
name = "daily-summary"
cron = "0 7 * * *"
timezone = "Europe/Berlin"
route = "daily-summary"
misfire = "once"

[[schedules]]
name = "tick"
every = "10m"
route = "tick"
payload = "hello"
"#,
    )
    .await
    .unwrap();
    let names: Vec<_> = plan.schedules.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["daily-summary", "tick"]);
}

#[tokio::test]
async fn every_bad_schedule_is_named_by_its_key() {
    let issues = load(
        r#"
[[schedules]]
name = "bad-cron"
cron = "0 7 * *"
route = "r"

[[schedules]]
name = "bad-zone"
cron = "0 7 * * *"
timezone = "Europe/Atlantis"
route = "r"

[[schedules]]
name = "both"
cron = "0 7 * * *"
every = "1h"
route = "r"

[[schedules]]
name = "neither"
route = "r"

[[schedules]]
name = "typo"
cronn = "0 7 * * *"
route = "r"

[[schedules]]
name = "bad-cron"
every = "1h"
route = "r"

[[schedules]]
name = "bad-misfire"
every = "1h"
route = "r"
misfire = "twice"
"#,
    )
    .await
    .unwrap_err();
    let keys: Vec<&str> = issues.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "schedules[0].cron",
            "schedules[1].timezone",
            "schedules[2].every",
            "schedules[3].cron",
            "schedules[4].cronn",
            "schedules[5].name",
            "schedules[6].misfire",
        ],
        "{issues:#?}"
    );
    assert!(issues[0].1.contains("5 fields"), "{}", issues[0].1);
    assert!(issues[1].1.contains("IANA"), "{}", issues[1].1);
    assert!(issues[2].1.contains("not both"), "{}", issues[2].1);
}

#[tokio::test]
async fn schedules_must_be_tables() {
    let issues = load("schedules = \"daily\"\n").await.unwrap_err();
    assert_eq!(issues[0].0, "schedules", "{issues:?}");
}
