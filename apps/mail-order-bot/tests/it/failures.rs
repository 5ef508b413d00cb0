//! Failures end to end: a poison message, and kill -9 of the real binary mid-batch.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::harness::{
    Db, Env, Queue, Setup, Source, eventually, identity, sample, wait_all_ordered_and_filed,
};

fn email(i: usize, customer: &str) -> Vec<u8> {
    format!(
        "From: Buyer {i} <{customer}>\r\nTo: orders@shop.example\r\nSubject: PO: K-{i}\r\n\
         Message-ID: <e2e-{i}-{customer}>\r\nContent-Type: text/plain\r\n\r\nWIDGET-1 x {q}\r\n",
        q = i % 7 + 1
    )
    .into_bytes()
}

async fn pg_exec(url: &str, sql: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// A PostgreSQL trigger raises for one customer: that message's task fails every
/// attempt, is dead-lettered after `max_attempts`, and its message is flagged
/// `$OrderBotFailed` and left unseen — and the source never produces it again (a later
/// message is processed while the dead-letter count stays at one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_flagged_and_dead_lettered_not_retried_forever() {
    let mut setup = Setup::new(Source::ImapPoll, Queue::Memory, Db::Postgres);
    setup.max_attempts = 2;
    setup.folders = false;
    let env = Env::new(setup).await;
    let store = env.store().await; // runs the migrations, so the table exists
    pg_exec(
        &env.db_url,
        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
           IF NEW.customer = 'poison@example.com' THEN RAISE EXCEPTION 'poisoned customer'; END IF; \
           RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER poison BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .await;

    let (runtime, _module) = env.compose().await;
    runtime.start().await.unwrap();
    env.deliver(&email(1, "poison@example.com")).await;
    env.deliver(&sample("01-accepted-plain.eml")).await;
    env.deliver(&sample("05-rejected-unknown-sku.eml")).await;

    let handle = runtime.handle();
    eventually(
        "poison dead-lettered and flagged",
        Duration::from_secs(30),
        || {
            let (store, env, handle) = (store.clone(), &env, handle.clone());
            async move {
                let n = store.list().await.map_err(|e| e.to_string())?.len();
                let inbox = env.mailbox("INBOX").await;
                let stats = handle.status().await.queues[0].clone();
                let flagged = inbox
                    .iter()
                    .filter(|f| f.iter().any(|x| x == "$OrderBotFailed"))
                    .count();
                let seen = inbox
                    .iter()
                    .filter(|f| f.iter().any(|x| x == "\\Seen"))
                    .count();
                if n == 2 && flagged == 1 && seen == 2 && stats.dead == 1 {
                    Ok(())
                } else {
                    Err(format!("{n} orders, inbox {inbox:?}, queue {stats:?}"))
                }
            }
        },
    )
    .await;
    let inbox = env.mailbox("INBOX").await;
    let poisoned: Vec<_> = inbox
        .iter()
        .filter(|f| f.iter().any(|x| x == "$OrderBotFailed"))
        .collect();
    assert!(
        !poisoned[0].iter().any(|x| x == "\\Seen"),
        "a failed message is not marked read: {inbox:?}"
    );

    // The source keeps polling (a new message gets through) but leaves the poison alone.
    env.deliver(&sample("03-accepted-csv-attachment.eml")).await;
    let marker = identity(&sample("03-accepted-csv-attachment.eml"));
    eventually("a later message processed", Duration::from_secs(30), || {
        let (store, marker) = (store.clone(), marker.clone());
        async move {
            match store.find(&marker).await.map_err(|e| e.to_string())? {
                Some(_) => Ok(()),
                None => Err("not yet".into()),
            }
        }
    })
    .await;
    let stats = handle.status().await.queues[0].clone();
    assert_eq!(stats.dead, 1, "{stats:?}");
    assert_eq!(stats.dead_lettered_total, 1, "{stats:?}");
    assert!(
        store
            .list()
            .await
            .unwrap()
            .iter()
            .all(|o| o.customer != "poison@example.com")
    );
    runtime.stop().await;
    store.close().await;
    env.cleanup().await;
}

fn spawn_bot(env: &Env, log: &str) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mail-order-bot"));
    cmd.args(["run", "--config"])
        .arg(&env.config_path)
        .current_dir(env.dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.path().join(log)).unwrap());
    for (k, _) in std::env::vars() {
        if k.starts_with("MOB_") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().unwrap()
}

/// kill -9 of the bot while it works through a batch (each insert slowed by a trigger,
/// Redis queue, IMAP polling), then a restart: every message has exactly one order and is
/// filed, none lost, none doubled. The restarted bot then stops on SIGTERM with exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_batch_then_restart_loses_nothing_and_doubles_nothing() {
    const N: usize = 40;
    let mut setup = Setup::new(Source::ImapPoll, Queue::Redis, Db::Postgres);
    setup.concurrency = 2;
    let env = Env::new(setup).await;
    let store = env.store().await;
    pg_exec(
        &env.db_url,
        "CREATE FUNCTION slow() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(0.04); \
           RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER slow BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION slow();",
    )
    .await;
    for i in 0..N {
        env.deliver(&email(i, &format!("k{i}@example.com"))).await;
    }

    let mut first = spawn_bot(&env, "first.log");
    let at_kill = eventually("the first orders", Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            let n = store.list().await.map_err(|e| e.to_string())?.len();
            if n >= 3 {
                Ok(n)
            } else {
                Err(format!("{n} orders"))
            }
        }
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    eprintln!("kill -9 at {at_kill} orders of {N}");
    first.wait().unwrap();
    let after_kill = store.list().await.unwrap().len();
    assert!(
        after_kill < N,
        "the batch should still have been running at the kill ({at_kill} then {after_kill} of {N})"
    );

    let mut second = spawn_bot(&env, "second.log");
    wait_all_ordered_and_filed(
        "every message ordered and filed",
        Duration::from_secs(60),
        &env,
        &store,
        N,
    )
    .await;
    let orders = store.list().await.unwrap();
    let ids: BTreeSet<_> = orders.iter().map(|o| o.message_id.clone()).collect();
    let expected: BTreeSet<_> = (0..N)
        .map(|i| format!("e2e-{i}-k{i}@example.com"))
        .collect();
    assert_eq!(ids, expected);
    assert!(orders.iter().all(|o| o.status == "accepted"));

    let pid = second.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = second.wait().unwrap();
    let log = std::fs::read_to_string(env.dir.path().join("second.log")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "graceful stop exits 0; log:\n{log}");
    store.close().await;
    env.cleanup().await;
}

