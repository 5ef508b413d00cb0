//! A backlog of order emails in Dovecot processed end to end (IMAP polling -> memory
//! queue -> 8 workers -> SQLite -> `\Seen`): messages per second and peak memory.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use runtime_bench::mailbox::{bot, order_email};
use runtime_bench::{peak_rss_bytes, print_table};
use runtime_testkit::dovecot::DovecotServer;

fn main() -> Result<()> {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let mut imap = DovecotServer::start().await?;
        // Writing the backlog straight into the stopped server's Maildir is much faster
        // than n IMAP APPENDs; Dovecot indexes it on the first SELECT.
        imap.stop();
        let fill = Instant::now();
        for i in 0..n {
            imap.append("INBOX", &order_email(i)).await?;
        }
        imap.start_again().await?;
        eprintln!(
            "backlog of {n} written in {:.1}s",
            fill.elapsed().as_secs_f64()
        );
        let dir = tempfile::tempdir()?;
        let composed = bot(&imap, dir.path(), "imap-poll", "1s").await?;
        let mut finished = composed.module.finished();
        let started = Instant::now();
        composed.runtime.start().await.context("start")?;
        let mut last_report = Instant::now();
        loop {
            let done = *finished.borrow_and_update() as usize;
            if done >= n {
                break;
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                eprintln!("{done}/{n} processed");
                last_report = Instant::now();
            }
            if tokio::time::timeout(Duration::from_secs(120), finished.changed())
                .await
                .is_err()
            {
                bail!("no progress for 120 s at {done}/{n}");
            }
        }
        let elapsed = started.elapsed();
        composed.runtime.stop().await;
        print_table(
            &format!("mailbox backlog, {n} messages, IMAP polling, 8 workers, SQLite"),
            &["messages", "seconds", "messages/s", "peak RSS (MiB)"],
            &[vec![
                n.to_string(),
                format!("{:.1}", elapsed.as_secs_f64()),
                format!("{:.0}", n as f64 / elapsed.as_secs_f64()),
                format!(
                    "{:.0}",
                    peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
                ),
            ]],
        );
        Ok(())
    })
}
