//! `mail-order-bot orders [--json]`: the stored orders as a table or JSON.
//!
//! The configuration is loaded and validated as `check-config` does (a wrong one exits
//! 2 with every problem), except that no catalog is needed to list orders (right after
//! `demo`, which brings its own). A SQLite database that does not exist is an error
//! naming the file and the key that points there, and is not created.

use std::io::Write;
use std::sync::Arc;

use runtime_contracts::{ConfigError, ConfigSnapshot};
use runtime_core::cli::{ConfigArgs, load_config, write_output};
use runtime_core::config::issue;

use crate::app::AppError;
use crate::config::{OrdersConfig, sqlite_file, store_reader_spec};
use crate::store::{OrderStore, StoredOrder};

/// The configuration as `orders` reads it: defaults, `--config` files, the database
/// layer and `MOB_*` variables, validated.
pub async fn orders_config(args: &ConfigArgs) -> Result<Arc<ConfigSnapshot>, AppError> {
    let manager = load_config(&store_reader_spec(), args).await?;
    Ok(manager.current())
}

/// Every stored order, oldest first. A SQLite file that does not exist is a
/// configuration error on `orders.database_url` (and is not created).
pub async fn list_orders(snapshot: &ConfigSnapshot) -> Result<Vec<StoredOrder>, AppError> {
    let config = OrdersConfig::from_snapshot(snapshot)?;
    if let Some(file) = sqlite_file(&config.database_url)
        && !file.exists()
    {
        return Err(ConfigError::Invalid(vec![issue(
            snapshot,
            "orders.database_url",
            format!(
                "the database file {} does not exist (the bot creates it when it runs); \
                 check the path, or pass the --config the bot runs with",
                file.display()
            ),
        )])
        .into());
    }
    let store = OrderStore::connect(&config.database_url).await?;
    let orders = store.list().await;
    store.close().await;
    Ok(orders?)
}

/// `orders`: writes the table (or JSON with `json`) to `out`. A reader that stops early
/// (`| head`) is a normal end.
pub async fn orders_command(
    args: &ConfigArgs,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), AppError> {
    let snapshot = orders_config(args).await?;
    let orders = list_orders(&snapshot).await?;
    let text = if json {
        let mut text = serde_json::to_string_pretty(&orders)
            .map_err(|e| AppError::setup(format!("cannot write JSON: {e}")))?;
        text.push('\n');
        text
    } else if orders.is_empty() {
        "no orders yet\n".to_owned()
    } else {
        render_table(&orders)
    };
    write_output(out, &text).map_err(|source| AppError::Io {
        context: "cannot write to standard output".to_owned(),
        source,
    })
}

/// Cents as `12.50`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// `2026-11-26T09:12:01.123Z` as `2026-11-26 09:12:01`.
fn short_time(t: &str) -> String {
    t.replacen('T', " ", 1).chars().take(19).collect()
}

/// The orders as an aligned text table: id, created, customer, PO, status, reason,
/// total, lines.
pub fn render_table(orders: &[StoredOrder]) -> String {
    let header = [
        "id", "created", "customer", "PO", "status", "reason", "total", "lines",
    ];
    let rows: Vec<[String; 8]> = orders
        .iter()
        .map(|o| {
            let lines = o
                .lines
                .iter()
                .map(|l| format!("{} x{}", l.sku, l.quantity))
                .collect::<Vec<_>>()
                .join(", ");
            [
                o.id.to_string(),
                short_time(&o.created_at),
                o.customer.clone(),
                o.po_number.clone().unwrap_or_else(|| "-".into()),
                o.status.clone(),
                o.reason.clone().unwrap_or_else(|| "-".into()),
                money(o.total_cents),
                if lines.is_empty() { "-".into() } else { lines },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let right = |i: usize| i == 0 || i == 6;
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right(i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderLine;

    #[test]
    fn table_and_money() {
        assert_eq!(money(4597), "45.97");
        assert_eq!(money(5), "0.05");
        let orders = vec![StoredOrder {
            id: 1,
            message_id: "a@b".into(),
            customer: "anna@example.com".into(),
            po_number: Some("4711-A".into()),
            status: "accepted".into(),
            reason: None,
            total_cents: 2799,
            created_at: "2026-11-26T09:12:01.123Z".into(),
            lines: vec![OrderLine {
                sku: "WIDGET-1".into(),
                quantity: 2,
                unit_price_cents: 1250,
            }],
        }];
        let table = render_table(&orders);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("id  created"), "{table}");
        assert!(lines[2].contains("2026-11-26 09:12:01"), "{table}");
        assert!(lines[2].contains("27.99") && lines[2].ends_with("WIDGET-1 x2"));
    }
}
