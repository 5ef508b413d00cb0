//! The order store: `orders` and `order_lines` on SQLite (the default) or PostgreSQL,
//! chosen by the URL's scheme.
//!
//! * Migrations are embedded SQL (`sqlx::migrate!`), one set per backend (the SQL differs
//!   in id and time types), applied by sqlx's migrator at start-up — and lazily before
//!   the first query when the store was created with [`OrderStore::connect_lazy`] while
//!   the database was down, so the runtime can start during an outage and catch up.
//! * [`OrderStore::save`] is idempotent by `message_id` and runs in one transaction:
//!   `INSERT .. ON CONFLICT (message_id) DO NOTHING RETURNING id`, then the lines. A
//!   second save of the same message (a redelivery, a concurrent worker in another
//!   process) inserts nothing and reports [`SaveResult::AlreadyExists`].
//! * On SQLite, concurrent saves are group-committed (module `group`): one transaction and one
//!   fsync for all the orders waiting, each caller still answered only once its order is
//!   durable. `synchronous` stays at sqlx's `FULL`.
//! * [`StoreError::is_unavailable`] tells an outage (connection refused, timeouts, a
//!   locked SQLite file, a PostgreSQL shutdown) from a failure of the statement itself, so
//!   the handler can wait out an outage without using up the task's attempts. The codes
//!   that mean an outage are two tables, [`SQLITE_OUTAGES`] and [`POSTGRES_OUTAGES`].
//! * After a write fails with an outage, the SQLite pool is replaced (a connection opened
//!   on a read-only file stays read-only after a `chmod`), and readiness stays down until
//!   a write probe succeeds: `SELECT 1` alone answers on a read-only database.

mod group;
mod health;
mod reports;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::sync::OnceCell;

use crate::domain::{Order, OrderLine};

pub use health::StoreHealth;
pub use reports::{ReportRow, SummaryRow};

// Versions, names and SQL text are what databases already record in `_sqlx_migrations`
// (sqlx checks each applied migration's checksum of the SQL): never edit a file, add one.
static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("src/store/migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("src/store/migrations/postgres");

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
    Sqlite(Arc<SqliteHandle>),
    Postgres(PgPool),
}

/// The SQLite pool, replaced as a whole after a write outage: a connection opened on a
/// read-only file stays read-only after a `chmod`, and SQLite hands a closed connection's
/// file descriptor to the next connection of the process, so only closing them all helps.
struct SqliteHandle {
    current: std::sync::RwLock<SqlitePool>,
    options: SqliteConnectOptions,
    pool_options: SqlitePoolOptions,
    /// An in-memory database lives in its one connection: never replaced.
    in_memory: bool,
    renewed: Mutex<Instant>,
}

/// Replace the SQLite pool at most this often while an outage lasts.
const RENEW_EVERY: Duration = Duration::from_secs(1);

impl SqliteHandle {
    fn pool(&self) -> SqlitePool {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Swaps in a fresh pool; the old one closes as its connections come back.
    fn renew(&self) {
        if self.in_memory {
            return;
        }
        {
            let Ok(mut renewed) = self.renewed.lock() else {
                return;
            };
            if renewed.elapsed() < RENEW_EVERY {
                return;
            }
            *renewed = Instant::now();
        }
        let fresh = self
            .pool_options
            .clone()
            .connect_lazy_with(self.options.clone());
        let old = std::mem::replace(
            &mut *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            fresh,
        );
        tracing::info!("order store: reopening SQLite connections after an outage");
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { old.close().await });
        }
    }
}

