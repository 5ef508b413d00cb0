//! IDLE: new mail is published without waiting for a poll; mail that arrived while
//! disconnected is published after the reconnect; no IDLE on the server -> polling.

use std::time::{Duration, Instant};

use runtime_adapters_imap::{ImapConfig, ImapMode};
use runtime_contracts::{HealthStatus, TaskSource};
use runtime_testkit::dovecot::DovecotServer;

use crate::support::{Running, config, eventually, mail, source};

fn idle_config(server: &DovecotServer) -> ImapConfig {
    ImapConfig {
        // Far beyond the test's deadlines: only IDLE can deliver in time.
        poll_interval: Duration::from_secs(3600),
        rescan_interval: Duration::from_secs(3600),
        ..config(server)
    }
}

async fn wait_idle_mode(running: &Running, mode: &str) {
    running.wait_connected().await;
    let status = running.source.status();
    assert_eq!(status.details["mode"], mode, "{status:?}");
}

#[tokio::test]
async fn mail_appended_while_idling_is_published_without_a_poll() {
    let server = DovecotServer::start().await.unwrap();
    server.append("INBOX", &mail("before")).await.unwrap();
    let running = Running::start(source("inbox", idle_config(&server), ImapMode::Idle));
    running.wait_for_tasks(1, Duration::from_secs(10)).await;
    wait_idle_mode(&running, "idle").await;
    assert_eq!(running.source.kind(), "imap-idle");

    for (i, n) in [(0, 2), (1, 3)] {
        let start = Instant::now();
        server
            .append("INBOX", &mail(&format!("idle{i}")))
            .await
            .unwrap();
        running.wait_for_tasks(n, Duration::from_secs(5)).await;
        println!("idle: published {:?} after append", start.elapsed());
    }
    let health = running.source.health().unwrap().check().await;
    assert_eq!(health.status, HealthStatus::Up, "{health:?}");
    running.stop().await;
}

#[tokio::test]
async fn mail_that_arrived_while_disconnected_is_published_after_reconnect() {
    let mut server = DovecotServer::start().await.unwrap();
    let running = Running::start(source("inbox", idle_config(&server), ImapMode::Idle));
    wait_idle_mode(&running, "idle").await;

    // Kicked: the connection drops; the source reconnects and catches up.
    server.kill_connections().await.unwrap();
    server.append("INBOX", &mail("kicked")).await.unwrap();
    running.wait_for_tasks(1, Duration::from_secs(10)).await;

    // Server down while mail arrives (doveadm writes the Maildir directly).
    server.stop();
    let src = running.source.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let src = src.clone();
            async move { src.status().details["connected"] == false }
        })
        .await,
        "the source did not notice the server going away"
    );
    server.append("INBOX", &mail("down1")).await.unwrap();
    server.append("INBOX", &mail("down2")).await.unwrap();
    server.start_again().await.unwrap();
    let tasks = running.wait_for_tasks(3, Duration::from_secs(15)).await;
    let keys: Vec<_> = tasks
        .iter()
        .map(|t| t.origin.as_ref().unwrap().key.clone())
        .collect();
    assert!(keys.iter().any(|k| k.contains("<down2@")), "{keys:?}");
    let status = running.source.status();
    assert!(status.errors >= 2, "{status:?}");
    assert_eq!(status.details["mode"], "idle");
    running.stop().await;
}

#[tokio::test]
async fn a_server_without_idle_is_polled() {
    let server = DovecotServer::builder()
        .without_idle()
        .start()
        .await
        .unwrap();
    let cfg = ImapConfig {
        poll_interval: Duration::from_millis(200),
        ..idle_config(&server)
    };
    let running = Running::start(source("inbox", cfg, ImapMode::Idle));
    wait_idle_mode(&running, "poll").await;
    let status = running.source.status();
    assert_eq!(status.details["idle_supported"], false);
    assert_eq!(status.details["configured_mode"], "idle");
    server.append("INBOX", &mail("polled")).await.unwrap();
    running.wait_for_tasks(1, Duration::from_secs(5)).await;
    running.stop().await;
}

/// An IDLE source with nothing to do sleeps: no wake-ups, no catch-ups, until mail comes.
#[tokio::test]
async fn an_idle_source_does_not_spin() {
    let server = DovecotServer::start().await.unwrap();
    let running = Running::start(source("inbox", idle_config(&server), ImapMode::Idle));
    wait_idle_mode(&running, "idle").await;
    let count = |key: &str| running.source.status().details[key].as_u64().unwrap();
    let (cycles, wakeups) = (count("cycles"), count("idle_wakeups"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (woke, caught_up) = (count("idle_wakeups") - wakeups, count("cycles") - cycles);
    // Dovecot's keepalive comes every two minutes: nothing is due in 2.5 s.
    assert!(woke <= 2, "{woke} idle wake-ups in 2.5 s");
    assert!(caught_up <= 1, "{caught_up} catch-ups in 2.5 s");

    // The counters are live: one message wakes it and is published.
    server.append("INBOX", &mail("wake")).await.unwrap();
    running.wait_for_tasks(1, Duration::from_secs(5)).await;
    assert!(count("idle_wakeups") > wakeups + woke);
    assert!(count("cycles") > cycles + caught_up);
    running.stop().await;
}
