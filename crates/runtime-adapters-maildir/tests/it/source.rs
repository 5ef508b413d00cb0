//! Producing tasks from a Maildir.

use std::sync::Arc;
use std::time::Duration;

use runtime_adapters_maildir::{MaildirConfig, MaildirSource, OVERSIZE_HEADER, ROUTE};
use runtime_contracts::{FinalOutcome, HealthStatus, SourceState, TaskSource};

use crate::support::{RecordingSink, Stop, deliver, make_dirs, message, names};

pub type Running = (
    Arc<MaildirSource>,
    Arc<RecordingSink>,
    Arc<Stop>,
    tokio::task::JoinHandle<Result<(), runtime_contracts::SourceError>>,
);

pub fn start(config: MaildirConfig) -> Running {
    let source = Arc::new(MaildirSource::new(config, "inbox"));
    let sink = Arc::new(RecordingSink::default());
    let stop = Arc::new(Stop::default());
    let handle = {
        let (source, sink, stop) = (source.clone(), sink.clone(), stop.clone());
        tokio::spawn(async move { source.run(sink, stop).await })
    };
    (source, sink, stop, handle)
}

#[tokio::test]
async fn creates_the_maildir_and_publishes_waiting_mail_with_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("mail");
    make_dirs(&md);
    deliver(&md, "1000.A.host", &message("a"));
    // Seen by a client but unread: still waiting.
    std::fs::write(md.join("cur/1001.B.host:2,"), message("b")).unwrap();
    // Read, flagged as failed, trashed: not waiting.
    std::fs::write(md.join("cur/1002.C.host:2,S"), message("c")).unwrap();
    std::fs::write(md.join("cur/1003.D.host:2,F"), message("d")).unwrap();
    std::fs::write(md.join("cur/1004.E.host:2,T"), message("e")).unwrap();
    std::fs::write(md.join("new/.hidden"), "x").unwrap();

    let mut config = MaildirConfig::new(&md);
    config.poll_interval = Duration::from_secs(3600);
    let (source, sink, stop, handle) = start(config);
    let tasks = sink.wait_for(2).await;
    let keys: Vec<_> = tasks
        .iter()
        .map(|t| {
            let o = t.origin.as_ref().unwrap();
            (o.source.as_str(), o.key.as_str())
        })
        .collect();
    assert_eq!(
        keys,
        vec![("inbox", "1000.A.host"), ("inbox", "1001.B.host")]
    );
    assert_eq!(tasks[0].route, ROUTE);
    assert_eq!(tasks[0].payload, message("a").into_bytes());

    let status = source.status();
    assert_eq!(status.kind, "maildir");
    assert_eq!(status.state, SourceState::Running);
    assert_eq!(status.produced, 2);
    assert_eq!(status.details["pending"], 2);
    let health = source.health().unwrap().check().await;
    assert_eq!(health.name, "source:inbox");
    assert_eq!(health.status, HealthStatus::Up);

    stop.stop();
    handle.await.unwrap().unwrap();
    assert_eq!(source.status().state, SourceState::Stopped);

    // A missing Maildir is created.
    let fresh = dir.path().join("fresh/maildir");
    let (_s, _sink, stop, handle) = start(MaildirConfig::new(&fresh));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !fresh.join("cur").is_dir() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "maildir not created"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fresh.join("tmp").is_dir() && fresh.join("new").is_dir());
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn new_mail_is_seen_by_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    let mut config = MaildirConfig::new(&md);
    // A rescan would take an hour: only the watcher can find the mail in time.
    config.poll_interval = Duration::from_secs(3600);
    let (source, sink, stop, handle) = start(config);
    // Wait for the first scan, so the delivery is not found by it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while source.status().details["scans"] == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(source.status().details["watching"], true);
    deliver(&md, "2000.W.host", &message("w"));
    let tasks = sink.wait_for(1).await;
    assert_eq!(tasks[0].origin.as_ref().unwrap().key, "2000.W.host");
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_idle_source_does_not_wake_itself() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    // A handled backlog in cur/: every scan lists it, which raises inotify access events.
    for i in 0..20_000 {
        std::fs::write(md.join(format!("cur/{i}.H.host:2,S")), "h").unwrap();
    }
    let mut config = MaildirConfig::new(&md);
    config.poll_interval = Duration::from_secs(3600);
    let (source, _sink, stop, handle) = start(config);
    let scans = || source.status().details["scans"].as_u64().unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while scans() == 0 || source.status().details["watching"] != true {
        assert!(tokio::time::Instant::now() < deadline, "no first scan");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = scans();
    let listings = source.status().details["listings"].as_u64().unwrap();
    // Idle for two seconds: only the watcher could wake it, and nothing changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let woken = scans() - before;
    assert!(
        woken <= 4,
        "an idle maildir source scanned {woken} times in 2 s"
    );
    let relisted = source.status().details["listings"].as_u64().unwrap() - listings;
    assert!(
        relisted <= 2 * woken,
        "{relisted} listings in {woken} wake-ups"
    );
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_periodic_rescan_finds_mail_without_a_watcher_and_does_not_republish() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    let mut config = MaildirConfig::new(&md);
    config.watch = false;
    config.poll_interval = Duration::from_millis(20);
    let (source, sink, stop, handle) = start(config);
    make_dirs(&md);
    deliver(&md, "3000.P.host", &message("p"));
    sink.wait_for(1).await;
    // Several more scans: the waiting message is not published again.
    let scans = source.status().details["scans"].as_u64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while source.status().details["scans"].as_u64().unwrap() < scans + 5 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.tasks.lock().unwrap().len(), 1);
    assert_eq!(
        sink.duplicates.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(source.status().details["watching"], false);

    // Once acknowledged it is no longer waiting.
    let ack = source.acknowledger().unwrap();
    ack.acknowledge("3000.P.host", &FinalOutcome::Succeeded { tag: None })
        .await
        .unwrap();
    assert_eq!(names(&md.join("cur")), vec!["3000.P.host:2,S"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while source.status().details["pending"] != 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_message_is_published_again_after_republish_after() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    deliver(&md, "4000.R.host", &message("r"));
    let mut config = MaildirConfig::new(&md);
    config.watch = false;
    config.poll_interval = Duration::from_millis(10);
    config.republish_after = Duration::from_millis(50);
    let (_source, sink, stop, handle) = start(config);
    sink.wait_for(1).await;
    // The sink refuses the second live task, as a queue does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while sink.duplicates.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never republished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_oversized_message_is_published_as_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    let big = format!(
        "From: a@b.example\r\nSubject: big\r\n\r\n{}",
        "x".repeat(5000)
    );
    deliver(&md, "5000.O.host", &big);
    let mut config = MaildirConfig::new(&md);
    config.max_message_bytes = 1000;
    config.poll_interval = Duration::from_secs(3600);
    let (_source, sink, stop, handle) = start(config);
    let tasks = sink.wait_for(1).await;
    assert_eq!(
        tasks[0].payload,
        b"From: a@b.example\r\nSubject: big\r\n\r\n"
    );
    assert_eq!(
        tasks[0].headers.get(OVERSIZE_HEADER),
        Some(big.len().to_string().as_str())
    );
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unusable_path_is_an_error_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (source, _sink, _stop, handle) = start(MaildirConfig::new(&file));
    let err = handle.await.unwrap().unwrap_err();
    // Restarting cannot help: a configuration error naming the path, not an outage.
    assert!(err.is_permanent(), "{err:?}");
    assert!(
        err.to_string()
            .contains("is a file, not a Maildir directory"),
        "{err}"
    );
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    assert_eq!(source.status().errors, 1);
    let health = source.health().unwrap().check().await;
    assert_eq!(health.status, HealthStatus::Down);
}
