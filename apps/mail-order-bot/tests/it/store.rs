//! The order store on a real SQLite file and a real PostgreSQL database.

use mail_order_bot::domain::{Order, OrderLine, OrderStatus, RejectReason};
use mail_order_bot::store::{OrderStore, SaveResult, StoreHealth, StoreOptions};
use runtime_contracts::{HealthContributor, HealthStatus};

use crate::support::PgDatabase;

fn accepted(message_id: &str) -> Order {
    Order {
        message_id: message_id.to_owned(),
        customer: "buyer@acme.example".into(),
        po_number: Some("4711".into()),
        status: OrderStatus::Accepted,
        reason: None,
        lines: vec![
            OrderLine {
                sku: "WIDGET-1".into(),
                quantity: 3,
                unit_price_cents: 1250,
            },
            OrderLine {
                sku: "BOLT-M5".into(),
                quantity: 10,
                unit_price_cents: 799,
            },
        ],
        total_cents: 3 * 1250 + 10 * 799,
    }
}

fn rejected(message_id: &str) -> Order {
    Order {
        message_id: message_id.to_owned(),
        customer: "x@y.example".into(),
        po_number: None,
        status: OrderStatus::Rejected,
        reason: Some(RejectReason::UnknownSku("NOPE-1".into())),
        lines: Vec::new(),
        total_cents: 0,
    }
}

/// The behaviour every backend must show.
async fn exercise(store: &OrderStore) {
    assert_eq!(
        store.save(&accepted("m1@x")).await.unwrap(),
        SaveResult::Inserted
    );
    assert_eq!(
        store.save(&accepted("m1@x")).await.unwrap(),
        SaveResult::AlreadyExists
    );
    assert_eq!(
        store.save(&rejected("m2@x")).await.unwrap(),
        SaveResult::Inserted
    );

    // The same message, saved by many workers at once: exactly one order.
    let saves = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.save(&accepted("race@x")).await.unwrap() })
    });
    let results = futures_join(saves).await;
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == SaveResult::Inserted)
            .count(),
        1
    );

    let orders = store.list().await.unwrap();
    assert_eq!(orders.len(), 3, "{orders:#?}");
    let first = &orders[0];
    assert_eq!(first.message_id, "m1@x");
    assert_eq!(first.status, "accepted");
    assert_eq!(first.po_number.as_deref(), Some("4711"));
    assert_eq!(first.total_cents, 3 * 1250 + 10 * 799);
    assert!(
        first.created_at.ends_with('Z') && first.created_at.len() >= 20,
        "{}",
        first.created_at
    );
    let mut skus: Vec<_> = first
        .lines
        .iter()
        .map(|l| (l.sku.as_str(), l.quantity))
        .collect();
    skus.sort();
    assert_eq!(skus, vec![("BOLT-M5", 10), ("WIDGET-1", 3)]);
    let second = &orders[1];
    assert_eq!(second.status, "rejected");
    assert_eq!(second.reason.as_deref(), Some("unknown_sku:NOPE-1"));
    assert!(second.lines.is_empty());
    assert_eq!(
        orders[2].lines.len(),
        2,
        "race winner's lines were stored once"
    );

    let found = store.find("m2@x").await.unwrap().unwrap();
    assert_eq!(found.id, second.id);
    assert!(store.find("missing@x").await.unwrap().is_none());
    store.ping().await.unwrap();
    let health = StoreHealth::new(store.clone()).check().await;
    assert_eq!(health.status, HealthStatus::Up);
}

