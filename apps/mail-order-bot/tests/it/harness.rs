//! End-to-end harness: a real mailbox (Dovecot or a Maildir), a real queue (memory or
//! Redis), a real database (SQLite file or a PostgreSQL database of its own), and the
//! bot composed from a config file exactly as `mail-order-bot run` composes it. A setup
//! differs from another only in the config file it writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_order_bot::app::{ComposeOptions, compose};
use mail_order_bot::config::config_spec;
use mail_order_bot::domain::{Catalog, DEFAULT_MAX_MESSAGE_BYTES, process_message};
use mail_order_bot::module::MailOrderModule;
use mail_order_bot::store::{OrderStore, StoredOrder};
use runtime_adapters_maildir::Maildir;
use runtime_core::RuntimeManager;
use runtime_core::cli::{ConfigArgs, load_config};
use runtime_testkit::dovecot::DovecotServer;
use runtime_testkit::queue_conformance::unique_name;

use crate::support::PgDatabase;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Maildir,
    ImapPoll,
    ImapIdle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Memory,
    Redis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// What a test runs against.
#[derive(Clone, Debug)]
pub struct Setup {
    pub source: Source,
    pub queue: Queue,
    pub db: Db,
    /// Implicit TLS against the fixture's CA.
    pub tls: bool,
    /// File messages into Processed / Rejected / Failed.
    pub folders: bool,
    pub concurrency: usize,
    pub max_attempts: u32,
}

impl Setup {
    pub fn new(source: Source, queue: Queue, db: Db) -> Setup {
        Setup {
            source,
            queue,
            db,
            tls: false,
            folders: true,
            concurrency: 4,
            max_attempts: 3,
        }
    }
}

/// The shipped samples and the reject reason each must get (`None`: accepted).
pub const SAMPLES: [(&str, Option<&str>); 7] = [
    ("01-accepted-plain.eml", None),
    ("02-accepted-html.eml", None),
    ("03-accepted-csv-attachment.eml", None),
    ("04-accepted-utf8.eml", None),
    (
        "05-rejected-unknown-sku.eml",
        Some("unknown_sku:SPROCKET-9"),
    ),
    (
        "06-rejected-bad-quantity.eml",
        Some("invalid_quantity:GADGET-7"),
    ),
    ("07-rejected-no-order-lines.eml", Some("no_order_lines")),
];

pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples")
}

pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(samples_dir().join(name)).unwrap()
}

/// The identity the domain gives a message.
pub fn identity(raw: &[u8]) -> String {
    let catalog = Catalog::from_csv_file(&samples_dir().join("catalog.csv")).unwrap();
    process_message(raw, &catalog, DEFAULT_MAX_MESSAGE_BYTES, None).message_id
}

/// Fails loudly when Redis is not there.
pub fn require_redis() {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "ping"])
        .output();
    let ok = out
        .as_ref()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG");
    assert!(
        ok,
        "Redis is required at 127.0.0.1:6379 (and redis-cli): start it with \
         `service redis-server start` or `redis-server --daemonize yes` ({out:?})"
    );
}

/// Deletes every key of the Redis queue `name`.
pub fn delete_redis_queue(name: &str) {
    let out = std::process::Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("plba:{{{name}}}*")])
        .output()
        .unwrap();
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect();
    if !keys.is_empty() {
        let status = std::process::Command::new("redis-cli")
            .arg("DEL")
            .args(&keys)
            .output()
            .unwrap();
        assert!(status.status.success());
    }
}

/// A prepared environment: servers, database and config file.
pub struct Env {
    pub setup: Setup,
    pub dir: tempfile::TempDir,
    pub dovecot: Option<DovecotServer>,
    pub pg: Option<PgDatabase>,
    pub queue_name: String,
    pub db_url: String,
    pub maildir: PathBuf,
    pub config_path: PathBuf,
}

