//! Time from an IMAP APPEND to the order being stored, one message at a time, with the
//! IDLE source and with polling every second, in one run. Dovecot itself announces new
//! mail about 500 ms after an APPEND: that is the floor.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use runtime_bench::mailbox::{bot, order_email};
use runtime_bench::print_table;
use runtime_testkit::dovecot::DovecotServer;

async fn latencies(source: &str, n: usize, offset: usize) -> Result<Vec<Duration>> {
    let imap = DovecotServer::start().await?;
    let dir = tempfile::tempdir()?;
    let composed = bot(&imap, dir.path(), source, "1s").await?;
    let mut finished = composed.module.finished();
    composed.runtime.start().await.context("start")?;
    // Let the source connect (and enter IDLE) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let before = *finished.borrow_and_update();
        let sent = Instant::now();
        imap.append("INBOX", &order_email(offset + i)).await?;
        loop {
            if *finished.borrow_and_update() > before {
                break;
            }
            if tokio::time::timeout(Duration::from_secs(30), finished.changed())
                .await
                .is_err()
            {
                bail!("{source}: message {i} not processed within 30 s");
            }
        }
        out.push(sent.elapsed());
    }
    composed.runtime.stop().await;
    Ok(out)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let mut rows = Vec::new();
        for (i, source) in ["imap-idle", "imap-poll"].into_iter().enumerate() {
            let mut l = latencies(source, n, i * n).await?;
            l.sort();
            rows.push(vec![
                format!(
                    "{source}{}",
                    if source == "imap-poll" { " (1 s)" } else { "" }
                ),
                n.to_string(),
                format!("{:.0}", pct(&l, 0.5)),
                format!("{:.0}", pct(&l, 0.99)),
                format!("{:.0}", pct(&l, 1.0)),
            ]);
        }
        print_table(
            "APPEND to order stored, one message at a time (ms)",
            &["source", "messages", "p50", "p99", "max"],
            &rows,
        );
        Ok(())
    })
}
