//! The daily summary: the handler on real SQLite and PostgreSQL (the previous local day,
//! the CSV, the `reports` row, a redelivery that adds nothing), and the whole bot with a
//! `[[schedules]]` entry whose missed tick runs once at start (`misfire = "once"`).

use std::time::Duration;

use mail_order_bot::store::OrderStore;
use mail_order_bot::summary::{DAILY_SUMMARY_ROUTE, SummaryHandler};
use runtime_contracts::{SCHEDULE_LOCAL_TICK_HEADER, SCHEDULE_TICK_HEADER, Task};

use crate::harness::{Db, Env, Queue, Setup, Source, eventually};
use crate::support::{PgDatabase, run_handler};

/// A tick of schedule `daily` at `local` (RFC 9557), as the scheduled source makes it.
fn tick(local: &str) -> Task {
    let zoned: jiff::Zoned = local.parse().unwrap();
    let key = zoned.timestamp().to_string();
    Task::new(DAILY_SUMMARY_ROUTE, Vec::new())
        .with_origin("daily", key.clone())
        .with_header(SCHEDULE_TICK_HEADER, key)
        .with_header(SCHEDULE_LOCAL_TICK_HEADER, local)
}

async fn handle(handler: &SummaryHandler, task: &Task) {
    run_handler(handler, task).await.0.unwrap();
}

/// Orders at the edges of 2026-03-29 in Berlin (a 23-hour day: 2026-03-28T23:00Z to
/// 2026-03-29T22:00Z), inserted with their times.
async fn insert_orders(url: &str, sqlite: bool) {
    let rows = [
        ("before", "2026-03-28T22:59:59.999Z"),
        ("first", "2026-03-28T23:00:00.000Z"),
        ("last", "2026-03-29T21:59:59.999Z"),
        ("after", "2026-03-29T22:00:00.000Z"),
    ];
    for (i, (name, at)) in rows.iter().enumerate() {
        let msg = format!("<{name}@x>");
        let customer = format!("{name}@example.com");
        let po = format!("PO-{i}");
        let total = 1234_i64 * (i as i64 + 1);
        let insert = "INSERT INTO orders (message_id, customer, po_number, status, reason, \
                      total_cents, created_at) VALUES ";
        if sqlite {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{insert}(?, ?, ?, 'accepted', NULL, ?, ?)"
            )))
            .bind(msg)
            .bind(customer)
            .bind(po)
            .bind(total)
            .bind(*at)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{insert}($1, $2, $3, 'accepted', NULL, $4, $5::timestamptz)"
            )))
            .bind(msg)
            .bind(customer)
            .bind(po)
            .bind(total)
            .bind(*at)
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
}

async fn writes_the_previous_local_day_once(store: OrderStore, url: &str, sqlite: bool) {
    store.ensure_migrated().await.unwrap();
    insert_orders(url, sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let handler = SummaryHandler::new(store.clone(), dir.path().join("reports"));
    let task = tick("2026-03-30T07:00:00+02:00[Europe/Berlin]");
    handle(&handler, &task).await;
    let file = dir.path().join("reports/orders-2026-03-29.csv");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        "created_at,customer,po,status,reason,total\n\
         2026-03-28T23:00:00.000Z,first@example.com,PO-1,accepted,,24.68\n\
         2026-03-29T21:59:59.999Z,last@example.com,PO-2,accepted,,37.02\n"
    );
    let reports = store.reports().await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let origin = task.origin.as_ref().unwrap();
    assert_eq!(reports[0].tick, format!("daily/{}", origin.key));
    assert_eq!(reports[0].orders, 2);
    assert_eq!(reports[0].path, file.display().to_string());

    // A redelivery of the same tick (a crash before the ack) adds nothing.
    std::fs::remove_file(&file).unwrap();
    handle(&handler, &task).await;
    assert_eq!(store.reports().await.unwrap().len(), 1);
    assert!(!file.exists(), "a redelivered tick wrote the report again");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_daily_summary_writes_the_previous_local_day_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let store = OrderStore::connect(&url).await.unwrap();
    writes_the_previous_local_day_once(store, &url, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_daily_summary_writes_the_previous_local_day_once() {
    let db = PgDatabase::create().await;
    let store = OrderStore::connect(&db.url).await.unwrap();
    writes_the_previous_local_day_once(store, &db.url, false).await;
    db.drop_now().await;
}

/// The bot with a daily schedule that last ran two days ago and `misfire = "once"`: at
/// start it runs the latest missed tick once, which writes the report of the day before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_runs_a_missed_daily_summary_once_at_start() {
    let env = Env::new(Setup::new(Source::Maildir, Queue::Memory, Db::Sqlite)).await;
    let state = env.dir.path().join("state");
    let reports = env.dir.path().join("reports");
    let config = format!(
        "{}\n[runtime]\nshutdown_timeout = \"5s\"\nstate_dir = {:?}\n\n[reports]\ndir = {:?}\n\n[[schedules]]\nname = \"daily\"\n\
         cron = \"0 7 * * *\"\ntimezone = \"Europe/Berlin\"\nroute = \"daily-summary\"\nmisfire = \"once\"\n",
        env.config_toml()
            .replace("[runtime]\nshutdown_timeout = \"5s\"\n", ""),
        state.display().to_string(),
        reports.display().to_string(),
    );
    std::fs::write(&env.config_path, config).unwrap();
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    let two_days_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("schedule-daily.json"),
        serde_json::json!({ "last_tick": two_days_ago, "last_finished": two_days_ago }).to_string(),
    )
    .unwrap();
    // The latest 07:00 Berlin at or before now, and the day before it.
    let now = jiff::Timestamp::now().to_zoned(berlin.clone());
    let mut latest = now.date().at(7, 0, 0, 0).to_zoned(berlin.clone()).unwrap();
    if latest > now {
        latest = latest
            .date()
            .yesterday()
            .unwrap()
            .at(7, 0, 0, 0)
            .to_zoned(berlin)
            .unwrap();
    }
    let day = latest.date().yesterday().unwrap();

    let (runtime, _module) = env.compose().await;
    runtime.start().await.unwrap();
    let store = env.store().await;
    let rows = eventually("the report row", Duration::from_secs(15), || {
        let store = store.clone();
        async move {
            match store.reports().await {
                Ok(rows) if !rows.is_empty() => Ok(rows),
                Ok(_) => Err("no report yet".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].tick, format!("daily/{}", latest.timestamp()));
    assert!(reports.join(format!("orders-{day}.csv")).exists());
    let status = runtime.handle().status().await;
    let s = status.schedules.iter().find(|s| s.name == "daily").unwrap();
    assert_eq!(s.runs_total, 1, "{s:?}");
    assert_eq!(
        s.last_run.as_deref(),
        Some(latest.timestamp().to_string().as_str())
    );
    runtime.stop().await;
    store.close().await;
    env.cleanup().await;
}
