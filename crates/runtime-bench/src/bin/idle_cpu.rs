//! CPU an idle bot uses per source (Maildir with a large handled backlog in cur/, IMAP
//! polling at the default interval, IMAP IDLE), after its first orders; goal: under 1 %
//! of a core.
//!
//! The bot runs in this process, so this process's CPU time (`/proc/self/stat`, utime +
//! stime) over the idle window is the bot's; Dovecot is another process and not counted.
//! `BENCH_IDLE_SECS` (default 10) sets the window, `BENCH_HANDLED` (default 20000) the
//! Maildir backlog.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use runtime_bench::mailbox::{bot, bot_with_mail, order_email};
use runtime_bench::print_table;
use runtime_testkit::dovecot::DovecotServer;

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ, fixed at 100 on Linux).
const USER_HZ: f64 = 100.0;

fn cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .context("unexpected /proc/self/stat")
    };
    Ok((ticks(11)? + ticks(12)?) / USER_HZ)
}

const FIRST_ORDERS: usize = 5;

/// Starts the composed bot, lets it take `FIRST_ORDERS` mails via `deliver`, then
/// measures the CPU it uses over `window` while nothing arrives.
async fn idle_cpu(
    composed: mail_order_bot::app::Composed,
    window: Duration,
    deliver: impl AsyncFnOnce() -> Result<()>,
) -> Result<(f64, f64)> {
    let mut finished = composed.module.finished();
    composed.runtime.start().await.context("start")?;
    deliver().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while *finished.borrow_and_update() < FIRST_ORDERS as u64 {
        if Instant::now() > deadline {
            bail!("the first orders did not finish within 60 s");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), finished.changed()).await;
    }
    // Let acknowledgements and the first rescan settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, t0) = (cpu_seconds()?, Instant::now());
    tokio::time::sleep(window).await;
    let (cpu, wall) = (cpu_seconds()? - cpu0, t0.elapsed().as_secs_f64());
    composed.runtime.stop().await;
    Ok((cpu, wall))
}

fn main() -> Result<()> {
    let window = Duration::from_secs(
        std::env::var("BENCH_IDLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    );
    let handled: usize = std::env::var("BENCH_HANDLED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let mut rows = Vec::new();
        let mut row = |source: String, (cpu, wall): (f64, f64)| {
            rows.push(vec![
                source,
                format!("{wall:.1}"),
                format!("{:.3}", cpu),
                format!("{:.2}", 100.0 * cpu / wall),
            ]);
        };

        // Maildir, with `handled` mails already done in cur/.
        let dir = tempfile::tempdir()?;
        let maildir = dir.path().join("maildir");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub))?;
        }
        for i in 0..handled {
            std::fs::write(
                maildir.join("cur").join(format!("done-{i}.bench:2,S")),
                order_email(1_000_000 + i),
            )?;
        }
        let composed = bot_with_mail(
            dir.path(),
            &format!(
                "source = \"maildir\"\nmaildir = \"{}\"\n",
                maildir.display()
            ),
        )
        .await?;
        let new = maildir.join("new");
        let measured = idle_cpu(composed, window, async || {
            for i in 0..FIRST_ORDERS {
                std::fs::write(new.join(format!("m{i}.bench")), order_email(i))?;
            }
            Ok(())
        })
        .await?;
        row(format!("maildir ({handled} handled in cur/)"), measured);

        for source in ["imap-poll", "imap-idle"] {
            let imap = DovecotServer::start().await?;
            let dir = tempfile::tempdir()?;
            // The default poll interval (defaults.toml): what an operator runs.
            let composed = bot(&imap, dir.path(), source, "30s").await?;
            let measured = idle_cpu(composed, window, async || {
                for i in 0..FIRST_ORDERS {
                    imap.append("INBOX", &order_email(i)).await?;
                }
                Ok(())
            })
            .await?;
            row(
                format!(
                    "{source}{}",
                    if source == "imap-poll" { " (30 s)" } else { "" }
                ),
                measured,
            );
        }
        print_table(
            "CPU of an idle bot after its first orders (goal: under 1 % of a core)",
            &["source", "window s", "cpu s", "% of a core"],
            &rows,
        );
        Ok(())
    })
}
