//! Test helpers: a PostgreSQL database per test, a recording trace factory.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A throwaway database on the local PostgreSQL, dropped (with its connections) on
/// `drop_now`. Fails with a clear message when PostgreSQL is not running.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "mob_test_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            runtime_contracts::now_millis() % 1_000_000
        );
        let mut admin = admin().await;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        PgDatabase {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }

    pub async fn drop_now(self) {
        let mut admin = admin().await;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("drop test database");
    }
}

async fn admin() -> PgConnection {
    PgConnection::connect(ADMIN_URL).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required at {ADMIN_URL} (trust auth, user postgres, database test): {e}. \
             Start it (e.g. `pg_ctlcluster 15 main start` or `service postgresql start`)."
        )
    })
}

/// A trace factory that records every span it starts (name, own id, parent id).
#[derive(Default)]
pub struct RecordingTracer {
    pub spans: std::sync::Mutex<Vec<(String, u64, Option<u64>)>>,
    next: AtomicU64,
}

impl runtime_contracts::TraceFactory for RecordingTracer {
    fn start_span(
        &self,
        spec: runtime_contracts::SpanSpec<'_>,
    ) -> Box<dyn runtime_contracts::TaskSpan> {
        let span_id = self.next.fetch_add(1, Ordering::Relaxed) + 100;
        let parent = spec.parent.map(|p| p.span_id);
        self.spans
            .lock()
            .unwrap()
            .push((spec.name.to_owned(), span_id, parent));
        Box::new(runtime_contracts::NoopSpan(
            runtime_contracts::TraceContext {
                trace_id: 1,
                span_id,
                sampled: true,
                trace_state: None,
            },
        ))
    }
}

/// The span id of the `task` span [`run_handler`] hands a handler (its children's parent).
pub const TASK_SPAN_ID: u64 = 7;

/// Runs `handler` once on `task` as a worker would: returns its result, the outcome tag it
/// set and the spans it started.
pub async fn run_handler(
    handler: &dyn runtime_contracts::TaskHandler,
    task: &runtime_contracts::Task,
) -> (
    Result<(), runtime_contracts::TaskError>,
    Option<String>,
    Vec<(String, u64, Option<u64>)>,
) {
    let tracer = RecordingTracer::default();
    let span = runtime_contracts::NoopSpan(runtime_contracts::TraceContext {
        trace_id: 1,
        span_id: TASK_SPAN_ID,
        sampled: true,
        trace_state: None,
    });
    let tag = std::sync::Mutex::new(None);
    let ctx = runtime_contracts::TaskContext {
        span: &span,
        tracer: &tracer,
        pool: "orders",
        queue: "mail-orders",
        tag: &tag,
        cancellation: &runtime_contracts::NeverStopped,
    };
    let result = handler.handle(task, &ctx).await;
    let spans = tracer.spans.lock().unwrap().clone();
    (result, tag.into_inner().unwrap(), spans)
}
