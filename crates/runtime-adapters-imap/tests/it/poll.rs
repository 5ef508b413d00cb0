//! Polling: each unseen message is published once, with its origin; oversized mail is
//! published as its header only.

use std::time::Duration;

use runtime_adapters_imap::{HEADER_OVERSIZE, HEADER_UID, ImapMode, MessageKey, ROUTE};
use runtime_contracts::{HealthStatus, TaskSource};
use runtime_testkit::dovecot::DovecotServer;

use crate::support::{Running, config, eventually, mail, source};

#[tokio::test]
async fn polling_publishes_each_unseen_message_once() {
    let server = DovecotServer::start().await.unwrap();
    for i in 0..5 {
        server
            .append("INBOX", &mail(&format!("p{i}")))
            .await
            .unwrap();
    }
    let mut cfg = config(&server);
    cfg.rescan_interval = Duration::from_millis(300);
    let running = Running::start(source("inbox", cfg, ImapMode::Poll));
    let tasks = running.wait_for_tasks(5, Duration::from_secs(10)).await;

    let mut uids = Vec::new();
    for t in &tasks {
        assert_eq!(t.route, ROUTE);
        let origin = t.origin.as_ref().expect("origin");
        assert_eq!(origin.source, "inbox");
        let key: MessageKey = origin.key.parse().expect("key parses");
        assert_eq!(key.mailbox, "INBOX");
        assert_eq!(key.uidvalidity, server.uidvalidity("INBOX").await.unwrap());
        assert_eq!(
            t.headers.get(HEADER_UID),
            Some(key.uid.to_string().as_str())
        );
        let text = String::from_utf8_lossy(&t.payload);
        let tag = key.message_id.as_deref().unwrap().trim_matches(['<', '>']);
        assert!(text.contains(&format!("body of {}", tag.split('@').next().unwrap())));
        uids.push(key.uid);
    }
    uids.sort();
    assert_eq!(uids, vec![1, 2, 3, 4, 5]);

    // Full rescans find the still-queued messages again: the sink refuses them.
    let sink = running.sink.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let sink = sink.clone();
            async move { sink.duplicates() >= 5 }
        })
        .await,
        "no rescan happened"
    );
    assert_eq!(running.sink.count(), 5);
    // Peeking never marks mail read.
    assert!(
        server
            .messages("INBOX")
            .await
            .unwrap()
            .iter()
            .all(|m| !m.has("\\Seen"))
    );

    // New mail is found by the next poll.
    server.append("INBOX", &mail("p5")).await.unwrap();
    running.wait_for_tasks(6, Duration::from_secs(5)).await;

    let status = running.source.status();
    assert_eq!(status.kind, "imap-poll");
    assert_eq!(status.produced, 6);
    assert_eq!(status.details["mode"], "poll");
    assert_eq!(status.details["last_uid"], 6);
    let health = running.source.health().unwrap().check().await;
    assert_eq!(health.status, HealthStatus::Up, "{health:?}");
    running.stop().await;
}

/// A fetch chunk of large mail is fetched and published in groups of at most 16 MiB
/// (one message over it alone), not held in memory whole: three 7 MiB mails go as 14 + 7.
#[tokio::test]
async fn large_mail_is_published_in_byte_bounded_groups() {
    let server = DovecotServer::start().await.unwrap();
    for i in 0..3 {
        let mut m = mail(&format!("large{i}"));
        for _ in 0..(7 * 1024 * 1024 / 78) {
            m.extend_from_slice(&[b'y'; 76]);
            m.extend_from_slice(b"\r\n");
        }
        server.append("INBOX", &m).await.unwrap();
    }
    let mut cfg = config(&server);
    cfg.max_message_bytes = 25 * 1024 * 1024;
    let running = Running::start(source("inbox", cfg, ImapMode::Poll));
    running.wait_for_tasks(3, Duration::from_secs(60)).await;
    let batches = running.sink.batch_bytes();
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert!(
        batches.iter().all(|b| *b <= 16 * 1024 * 1024),
        "a batch over 16 MiB: {batches:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_published_as_header_only() {
    let server = DovecotServer::start().await.unwrap();
    let mut big = mail("big");
    big.extend(std::iter::repeat_n(b'x', 5000));
    big.extend_from_slice(b"\r\n");
    server.append("INBOX", &big).await.unwrap();
    server.append("INBOX", &mail("small")).await.unwrap();
    let mut cfg = config(&server);
    cfg.max_message_bytes = 1000;
    let running = Running::start(source("inbox", cfg, ImapMode::Poll));
    let tasks = running.wait_for_tasks(2, Duration::from_secs(10)).await;
    let big_task = tasks
        .iter()
        .find(|t| t.headers.get(HEADER_OVERSIZE).is_some())
        .expect("an oversize task");
    let size: usize = big_task
        .headers
        .get(HEADER_OVERSIZE)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(size, big.len());
    let text = String::from_utf8_lossy(&big_task.payload);
    assert!(
        text.contains("Subject: test big") && !text.contains("xxxx"),
        "{text}"
    );
    assert!(
        big_task
            .origin
            .as_ref()
            .unwrap()
            .key
            .contains("MID=<big@test.example>")
    );
    let small = tasks
        .iter()
        .find(|t| t.headers.get(HEADER_OVERSIZE).is_none())
        .unwrap();
    assert!(String::from_utf8_lossy(&small.payload).contains("body of small"));
    running.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_reported_without_the_password() {
    let server = DovecotServer::start().await.unwrap();
    let mut cfg = config(&server);
    cfg.password = Some(runtime_contracts::Secret::new("hunter2-wrong"));
    let running = Running::start(source("inbox", cfg, ImapMode::Poll));
    let src = running.source.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let src = src.clone();
            async move { src.status().errors >= 1 }
        })
        .await
    );
    let status = running.source.status();
    let text = serde_json::to_string(&status).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(status.last_error.unwrap().contains("login"));
    let health = running.source.health().unwrap().check().await;
    assert_eq!(health.status, HealthStatus::Down);
    running.stop().await;
}

/// An idle source wakes up a few times a second at most, polling or idling.
#[tokio::test]
async fn an_idle_source_does_not_spin() {
    let server = runtime_testkit::dovecot::DovecotServer::start()
        .await
        .unwrap();
    for mode in [
        runtime_adapters_imap::ImapMode::Poll,
        runtime_adapters_imap::ImapMode::Idle,
    ] {
        let running = crate::support::Running::start(crate::support::source(
            "idle",
            crate::support::config(&server),
            mode,
        ));
        running.wait_connected().await;
        let cycles = || running.source.status().details["cycles"].as_u64().unwrap();
        let before = cycles();
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let woke = cycles() - before;
        // Poll every 200 ms: ~12; IDLE: none without mail.
        let most = if mode == runtime_adapters_imap::ImapMode::Poll {
            15
        } else {
            2
        };
        assert!(woke <= most, "{mode:?}: {woke} wake-ups in 2.5 s");
        running.stop().await;
    }
}
