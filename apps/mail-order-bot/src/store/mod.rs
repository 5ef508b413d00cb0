//! The order store: `orders` and `order_lines` on SQLite (the default) or PostgreSQL,
//! chosen by the URL's scheme.
//!
//! * Migrations are embedded SQL, one set per backend (the SQL differs in id and time
//!   types), applied by sqlx's migrator at start-up — and lazily before the first query
//!   when the store was created with [`OrderStore::connect_lazy`] while the database was
//!   down, so the runtime can start during an outage and catch up.
//! * [`OrderStore::save`] is idempotent by `message_id` and runs in one transaction:
//!   `INSERT .. ON CONFLICT (message_id) DO NOTHING RETURNING id`, then the lines. A
//!   second save of the same message (a redelivery, a concurrent worker in another
//!   process) inserts nothing and reports [`SaveResult::AlreadyExists`].
//! * On SQLite, concurrent saves are group-committed (module `group`): one transaction and one
//!   fsync for all the orders waiting, each caller still answered only once its order is
//!   durable. `synchronous` stays at sqlx's `FULL`.
//! * [`StoreError::is_unavailable`] tells an outage (connection refused, timeouts, a
//!   locked SQLite file, a PostgreSQL shutdown) from a failure of the statement itself, so
//!   the handler can wait out an outage without using up the task's attempts.

mod group;
mod health;

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::sync::OnceCell;

use crate::domain::{Order, OrderLine};

pub use health::StoreHealth;

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "orders",
    include_str!("migrations/sqlite/0001_orders.sql"),
)];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "orders",
    include_str!("migrations/postgres/0001_orders.sql"),
)];

/// Pool settings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StoreOptions {
    /// How long to wait for a connection (sqlx keeps retrying a refused connection until
    /// then) before calling the store unavailable.
    pub acquire_timeout: Duration,
    /// Pool size (SQLite file databases use at most 4: one writer at a time anyway).
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            acquire_timeout: Duration::from_secs(5),
            max_connections: 8,
        }
    }
}

/// What [`OrderStore::save`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaveResult {
    /// The order (and its lines) is new.
    Inserted,
    /// An order with this message identity was already stored; nothing changed.
    AlreadyExists,
}

/// An order as stored.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct StoredOrder {
    /// Row id.
    pub id: i64,
    /// Message identity.
    pub message_id: String,
    /// Customer address.
    pub customer: String,
    /// Purchase-order reference.
    pub po_number: Option<String>,
    /// `accepted` or `rejected`.
    pub status: String,
    /// Reject reason.
    pub reason: Option<String>,
    /// Total in cents (0 when rejected).
    pub total_cents: i64,
    /// When it was stored, RFC 3339 in UTC.
    pub created_at: String,
    /// Lines, by SKU.
    pub lines: Vec<OrderLine>,
}

/// Errors of the order store. Messages never contain the database URL's password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot be reached or is not accepting work now; try again later.
    #[error("order store unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The cause.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The database URL is not one this store understands.
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// The schema could not be brought up to date.
    #[error("order store migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A statement failed.
    #[error("order store query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// Setting up the database file failed.
    #[error("cannot prepare database directory {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// True for an outage (retry later without counting a failure).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The order store. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct OrderStore {
    pool: Pool,
    migrated: Arc<OnceCell<()>>,
    /// SQLite's writer queue, shared by the clones of this store.
    group: Arc<group::GroupCommit>,
}

impl std::fmt::Debug for OrderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderStore")
            .field("backend", &self.backend())
            .finish()
    }
}

impl OrderStore {
    /// Connects to `database_url` (`sqlite://path`, creating the file and its directory, or
    /// `postgres://...`) and runs the migrations. Fails with
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub async fn connect(database_url: &str) -> Result<OrderStore, StoreError> {
        OrderStore::connect_with(database_url, StoreOptions::default()).await
    }

    /// [`OrderStore::connect`] with explicit pool settings.
    pub async fn connect_with(
        database_url: &str,
        options: StoreOptions,
    ) -> Result<OrderStore, StoreError> {
        let store = OrderStore::connect_lazy_with(database_url, options)?;
        store.ensure_migrated().await?;
        Ok(store)
    }

