//! The `daily-summary` route: a schedule's tick becomes the CSV of the previous day's
//! orders and a `reports` row.
//!
//! With `[[schedules]]` `route = "daily-summary"`, each tick writes
//! `<reports.dir>/orders-<YYYY-MM-DD>.csv` for the day before the tick's local date (in
//! the schedule's time zone; the day's bounds follow that zone, so a DST day has 23 or 25
//! hours) and records it in `reports` (`tick` unique). A redelivered tick finds its row
//! and does nothing; one that died between the file and the row writes the same file
//! again (same rows, same order) and records it.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use jiff::Zoned;
use jiff::civil::Date;
use runtime_contracts::{SCHEDULE_LOCAL_TICK_HEADER, Task, TaskContext, TaskError, TaskHandler};
use tracing::info;

use crate::report::money;
use crate::store::{OrderStore, StoreError, SummaryRow};

/// The route of the daily summary's schedule.
pub const DAILY_SUMMARY_ROUTE: &str = "daily-summary";

/// Writes daily summaries into `dir`.
#[derive(Debug)]
pub struct SummaryHandler {
    store: OrderStore,
    dir: PathBuf,
}

impl SummaryHandler {
    /// A handler reading `store` and writing into `dir` (created when missing).
    pub fn new(store: OrderStore, dir: impl Into<PathBuf>) -> Self {
        SummaryHandler {
            store,
            dir: dir.into(),
        }
    }
}

/// The day a tick reports on, and its bounds in UTC (`[start, end)`, milliseconds).
fn previous_day(local_tick: &str) -> Result<(Date, String, String), String> {
    let zoned: Zoned = local_tick
        .parse()
        .map_err(|e| format!("bad {SCHEDULE_LOCAL_TICK_HEADER} {local_tick:?}: {e}"))?;
    let today = zoned.date();
    let day = today.yesterday().map_err(|e| e.to_string())?;
    let bound = |d: Date| -> Result<String, String> {
        let start = d
            .to_zoned(zoned.time_zone().clone())
            .map_err(|e| e.to_string())?;
        Ok(start
            .timestamp()
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string())
    };
    Ok((day, bound(day)?, bound(today)?))
}

fn store_error(error: StoreError) -> TaskError {
    if error.is_unavailable() {
        TaskError::unavailable(error)
    } else {
        TaskError::retry(error)
    }
}

fn io_error(path: &Path, error: std::io::Error) -> TaskError {
    use std::io::ErrorKind;
    let message = format!("cannot write {}: {error}", path.display());
    // A full or read-only disk is an outage: wait, do not use up attempts.
    match error.kind() {
        ErrorKind::StorageFull | ErrorKind::ReadOnlyFilesystem | ErrorKind::QuotaExceeded => {
            TaskError::unavailable(message)
        }
        _ => TaskError::retry(message),
    }
}

/// The CSV: a header, then one row per order.
fn render(rows: &[SummaryRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["created_at", "customer", "po", "status", "reason", "total"])?;
    for r in rows {
        w.write_record([
            r.created_at.as_str(),
            r.customer.as_str(),
            r.po_number.as_deref().unwrap_or(""),
            r.status.as_str(),
            r.reason.as_deref().unwrap_or(""),
            money(r.total_cents).as_str(),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

#[async_trait]
impl TaskHandler for SummaryHandler {
    async fn handle(&self, task: &Task, _ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        let tick = task
            .origin
            .as_ref()
            .map(|o| format!("{}/{}", o.source, o.key))
            .ok_or_else(|| TaskError::reject("a daily-summary task without a schedule tick"))?;
        let local = task
            .headers
            .get(SCHEDULE_LOCAL_TICK_HEADER)
            .ok_or_else(|| TaskError::reject(format!("no {SCHEDULE_LOCAL_TICK_HEADER} header")))?;
        if self
            .store
            .report(&tick)
            .await
            .map_err(store_error)?
            .is_some()
        {
            info!(%tick, "daily summary already written");
            return Ok(());
        }
        let (day, start, end) = previous_day(local).map_err(TaskError::reject)?;
        let rows = self
            .store
            .orders_created_between(&start, &end)
            .await
            .map_err(store_error)?;
        let text = render(&rows).map_err(|e| TaskError::retry(e.to_string()))?;
        let path = self.dir.join(format!("orders-{day}.csv"));
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io_error(&self.dir, e))?;
        // Beside, then rename: a reader never sees half a file.
        let tmp = self.dir.join(format!(".orders-{day}.csv.tmp"));
        tokio::fs::write(&tmp, &text)
            .await
            .map_err(|e| io_error(&tmp, e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io_error(&path, e))?;
        let orders = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let new = self
            .store
            .record_report(&tick, &path.display().to_string(), orders)
            .await
            .map_err(store_error)?;
        info!(%tick, %day, orders, path = %path.display(), new, "daily summary written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_previous_day_follows_the_zone_across_dst() {
        // 2026-03-30 07:00 Berlin reports on 2026-03-29, a 23-hour day.
        let (day, start, end) = previous_day("2026-03-30T07:00:00+02:00[Europe/Berlin]").unwrap();
        assert_eq!(day.to_string(), "2026-03-29");
        assert_eq!(start, "2026-03-28T23:00:00.000Z");
        assert_eq!(end, "2026-03-29T22:00:00.000Z");
        let (day, start, end) = previous_day("2026-12-06T00:00:00+00:00[UTC]").unwrap();
        assert_eq!(day.to_string(), "2026-12-05");
        assert_eq!(start, "2026-12-05T00:00:00.000Z");
        assert_eq!(end, "2026-12-06T00:00:00.000Z");
        assert!(previous_day("yesterday").is_err());
    }

    #[test]
    fn the_csv_quotes_what_needs_quoting() {
        let rows = vec![SummaryRow {
            created_at: "2026-12-05T10:00:00.000Z".into(),
            customer: "a@b.example".into(),
            po_number: Some("PO, 7".into()),
            status: "rejected".into(),
            reason: Some("unknown_sku".into()),
            total_cents: 0,
        }];
        let text = String::from_utf8(render(&rows).unwrap()).unwrap();
        assert_eq!(
            text,
            "created_at,customer,po,status,reason,total\n\
             2026-12-05T10:00:00.000Z,a@b.example,\"PO, 7\",rejected,unknown_sku,0.00\n"
        );
    }
}
