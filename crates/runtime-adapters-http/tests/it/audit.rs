//! Every admin action leaves an audit line naming the caller by token id, never by token.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::Method;
use runtime_contracts::{Task, TaskError};
use runtime_testkit::fakes::FnHandler;

use crate::{Opts, TOKEN, start};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One process-wide subscriber writing into memory (the server logs from tokio's worker
/// threads, so a thread-local subscriber would miss it).
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_audited_without_the_token() {
    let logs = logs();
    let handler = FnHandler::new(Duration::ZERO, |_: &Task, _: &_| Ok::<(), TaskError>(()));
    let h = start(Opts::new(handler)).await;
    let c = &h.client;
    let r = c
        .admin_json(
            "/admin/pools/p/concurrency",
            serde_json::json!({"concurrency": 3}),
        )
        .await;
    assert_eq!(r.status, 200);
    c.admin(Method::POST, "/admin/sources/ghost/pause")
        .await
        .assert_error(404);
    c.send(Method::POST, "/admin/shutdown", Some("guess"), None)
        .await
        .assert_error(401);
    let r = c.admin(Method::DELETE, "/admin/dead-letters?queue=q").await;
    assert_eq!(r.status, 200, "{}", r.text());
    h.rt.stop().await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let audit: Vec<&str> = text.lines().filter(|l| l.contains("plba::audit")).collect();
    let find = |needle: &[&str]| {
        audit
            .iter()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no audit line with {needle:?} in {audit:#?}"))
    };
    let ok = find(&["action=\"set_concurrency\"", "object=\"p\"", "status=200"]);
    assert!(
        ok.contains("who=token:") && ok.contains("result=\"ok\""),
        "{ok}"
    );
    let not_found = find(&["action=\"pause_source\"", "object=\"ghost\"", "status=404"]);
    assert!(not_found.contains("not found"), "{not_found}");
    let purged = find(&[
        "action=\"purge_dead_letters\"",
        "object=\"q\"",
        "status=200",
    ]);
    assert!(purged.contains("result=\"ok: purged 0\""), "{purged}");
    find(&[
        "who=\"unauthenticated\"",
        "POST /admin/shutdown",
        "status=401",
    ]);
    assert!(!text.contains(TOKEN), "the token reached a log");
    assert!(!text.contains("guess"), "a presented token reached a log");
}