/// Many saves at once, as from many workers: new orders, duplicates among them, one
/// stored before and one the schema refuses. Each caller gets its own order's result,
/// whether or not the store commits them together.
async fn concurrent_saves(store: &OrderStore) {
    assert_eq!(
        store.save(&accepted("before@x")).await.unwrap(),
        SaveResult::Inserted
    );
    let mut bad = accepted("bad@x");
    bad.lines[0].quantity = 0; // violates the quantity check
    let mut jobs: Vec<(Order, Option<SaveResult>)> = Vec::new();
    for i in 0..40 {
        jobs.push((accepted(&format!("g{i}@x")), None));
    }
    for _ in 0..3 {
        jobs.push((accepted("before@x"), Some(SaveResult::AlreadyExists)));
    }
    jobs.push((bad, None));
    // Three saves each of ten messages: exactly one of each three inserts.
    for i in 0..10 {
        for _ in 0..2 {
            jobs.push((accepted(&format!("g{i}@x")), None));
        }
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(jobs.len()));
    let handles = jobs.iter().map(|(order, _)| {
        let (store, order, start) = (store.clone(), order.clone(), start.clone());
        tokio::spawn(async move {
            start.wait().await;
            store.save(&order).await
        })
    });
    let results = futures_join(handles).await;
    let mut inserted = std::collections::HashMap::<String, usize>::new();
    for ((order, want), result) in jobs.iter().zip(&results) {
        if order.message_id == "bad@x" {
            let err = result.as_ref().unwrap_err();
            assert!(!err.is_unavailable(), "{err:?}");
            continue;
        }
        let got = *result.as_ref().unwrap();
        if let Some(want) = want {
            assert_eq!(got, *want, "{}", order.message_id);
        }
        if got == SaveResult::Inserted {
            *inserted.entry(order.message_id.clone()).or_default() += 1;
        }
    }
    assert_eq!(inserted.len(), 40, "{inserted:?}");
    assert!(inserted.values().all(|n| *n == 1), "{inserted:?}");
    let orders = store.list().await.unwrap();
    assert_eq!(orders.len(), 41);
    assert!(store.find("bad@x").await.unwrap().is_none());
    assert!(orders.iter().all(|o| o.lines.len() == 2), "{orders:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_saves_each_get_their_own_result() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let store = OrderStore::connect(&url).await.unwrap();
    concurrent_saves(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_saves_each_get_their_own_result() {
    let db = PgDatabase::create().await;
    let store = OrderStore::connect(&db.url).await.unwrap();
    concurrent_saves(&store).await;
    store.close().await;
    db.drop_now().await;
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/orders.db");
    let url = format!("sqlite://{}", path.display());
    let store = OrderStore::connect(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    assert!(
        path.exists(),
        "the database file and its directory are created"
    );
    exercise(&store).await;
    store.close().await;

    // Migrations are idempotent and the data is durable across connections.
    let again = OrderStore::connect(&url).await.unwrap();
    assert_eq!(again.list().await.unwrap().len(), 3);
    assert_eq!(
        again.save(&accepted("m1@x")).await.unwrap(),
        SaveResult::AlreadyExists
    );
    again.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    let db = PgDatabase::create().await;
    let store = OrderStore::connect(&db.url).await.unwrap();
    assert_eq!(store.backend(), "postgres");
    exercise(&store).await;
    store.close().await;
    let again = OrderStore::connect(&db.url).await.unwrap();
    assert_eq!(again.list().await.unwrap().len(), 3);
    again.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_not_a_failure() {
    // Port 1 on loopback: connection refused at once.
    let url = "postgres://postgres:hunter2@127.0.0.1:1/none";
    let err = OrderStore::connect_with(url, fast_fail())
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(!err.to_string().contains("hunter2"));

    let lazy = OrderStore::connect_lazy_with(url, fast_fail()).unwrap();
    let err = lazy.save(&accepted("m@x")).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let health = StoreHealth::new(lazy).check().await;
    assert_eq!(health.status, HealthStatus::Down);
    assert!(health.readiness);
}

#[tokio::test]
async fn a_bad_url_is_a_configuration_error() {
    let err = OrderStore::connect("mysql://h/db").await.unwrap_err();
    assert!(!err.is_unavailable());
    assert!(err.to_string().contains("expected sqlite://"), "{err}");
}

/// Refused connections are retried until the acquire timeout: keep it short here.
fn fast_fail() -> StoreOptions {
    StoreOptions {
        acquire_timeout: std::time::Duration::from_millis(300),
        ..StoreOptions::default()
    }
}

/// Replaying one message many times (a retried ack re-runs the save) uses no ids: the
/// next new order gets the next id.
async fn replays_burn_no_ids(store: &OrderStore) {
    store.save(&accepted("first@x")).await.unwrap();
    for _ in 0..20 {
        assert_eq!(
            store.save(&accepted("first@x")).await.unwrap(),
            SaveResult::AlreadyExists
        );
    }
    store.save(&accepted("second@x")).await.unwrap();
    let ids: Vec<i64> = store.list().await.unwrap().iter().map(|o| o.id).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[1], ids[0] + 1, "ids stay consecutive: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replays_burn_no_ids() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let store = OrderStore::connect(&url).await.unwrap();
    replays_burn_no_ids(&store).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replays_burn_no_ids() {
    let db = PgDatabase::create().await;
    let store = OrderStore::connect(&db.url).await.unwrap();
    replays_burn_no_ids(&store).await;
    store.close().await;
    db.drop_now().await;
}

/// What databases migrated by earlier builds recorded in `_sqlx_migrations` (SHA-384 of
/// each file's SQL): a store must keep writing the same, or sqlx refuses those databases
/// with a checksum mismatch.
const SQLITE_RECORDED: &[(i64, &str, &str)] = &[
    (
        1,
        "orders",
        "c981f9d7fe22dca99d32d7ae2aa53fa4911603ae20c4496d467d3fe5967ca4e214e64e420e7a4dbda0fea934d0c69ee3",
    ),
    (
        2,
        "ignored status",
        "620a0676a5804b3917f55bb47a971a9727ec0b9311c62b80e7aa5bfa60af109427b76d79c65901a8d68437e9ebfd1a3f",
    ),
    (
        3,
        "reports",
        "8c3a1429ce7319a6e56bfd91fd006fc39a8b465977308fe920083d3932e5df57345a7820d1edf46938688d7799995021",
    ),
];
const POSTGRES_RECORDED: &[(i64, &str, &str)] = &[
    (
        1,
        "orders",
        "ecc6da38ab8d0e53291a98101097177eb4fe7f8c9bebd83aaaa7b79b882001e707d6bb00471995abef915c1501ddb40d",
    ),
    (
        2,
        "ignored status",
        "3ec5cfe69c8bd19c7953a32b7ae1f06494e7bfd2296818fa26229ac358c7a5f3c15fd9c536f7e88deb56ae7c6a59084b",
    ),
    (
        3,
        "reports",
        "bf901d32d5e4a2cef90045c4eea26db986fad3b1dde7421d586caf9b7ee29af1d8a2297e8b9fd671f87dd54dbc8823f1",
    ),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const RECORDED_QUERY: &str =
    "SELECT version, description, checksum FROM _sqlx_migrations ORDER BY version";

/// The `_sqlx_migrations` rows read back equal the pinned (version, name, SHA-384) rows.
fn assert_recorded(rows: Vec<(i64, String, Vec<u8>)>, pinned: &[(i64, &str, &str)]) {
    let rows: Vec<(i64, String, String)> =
        rows.into_iter().map(|(v, d, c)| (v, d, hex(&c))).collect();
    let expected: Vec<(i64, String, String)> = pinned
        .iter()
        .map(|(v, d, c)| (*v, (*d).to_owned(), (*c).to_owned()))
        .collect();
    assert_eq!(rows, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrations_match_what_older_databases_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    OrderStore::connect(&url).await.unwrap().close().await;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(RECORDED_QUERY)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_recorded(rows, SQLITE_RECORDED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_match_what_older_databases_recorded() {
    let db = PgDatabase::create().await;
    OrderStore::connect(&db.url).await.unwrap().close().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(RECORDED_QUERY)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_recorded(rows, POSTGRES_RECORDED);
    db.drop_now().await;
}

fn ignored(message_id: &str) -> Order {
    Order {
        message_id: message_id.to_owned(),
        customer: "mailer-daemon@mx.example".into(),
        po_number: None,
        status: OrderStatus::Ignored,
        reason: Some(RejectReason::Bounce),
        lines: Vec::new(),
        total_cents: 0,
    }
}

/// A database that only round 1's migration made, holding an order with lines.
async fn round_one_database(url: &str, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/store/migrations")
        .join(backend)
        .join("0001_orders.sql");
    std::fs::copy(&source, dir.path().join("0001_orders.sql")).unwrap();
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    let insert_order = "INSERT INTO orders (message_id, customer, status, total_cents) \
                        VALUES ('old@x', 'buyer@acme.example', 'accepted', 2500)";
    let insert_line = "INSERT INTO order_lines (order_id, sku, quantity, unit_price_cents) \
                       SELECT id, 'WIDGET-1', 2, 1250 FROM orders WHERE message_id = 'old@x'";
    if backend == "sqlite" {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        for sql in [insert_order, insert_line] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        for sql in [insert_order, insert_line] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
}

/// Round 1's databases upgrade in place: the status check learns `ignored`, and the
/// rebuild of the SQLite table keeps every order with its lines.
async fn an_upgraded_database_keeps_its_orders_and_takes_ignored(url: &str, backend: &str) {
    round_one_database(url, backend).await;
    let store = OrderStore::connect(url).await.unwrap();
    let old = store.find("old@x").await.unwrap().unwrap();
    assert_eq!(old.lines.len(), 1, "{backend}: lines survive the upgrade");
    assert_eq!(old.total_cents, 2500);
    assert_eq!(
        store.save(&ignored("dsn@x")).await.unwrap(),
        SaveResult::Inserted
    );
    let stored = store.find("dsn@x").await.unwrap().unwrap();
    assert_eq!(
        (stored.status.as_str(), stored.reason.as_deref()),
        ("ignored", Some("bounce"))
    );
    // New orders keep numbering after the old ones.
    assert!(stored.id > old.id);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_round_one_databases_upgrade_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("orders.db").display()
    );
    an_upgraded_database_keeps_its_orders_and_takes_ignored(&url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_one_databases_upgrade_in_place() {
    let db = PgDatabase::create().await;
    an_upgraded_database_keeps_its_orders_and_takes_ignored(&db.url, "postgres").await;
    db.drop_now().await;
}