    /// Like [`OrderStore::connect`], but does not touch the database yet: connections are
    /// opened and migrations run on first use. Lets a process start while the database is
    /// down.
    pub fn connect_lazy(database_url: &str) -> Result<OrderStore, StoreError> {
        OrderStore::connect_lazy_with(database_url, StoreOptions::default())
    }

    /// [`OrderStore::connect_lazy`] with explicit pool settings.
    pub fn connect_lazy_with(
        database_url: &str,
        store_options: StoreOptions,
    ) -> Result<OrderStore, StoreError> {
        let url = database_url.trim();
        let pool = if url.starts_with("sqlite:") {
            Pool::Sqlite(sqlite_pool(url, store_options)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| StoreError::InvalidUrl(format!("{}: {e}", redact_url(url))))?;
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(store_options.max_connections.max(1))
                    .acquire_timeout(store_options.acquire_timeout)
                    .connect_lazy_with(options),
            )
        } else {
            return Err(StoreError::InvalidUrl(format!(
                "{}: expected sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )));
        };
        Ok(OrderStore {
            pool,
            migrated: Arc::new(OnceCell::new()),
            group: Arc::default(),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.kind() {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
        }
    }

    fn kind(&self) -> Kind {
        match self.pool {
            Pool::Sqlite(_) => Kind::Sqlite,
            Pool::Postgres(_) => Kind::Postgres,
        }
    }

    /// Runs the migrations once per store (concurrent processes are serialised by sqlx's
    /// migration lock on PostgreSQL, and by a retry on SQLite, which has none).
    pub async fn ensure_migrated(&self) -> Result<(), StoreError> {
        let kind = self.kind();
        self.migrated
            .get_or_try_init(|| async {
                let set = match kind {
                    Kind::Sqlite => SQLITE_MIGRATIONS,
                    Kind::Postgres => POSTGRES_MIGRATIONS,
                };
                let migrations = set
                    .iter()
                    .map(|(version, name, sql)| {
                        Migration::new(
                            *version,
                            Cow::Borrowed(*name),
                            MigrationType::Simple,
                            sql.into_sql_str(),
                            false,
                        )
                    })
                    .collect();
                let migrator = Migrator::with_migrations(migrations);
                // sqlx has no migration lock on SQLite: two processes (or two stores in
                // one) opening a fresh file race on `_sqlx_migrations`, and the loser
                // fails on its unique key. Running again then finds the work done.
                let mut tries = 0;
                loop {
                    tries += 1;
                    let result = match &self.pool {
                        Pool::Sqlite(pool) => migrator.run(pool).await,
                        Pool::Postgres(pool) => migrator.run(pool).await,
                    };
                    let error = match result {
                        Ok(()) => return Ok(()),
                        Err(sqlx::migrate::MigrateError::Execute(inner)) => classify(kind, inner),
                        Err(other) => StoreError::Migrate(other),
                    };
                    if kind == Kind::Postgres || error.is_unavailable() || tries >= 3 {
                        return Err(error);
                    }
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
            })
            .await
            .map(|_| ())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let kind = self.kind();
        let result = match &self.pool {
            Pool::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
            Pool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
        };
        result.map_err(|e| classify(kind, e))
    }

    /// Stores `order` and its lines in one transaction, unless an order with the same
    /// message identity exists already. Returns once the order is committed.
    pub async fn save(&self, order: &Order) -> Result<SaveResult, StoreError> {
        self.ensure_migrated().await?;
        match &self.pool {
            // PostgreSQL commits concurrent transactions in parallel already.
            Pool::Sqlite(pool) => self.group.save(pool, order).await,
            Pool::Postgres(pool) => save_postgres(pool, order)
                .await
                .map_err(|e| classify(Kind::Postgres, e)),
        }
    }

    /// All orders, oldest first, with their lines.
    pub async fn list(&self) -> Result<Vec<StoredOrder>, StoreError> {
        self.fetch(None).await
    }

    /// The order stored for `message_id`, if any.
    pub async fn find(&self, message_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        Ok(self.fetch(Some(message_id)).await?.into_iter().next())
    }

    async fn fetch(&self, message_id: Option<&str>) -> Result<Vec<StoredOrder>, StoreError> {
        self.ensure_migrated().await?;
        let kind = self.kind();
        let result = match &self.pool {
            Pool::Sqlite(pool) => fetch_sqlite(pool, message_id).await,
            Pool::Postgres(pool) => fetch_postgres(pool, message_id).await,
        };
        result.map_err(|e| classify(kind, e))
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

fn sqlite_pool(url: &str, store_options: StoreOptions) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if !in_memory
        && let Some(dir) = options.get_filename().parent()
        && !dir.as_os_str().is_empty()
        && !Path::new(dir).exists()
    {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    // An in-memory database lives in one connection: keep exactly one, forever.
    let pool_options = if in_memory {
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(store_options.max_connections.clamp(1, 4))
    };
    Ok(pool_options
        .acquire_timeout(store_options.acquire_timeout)
        .connect_lazy_with(options))
}

type OrderRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
    String,
);
type LineRow = (i64, String, i64, i64);

async fn save_sqlite(pool: &SqlitePool, order: &Order) -> Result<SaveResult, sqlx::Error> {
    // IMMEDIATE takes the write lock up front: no deadlock-prone lock upgrade when two
    // writers race, and busy_timeout makes the second one wait.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let result = insert_sqlite(&mut tx, order).await?;
    tx.commit().await?;
    Ok(result)
}

/// Inserts `order` and its lines in the open transaction `tx`, unless it exists already.
async fn insert_sqlite(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    order: &Order,
) -> Result<SaveResult, sqlx::Error> {
    // A replay (a retried ack, a redelivery) finds its order first: an INSERT that then
    // does nothing would still burn an id of the sequence.
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM orders WHERE message_id = ?")
        .bind(&order.message_id)
        .fetch_optional(&mut **tx)
        .await?;
    if existing.is_some() {
        return Ok(SaveResult::AlreadyExists);
    }
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO orders (message_id, customer, po_number, status, reason, total_cents) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING RETURNING id",
    )
    .bind(&order.message_id)
    .bind(&order.customer)
    .bind(&order.po_number)
    .bind(order.status.as_str())
    .bind(order.reason.as_ref().map(|r| r.to_string()))
    .bind(order.total_cents)
    .fetch_optional(&mut **tx)
    .await?;
    // Nothing was written for a duplicate: committing it is as good as rolling back.
    let Some(id) = id else {
        return Ok(SaveResult::AlreadyExists);
    };
    for line in &order.lines {
        sqlx::query(
            "INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents) VALUES (?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&line.sku)
        .bind(line.quantity as i64)
        .bind(line.unit_price_cents)
        .execute(&mut **tx)
        .await?;
    }
    Ok(SaveResult::Inserted)
}

async fn save_postgres(pool: &PgPool, order: &Order) -> Result<SaveResult, sqlx::Error> {
    // A replay finds its order without touching the id sequence (a conflicting INSERT
    // would use up a value of it each time).
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM orders WHERE message_id = $1")
        .bind(&order.message_id)
        .fetch_optional(pool)
        .await?;
    if existing.is_some() {
        return Ok(SaveResult::AlreadyExists);
    }
    let mut tx = pool.begin().await?;
    // A concurrent insert of the same message_id makes this wait for the other
    // transaction and then do nothing: exactly one order either way.
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO orders (message_id, customer, po_number, status, reason, total_cents) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING RETURNING id",
    )
    .bind(&order.message_id)
    .bind(&order.customer)
    .bind(&order.po_number)
    .bind(order.status.as_str())
    .bind(order.reason.as_ref().map(|r| r.to_string()))
    .bind(order.total_cents)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        tx.rollback().await?;
        return Ok(SaveResult::AlreadyExists);
    };
    for line in &order.lines {
        sqlx::query(
            "INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(&line.sku)
        .bind(line.quantity as i32)
        .bind(line.unit_price_cents)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(SaveResult::Inserted)
}

async fn fetch_sqlite(
    pool: &SqlitePool,
    message_id: Option<&str>,
) -> Result<Vec<StoredOrder>, sqlx::Error> {
    const COLUMNS: &str =
        "id, message_id, customer, po_number, status, reason, total_cents, created_at";
    let orders: Vec<OrderRow> = match message_id {
        Some(mid) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM orders WHERE message_id = ?"
            )))
            .bind(mid)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM orders ORDER BY id"
            )))
            .fetch_all(pool)
            .await?
        }
    };
    let lines: Vec<LineRow> = match message_id {
        Some(mid) => {
            sqlx::query_as(
                "SELECT l.order_id, l.sku, l.quantity, l.unit_price_cents FROM order_lines l \
                 JOIN orders o ON o.id = l.order_id WHERE o.message_id = ? ORDER BY l.sku",
            )
            .bind(mid)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as(
                "SELECT order_id, sku, quantity, unit_price_cents FROM order_lines \
                 ORDER BY order_id, sku",
            )
            .fetch_all(pool)
            .await?
        }
    };
    Ok(assemble(orders, lines))
}

