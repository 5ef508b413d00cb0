//! The order handler with the real store.

use mail_order_bot::domain::{Catalog, DEFAULT_MAX_MESSAGE_BYTES, OVERSIZE_HEADER};
use mail_order_bot::handler::{OrderHandler, REJECTED_TAG};
use mail_order_bot::store::{OrderStore, StoreOptions};
use runtime_contracts::{Task, TaskError};

use crate::support::{PgDatabase, run_handler};

const CATALOG: &str = "sku,name,price_cents\nWIDGET-1,Widget,1250\nBOLT-M5,Bolt,799\n";

fn catalog() -> Catalog {
    Catalog::from_csv_str(CATALOG, "test").unwrap()
}

fn email(message_id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Buyer <Buyer@Acme.example>\r\nTo: orders@shop.example\r\nSubject: PO: 77\r\n\
         Message-ID: <{message_id}>\r\nContent-Type: text/plain\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

async fn behaves(store: OrderStore) {
    let handler = OrderHandler::new(store.clone(), catalog(), DEFAULT_MAX_MESSAGE_BYTES);

    let ok = Task::new("maildir", email("ok-1@acme", "WIDGET-1 x 2\nBOLT-M5 x 1"));
    let (result, tag, spans) = run_handler(&handler, &ok).await;
    assert_eq!(result, Ok(()));
    assert_eq!(tag, None);
    let names: Vec<_> = spans.iter().map(|(n, _, p)| (n.as_str(), *p)).collect();
    assert_eq!(
        names,
        vec![("parse order", Some(7)), ("save order", Some(7))]
    );

    // Redelivery of the same message: still Ok, still one order.
    let again = Task::new("maildir", email("ok-1@acme", "WIDGET-1 x 2\nBOLT-M5 x 1"));
    assert_eq!(run_handler(&handler, &again).await.0, Ok(()));

    let bad = Task::new("maildir", email("bad-1@acme", "NOPE-9 x 1"));
    let (result, tag, _) = run_handler(&handler, &bad).await;
    assert_eq!(result, Ok(()));
    assert_eq!(tag.as_deref(), Some(REJECTED_TAG));

    let big =
        Task::new("maildir", email("big-1@acme", "")).with_header(OVERSIZE_HEADER, "99999999");
    let (result, tag, _) = run_handler(&handler, &big).await;
    assert_eq!(result, Ok(()));
    assert_eq!(tag.as_deref(), Some(REJECTED_TAG));

    let orders = store.list().await.unwrap();
    let summary: Vec<_> = orders
        .iter()
        .map(|o| {
            (
                o.message_id.as_str(),
                o.status.as_str(),
                o.reason.as_deref(),
                o.total_cents,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ok-1@acme", "accepted", None, 2 * 1250 + 799),
            ("bad-1@acme", "rejected", Some("unknown_sku:NOPE-9"), 0),
            ("big-1@acme", "rejected", Some("too_large"), 0),
        ]
    );
    assert_eq!(orders[0].customer, "buyer@acme.example");
    assert_eq!(orders[0].po_number.as_deref(), Some("77"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_with_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    behaves(OrderStore::connect(&url).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_with_postgres() {
    let db = PgDatabase::create().await;
    let store = OrderStore::connect(&db.url).await.unwrap();
    behaves(store.clone()).await;
    store.close().await;
    db.drop_now().await;
}

#[tokio::test]
async fn store_outage_is_unavailable_and_leaves_no_tag() {
    let store =
        OrderStore::connect_lazy_with("postgres://postgres@127.0.0.1:1/none", fast_fail()).unwrap();
    let handler = OrderHandler::new(store, catalog(), DEFAULT_MAX_MESSAGE_BYTES);
    let task = Task::new("maildir", email("down-1@acme", "NOPE-1 x 1"));
    let (result, tag, _) = run_handler(&handler, &task).await;
    assert!(
        matches!(result, Err(TaskError::Unavailable { .. })),
        "{result:?}"
    );
    assert_eq!(
        tag, None,
        "nothing was stored, so the mailbox must not file it"
    );
}

#[tokio::test]
async fn catalog_can_be_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let store = OrderStore::connect(&url).await.unwrap();
    let handler = OrderHandler::new(store.clone(), catalog(), DEFAULT_MAX_MESSAGE_BYTES);
    handler.replace_catalog(
        Catalog::from_csv_str("sku,name,price_cents\nNEW-1,New,5\n", "t").unwrap(),
    );
    let task = Task::new("maildir", email("new-1@acme", "NEW-1 x 2"));
    let (result, tag, _) = run_handler(&handler, &task).await;
    assert_eq!((result, tag), (Ok(()), None));
    assert_eq!(
        store.find("new-1@acme").await.unwrap().unwrap().total_cents,
        10
    );
}

/// Refused connections are retried until the acquire timeout: keep it short here.
fn fast_fail() -> StoreOptions {
    StoreOptions {
        acquire_timeout: std::time::Duration::from_millis(300),
        ..StoreOptions::default()
    }
}
