//! `[[schedules]]` through the validator path: each bad value named by its key and file.

use runtime_contracts::{ConfigError, ConfigOrigin};
use runtime_core::cli::{self, AppConfigSpec, ConfigArgs};

fn spec() -> AppConfigSpec {
    AppConfigSpec::new("testapp", "PLBA_TSCHED_", "")
        .validator(runtime_compose::validator("testapp"))
}

async fn load(text: &str) -> Result<runtime_compose::Plan, Vec<(String, String)>> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.toml");
    std::fs::write(&file, text).unwrap();
    match cli::load_config(
        &spec(),
        &ConfigArgs {
            config: vec![file.clone()],
        },
    )
    .await
    {
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

/// A running runtime over the memory queue with the planned schedules and one pool that
/// records every task.
struct Running {
    runtime: runtime_core::RuntimeManager,
    handler: std::sync::Arc<runtime_testkit::fakes::FnHandler>,
    _dir: tempfile::TempDir,
}

async fn run_schedules(schedules: &str) -> Running {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.toml");
    let state = dir.path().join("state");
    std::fs::write(
        &file,
        format!(
            "[runtime]\nstate_dir = {:?}\n[queue]\nname = \"sched\"\n{schedules}",
            state.display().to_string()
        ),
    )
    .unwrap();
    let config = Arc::new(
        cli::load_config(&spec(), &ConfigArgs { config: vec![file] })
            .await
            .unwrap(),
    );
    let plan = runtime_compose::plan(&config.current(), "testapp").unwrap();
    let platform = config.platform();
    let handler = runtime_testkit::fakes::FnHandler::new(std::time::Duration::ZERO, |_, _| Ok(()));
    let pool = runtime_contracts::PoolSpec {
        name: "p".into(),
        queue: "sched".into(),
        handler: handler.clone(),
        concurrency: 2,
        task_timeout: std::time::Duration::from_secs(5),
    };
    let module = runtime_testkit::fakes::PartsModule {
        pools: vec![pool],
        ..Default::default()
    };
    let runtime = runtime_core::RuntimeManager::builder(config)
        .queue(plan.build_queue().unwrap())
        .module(Arc::new(module))
        .module(
            plan.schedule_module(&platform.queue.name, &platform.runtime.state_dir)
                .unwrap(),
        )
        .handle_signals(false)
        .build();
    runtime.start().await.unwrap();
    Running {
        runtime,
        handler,
        _dir: dir,
    }
}

fn ticks(handler: &runtime_testkit::fakes::FnHandler) -> Vec<jiff::Timestamp> {
    handler
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|t| {
            let origin = t.origin.as_ref().unwrap();
            assert_eq!(
                t.headers.get(runtime_contracts::SCHEDULE_TICK_HEADER),
                Some(origin.key.as_str())
            );
            // The unique key: schedule name plus tick.
            assert_eq!(
                t.unique_key(),
                Some(format!("schedule:{}:{}", origin.source, origin.key).as_str())
            );
            origin.key.parse().unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_second_for_five_seconds_runs_four_to_six_times_one_task_per_tick() {
    let r = run_schedules(
        "[[schedules]]\nname = \"each-second\"\nevery = \"1s\"\nroute = \"tick\"\npayload = \"p\"\n",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let status = r.runtime.handle().status().await;
    r.runtime.stop().await;
    let ticks = ticks(&r.handler);
    assert!(
        (4..=6).contains(&ticks.len()),
        "{} runs: {ticks:?}",
        ticks.len()
    );
    for pair in ticks.windows(2) {
        // Distinct, in order, one period apart: no tick twice, none skipped.
        assert_eq!(
            pair[1].as_millisecond() - pair[0].as_millisecond(),
            1000,
            "{ticks:?}"
        );
    }
    for call in r.handler.calls.lock().unwrap().iter() {
        assert_eq!(call.route, "tick");
        assert_eq!(call.payload, b"p");
    }
    let s = &status.schedules;
    assert_eq!(s.len(), 1, "{status:?}");
    assert_eq!(s[0].name, "each-second");
    assert!(s[0].runs_total >= 4, "{s:?}");
    assert!(s[0].next_run.is_some() && s[0].last_run.is_some(), "{s:?}");
}