impl Env {
    pub async fn new(setup: Setup) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let dovecot = match setup.source {
            Source::Maildir => None,
            _ => {
                let mut b = DovecotServer::builder();
                if setup.tls {
                    b = b.tls();
                }
                Some(b.start().await.unwrap_or_else(|e| {
                    panic!(
                        "Dovecot is required (/usr/sbin/dovecot; on Debian \
                         `apt-get install -y dovecot-imapd`): {e:#}"
                    )
                }))
            }
        };
        if setup.queue == Queue::Redis {
            require_redis();
        }
        let pg = match setup.db {
            Db::Postgres => Some(PgDatabase::create().await),
            Db::Sqlite => None,
        };
        let db_url = match &pg {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite://{}", dir.path().join("orders.db").display()),
        };
        let env = Env {
            queue_name: unique_name("mob-e2e"),
            maildir: dir.path().join("maildir"),
            config_path: dir.path().join("bot.toml"),
            db_url,
            setup,
            dir,
            dovecot,
            pg,
        };
        std::fs::write(&env.config_path, env.config_toml()).unwrap();
        env
    }

    /// The whole configuration: the only thing that differs between setups.
    pub fn config_toml(&self) -> String {
        let s = &self.setup;
        let source = match s.source {
            Source::Maildir => "maildir",
            Source::ImapPoll => "imap-poll",
            Source::ImapIdle => "imap-idle",
        };
        let backend = match s.queue {
            Queue::Memory => "memory",
            Queue::Redis => "redis",
        };
        // IDLE must deliver on its own: its fallback poll is far away.
        let poll = if s.source == Source::ImapIdle {
            "60s"
        } else {
            "200ms"
        };
        let (host, port, tls, ca) = match &self.dovecot {
            Some(d) if s.tls => (
                "127.0.0.1",
                d.tls_port().unwrap(),
                "tls",
                format!(
                    "ca_file = {:?}\n",
                    d.ca_pem().unwrap().display().to_string()
                ),
            ),
            Some(d) => ("127.0.0.1", d.port(), "none", String::new()),
            None => ("127.0.0.1", 1, "none", String::new()),
        };
        let (user, password) = match &self.dovecot {
            Some(d) => (d.user().to_owned(), d.password().to_owned()),
            None => (String::new(), String::new()),
        };
        let folders = if s.folders {
            "processed_folder = \"Processed\"\nrejected_folder = \"Rejected\"\nfailed_folder = \"Failed\"\n"
        } else {
            ""
        };
        format!(
            r#"[control]
enabled = false

[queue]
backend = "{backend}"
name = "{queue}"
visibility_timeout = "3s"
max_attempts = {max_attempts}

[workers]
concurrency = {concurrency}
task_timeout = "10s"
retry_base = "50ms"
retry_max = "200ms"

[runtime]
shutdown_timeout = "5s"

[mail]
source = "{source}"
maildir = {maildir:?}
host = "{host}"
port = {port}
tls = "{tls}"
{ca}username = "{user}"
password = "{password}"
poll_interval = "{poll}"
reconnect_min = "50ms"
reconnect_max = "500ms"
{folders}
[orders]
database_url = "{db}"
catalog_file = {catalog:?}
"#,
            queue = self.queue_name,
            max_attempts = s.max_attempts,
            concurrency = s.concurrency,
            maildir = self.maildir.display().to_string(),
            db = self.db_url,
            catalog = samples_dir().join("catalog.csv").display().to_string(),
        )
    }

    /// Delivers a message into the mailbox the setup reads.
    pub async fn deliver(&self, raw: &[u8]) {
        match &self.dovecot {
            Some(d) => d.append("INBOX", raw).await.unwrap(),
            None => {
                use std::sync::atomic::{AtomicU64, Ordering};
                static SEQ: AtomicU64 = AtomicU64::new(0);
                let root = Maildir::new(&self.maildir);
                root.create().unwrap();
                let name = format!(
                    "{}.M{}P{}.e2e",
                    runtime_contracts::now_millis(),
                    SEQ.fetch_add(1, Ordering::Relaxed),
                    std::process::id()
                );
                let tmp = self.maildir.join("tmp").join(&name);
                std::fs::write(&tmp, raw).unwrap();
                std::fs::rename(&tmp, self.maildir.join("new").join(&name)).unwrap();
            }
        }
    }

    /// Loads the config file (no environment) and composes the bot, not started.
    pub async fn compose(&self) -> (RuntimeManager, Arc<MailOrderModule>) {
        let spec = config_spec().env_vars(Vec::new);
        let config = load_config(
            &spec,
            &ConfigArgs {
                config: vec![self.config_path.clone()],
            },
        )
        .await
        .unwrap_or_else(|e| panic!("config of {:?} is invalid: {e}", self.setup));
        let composed = compose(
            Arc::new(config),
            &ComposeOptions {
                handle_signals: false,
                control_port_fallback: false,
            },
        )
        .await
        .unwrap();
        (composed.runtime, composed.module)
    }

    pub async fn store(&self) -> OrderStore {
        OrderStore::connect(&self.db_url).await.unwrap()
    }

    /// (unseen/seen state) Messages per folder: (folder, count, all seen, any failed).
    pub async fn mailbox(&self, folder: &str) -> Vec<Vec<String>> {
        match &self.dovecot {
            Some(d) => d.flags_of(folder).await.unwrap(),
            None => {
                let root = Maildir::new(&self.maildir);
                let dir = if folder == "INBOX" {
                    Some(root)
                } else {
                    root.folder(folder)
                };
                dir.and_then(|d| d.list().ok())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| {
                        f.flags
                            .chars()
                            .map(|c| match c {
                                'S' => "\\Seen".to_owned(),
                                'F' => "$OrderBotFailed".to_owned(),
                                other => other.to_string(),
                            })
                            .collect()
                    })
                    .collect()
            }
        }
    }

    pub async fn cleanup(self) {
        if self.setup.queue == Queue::Redis {
            delete_redis_queue(&self.queue_name);
        }
        if let Some(pg) = self.pg {
            pg.drop_now().await;
        }
    }
}

