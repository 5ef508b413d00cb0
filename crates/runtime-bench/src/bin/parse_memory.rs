//! Peak memory of parsing one large order mail (`process_message`), per kind of mail:
//! a ~14 MB message with a base64 CSV attachment, with an 8-bit CSV attachment, and with
//! a plain body of order lines. Each case runs in a child process of its own so that one
//! case's peak does not hide another's; the table gives the peak above the raw message
//! and that peak divided by the message size (the amplification).

use std::process::Command;

use anyhow::{Context, Result, bail};
use mail_order_bot::domain::{Catalog, CatalogItem, process_message};
use runtime_bench::{peak_rss_bytes, print_table, rss_bytes};

const TARGET_BYTES: usize = 14 * 1024 * 1024;
const CASES: [&str; 3] = ["csv-base64", "csv-8bit", "body-text"];

fn csv_text(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 64);
    out.push_str("sku,description,qty\r\n");
    let mut i = 0u64;
    while out.len() < bytes {
        out.push_str(&format!(
            "SKU-{:07},\"Bolt, 5mm\",{}\r\n",
            i % 50_000,
            1 + i % 9
        ));
        i += 1;
    }
    out
}

/// MIME base64: lines of 76 characters.
fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    input
        .chunks(57)
        .map(|line| base64::engine::general_purpose::STANDARD.encode(line) + "\r\n")
        .collect()
}

fn mail(case: &str) -> Result<Vec<u8>> {
    let head = "From: Big Buyer <big@buyer.example>\r\nTo: orders@shop.example\r\n\
                Subject: PO: BIG-1\r\nMessage-ID: <big-1@buyer.example>\r\nMIME-Version: 1.0\r\n";
    let multipart = |part_headers: &str, body: &str| {
        format!(
            "{head}Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
             Content-Type: text/plain\r\n\r\nSee the attached order.\r\n--b1\r\n\
             {part_headers}\r\n{body}\r\n--b1--\r\n"
        )
    };
    Ok(match case {
        "csv-base64" => multipart(
            "Content-Type: text/csv; name=\"order.csv\"\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"order.csv\"\r\n",
            &base64(csv_text(TARGET_BYTES / 4 * 3).as_bytes()),
        ),
        "csv-8bit" => multipart(
            "Content-Type: text/csv; charset=utf-8; name=\"order.csv\"\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             Content-Disposition: attachment; filename=\"order.csv\"\r\n",
            &csv_text(TARGET_BYTES),
        ),
        "body-text" => {
            let mut body = String::with_capacity(TARGET_BYTES + 64);
            let mut i = 0u64;
            while body.len() < TARGET_BYTES {
                body.push_str(&format!("SKU-{:07} x {}\r\n", i % 50_000, 1 + i % 9));
                i += 1;
            }
            format!("{head}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}")
        }
        other => bail!("unknown case {other:?}"),
    }
    .into_bytes())
}

/// One case in this process: prints `raw_bytes peak_above_raw outcome`.
fn run_case(case: &str) -> Result<()> {
    let catalog = Catalog::from_items([CatalogItem {
        sku: "SKU-0000001".into(),
        name: "bolt".into(),
        price_cents: 10,
    }])
    .context("catalog")?;
    let raw = mail(case)?;
    // Everything up to here (the message and its construction) is the baseline.
    let base = rss_bytes().context("rss")?;
    let started = std::time::Instant::now();
    let order = process_message(&raw, &catalog, u64::MAX, None);
    let took = started.elapsed();
    let peak = peak_rss_bytes().context("peak rss")?;
    let reason = order.reason.map(|r| r.to_string()).unwrap_or_default();
    println!(
        "{} {} {} {} {}",
        raw.len(),
        peak.saturating_sub(base),
        took.as_millis(),
        order.status.as_str(),
        reason
    );
    Ok(())
}

fn main() -> Result<()> {
    if let Some(case) = std::env::args().nth(1) {
        return run_case(&case);
    }
    let exe = std::env::current_exe().context("own path")?;
    let mut rows = Vec::new();
    for case in CASES {
        let out = Command::new(&exe).arg(case).output().context("run case")?;
        if !out.status.success() {
            bail!("{case}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let f: Vec<&str> = text.split_whitespace().collect();
        let (Some(raw), Some(peak)) = (
            f.first().and_then(|v| v.parse::<f64>().ok()),
            f.get(1).and_then(|v| v.parse::<f64>().ok()),
        ) else {
            bail!("{case}: unexpected output {text:?}");
        };
        let mib = |b: f64| format!("{:.1}", b / (1024.0 * 1024.0));
        rows.push(vec![
            case.to_owned(),
            mib(raw),
            mib(peak),
            format!("{:.1}", peak / raw),
            f.get(2).map_or(String::new(), |ms| (*ms).to_owned()),
            f[3..].join(" "),
        ]);
    }
    print_table(
        "Peak memory of parsing one large mail (above the raw message)",
        &["mail", "MiB", "peak MiB", "x message", "ms", "outcome"],
        &rows,
    );
    Ok(())
}