/// A TCP gate in front of PostgreSQL: closed, it drops every connection at once (the
/// database looks down); open, it forwards.
struct Gate {
    addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn closed() -> Gate {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = open.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Gate { addr, open, task }
    }

    fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The order store is down when mail arrives: the messages stay unseen, no attempt is
/// used up (max_attempts is 2, so a counted outage would dead-letter them), readiness
/// shows the store down; when the database comes back every message is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_outage_keeps_mail_unseen_and_catches_up_without_using_attempts() {
    let mut setup = Setup::new(Source::ImapPoll, Queue::Memory, Db::Postgres);
    setup.max_attempts = 2;
    setup.folders = false;
    let env = Env::new(setup).await;
    let direct = env.store().await; // migrated through the direct URL
    let gate = Gate::closed().await;
    let gated_url = env.db_url.replace("127.0.0.1:5432", &gate.addr.to_string());
    std::fs::write(
        &env.config_path,
        env.config_toml().replace(&env.db_url, &gated_url),
    )
    .unwrap();

    let (runtime, _module) = env.compose().await;
    runtime.start().await.unwrap();
    let files = [
        "01-accepted-plain.eml",
        "02-accepted-html.eml",
        "05-rejected-unknown-sku.eml",
    ];
    for f in files {
        env.deliver(&sample(f)).await;
    }
    let handle = runtime.handle();
    eventually(
        "tasks handed back during the outage",
        Duration::from_secs(30),
        || {
            let handle = handle.clone();
            async move {
                let status = handle.status().await;
                let q = status.queues[0].clone();
                let store = handle
                    .health()
                    .check_all()
                    .await
                    .into_iter()
                    .find(|h| h.name == "store")
                    .map(|h| h.status);
                if q.released_total >= 1 && store == Some(runtime_contracts::HealthStatus::Down) {
                    Ok(())
                } else {
                    Err(format!("queue {q:?}, store {store:?}"))
                }
            }
        },
    )
    .await;
    assert!(direct.list().await.unwrap().is_empty());
    let inbox = env.mailbox("INBOX").await;
    assert_eq!(inbox.len(), 3);
    assert!(
        inbox.iter().all(|f| f.is_empty()),
        "unseen during the outage: {inbox:?}"
    );

    gate.open();
    eventually(
        "caught up after the outage",
        Duration::from_secs(30),
        || {
            let (direct, env) = (direct.clone(), &env);
            async move {
                let n = direct.list().await.map_err(|e| e.to_string())?.len();
                let inbox = env.mailbox("INBOX").await;
                let seen = inbox
                    .iter()
                    .filter(|f| f.iter().any(|x| x == "\\Seen"))
                    .count();
                if n == 3 && seen == 3 {
                    Ok(())
                } else {
                    Err(format!("{n} orders, inbox {inbox:?}"))
                }
            }
        },
    )
    .await;
    let q = handle.status().await.queues[0].clone();
    assert_eq!((q.dead, q.dead_lettered_total), (0, 0), "{q:?}");
    runtime.stop().await;
    gate.task.abort();
    direct.close().await;
    env.cleanup().await;
}

/// Redis down at start-up: the bot still starts (the queue connects lazily), readiness
/// is down naming the queue, and it stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_up_starts_not_ready() {
    let env = Env::new(Setup::new(Source::Maildir, Queue::Redis, Db::Sqlite)).await;
    std::fs::write(
        &env.config_path,
        env.config_toml().replace(
            "backend = \"redis\"",
            "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:1/0\"",
        ),
    )
    .unwrap();
    let (runtime, _module) = env.compose().await;
    runtime.start().await.unwrap();
    let handle = runtime.handle();
    // The Maildir source and the store come up; the queue stays down.
    let ready = eventually("all but the queue up", Duration::from_secs(10), || {
        let handle = handle.clone();
        async move {
            let ready = handle.health().readiness(handle.state()).await;
            let others_up = ready
                .components
                .iter()
                .filter(|c| !c.name.starts_with("queue"))
                .all(|c| c.status == runtime_contracts::HealthStatus::Up);
            if others_up {
                Ok(ready)
            } else {
                Err(format!("{ready:?}"))
            }
        }
    })
    .await;
    assert_eq!(ready.status, runtime_contracts::HealthStatus::Down);
    let queue = ready
        .components
        .iter()
        .find(|c| c.name.starts_with("queue"))
        .expect("queue health");
    assert_eq!(
        queue.status,
        runtime_contracts::HealthStatus::Down,
        "{queue:?}"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(20), runtime.stop()).await;
    assert!(stopped.is_ok(), "stop must not hang while Redis is down");
    env.cleanup().await;
}
