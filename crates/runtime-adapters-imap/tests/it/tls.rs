//! TLS and STARTTLS against the fixture's own CA.

use std::time::Duration;

use runtime_adapters_imap::{ImapAcknowledger, ImapMode, TlsMode};
use runtime_contracts::{FinalOutcome, SourceAcknowledger, TaskSource};
use runtime_testkit::dovecot::DovecotServer;

use crate::support::{Running, config, eventually, mail, source};

#[tokio::test]
async fn implicit_tls_and_starttls_work_with_the_fixture_ca() {
    let server = DovecotServer::builder().tls().start().await.unwrap();
    server.append("INBOX", &mail("t1")).await.unwrap();
    let ca = server.ca_pem().unwrap();

    let mut tls = config(&server);
    tls.tls = TlsMode::Tls;
    tls.port = server.tls_port();
    tls.ca_file = Some(ca.clone());
    let running = Running::start(source("inbox", tls.clone(), ImapMode::Poll));
    let tasks = running.wait_for_tasks(1, Duration::from_secs(10)).await;
    running.stop().await;
    let ack = ImapAcknowledger::new(tls, "inbox").unwrap();
    let key = tasks[0].origin.as_ref().unwrap().key.clone();
    ack.acknowledge(&key, &FinalOutcome::Succeeded { tag: None })
        .await
        .unwrap();
    assert!(server.messages("INBOX").await.unwrap()[0].has("\\Seen"));

    server.append("INBOX", &mail("t2")).await.unwrap();
    let mut starttls = config(&server);
    starttls.tls = TlsMode::Starttls;
    starttls.ca_file = Some(ca);
    let running = Running::start(source("inbox", starttls, ImapMode::Poll));
    let tasks = running.wait_for_tasks(1, Duration::from_secs(10)).await;
    assert!(tasks[0].origin.as_ref().unwrap().key.contains("MID=<t2@"));
    running.stop().await;
}

#[tokio::test]
async fn tls_without_the_ca_is_refused() {
    let server = DovecotServer::builder().tls().start().await.unwrap();
    server.append("INBOX", &mail("t1")).await.unwrap();
    let mut tls = config(&server);
    tls.tls = TlsMode::Tls;
    tls.port = server.tls_port();
    let running = Running::start(source("inbox", tls, ImapMode::Poll));
    let src = running.source.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let src = src.clone();
            async move { src.status().errors >= 1 }
        })
        .await
    );
    let err = running.source.status().last_error.unwrap();
    assert!(err.contains("tls"), "{err}");
    assert_eq!(running.sink.count(), 0);
    running.stop().await;
}
