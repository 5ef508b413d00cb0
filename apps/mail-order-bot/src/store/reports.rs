//! The daily summary's side of the store: orders of a time range, and the `reports` table.

use serde::{Deserialize, Serialize};

use super::{OrderStore, Pool, StoreError, classify};

/// One order as the daily summary lists it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, sqlx::FromRow)]
pub struct SummaryRow {
    /// When it was stored, RFC 3339 in UTC with milliseconds.
    pub created_at: String,
    /// Customer address.
    pub customer: String,
    /// Purchase-order reference.
    pub po_number: Option<String>,
    /// `accepted` or `rejected`.
    pub status: String,
    /// Reject reason.
    pub reason: Option<String>,
    /// Total in cents.
    pub total_cents: i64,
}

/// A `reports` row.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, sqlx::FromRow)]
pub struct ReportRow {
    /// The schedule tick it was written for (unique).
    pub tick: String,
    /// The file written.
    pub path: String,
    /// Orders in it.
    pub orders: i64,
    /// When it was recorded, RFC 3339 in UTC.
    pub created_at: String,
}

impl OrderStore {
    /// Orders stored in `[start, end)` (RFC 3339 UTC with milliseconds,
    /// `2026-12-05T23:00:00.000Z`), oldest first.
    pub async fn orders_created_between(
        &self,
        start: &str,
        end: &str,
    ) -> Result<Vec<SummaryRow>, StoreError> {
        self.ensure_migrated().await?;
        let kind = self.kind();
        let result = match &self.pool {
            // The column is text in one fixed format, so text order is time order.
            Pool::Sqlite(h) => {
                sqlx::query_as(
                    "SELECT created_at, customer, po_number, status, reason, total_cents \
                     FROM orders WHERE created_at >= ? AND created_at < ? ORDER BY id",
                )
                .bind(start)
                .bind(end)
                .fetch_all(&h.pool())
                .await
            }
            Pool::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
                     AS created_at, customer, po_number, status, reason, total_cents \
                     FROM orders WHERE created_at >= $1::timestamptz AND created_at < $2::timestamptz \
                     ORDER BY id",
                )
                .bind(start)
                .bind(end)
                .fetch_all(pool)
                .await
            }
        };
        result.map_err(|e| classify(kind, e))
    }

    /// The report recorded for `tick`, if any.
    pub async fn report(&self, tick: &str) -> Result<Option<ReportRow>, StoreError> {
        Ok(self.reports().await?.into_iter().find(|r| r.tick == tick))
    }

    /// Every recorded report, oldest first.
    pub async fn reports(&self) -> Result<Vec<ReportRow>, StoreError> {
        self.ensure_migrated().await?;
        let kind = self.kind();
        let result = match &self.pool {
            Pool::Sqlite(h) => {
                sqlx::query_as("SELECT tick, path, orders, created_at FROM reports ORDER BY id")
                    .fetch_all(&h.pool())
                    .await
            }
            Pool::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT tick, path, orders, \
                     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
                     AS created_at FROM reports ORDER BY id",
                )
                .fetch_all(pool)
                .await
            }
        };
        result.map_err(|e| classify(kind, e))
    }

    /// Records the report of `tick`; `false` when one was recorded already (a redelivery).
    pub async fn record_report(
        &self,
        tick: &str,
        path: &str,
        orders: i64,
    ) -> Result<bool, StoreError> {
        self.ensure_migrated().await?;
        let kind = self.kind();
        let result = match &self.pool {
            Pool::Sqlite(h) => sqlx::query(
                "INSERT INTO reports (tick, path, orders) VALUES (?, ?, ?) \
                     ON CONFLICT (tick) DO NOTHING",
            )
            .bind(tick)
            .bind(path)
            .bind(orders)
            .execute(&h.pool())
            .await
            .map(|r| r.rows_affected() == 1),
            Pool::Postgres(pool) => sqlx::query(
                "INSERT INTO reports (tick, path, orders) VALUES ($1, $2, $3) \
                     ON CONFLICT (tick) DO NOTHING",
            )
            .bind(tick)
            .bind(path)
            .bind(orders)
            .execute(pool)
            .await
            .map(|r| r.rows_affected() == 1),
        };
        result.map_err(|e| classify(kind, e))
    }
}
