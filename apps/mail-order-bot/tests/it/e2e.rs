//! End to end: mixed order emails in, exactly the right orders out, every message filed.
//!
//! ONE test body, [`mixed_batch`], runs against every source (Maildir, IMAP polling, IMAP
//! IDLE), both queues (memory, Redis) and both databases (SQLite, PostgreSQL); the setups
//! differ only in the config file the harness writes. That is the architecture's point:
//! switching a source or a queue is configuration, not code.

use std::time::Duration;

use crate::harness::{
    Db, Env, Queue, SAMPLES, Setup, Source, eventually, identity, sample, summary,
};

/// The seven samples plus a second copy of the first (same Message-ID): seven orders
/// with the documented reasons; eight messages, all `\Seen`, accepted ones (and the
/// duplicate) in Processed, rejected ones in Rejected, nothing left in the inbox.
async fn mixed_batch(setup: Setup) {
    let env = Env::new(setup.clone()).await;
    let (runtime, _module) = env.compose().await;
    runtime.start().await.unwrap();

    for (file, _) in SAMPLES {
        env.deliver(&sample(file)).await;
    }
    env.deliver(&sample(SAMPLES[0].0)).await;

    let mut expected: Vec<(String, String, Option<String>)> = SAMPLES
        .iter()
        .map(|(file, reason)| {
            (
                identity(&sample(file)),
                if reason.is_some() {
                    "rejected"
                } else {
                    "accepted"
                }
                .to_owned(),
                reason.map(str::to_owned),
            )
        })
        .collect();
    expected.sort();

    let store = env.store().await;
    eventually(
        "all orders stored and filed",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            let env = &env;
            async move {
                let orders = store.list().await.map_err(|e| e.to_string())?;
                let inbox = env.mailbox("INBOX").await;
                let processed = env.mailbox("Processed").await;
                let rejected = env.mailbox("Rejected").await;
                let seen = |m: &Vec<Vec<String>>| m.iter().all(|f| f.iter().any(|x| x == "\\Seen"));
                let state = format!(
                    "{} orders, inbox {inbox:?}, processed {processed:?}, rejected {rejected:?}",
                    orders.len()
                );
                if orders.len() == 7
                    && inbox.is_empty()
                    && processed.len() == 5
                    && rejected.len() == 3
                    && seen(&processed)
                    && seen(&rejected)
                {
                    Ok(orders)
                } else {
                    Err(state)
                }
            }
        },
    )
    .await;

    let orders = store.list().await.unwrap();
    assert_eq!(summary(&orders), expected, "{setup:?}");
    let accepted_total: i64 = orders.iter().map(|o| o.total_cents).sum();
    assert!(accepted_total > 0);
    assert!(
        orders
            .iter()
            .filter(|o| o.status == "accepted")
            .all(|o| !o.lines.is_empty())
    );

    let status = runtime.handle().status().await;
    let q = &status.queues[0];
    assert_eq!(q.dead, 0, "{q:?}");
    runtime.stop().await;
    store.close().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_memory_sqlite() {
    mixed_batch(Setup::new(Source::Maildir, Queue::Memory, Db::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_redis_sqlite() {
    mixed_batch(Setup::new(Source::Maildir, Queue::Redis, Db::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_poll_memory_sqlite() {
    mixed_batch(Setup::new(Source::ImapPoll, Queue::Memory, Db::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_poll_redis_sqlite() {
    mixed_batch(Setup::new(Source::ImapPoll, Queue::Redis, Db::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_idle_memory_sqlite() {
    mixed_batch(Setup::new(Source::ImapIdle, Queue::Memory, Db::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_idle_redis_sqlite() {
    mixed_batch(Setup::new(Source::ImapIdle, Queue::Redis, Db::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_memory_postgres() {
    mixed_batch(Setup::new(Source::Maildir, Queue::Memory, Db::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_poll_redis_postgres() {
    mixed_batch(Setup::new(Source::ImapPoll, Queue::Redis, Db::Postgres)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_idle_memory_postgres() {
    mixed_batch(Setup::new(Source::ImapIdle, Queue::Memory, Db::Postgres)).await;
}

/// Implicit TLS against the fixture's CA, messages left in the inbox (no folders): every
/// one `\Seen` there, and the orders right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_over_tls_with_the_fixture_ca() {
    let mut setup = Setup::new(Source::ImapPoll, Queue::Memory, Db::Sqlite);
    setup.tls = true;
    setup.folders = false;
    let env = Env::new(setup).await;
    let (runtime, _module) = env.compose().await;
    runtime.start().await.unwrap();
    for (file, _) in &SAMPLES[..3] {
        env.deliver(&sample(file)).await;
    }
    let store = env.store().await;
    eventually("three orders, inbox seen", Duration::from_secs(30), || {
        let store = store.clone();
        let env = &env;
        async move {
            let n = store.list().await.map_err(|e| e.to_string())?.len();
            let inbox = env.mailbox("INBOX").await;
            let all_seen = inbox.iter().all(|f| f.iter().any(|x| x == "\\Seen"));
            if n == 3 && inbox.len() == 3 && all_seen {
                Ok(())
            } else {
                Err(format!("{n} orders, inbox {inbox:?}"))
            }
        }
    })
    .await;
    let health = runtime.handle().health().check_all().await;
    let source = health
        .iter()
        .find(|h| h.name == "source:mail")
        .expect("source health");
    assert_eq!(
        source.status,
        runtime_contracts::HealthStatus::Up,
        "{source:?}"
    );
    runtime.stop().await;
    store.close().await;
    env.cleanup().await;
}

/// A configuration reload that changes the inline catalog applies to the next message:
/// an unknown SKU before, an accepted order after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_reload_applies_to_new_messages() {
    let mut setup = Setup::new(Source::Maildir, Queue::Memory, Db::Sqlite);
    setup.folders = false;
    let env = Env::new(setup).await;
    let base = env.config_toml();
    let catalog_line = base
        .lines()
        .find(|l| l.starts_with("catalog_file"))
        .unwrap()
        .to_owned();
    let with_items = |items: &str| base.replace(&catalog_line, items);
    let one = "[[orders.catalog]]\nsku = \"WIDGET-1\"\nprice_cents = 100\n";
    std::fs::write(&env.config_path, with_items(one)).unwrap();
    let (runtime, _module) = env.compose().await;
    runtime.start().await.unwrap();
    let store = env.store().await;
    let order = |id: &str| {
        format!("From: a@b.example\r\nMessage-ID: <{id}>\r\nSubject: order\r\n\r\nNEW-7 x 2\r\n")
            .into_bytes()
    };
    let wait_for = |id: &'static str| {
        let store = store.clone();
        async move {
            eventually(id, Duration::from_secs(20), || {
                let store = store.clone();
                async move {
                    match store.find(id).await.map_err(|e| e.to_string())? {
                        Some(o) => Ok(o),
                        None => Err("not stored yet".into()),
                    }
                }
            })
            .await
        }
    };
    env.deliver(&order("before@reload")).await;
    let before = wait_for("before@reload").await;
    assert_eq!(before.reason.as_deref(), Some("unknown_sku:NEW-7"));

    let two = format!("{one}[[orders.catalog]]\nsku = \"NEW-7\"\nprice_cents = 250\n");
    std::fs::write(&env.config_path, with_items(&two)).unwrap();
    let report = runtime.handle().config().reload().await;
    assert!(report.accepted, "{report:?}");
    env.deliver(&order("after@reload")).await;
    let after = wait_for("after@reload").await;
    assert_eq!(
        (after.status.as_str(), after.total_cents),
        ("accepted", 500)
    );
    runtime.stop().await;
    store.close().await;
    env.cleanup().await;
}
