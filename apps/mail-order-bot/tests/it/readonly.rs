//! A store that cannot be written is an outage, not a failure: the real binary, run as a
//! non-root user (root ignores file modes) on a SQLite file that is read-only before it
//! starts, dead-letters nothing and says 503 naming the store; once the file is writable
//! every mail becomes an order without a restart.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Db, Env, Queue, Setup, Source, eventually, free_port, get};

const N: usize = 5;

fn email(i: usize) -> Vec<u8> {
    format!(
        "From: Buyer {i} <ro{i}@example.com>\r\nTo: orders@shop.example\r\nSubject: PO: RO-{i}\r\n\
         Message-ID: <readonly-{i}@example.com>\r\nContent-Type: text/plain\r\n\r\nWIDGET-1 x 2\r\n"
    )
    .into_bytes()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown_nobody(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The bot as `nobody`, killed if the test ends without stopping it.
struct Bot(Child);

impl Drop for Bot {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_store_dead_letters_nothing_and_recovers_without_restart() {
    read_only_store(true).await;
}

/// Only the file is read-only: SQLite then opens it read-only without complaint, and such a
/// pooled connection stays read-only after the `chmod` unless it is recycled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sqlite_file_in_a_writable_folder_recovers_without_restart() {
    read_only_store(false).await;
}

async fn read_only_store(folder_read_only: bool) {
    let mut setup = Setup::new(Source::Maildir, Queue::Memory, Db::Sqlite);
    setup.concurrency = 2;
    let env = Env::new(setup).await;
    // The database in a folder of its own, migrated, then read-only for `nobody`.
    let var = env.dir.path().join("var");
    std::fs::create_dir(&var).unwrap();
    let db = var.join("orders.db");
    let db_url = format!("sqlite://{}", db.display());
    let store = mail_order_bot::store::OrderStore::connect(&db_url)
        .await
        .unwrap();
    store.close().await;
    for entry in std::fs::read_dir(&var).unwrap() {
        let name = entry.unwrap().file_name();
        assert_eq!(
            name, "orders.db",
            "only the database file is left after close"
        );
    }
    chmod(&db, 0o444);
    if folder_read_only {
        chmod(&var, 0o555);
    } else {
        chown_nobody(&var);
        chown_nobody(&db);
    }
    let config = env.config_toml().replace(&env.db_url, &db_url);
    std::fs::write(&env.config_path, config).unwrap();
    let port = free_port();
    let own = env.dir.path().join("control.toml");
    std::fs::write(
        &own,
        format!("[control]\nenabled = true\nbind = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    mail_order_bot_maildir(&env);
    chown_nobody(&env.maildir);
    chmod(env.dir.path(), 0o755);
    let log = env.dir.path().join("bot.log");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_mail-order-bot"))
        .args(["run", "--config"])
        .arg(&env.config_path)
        .arg("--config")
        .arg(&own)
        .current_dir(env.dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, _) in std::env::vars() {
        if k.starts_with("MOB_") {
            cmd.env_remove(k);
        }
    }
    let mut bot = Bot(cmd.spawn().expect("setpriv (util-linux) is required"));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    for i in 0..N {
        env.deliver(&email(i)).await;
    }
    // Each mail tried at least `max_attempts` times over: before the fix they would all
    // be dead-lettered by now. Nothing may fail meanwhile.
    eventually(
        "every mail tried several times as an outage",
        Duration::from_secs(60),
        || {
            let (env, log_text) = (&env, &log_text);
            async move {
                let text = log_text();
                let failed = env.mailbox("Failed").await;
                let flagged = env
                    .mailbox("INBOX")
                    .await
                    .into_iter()
                    .filter(|f| f.iter().any(|x| x == "$OrderBotFailed"))
                    .count();
                assert!(
                    failed.is_empty() && flagged == 0 && !text.contains("dead-letter"),
                    "mail failed while the store was read-only: failed {failed:?}, \
                     {flagged} flagged; log:\n{text}"
                );
                let outages = text.matches("order store unavailable").count();
                if outages >= 3 * N {
                    Ok(())
                } else {
                    Err(format!("{outages} outage warnings; log:\n{text}"))
                }
            }
        },
    )
    .await;
    let (code, body) = get(port, "/health/ready").await.unwrap();
    assert_eq!(code, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        body.contains("\"store\""),
        "readiness names the store: {body}"
    );
    assert!(
        ready.to_string().contains("readonly") || ready.to_string().contains("read-only"),
        "readiness says why: {body}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&get(port, "/status").await.unwrap().1).unwrap();
    assert_eq!(status["queues"][0]["dead"], 0, "{status}");

    // Writable again: no restart, every mail becomes an order.
    chown_nobody(&var);
    chmod(&var, 0o755);
    // SQLite creates -wal and -shm with the database file's mode, so all of them.
    for entry in std::fs::read_dir(&var).unwrap() {
        chmod(&entry.unwrap().path(), 0o644);
    }
    eventually(
        "every mail ordered and filed after the store is writable",
        Duration::from_secs(60),
        || {
            let (env, log_text) = (&env, &log_text);
            async move {
                let processed = env.mailbox("Processed").await;
                let inbox = env.mailbox("INBOX").await;
                if processed.len() == N && inbox.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} processed, inbox {inbox:?}; log:\n{}",
                        processed.len(),
                        log_text()
                    ))
                }
            }
        },
    )
    .await;
    eventually("readiness up again", Duration::from_secs(20), || async {
        match get(port, "/health/ready").await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let pid = bot.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let exit = bot.0.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "log:\n{}", log_text());

    let store = mail_order_bot::store::OrderStore::connect(&db_url)
        .await
        .unwrap();
    let orders = store.list().await.unwrap();
    assert_eq!(orders.len(), N, "{orders:#?}");
    let ids: Vec<i64> = orders.iter().map(|o| o.id).collect();
    assert_eq!(
        ids,
        (1..=N as i64).collect::<Vec<_>>(),
        "ids stay consecutive"
    );
    store.close().await;
    env.cleanup().await;
}

/// Creates the Maildir (and nothing else) so that it can be handed to `nobody`.
fn mail_order_bot_maildir(env: &Env) {
    runtime_adapters_maildir::Maildir::new(&env.maildir)
        .create()
        .unwrap();
}
