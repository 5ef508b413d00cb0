//! Every waiting message becomes a task or fails visibly (counted, logged once, in the
//! status); an idle source costs nothing; batches are bounded in bytes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use runtime_adapters_maildir::{MaildirConfig, key_of};
use runtime_contracts::{FinalOutcome, SourceError, TaskSource};

use crate::source::start;
use crate::support::{WarnCounter, deliver, make_dirs, message, names, until};

fn fast(md: &std::path::Path) -> MaildirConfig {
    let mut config = MaildirConfig::new(md);
    config.watch = false;
    config.poll_interval = Duration::from_millis(10);
    config
}

fn detail(source: &runtime_adapters_maildir::MaildirSource, key: &str) -> u64 {
    source.status().details[key].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
async fn an_unreadable_entry_is_reported_once_and_retried_when_it_changes() {
    let (warnings, _guard) = WarnCounter::install("maildir message failed");
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("mail");
    make_dirs(&md);
    std::fs::create_dir(md.join("new/1.dir.host")).unwrap();
    symlink(md.join("tmp/later"), md.join("new/2.dangling.host")).unwrap();
    symlink(md.join("new/3.loop.host"), md.join("new/3.loop.host")).unwrap();
    deliver(&md, "4.ok.host", &message("ok"));

    let (source, sink, stop, handle) = start(fast(&md));
    sink.wait_for(1).await;
    let scans = detail(&source, "scans");
    until("twenty more scans", || {
        detail(&source, "scans") >= scans + 20
    })
    .await;
    assert_eq!(sink.keys(), vec!["4.ok.host"]);
    let status = source.status();
    assert_eq!(status.errors, 3, "{status:?}");
    assert_eq!(status.details["failed"], 3);
    assert!(status.last_error.is_some());
    assert_eq!(warnings.load(Ordering::Relaxed), 3);

    // The dangling link's target appears: the changed entry is read again and produced.
    std::fs::write(md.join("tmp/later"), message("later")).unwrap();
    let tasks = sink.wait_for(2).await;
    assert_eq!(tasks[1].origin.as_ref().unwrap().key, "2.dangling.host");
    assert_eq!(tasks[1].payload, message("later").into_bytes());
    until("the fixed entry no longer counts as failed", || {
        detail(&source, "failed") == 2
    })
    .await;
    assert_eq!(source.status().errors, 3);
    assert_eq!(warnings.load(Ordering::Relaxed), 3);
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_symlink_inside_the_maildir_is_produced_and_one_leading_outside_fails_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("mail");
    make_dirs(&md);
    std::fs::write(md.join("tmp/real"), message("inside")).unwrap();
    symlink(md.join("tmp/real"), md.join("new/1.inside.host")).unwrap();
    let outside = dir.path().join("secret");
    std::fs::write(&outside, "not mail").unwrap();
    symlink(&outside, md.join("new/2.outside.host")).unwrap();

    let (source, sink, stop, handle) = start(fast(&md));
    let tasks = sink.wait_for(1).await;
    assert_eq!(tasks[0].origin.as_ref().unwrap().key, "1.inside.host");
    assert_eq!(tasks[0].payload, message("inside").into_bytes());
    until("the outside link counted as failed", || {
        detail(&source, "failed") == 1
    })
    .await;
    let status = source.status();
    assert_eq!(status.errors, 1);
    assert!(
        status.last_error.unwrap().contains("outside the maildir"),
        "{:?}",
        source.status()
    );
    assert_eq!(sink.keys(), vec!["1.inside.host"]);

    // Filing moves the link itself, not its target.
    let ack = source.acknowledger().unwrap();
    ack.acknowledge("1.inside.host", &FinalOutcome::Succeeded { tag: None })
        .await
        .unwrap();
    assert_eq!(names(&md.join("cur")), vec!["1.inside.host:2,S"]);
    assert!(md.join("tmp/real").is_file());
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_name_that_is_not_utf8_or_holds_a_backslash_is_produced_and_filed() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    let latin1 = OsStr::from_bytes(b"1.caf\xe9.host");
    std::fs::write(md.join("new").join(latin1), message("latin1")).unwrap();
    deliver(&md, "2.a\\b.host", &message("backslash"));

    let (source, sink, stop, handle) = start(fast(&md));
    sink.wait_for(2).await;
    let keys = sink.keys();
    assert_eq!(
        keys,
        vec![key_of(latin1), key_of(OsStr::new("2.a\\b.host"))]
    );
    assert_eq!(keys[0], "1.caf\\xe9.host");

    let ack = source.acknowledger().unwrap();
    for key in &keys {
        ack.acknowledge(key, &FinalOutcome::Succeeded { tag: None })
            .await
            .unwrap();
    }
    assert!(
        md.join("cur")
            .join(OsStr::from_bytes(b"1.caf\xe9.host:2,S"))
            .is_file()
    );
    assert!(md.join("cur/2.a\\b.host:2,S").is_file());
    assert_eq!(names(&md.join("new")), Vec::<String>::new());
    until("nothing pending", || detail(&source, "pending") == 0).await;
    assert_eq!(source.status().errors, 0);
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_name_the_file_system_refuses_to_file_ends_failed_instead_of_looping() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    // 255 bytes is the longest name; with ":2,S" appended it cannot be filed.
    let long = format!("1.{}.host", "x".repeat(255 - 7));
    deliver(&md, &long, &message("long"));
    let mut config = fast(&md);
    config.republish_after = Duration::from_millis(30);
    let (source, sink, stop, handle) = start(config);
    sink.wait_for(1).await;

    let ack = source.acknowledger().unwrap();
    let err = ack
        .acknowledge(&long, &FinalOutcome::Succeeded { tag: None })
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    // The worker dead-letters it at the attempt limit; recording that fails the same way.
    let reason = "source refused the acknowledgement".to_owned();
    let err = ack
        .acknowledge(&long, &FinalOutcome::DeadLettered { reason })
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Permanent(_)), "{err:?}");

    until("the message counted as failed", || {
        detail(&source, "failed") == 1
    })
    .await;
    assert!(
        source
            .status()
            .last_error
            .unwrap()
            .contains("dead letter cannot be filed")
    );
    // Long past republish_after: not produced again.
    let scans = detail(&source, "scans");
    until("twenty more scans", || {
        detail(&source, "scans") >= scans + 20
    })
    .await;
    assert_eq!(sink.duplicates.load(Ordering::Relaxed), 0);
    assert_eq!(sink.keys().len(), 1);
    stop.stop();
    handle.await.unwrap().unwrap();
}

