//! Shared set-up of the mailbox benches: a Dovecot, generated order emails, the bot
//! composed from a config file.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use mail_order_bot::app::{ComposeOptions, Composed, compose};
use runtime_core::cli::{ConfigArgs, load_config};
use runtime_testkit::dovecot::DovecotServer;

/// An order email with a unique Message-ID.
pub fn order_email(i: usize) -> Vec<u8> {
    format!(
        "From: Buyer {i} <buyer{i}@example.com>\r\n\
         To: orders@example.com\r\n\
         Subject: Order PO: B-{i}\r\n\
         Message-ID: <bench-{i}@example.com>\r\n\
         Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hello,\r\n\
         WIDGET-1 x {q}\r\n\
         BOLT-M5: 2\r\n\
         Thanks\r\n",
        q = i % 9 + 1
    )
    .into_bytes()
}

/// Composes the bot against `imap` with `source` (`imap-poll` / `imap-idle`).
pub async fn bot(
    imap: &DovecotServer,
    dir: &Path,
    source: &str,
    poll_interval: &str,
) -> Result<Composed> {
    let mail = format!(
        r#"source = "{source}"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "{user}"
password = "{password}"
poll_interval = "{poll_interval}"
ack_connections = {acks}
"#,
        port = imap.port(),
        user = imap.user(),
        password = imap.password(),
        acks = std::env::var("BENCH_ACK_CONNECTIONS").unwrap_or_else(|_| "8".into()),
    );
    bot_with_mail(dir, &mail).await
}

/// Composes the bot with `mail` as the body of its `[mail]` section, SQLite in `dir`.
pub async fn bot_with_mail(dir: &Path, mail: &str) -> Result<Composed> {
    let catalog =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps/mail-order-bot/samples/catalog.csv");
    let config = format!(
        r#"
[control]
enabled = false
[tracing]
level = "warn"
[workers]
concurrency = 8
[mail]
{mail}
[orders]
database_url = "sqlite://{db}"
catalog_file = "{catalog}"
"#,
        db = dir.join("orders.db").display(),
        catalog = catalog.display(),
    );
    let file = dir.join("bot.toml");
    std::fs::write(&file, config).context("write config")?;
    let cfg = load_config(
        &mail_order_bot::config::config_spec(),
        &ConfigArgs { config: vec![file] },
    )
    .await
    .context("load config")?;
    compose(
        Arc::new(cfg),
        &ComposeOptions {
            handle_signals: false,
            control_port_fallback: false,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}