/// The order store. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct OrderStore {
    pool: Pool,
    migrated: Arc<OnceCell<()>>,
    /// SQLite's writer queue, shared by the clones of this store.
    group: Arc<group::GroupCommit>,
    /// The last write outage, shared by the clones and the pool's acquire hook.
    outage: Arc<OutageMark>,
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
        let outage = Arc::new(OutageMark::default());
        let pool = if url.starts_with("sqlite:") {
            Pool::Sqlite(Arc::new(sqlite_pool(url, store_options)?))
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
            outage,
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
                let migrator = match kind {
                    Kind::Sqlite => &SQLITE_MIGRATOR,
                    Kind::Postgres => &POSTGRES_MIGRATOR,
                };
                // sqlx has no migration lock on SQLite: two processes (or two stores in
                // one) opening a fresh file race on `_sqlx_migrations`, and the loser
                // fails on its unique key. Running again then finds the work done.
                let mut tries = 0;
                loop {
                    tries += 1;
                    let result = match &self.pool {
                        Pool::Sqlite(h) => migrator.run(&h.pool()).await,
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
            Pool::Sqlite(h) => sqlx::query("SELECT 1").execute(&h.pool()).await.map(|_| ()),
            Pool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
        };
        result.map_err(|e| classify(kind, e))
    }

    /// Stores `order` and its lines in one transaction, unless an order with the same
    /// message identity exists already. Returns once the order is committed.
    pub async fn save(&self, order: &Order) -> Result<SaveResult, StoreError> {
        let result = match self.ensure_migrated().await {
            Err(e) => Err(e),
            Ok(()) => match &self.pool {
                // PostgreSQL commits concurrent transactions in parallel already.
                Pool::Sqlite(h) => self.group.save(&h.pool(), order).await,
                Pool::Postgres(pool) => save_postgres(pool, order)
                    .await
                    .map_err(|e| classify(Kind::Postgres, e)),
            },
        };
        match &result {
            Ok(_) => self.outage.clear(),
            Err(e) if e.is_unavailable() => {
                self.outage.note(e);
                if let Pool::Sqlite(h) = &self.pool {
                    h.renew();
                }
            }
            Err(_) => {}
        }
        result
    }

    /// Readiness: `ping`, and after a write outage a write probe, which clears it.
    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        self.ping().await?;
        if self.outage.last().is_none() {
            return Ok(());
        }
        let kind = self.kind();
        let probe = match &self.pool {
            // Writes the header's user_version back unchanged and rolls back: BEGIN alone
            // succeeds on a read-only file in WAL mode, a page write does not.
            Pool::Sqlite(h) => {
                let pool = h.pool();
                async {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "PRAGMA user_version = {version}"
                    )))
                    .execute(&mut *tx)
                    .await?;
                    tx.rollback().await
                }
                .await
            }
            Pool::Postgres(pool) => {
                sqlx::query_scalar::<_, String>("SELECT current_setting('transaction_read_only')")
                    .fetch_one(pool)
                    .await
                    .and_then(|read_only| {
                        if read_only == "on" {
                            Err(sqlx::Error::Protocol(
                                "the database is read-only (transaction_read_only = on)".into(),
                            ))
                        } else {
                            Ok(())
                        }
                    })
            }
        };
        match probe {
            Ok(()) => {
                self.outage.clear();
                Ok(())
            }
            Err(sqlx::Error::Protocol(message)) => Err(StoreError::Unavailable {
                message,
                source: None,
            }),
            Err(e) => {
                let error = classify(kind, e);
                if let (true, Pool::Sqlite(h)) = (error.is_unavailable(), &self.pool) {
                    h.renew();
                }
                Err(error)
            }
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
            Pool::Sqlite(h) => fetch_sqlite(&h.pool(), message_id).await,
            Pool::Postgres(pool) => fetch_postgres(pool, message_id).await,
        };
        result.map_err(|e| classify(kind, e))
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(h) => h.pool().close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

