//! The acknowledger: `\Seen` and moves on success, the failure keyword on dead-letter,
//! idempotent, from the origin key alone.

use std::time::Duration;

use runtime_adapters_imap::{ImapAcknowledger, ImapMode, MessageKey, TAG_REJECTED};
use runtime_contracts::{FinalOutcome, SourceAcknowledger, Task, TaskSource};
use runtime_testkit::dovecot::DovecotServer;

use crate::support::{CuttingProxy, Running, config, eventually, mail, source};

fn key_of(tasks: &[Task], tag: &str) -> String {
    tasks
        .iter()
        .map(|t| t.origin.as_ref().unwrap().key.clone())
        .find(|k| k.contains(&format!("MID=<{tag}@")))
        .unwrap_or_else(|| panic!("no task for {tag}"))
}

fn ok() -> FinalOutcome {
    FinalOutcome::Succeeded { tag: None }
}

fn dead() -> FinalOutcome {
    FinalOutcome::DeadLettered {
        reason: "poison".into(),
    }
}

#[tokio::test]
async fn outcomes_flag_and_leave_mail_in_place_without_folders() {
    let server = DovecotServer::start().await.unwrap();
    for tag in ["a", "b", "c"] {
        server.append("INBOX", &mail(tag)).await.unwrap();
    }
    let cfg = config(&server);
    let running = Running::start(source("inbox", cfg.clone(), ImapMode::Poll));
    let tasks = running.wait_for_tasks(3, Duration::from_secs(10)).await;
    running.stop().await;

    // Standalone, as in a worker-only process.
    let ack = ImapAcknowledger::new(cfg.clone(), "inbox").unwrap();
    ack.acknowledge(&key_of(&tasks, "a"), &ok()).await.unwrap();
    ack.acknowledge(&key_of(&tasks, "b"), &dead())
        .await
        .unwrap();
    // Idempotent.
    ack.acknowledge(&key_of(&tasks, "a"), &ok()).await.unwrap();
    ack.acknowledge(&key_of(&tasks, "b"), &dead())
        .await
        .unwrap();

    let msgs = server.messages("INBOX").await.unwrap();
    assert_eq!(msgs.len(), 3);
    assert!(
        msgs[0].has("\\Seen") && !msgs[0].has("$OrderBotFailed"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].has("$OrderBotFailed") && !msgs[1].has("\\Seen"),
        "{msgs:?}"
    );
    assert!(msgs[2].flags.is_empty(), "{msgs:?}");

    // A fresh source (as after a restart) only finds the untouched message: seen mail and
    // flagged mail are never produced again.
    let running = Running::start(source("inbox", cfg, ImapMode::Poll));
    let again = running.wait_for_tasks(1, Duration::from_secs(10)).await;
    // The first catch-up published everything it found in one batch (last_uid = 3).
    let src = running.source.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let src = src.clone();
            async move { src.status().details["last_uid"] == 3 }
        })
        .await
    );
    let again_now = running.sink.enqueued();
    assert_eq!(again_now.len(), 1, "{again_now:?}");
    assert!(again[0].origin.as_ref().unwrap().key.contains("MID=<c@"));
    running.stop().await;
}

async fn folders_case(server: DovecotServer) {
    for tag in ["ok", "rej", "bad"] {
        server.append("INBOX", &mail(tag)).await.unwrap();
    }
    let mut cfg = config(&server);
    cfg.processed_folder = "Processed".into();
    cfg.rejected_folder = "Rejected".into();
    cfg.failed_folder = "Failed".into();
    let running = Running::start(source("inbox", cfg.clone(), ImapMode::Poll));
    let tasks = running.wait_for_tasks(3, Duration::from_secs(10)).await;
    // The source's own acknowledger, with its own connection.
    let ack = running.source.acknowledger().unwrap();
    let rejected = FinalOutcome::Succeeded {
        tag: Some(TAG_REJECTED.into()),
    };
    for _ in 0..2 {
        ack.acknowledge(&key_of(&tasks, "ok"), &ok()).await.unwrap();
        ack.acknowledge(&key_of(&tasks, "rej"), &rejected)
            .await
            .unwrap();
        ack.acknowledge(&key_of(&tasks, "bad"), &dead())
            .await
            .unwrap();
    }
    running.stop().await;

    assert!(server.messages("INBOX").await.unwrap().is_empty());
    let processed = server.messages("Processed").await.unwrap();
    let rejected = server.messages("Rejected").await.unwrap();
    let failed = server.messages("Failed").await.unwrap();
    assert_eq!(processed.len(), 1, "{processed:?}");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(processed[0].has("\\Seen") && rejected[0].has("\\Seen"));
    assert!(failed[0].has("$OrderBotFailed") && !failed[0].has("\\Seen"));
}

