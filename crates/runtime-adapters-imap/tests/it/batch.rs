//! Concurrent acknowledgements are batched: many at once, with mixed outcomes, stale and
//! gone keys, and callers cancelled midway, still give each message exactly its own
//! outcome.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use runtime_adapters_imap::{ImapAcknowledger, ImapConfig, MessageKey, TAG_REJECTED};
use runtime_contracts::{FinalOutcome, SourceAcknowledger};
use runtime_testkit::dovecot::DovecotServer;
use tokio::sync::Barrier;

use crate::support::{config, mail};

const FAILED: &str = "$OrderBotFailed";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    Ok,
    Rejected,
    Dead,
    Untouched,
}

/// Message `i` (UID `i + 1` in a fresh INBOX): what it gets.
fn want(i: usize) -> Want {
    match i % 4 {
        0 => Want::Ok,
        1 => Want::Rejected,
        2 => Want::Dead,
        _ => Want::Untouched,
    }
}

fn outcome(w: Want) -> FinalOutcome {
    match w {
        Want::Ok => FinalOutcome::Succeeded { tag: None },
        Want::Rejected => FinalOutcome::Succeeded {
            tag: Some(TAG_REJECTED.into()),
        },
        Want::Dead => FinalOutcome::DeadLettered {
            reason: "poison".into(),
        },
        Want::Untouched => unreachable!(),
    }
}

fn key(uidvalidity: u32, uid: u32, tag: &str) -> String {
    MessageKey {
        mailbox: "INBOX".into(),
        uidvalidity,
        uid,
        message_id: Some(format!("<{tag}@test.example>")),
    }
    .to_string()
}

async fn fill(server: &DovecotServer, n: usize) -> u32 {
    for i in 0..n {
        server
            .append("INBOX", &mail(&format!("m{i}")))
            .await
            .unwrap();
    }
    server.uidvalidity("INBOX").await.unwrap()
}