fn sqlite_pool(url: &str, store_options: StoreOptions) -> Result<SqliteHandle, StoreError> {
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
    let pool_options = pool_options.acquire_timeout(store_options.acquire_timeout);
    Ok(SqliteHandle {
        current: std::sync::RwLock::new(pool_options.clone().connect_lazy_with(options.clone())),
        options,
        pool_options,
        in_memory,
        renewed: Mutex::new(Instant::now()),
    })
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

/// SQLite primary result codes that mean the file, not the statement, is at fault:
/// fixing it needs no change to the mail, so the task waits instead of failing.
pub const SQLITE_OUTAGES: &[(i32, &str)] = &[
    (5, "BUSY"),
    (6, "LOCKED"),
    (8, "READONLY"),
    (10, "IOERR"),
    (13, "FULL"),
    (14, "CANTOPEN"),
    (15, "PROTOCOL"),
];

/// PostgreSQL SQLSTATEs (a trailing `*` is a class) that mean the server, not the
/// statement, is at fault.
pub const POSTGRES_OUTAGES: &[(&str, &str)] = &[
    ("08*", "connection exception"),
    (
        "53*",
        "insufficient resources (disk full, out of memory, too many connections)",
    ),
    ("57P01", "admin shutdown"),
    ("57P02", "crash shutdown"),
    ("57P03", "cannot connect now"),
    ("40001", "serialization failure (a retry succeeds)"),
    ("40P01", "deadlock detected (a retry succeeds)"),
    (
        "25006",
        "read-only transaction (a standby, or default_transaction_read_only)",
    ),
    ("58030", "I/O error"),
];

fn is_outage_code(kind: Kind, code: &str) -> bool {
    match kind {
        Kind::Sqlite => code.parse::<i32>().is_ok_and(|c| {
            SQLITE_OUTAGES
                .iter()
                .any(|(primary, _)| *primary == c & 0xff)
        }),
        Kind::Postgres => {
            POSTGRES_OUTAGES
                .iter()
                .any(|(pattern, _)| match pattern.strip_suffix('*') {
                    Some(class) => code.starts_with(class),
                    None => code == *pattern,
                })
        }
    }
}

/// Sorts a sqlx error into outage or failure.
fn classify(kind: Kind, error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_outage_code(kind, &code)),
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

/// The last write outage: readiness stays down until a write probe (or a write) succeeds.
#[derive(Default)]
struct OutageMark {
    /// Set by an outage, cleared by a success.
    failing: AtomicBool,
    message: Mutex<Option<String>>,
}

impl OutageMark {
    fn note(&self, error: &StoreError) {
        if let Ok(mut m) = self.message.lock() {
            *m = Some(error.to_string());
        }
        self.failing.store(true, Ordering::Relaxed);
    }

    fn clear(&self) {
        // The common path (no outage) is one atomic swap.
        if self.failing.swap(false, Ordering::Relaxed)
            && let Ok(mut m) = self.message.lock()
        {
            *m = None;
        }
    }

    fn last(&self) -> Option<String> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        self.message.lock().ok().and_then(|m| m.clone())
    }
}

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
    fn outage_codes_are_classified_by_meaning() {
        let cases = [
            (Kind::Sqlite, "8", true),     // READONLY
            (Kind::Sqlite, "1544", true),  // an extended READONLY code
            (Kind::Sqlite, "14", true),    // CANTOPEN
            (Kind::Sqlite, "13", true),    // FULL
            (Kind::Sqlite, "2067", false), // CONSTRAINT_UNIQUE: the statement's fault
            (Kind::Sqlite, "1", false),    // ERROR
            (Kind::Postgres, "08006", true),
            (Kind::Postgres, "53100", true), // disk full
            (Kind::Postgres, "25006", true), // read-only transaction
            (Kind::Postgres, "57P01", true),
            (Kind::Postgres, "23505", false), // unique violation
            (Kind::Postgres, "42P01", false), // undefined table
        ];
        for (kind, code, outage) in cases {
            assert_eq!(is_outage_code(kind, code), outage, "{kind:?} {code}");
        }
    }

    #[test]
    fn unknown_scheme_is_rejected() {
        let err = OrderStore::connect_lazy("mysql://u:pw@h/db")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("u:***@h") && !e.contains("pw")));
    }
}