#[tokio::test]
async fn outcomes_move_mail_to_folders() {
    folders_case(DovecotServer::start().await.unwrap()).await;
}

#[tokio::test]
async fn moves_fall_back_to_copy_and_expunge_without_move() {
    folders_case(
        DovecotServer::builder()
            .without_move()
            .start()
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn after_a_uidvalidity_change_the_message_is_found_by_message_id() {
    let server = DovecotServer::start().await.unwrap();
    server.append("INBOX", &mail("m1")).await.unwrap();
    let cfg = config(&server);
    let ack = ImapAcknowledger::new(cfg, "inbox").unwrap();
    let real = server.uidvalidity("INBOX").await.unwrap();
    let stale = MessageKey {
        mailbox: "INBOX".into(),
        uidvalidity: real.wrapping_sub(1),
        uid: 99,
        message_id: Some("<m1@test.example>".into()),
    };
    ack.acknowledge(&stale.to_string(), &ok()).await.unwrap();
    assert!(server.messages("INBOX").await.unwrap()[0].has("\\Seen"));
    // No Message-ID and a stale epoch: nothing can be identified; not an error.
    let blind = MessageKey {
        message_id: None,
        ..stale
    };
    ack.acknowledge(&blind.to_string(), &dead()).await.unwrap();
    assert!(!server.messages("INBOX").await.unwrap()[0].has("$OrderBotFailed"));
    // A key this adapter did not make is a configuration error, not an outage.
    assert!(matches!(
        ack.acknowledge("nonsense", &ok()).await,
        Err(runtime_contracts::SourceError::Config(_))
    ));
}

#[tokio::test]
async fn the_acknowledger_reconnects_after_losing_its_connection() {
    let mut server = DovecotServer::start().await.unwrap();
    for tag in ["r1", "r2"] {
        server.append("INBOX", &mail(tag)).await.unwrap();
    }
    let uv = server.uidvalidity("INBOX").await.unwrap();
    let key = |uid: u32, tag: &str| {
        MessageKey {
            mailbox: "INBOX".into(),
            uidvalidity: uv,
            uid,
            message_id: Some(format!("<{tag}@test.example>")),
        }
        .to_string()
    };
    let ack = ImapAcknowledger::new(config(&server), "inbox").unwrap();
    ack.acknowledge(&key(1, "r1"), &ok()).await.unwrap();
    server.restart().await.unwrap();
    ack.acknowledge(&key(2, "r2"), &ok()).await.unwrap();
    assert!(
        server
            .messages("INBOX")
            .await
            .unwrap()
            .iter()
            .all(|m| m.has("\\Seen"))
    );
    // While the server is down the error is an outage.
    server.stop();
    let err = ack.acknowledge(&key(2, "r2"), &ok()).await.unwrap_err();
    assert!(
        matches!(err, runtime_contracts::SourceError::Unavailable { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn folder_paths_follow_the_servers_hierarchy_delimiter() {
    // The fixture's Maildir++ layout has the delimiter `.` and refuses `/` in names.
    let server = DovecotServer::start().await.unwrap();
    server.append("INBOX", &mail("p")).await.unwrap();
    let mut cfg = config(&server);
    cfg.processed_folder = "Orders/Processed".into();
    let running = Running::start(source("inbox", cfg.clone(), ImapMode::Poll));
    let tasks = running.wait_for_tasks(1, Duration::from_secs(10)).await;
    running.stop().await;

    let ack = ImapAcknowledger::new(cfg, "inbox").unwrap();
    ack.acknowledge(&key_of(&tasks, "p"), &ok()).await.unwrap();
    assert!(server.messages("INBOX").await.unwrap().is_empty());
    let filed = server.messages("Orders.Processed").await.unwrap();
    assert_eq!(filed.len(), 1, "{:?}", server.mailboxes().await);
    assert!(filed[0].has("\\Seen"), "{filed:?}");
}

#[tokio::test]
async fn a_folder_the_server_refuses_is_a_permanent_error_and_leaves_mail_unseen() {
    let server = DovecotServer::start().await.unwrap();
    server.append("INBOX", &mail("r")).await.unwrap();
    let mut cfg = config(&server);
    // An empty level (`Orders..Processed` after mapping) is never a valid name.
    cfg.processed_folder = "Orders//Processed".into();
    let running = Running::start(source("inbox", cfg.clone(), ImapMode::Poll));
    let tasks = running.wait_for_tasks(1, Duration::from_secs(10)).await;
    running.stop().await;

    let ack = ImapAcknowledger::new(cfg.clone(), "inbox").unwrap();
    let key = key_of(&tasks, "r");
    let err = ack.acknowledge(&key, &ok()).await.unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(ack.refused(), 1);
    // Not \Seen: a restart would find it again rather than strand it.
    let msgs = server.messages("INBOX").await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert!(!msgs[0].has("\\Seen"), "{msgs:?}");
    let running = Running::start(source("inbox", cfg, ImapMode::Poll));
    running.wait_for_tasks(1, Duration::from_secs(10)).await;
    running.stop().await;
    // The dead-letter path still works and marks it visibly.
    ack.acknowledge(&key, &dead()).await.unwrap();
    let msgs = server.messages("INBOX").await.unwrap();
    assert!(
        msgs[0].has("$OrderBotFailed") && !msgs[0].has("\\Seen"),
        "{msgs:?}"
    );
}

async fn cut_move_case(server: DovecotServer, cut: &'static str) {
    server.append("INBOX", &mail("cut")).await.unwrap();
    let mut cfg = config(&server);
    cfg.processed_folder = "Processed".into();
    let running = Running::start(source("inbox", cfg.clone(), ImapMode::Poll));
    let tasks = running.wait_for_tasks(1, Duration::from_secs(10)).await;
    running.stop().await;
    let key = key_of(&tasks, "cut");

    // Every connection through the proxy dies the moment the move (or copy) is sent.
    let proxy = CuttingProxy::start(&server, cut).await;
    let mut cut_cfg = cfg.clone();
    cut_cfg.port = Some(proxy.port());
    let ack = ImapAcknowledger::new(cut_cfg, "inbox").unwrap();
    let err = ack.acknowledge(&key, &ok()).await.unwrap_err();
    assert!(!err.is_permanent(), "{err:?}");
    // Neither seen nor moved: a restart finds it again and files it.
    let msgs = server.messages("INBOX").await.unwrap();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(!msgs[0].has("\\Seen"), "{msgs:?}");
    assert!(
        server
            .messages("Processed")
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let running = Running::start(source("inbox", cfg.clone(), ImapMode::Poll));
    running.wait_for_tasks(1, Duration::from_secs(10)).await;
    running.stop().await;

    // Without the cut the same acknowledgement files it, seen.
    let ack = ImapAcknowledger::new(cfg, "inbox").unwrap();
    ack.acknowledge(&key, &ok()).await.unwrap();
    assert!(server.messages("INBOX").await.unwrap().is_empty());
    let filed = server.messages("Processed").await.unwrap();
    assert_eq!(filed.len(), 1, "{filed:?}");
    assert!(filed[0].has("\\Seen"), "{filed:?}");
}

#[tokio::test]
async fn a_move_cut_off_midway_leaves_mail_unseen_and_in_place() {
    cut_move_case(DovecotServer::start().await.unwrap(), "UID MOVE").await;
}

#[tokio::test]
async fn a_copy_cut_off_midway_leaves_mail_unseen_and_in_place() {
    let server = DovecotServer::builder()
        .without_move()
        .start()
        .await
        .unwrap();
    cut_move_case(server, "UID COPY").await;
}

#[tokio::test]
async fn the_watched_mailbox_follows_the_servers_hierarchy_delimiter_too() {
    // Configured with `/`; the fixture's delimiter is `.`.
    let server = DovecotServer::start().await.unwrap();
    server.append("Orders.Inbox", &mail("w")).await.unwrap();
    let mut cfg = config(&server);
    cfg.mailbox = "Orders/Inbox".into();
    cfg.processed_folder = "Orders/Processed".into();
    let running = Running::start(source("inbox", cfg.clone(), ImapMode::Poll));
    let tasks = running.wait_for_tasks(1, Duration::from_secs(10)).await;
    running.stop().await;
    let key: MessageKey = key_of(&tasks, "w").parse().unwrap();
    assert_eq!(key.mailbox, "Orders.Inbox");

    let ack = ImapAcknowledger::new(cfg, "inbox").unwrap();
    ack.acknowledge(&key.to_string(), &ok()).await.unwrap();
    assert!(server.messages("Orders.Inbox").await.unwrap().is_empty());
    let filed = server.messages("Orders.Processed").await.unwrap();
    assert_eq!(filed.len(), 1, "{:?}", server.mailboxes().await);
    assert!(filed[0].has("\\Seen"), "{filed:?}");
}

#[tokio::test]
async fn refused_acknowledgements_are_counted_in_the_source_status() {
    let mut server = DovecotServer::start().await.unwrap();
    server.append("INBOX", &mail("c")).await.unwrap();
    let mut cfg = config(&server);
    cfg.processed_folder = "Orders//Processed".into();
    let running = Running::start(source("inbox", cfg, ImapMode::Poll));
    let tasks = running.wait_for_tasks(1, Duration::from_secs(10)).await;
    let key = key_of(&tasks, "c");
    let refused = || running.source.status().details["ack_refused"].clone();
    assert_eq!(refused(), 0);

    // The source's own acknowledger: what /status shows for the source counts it.
    let ack = running.source.acknowledger().unwrap();
    for n in 1..=2 {
        let err = ack.acknowledge(&key, &ok()).await.unwrap_err();
        assert!(err.is_permanent(), "{err:?}");
        assert_eq!(refused(), n);
    }
    // An outage is not a refusal.
    server.stop();
    let err = ack.acknowledge(&key, &ok()).await.unwrap_err();
    assert!(!err.is_permanent(), "{err:?}");
    assert_eq!(refused(), 2);
    running.stop().await;
}

#[tokio::test]
async fn a_copy_left_unseen_by_a_cut_after_the_move_is_flagged_on_redelivery() {
    let server = DovecotServer::start().await.unwrap();
    server.append("INBOX", &mail("half")).await.unwrap();
    let mut cfg = config(&server);
    cfg.processed_folder = "Processed".into();
    let running = Running::start(source("inbox", cfg.clone(), ImapMode::Poll));
    let tasks = running.wait_for_tasks(1, Duration::from_secs(10)).await;
    running.stop().await;
    let key = key_of(&tasks, "half");

    // The connection dies right after the move, before the copy is flagged (as if the
    // process had been killed there): filed, but unseen.
    let proxy = CuttingProxy::start(&server, "SELECT \"PROCESSED\"").await;
    let mut cut_cfg = cfg.clone();
    cut_cfg.port = Some(proxy.port());
    let ack = ImapAcknowledger::new(cut_cfg, "inbox").unwrap();
    ack.acknowledge(&key, &ok()).await.unwrap();
    assert!(server.messages("INBOX").await.unwrap().is_empty());
    let filed = server.messages("Processed").await.unwrap();
    assert_eq!(filed.len(), 1, "{filed:?}");
    assert!(!filed[0].has("\\Seen"), "{filed:?}");

    // The task comes back (its queue ack never happened): the message is gone from the
    // inbox, and its filed copy is flagged after all.
    let ack = ImapAcknowledger::new(cfg, "inbox").unwrap();
    ack.acknowledge(&key, &ok()).await.unwrap();
    let filed = server.messages("Processed").await.unwrap();
    assert_eq!(filed.len(), 1, "{filed:?}");
    assert!(filed[0].has("\\Seen"), "{filed:?}");
}