/// Acknowledges every `(key, outcome)` at once (twice each, concurrently: redeliveries)
/// over `cfg.ack_connections` connections and asserts each call succeeded.
async fn ack_all(cfg: ImapConfig, jobs: Vec<(String, FinalOutcome)>) {
    let ack = Arc::new(ImapAcknowledger::new(cfg, "inbox").unwrap());
    let start = Arc::new(Barrier::new(jobs.len() * 2));
    let mut handles = Vec::new();
    for (key, outcome) in jobs.iter().chain(jobs.iter()) {
        let (ack, start, key, outcome) = (ack.clone(), start.clone(), key.clone(), outcome.clone());
        handles.push(tokio::spawn(async move {
            start.wait().await;
            ack.acknowledge(&key, &outcome).await
        }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
}

/// The tags (`m<i>`) of the messages in `folder`, read from the fixture's Maildir.
fn tags_in(server: &DovecotServer, folder: &str) -> BTreeSet<usize> {
    let root = server
        .dir()
        .join("mail")
        .join(server.user())
        .join(format!(".{folder}"));
    let mut out = BTreeSet::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        for entry in entries {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let tag = text
                .split("Message-ID: <m")
                .nth(1)
                .and_then(|rest| rest.split('@').next())
                .unwrap();
            assert!(out.insert(tag.parse().unwrap()), "{tag} twice in {folder}");
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_outcomes_flag_each_message_right() {
    let server = DovecotServer::start().await.unwrap();
    let n = 80;
    let uv = fill(&server, n).await;
    let mut jobs = Vec::new();
    for i in 0..n {
        let w = want(i);
        if w == Want::Untouched {
            continue;
        }
        // Every fifth from a stale epoch: found again by Message-ID.
        let epoch = if i % 5 == 0 { uv.wrapping_sub(1) } else { uv };
        jobs.push((key(epoch, i as u32 + 1, &format!("m{i}")), outcome(w)));
    }
    // Messages that are gone (never existed) count as done.
    jobs.push((key(uv, 5000, "gone1"), outcome(Want::Ok)));
    jobs.push((key(uv, 5001, "gone2"), outcome(Want::Dead)));
    let mut cfg = config(&server);
    cfg.ack_connections = 2;
    ack_all(cfg, jobs).await;

    let msgs = server.messages("INBOX").await.unwrap();
    assert_eq!(msgs.len(), n);
    for m in &msgs {
        let i = m.uid as usize - 1;
        let (seen, failed) = (m.has("\\Seen"), m.has(FAILED));
        match want(i) {
            Want::Ok | Want::Rejected => assert!(seen && !failed, "m{i}: {m:?}"),
            Want::Dead => assert!(failed && !seen, "m{i}: {m:?}"),
            Want::Untouched => assert!(m.flags.is_empty(), "m{i}: {m:?}"),
        }
    }
}

async fn folders_case(server: DovecotServer) {
    let n = 60;
    let uv = fill(&server, n).await;
    let mut cfg = config(&server);
    cfg.processed_folder = "Processed".into();
    cfg.rejected_folder = "Rejected".into();
    cfg.failed_folder = "Failed".into();
    cfg.ack_connections = 3;
    let jobs = (0..n)
        .filter(|&i| want(i) != Want::Untouched)
        .map(|i| (key(uv, i as u32 + 1, &format!("m{i}")), outcome(want(i))))
        .collect();
    ack_all(cfg, jobs).await;

    let expect = |w: Want| -> BTreeSet<usize> { (0..n).filter(|&i| want(i) == w).collect() };
    assert_eq!(tags_in(&server, "Processed"), expect(Want::Ok));
    assert_eq!(tags_in(&server, "Rejected"), expect(Want::Rejected));
    assert_eq!(tags_in(&server, "Failed"), expect(Want::Dead));
    for folder in ["Processed", "Rejected"] {
        let msgs = server.messages(folder).await.unwrap();
        assert!(
            msgs.iter().all(|m| m.has("\\Seen") && !m.has(FAILED)),
            "{msgs:?}"
        );
    }
    let failed = server.messages("Failed").await.unwrap();
    assert!(
        failed.iter().all(|m| m.has(FAILED) && !m.has("\\Seen")),
        "{failed:?}"
    );
    let inbox: Vec<u32> = server
        .messages("INBOX")
        .await
        .unwrap()
        .iter()
        .map(|m| {
            assert!(m.flags.is_empty(), "{m:?}");
            m.uid
        })
        .collect();
    let untouched: Vec<u32> = expect(Want::Untouched)
        .iter()
        .map(|&i| i as u32 + 1)
        .collect();
    assert_eq!(inbox, untouched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mixed_outcomes_move_each_message_to_its_folder() {
    folders_case(DovecotServer::start().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_moves_fall_back_to_copy_and_expunge_without_move() {
    folders_case(
        DovecotServer::builder()
            .without_move()
            .start()
            .await
            .unwrap(),
    )
    .await;
}

/// Callers dropped while they (may) apply a batch for others: the others' messages are
/// still acknowledged, each call that returns Ok really was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_callers_do_not_lose_other_acknowledgements() {
    let server = DovecotServer::start().await.unwrap();
    let n = 60;
    let uv = fill(&server, n).await;
    let mut cfg = config(&server);
    cfg.ack_connections = 2;
    let ack = Arc::new(ImapAcknowledger::new(cfg, "inbox").unwrap());
    let start = Arc::new(Barrier::new(n));
    let mut handles = Vec::new();
    for i in 0..n {
        let (ack, start) = (ack.clone(), start.clone());
        let key = key(uv, i as u32 + 1, &format!("m{i}"));
        handles.push(tokio::spawn(async move {
            start.wait().await;
            let call = ack.acknowledge(&key, &FinalOutcome::Succeeded { tag: None });
            if i % 3 == 0 {
                // Dropped after its first steps, whatever it was doing then.
                let _ = tokio::time::timeout(Duration::from_micros(300), call).await;
                None
            } else {
                Some(call.await)
            }
        }));
    }
    let mut kept = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        if let Some(result) = h.await.unwrap() {
            result.unwrap();
            kept.push(i);
        }
    }
    let msgs = server.messages("INBOX").await.unwrap();
    for i in kept {
        assert!(msgs[i].has("\\Seen"), "m{i}: {:?}", msgs[i]);
    }
}
