//! Several instances, one mailbox: two real bot processes share one Dovecot mailbox, one
//! Redis queue and one PostgreSQL database. Only the holder of the leader lease reads the
//! mailbox; kill -9 of the holder hands the mailbox to the other within the lease time,
//! and every message still ends as exactly one order, `\Seen` and filed.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mail_order_bot::store::OrderStore;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{
    Db, Env, Queue, Setup, Source, eventually, free_port, wait_all_ordered_and_filed,
};

fn email(i: usize) -> Vec<u8> {
    format!(
        "From: Buyer {i} <i{i}@example.com>\r\nTo: orders@shop.example\r\nSubject: PO: L-{i}\r\n\
         Message-ID: <instances-{i}@example.com>\r\nContent-Type: text/plain\r\n\r\nWIDGET-1 x {q}\r\n",
        q = i % 5 + 1
    )
    .into_bytes()
}

/// A bot process that is killed (SIGKILL) if the test ends without stopping it.
struct Bot {
    name: &'static str,
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Bot {
    /// `mail-order-bot run` on the shared config plus one that gives it its own control
    /// port: two `--config` layers, as an operator would run several instances.
    fn spawn(env: &Env, name: &'static str) -> Bot {
        let port = free_port();
        let own = env.dir.path().join(format!("{name}.toml"));
        // Each instance keeps its own runtime state, as on its own machine.
        std::fs::write(
            &own,
            format!(
                "[control]\nenabled = true\nbind = \"127.0.0.1:{port}\"\n\n\
                 [runtime]\nstate_dir = \"{name}-state\"\n"
            ),
        )
        .unwrap();
        let log = env.dir.path().join(format!("{name}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mail-order-bot"));
        cmd.args(["run", "--config"])
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
        Bot {
            name,
            child: cmd.spawn().unwrap(),
            port,
            log,
        }
    }

    /// The mail source's status from `GET /status`.
    async fn source(&self) -> Result<Value, String> {
        let status = get_json(self.port, "/status").await?;
        status["sources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "mail"))
            .cloned()
            .ok_or_else(|| format!("{}: no mail source in {status}", self.name))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` on the control plane at `port`, as JSON; an error while it is not up.
async fn get_json(port: u16, path: &str) -> Result<Value, String> {
    let call = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect {port}: {e}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP response: {text}"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("{head}\n{body}"));
        }
        serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| format!("GET {path} on port {port} timed out"))?
}

fn leader(source: &Value) -> Option<bool> {
    source["details"]["leader"].as_bool()
}

fn redis_get(key: &str) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "--raw", "GET", key])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn slow_inserts(url: &str) {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION slow() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(0.1); \
           RETURN NEW; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER slow BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION slow();",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

/// Two bot processes, `leader_lease = "1s"`: exactly one leads and only it reads the
/// mailbox (the other's source never produced and says `leader: false`; the Redis lease
/// names the leader). kill -9 of the leader mid-batch: the other takes the lease within
/// the lease time and reads the mailbox — including mail that arrived after the kill —
/// and every message ends as exactly one order, `\Seen`, in Processed. A graceful stop
/// of the survivor exits 0 and gives the lease back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_mailbox_and_the_survivor_takes_over_after_kill_9() {
    const BEFORE: usize = 20;
    const AFTER: usize = 10;
    const N: usize = BEFORE + AFTER;
    let mut setup = Setup::new(Source::ImapPoll, Queue::Redis, Db::Postgres);
    setup.concurrency = 2;
    let env = Env::new(setup).await;
    let config = env
        .config_toml()
        .replace("[mail]\n", "[mail]\nleader_lease = \"1s\"\n");
    assert!(config.contains("leader_lease"));
    std::fs::write(&env.config_path, config).unwrap();
    // The runtime's lease `source:mail` in the Redis queue's key space.
    let lease_key = format!("plba:{{{}}}:lease:source:mail", env.queue_name);
    let store = env.store().await; // migrates, so the trigger has its table
    slow_inserts(&env.db_url).await;
    for i in 0..BEFORE {
        env.deliver(&email(i)).await;
    }

    let mut bots = vec![Bot::spawn(&env, "a"), Bot::spawn(&env, "b")];

    // One leader, the other standby; sampled until the batch is well under way. Every
    // sample: never two leaders, the leader never changes, the standby never produced.
    let mut leader_seen: Option<usize> = None;
    let mut samples = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (leader_idx, at_kill) = loop {
        let a = bots[0].source().await;
        let b = bots[1].source().await;
        if let (Ok(a), Ok(b)) = (&a, &b) {
            samples += 1;
            let flags = [leader(a), leader(b)];
            assert!(
                flags.iter().all(Option::is_some),
                "details.leader on both: {a} {b}"
            );
            assert!(
                flags != [Some(true), Some(true)],
                "two leaders at once: {a} {b}"
            );
            if let Some(i) = flags.iter().position(|f| *f == Some(true)) {
                assert!(
                    leader_seen.is_none_or(|l| l == i),
                    "leadership moved without a failure: {a} {b}"
                );
                leader_seen = Some(i);
                let standby = if i == 0 { b } else { a };
                assert_eq!(
                    standby["produced"], 0,
                    "the standby read the mailbox: {standby}"
                );
                let n = store.list().await.unwrap().len();
                if n >= 3 {
                    assert_eq!(
                        redis_get(&lease_key),
                        [a, b][i]["details"]["holder"].as_str().unwrap(),
                        "the Redis lease names the instance that says it leads"
                    );
                    break (i, n);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader with orders flowing in time: a {a:?}, b {b:?}\n--- a\n{}\n--- b\n{}",
            bots[0].log_text(),
            bots[1].log_text()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let survivor_idx = 1 - leader_idx;

    bots[leader_idx].child.kill().unwrap(); // SIGKILL: no release, the lease must expire
    bots[leader_idx].child.wait().unwrap();
    let killed_at = Instant::now();
    let after_kill = store.list().await.unwrap().len();
    eprintln!(
        "kill -9 of {} at {at_kill} orders of {BEFORE} ({samples} samples with one leader)",
        bots[leader_idx].name
    );
    assert!(
        after_kill < BEFORE,
        "the batch should still have been running at the kill ({at_kill} then {after_kill})"
    );
    // Mail that only a new leader can find.
    for i in BEFORE..N {
        env.deliver(&email(i)).await;
    }

    let survivor = &bots[survivor_idx];
    let source = eventually(
        "the survivor takes the lease",
        Duration::from_secs(10),
        || async {
            let s = survivor.source().await?;
            match leader(&s) {
                Some(true) => Ok(s),
                _ => Err(s.to_string()),
            }
        },
    )
    .await;
    eprintln!(
        "takeover {:?} after the kill (lease 1s)",
        killed_at.elapsed()
    );
    assert_eq!(
        redis_get(&lease_key),
        source["details"]["holder"].as_str().unwrap()
    );

    wait_all_ordered_and_filed(
        "every message ordered once, seen and filed",
        Duration::from_secs(30),
        &env,
        &store,
        N,
    )
    .await;
    let orders = store.list().await.unwrap();
    assert_eq!(orders.len(), N, "exactly one order per message");
    let ids: BTreeSet<_> = orders.iter().map(|o| o.message_id.clone()).collect();
    let expected: BTreeSet<_> = (0..N)
        .map(|i| format!("instances-{i}@example.com"))
        .collect();
    assert_eq!(ids, expected);
    assert!(orders.iter().all(|o| o.status == "accepted"));
    let source = survivor.source().await.unwrap();
    assert!(
        source["produced"].as_u64().unwrap() >= AFTER as u64,
        "the survivor read the mail that came after the kill: {source}"
    );

    // A graceful stop gives the lease back at once instead of letting it expire.
    let survivor = &mut bots[survivor_idx];
    let pid = survivor.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = survivor.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "graceful stop exits 0; log:\n{}",
        survivor.log_text()
    );
    assert_eq!(redis_get(&lease_key), "", "the lease is released on stop");
    drop(bots);
    store.close().await;
    env.cleanup().await;
}

/// The schedule `name`'s status from `GET /status`.
async fn schedule(bot: &Bot, name: &str) -> Result<Value, String> {
    let status = get_json(bot.port, "/status").await?;
    status["schedules"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .cloned()
        .ok_or_else(|| format!("{}: no schedule {name} in {status}", bot.name))
}

/// Two bot processes on one Redis queue with `every = "1s"`: only the lease holder
/// ticks, so over several seconds every tick runs once in all: the published ticks of
/// both add up to the report rows, one per distinct tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_run_each_tick_of_a_schedule_once() {
    let env = Env::new(Setup::new(Source::Maildir, Queue::Redis, Db::Postgres)).await;
    let config = format!(
        "{}\n[[schedules]]\nname = \"summary\"\nevery = \"1s\"\nroute = \"daily-summary\"\n",
        env.config_toml()
    );
    std::fs::write(&env.config_path, config).unwrap();
    let store: OrderStore = env.store().await;
    let bots = [Bot::spawn(&env, "a"), Bot::spawn(&env, "b")];
    // Both up and one of them ticking.
    let leader = eventually("one instance ticks", Duration::from_secs(20), || async {
        let a = schedule(&bots[0], "summary").await?;
        let b = schedule(&bots[1], "summary").await?;
        let runs = |s: &Value| s["runs_total"].as_u64().unwrap_or(0);
        match (runs(&a), runs(&b)) {
            (0, 0) => Err(format!("no runs yet: {a} {b}")),
            (_, 0) => Ok(0),
            (0, _) => Ok(1),
            _ => Err(format!("both tick: {a} {b}")),
        }
    })
    .await;
    // Several ticks later: still one ticking instance, each tick once.
    let rows = eventually("six reports", Duration::from_secs(20), || async {
        let rows = store.reports().await.map_err(|e| e.to_string())?;
        if rows.len() >= 6 {
            Ok(rows)
        } else {
            Err(format!("{} rows", rows.len()))
        }
    })
    .await;
    let standby = schedule(&bots[1 - leader], "summary").await.unwrap();
    assert_eq!(standby["runs_total"], 0, "the standby ticked: {standby}");
    let lead = schedule(&bots[leader], "summary").await.unwrap();
    let ticks: BTreeSet<_> = rows.iter().map(|r| r.tick.clone()).collect();
    assert_eq!(ticks.len(), rows.len(), "a tick reported twice: {rows:?}");
    assert!(
        lead["runs_total"].as_u64().unwrap() >= rows.len() as u64,
        "the leader published every reported tick: {lead} {rows:?}"
    );
    let lease = redis_get(&format!("plba:{{{}}}:lease:source:summary", env.queue_name));
    let status = get_json(bots[leader].port, "/status").await.unwrap();
    let source = status["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "summary"))
        .cloned()
        .unwrap();
    assert_eq!(
        lease,
        source["details"]["holder"].as_str().unwrap_or_default(),
        "the schedule's lease in Redis names the instance that ticks: {source}"
    );
    drop(bots);
    store.close().await;
    env.cleanup().await;
}