/// Polls `check` until it returns `Some`, or fails with `what` and the last state.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last state: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `message_id -> (status, reason)` of stored orders.
pub fn summary(orders: &[StoredOrder]) -> Vec<(String, String, Option<String>)> {
    let mut s: Vec<_> = orders
        .iter()
        .map(|o| (o.message_id.clone(), o.status.clone(), o.reason.clone()))
        .collect();
    s.sort();
    s
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True when every message of `flags` carries `\Seen`.
pub fn all_seen(flags: &[Vec<String>]) -> bool {
    flags.iter().all(|f| f.iter().any(|x| x == "\\Seen"))
}

/// Waits until the store holds `n` orders, the inbox is empty and all `n` messages are
/// `\Seen` in the Processed folder.
pub async fn wait_all_ordered_and_filed(
    what: &str,
    timeout: Duration,
    env: &Env,
    store: &mail_order_bot::store::OrderStore,
    n: usize,
) {
    eventually(what, timeout, || {
        let (store, env) = (store.clone(), env);
        async move {
            let orders = store.list().await.map_err(|e| e.to_string())?.len();
            let inbox = env.mailbox("INBOX").await;
            let processed = env.mailbox("Processed").await;
            if orders == n && inbox.is_empty() && processed.len() == n && all_seen(&processed) {
                Ok(())
            } else {
                Err(format!(
                    "{orders} orders, inbox {inbox:?}, {} processed",
                    processed.len()
                ))
            }
        }
    })
    .await
}

/// `(status code, body)` of `GET path`, or an error while nothing answers.
pub async fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let call = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let code = text
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status in {text}"))?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
        Ok((code, body.unwrap_or_default()))
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .map_err(|_| "timed out".to_owned())?
}