async fn fetch_postgres(
    pool: &PgPool,
    message_id: Option<&str>,
) -> Result<Vec<StoredOrder>, sqlx::Error> {
    const COLUMNS: &str = "id, message_id, customer, po_number, status, reason, total_cents, \
        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
    let orders: Vec<OrderRow> = match message_id {
        Some(mid) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM orders WHERE message_id = $1"
            )))
            .bind(mid)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM orders ORDER BY id"
            )))
            .fetch_all(pool)
            .await?
        }
    };
    let lines: Vec<LineRow> = match message_id {
        Some(mid) => {
            sqlx::query_as(
                "SELECT l.order_id, l.sku, l.quantity::BIGINT, l.unit_price_cents \
                 FROM order_lines l JOIN orders o ON o.id = l.order_id \
                 WHERE o.message_id = $1 ORDER BY l.sku",
            )
            .bind(mid)
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as(
                "SELECT order_id, sku, quantity::BIGINT, unit_price_cents FROM order_lines \
                 ORDER BY order_id, sku",
            )
            .fetch_all(pool)
            .await?
        }
    };
    Ok(assemble(orders, lines))
}

fn assemble(orders: Vec<OrderRow>, lines: Vec<LineRow>) -> Vec<StoredOrder> {
    let mut out: Vec<StoredOrder> = orders
        .into_iter()
        .map(
            |(id, message_id, customer, po_number, status, reason, total_cents, created_at)| {
                StoredOrder {
                    id,
                    message_id,
                    customer,
                    po_number,
                    status,
                    reason,
                    total_cents,
                    created_at,
                    lines: Vec::new(),
                }
            },
        )
        .collect();
    for (order_id, sku, quantity, unit_price_cents) in lines {
        if let Ok(i) = out.binary_search_by_key(&order_id, |o| o.id) {
            out[i].lines.push(OrderLine {
                sku,
                quantity: u32::try_from(quantity).unwrap_or(0),
                unit_price_cents,
            });
        }
    }
    out
}

/// Sorts a sqlx error into outage or failure.
fn classify(kind: Kind, error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => match (kind, db.code()) {
            // Connection exceptions, shutdown, cannot connect now, too many connections,
            // out of resources, serialization/deadlock (a retry succeeds).
            (Kind::Postgres, Some(code)) => {
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(&*code, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
            }
            // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL (primary result
            // codes): the file, not the statement, is at fault; fixing it needs no
            // change to the mail.
            (Kind::Sqlite, Some(code)) => code
                .parse::<i32>()
                .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 13 | 14 | 15)),
            _ => false,
        },
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable {
            message: error.to_string(),
            source: Some(error),
        }
    } else {
        StoreError::Query(error)
    }
}

pub use runtime_contracts::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db:5432/orders"),
            "postgres://bob:***@db:5432/orders"
        );
        assert_eq!(redact_url("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(redact_url("sqlite://./var/o.db"), "sqlite://./var/o.db");
    }

    #[test]
    fn unknown_scheme_is_rejected() {
        let err = OrderStore::connect_lazy("mysql://u:pw@h/db")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("u:***@h") && !e.contains("pw")));
    }
}