fn age_dir(path: &std::path::Path) {
    let dir = std::fs::File::open(path).unwrap();
    dir.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

#[tokio::test]
async fn an_idle_source_does_not_relist_a_large_handled_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    for i in 0..20_000 {
        std::fs::write(md.join(format!("cur/{i}.H.host:2,S")), "h").unwrap();
    }
    age_dir(&md.join("cur"));
    age_dir(&md.join("new"));

    let (source, sink, stop, handle) = start(fast(&md));
    until("a first scan", || detail(&source, "scans") >= 1).await;
    let listings = detail(&source, "listings");
    assert_eq!(listings, 2, "new/ and cur/ read once");
    let scans = detail(&source, "scans");
    until("fifty more scans", || {
        detail(&source, "scans") >= scans + 50
    })
    .await;
    assert_eq!(
        detail(&source, "listings"),
        listings,
        "an idle scan re-read a directory"
    );

    // A delivery changes new/: it is read again and the message found.
    deliver(&md, "30000.N.host", &message("n"));
    sink.wait_for(1).await;
    assert!(detail(&source, "listings") > listings);
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn batches_are_bounded_in_bytes_and_a_larger_message_goes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().to_path_buf();
    make_dirs(&md);
    let body = |n: usize| format!("Subject: x\n\n{}\n", "y".repeat(n));
    for i in 0..10 {
        deliver(&md, &format!("{i:02}.S.host"), &body(1000));
    }
    deliver(&md, "05x.B.host", &body(5000));
    let mut config = MaildirConfig::new(&md);
    config.poll_interval = Duration::from_secs(3600);
    config.max_batch_bytes = 3000;
    let (_source, sink, stop, handle) = start(config);
    sink.wait_for(11).await;
    let batches = sink.batches.lock().unwrap().clone();
    assert!(batches.len() >= 5, "{batches:?}");
    for (count, bytes) in &batches {
        assert!(*bytes <= 3000 || *count == 1, "{batches:?}");
    }
    assert!(
        batches
            .iter()
            .any(|(count, bytes)| *count == 1 && *bytes > 5000)
    );
    stop.stop();
    handle.await.unwrap().unwrap();
}

#[test]
fn a_path_that_is_a_file_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    for path in [file.clone(), file.join("below")] {
        let Err(runtime_contracts::ConfigError::Invalid(issues)) =
            MaildirConfig::new(&path).validate()
        else {
            panic!("{} accepted", path.display());
        };
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].key, "path");
        assert!(issues[0].message.contains("is a file"), "{issues:?}");
    }
    // Missing is fine (created at start), and so is an existing Maildir.
    MaildirConfig::new(dir.path().join("fresh/md"))
        .validate()
        .unwrap();
    MaildirConfig::new(dir.path()).validate().unwrap();

    let mut config = MaildirConfig::new(dir.path());
    config.max_batch_bytes = 0;
    config.poll_interval = Duration::ZERO;
    let Err(runtime_contracts::ConfigError::Invalid(issues)) = config.validate() else {
        panic!("zero values accepted");
    };
    let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, vec!["poll_interval", "max_batch_bytes"]);
}
