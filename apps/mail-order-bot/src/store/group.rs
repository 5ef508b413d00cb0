//! Group commit for SQLite.
//!
//! SQLite has one writer at a time and, in WAL mode with `synchronous = FULL`, one fsync
//! per commit: saved one by one, orders queue behind each other's fsync. Here concurrent
//! [`OrderStore::save`](super::OrderStore::save) calls put their order in a shared queue;
//! whoever holds the writer lock takes everything queued and commits it in one
//! transaction (one fsync), then answers each caller. Durability per order is unchanged:
//! a caller returns only after the transaction holding its order committed.
//!
//! No background task: the callers take turns as the writer, so nothing outlives the
//! store and it works on any runtime. A writer that is cancelled mid-batch drops the
//! answer channels of the orders it held; their callers queue them again (saving is
//! idempotent by message id, so a batch that did commit reports `AlreadyExists` then).

use std::sync::Mutex;

use sqlx::sqlite::SqlitePool;
use tokio::sync::oneshot;

use super::{Kind, SaveResult, StoreError, classify, insert_sqlite, save_sqlite};
use crate::domain::Order;

/// Most orders in one transaction (bounds the time the write lock is held).
const MAX_BATCH: usize = 256;

type Answer = oneshot::Sender<Result<SaveResult, StoreError>>;

/// The queue of orders waiting to be written, and the writer's turn.
#[derive(Default)]
pub(super) struct GroupCommit {
    pending: Mutex<Vec<(Order, Answer)>>,
    writer: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    fn push(&self, order: &Order) -> oneshot::Receiver<Result<SaveResult, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.lock().push((order.clone(), tx));
        rx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Order, Answer)>> {
        // Only pushes and drains happen under it: a panic cannot leave it half-changed.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Saves `order` in the next group commit and returns its own result.
    pub(super) async fn save(
        &self,
        pool: &SqlitePool,
        order: &Order,
    ) -> Result<SaveResult, StoreError> {
        let mut answer = self.push(order);
        loop {
            tokio::select! {
                biased;
                result = &mut answer => match result {
                    Ok(result) => return result,
                    // The writer holding it was cancelled before answering.
                    Err(_) => answer = self.push(order),
                },
                _turn = self.writer.lock() => {
                    let batch: Vec<(Order, Answer)> = {
                        let mut pending = self.lock();
                        let n = pending.len().min(MAX_BATCH);
                        pending.drain(..n).collect()
                    };
                    // Empty means an earlier writer took ours and has answered it (it
                    // answers before giving up its turn): the next poll returns it.
                    if !batch.is_empty() {
                        commit(pool, batch).await;
                    }
                }
            }
        }
    }
}

/// Commits `batch` in one transaction and answers each caller. If the transaction fails
/// for a reason other than an outage, one bad order must not fail the others: each is
/// then saved on its own.
async fn commit(pool: &SqlitePool, batch: Vec<(Order, Answer)>) {
    let (orders, answers): (Vec<Order>, Vec<Answer>) = batch.into_iter().unzip();
    match save_batch(pool, &orders).await {
        Ok(results) => {
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(Ok(result));
            }
        }
        Err(error) => {
            let error = classify(Kind::Sqlite, error);
            if orders.len() == 1 || error.is_unavailable() {
                // An outage hits every order alike: each caller waits it out.
                let message = error.to_string();
                let mut error = Some(error);
                for answer in answers {
                    let e = error.take().unwrap_or_else(|| StoreError::Unavailable {
                        message: message.clone(),
                        source: None,
                    });
                    let _ = answer.send(Err(e));
                }
                return;
            }
            tracing::debug!(%error, orders = orders.len(), "group commit failed; saving one by one");
            for (order, answer) in orders.iter().zip(answers) {
                let result = save_sqlite(pool, order)
                    .await
                    .map_err(|e| classify(Kind::Sqlite, e));
                let _ = answer.send(result);
            }
        }
    }
}

async fn save_batch(pool: &SqlitePool, orders: &[Order]) -> Result<Vec<SaveResult>, sqlx::Error> {
    // IMMEDIATE: see `save_sqlite`.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(orders.len());
    for order in orders {
        // A duplicate within the batch finds the row its twin inserted just before.
        results.push(insert_sqlite(&mut tx, order).await?);
    }
    tx.commit().await?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::domain::{OrderLine, OrderStatus};
    use crate::store::{OrderStore, Pool};

    fn order(message_id: &str, quantity: u32) -> Order {
        Order {
            message_id: message_id.to_owned(),
            customer: "buyer@acme.example".into(),
            po_number: None,
            status: OrderStatus::Accepted,
            reason: None,
            lines: vec![OrderLine {
                sku: "WIDGET-1".into(),
                quantity,
                unit_price_cents: 100,
            }],
            total_cents: i64::from(quantity) * 100,
        }
    }

    /// One batch with a stored order, a duplicate inside the batch and an order the
    /// schema refuses (quantity 0): each caller gets its own answer.
    #[tokio::test]
    async fn one_batch_answers_each_order_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("o.db").display());
        let store = OrderStore::connect(&url).await.unwrap();
        store.save(&order("old@x", 1)).await.unwrap();
        let Pool::Sqlite(handle) = &store.pool else {
            panic!("sqlite expected")
        };
        let pool = &handle.pool();
        let orders = [
            order("a@x", 1),
            order("old@x", 2),
            order("b@x", 2),
            order("a@x", 3),
            order("bad@x", 0),
            order("c@x", 4),
        ];
        let mut answers = Vec::new();
        let batch = orders
            .iter()
            .map(|o| {
                let (tx, rx) = oneshot::channel();
                answers.push(rx);
                (o.clone(), tx)
            })
            .collect();
        commit(pool, batch).await;
        let mut results = Vec::new();
        for rx in answers {
            results.push(rx.await.unwrap());
        }
        use SaveResult::{AlreadyExists, Inserted};
        let ok: Vec<Option<SaveResult>> =
            results.iter().map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(
            ok,
            vec![
                Some(Inserted),
                Some(AlreadyExists),
                Some(Inserted),
                Some(AlreadyExists),
                None,
                Some(Inserted)
            ]
        );
        assert!(!results[4].as_ref().unwrap_err().is_unavailable());
        let stored: Vec<(String, u32)> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.message_id, o.lines[0].quantity))
            .collect();
        let want = [("old@x", 1), ("a@x", 1), ("b@x", 2), ("c@x", 4)];
        assert_eq!(
            stored,
            want.map(|(m, q)| (m.to_owned(), q)).to_vec(),
            "the first of the duplicates wins, the bad order is not stored"
        );
        store.close().await;
    }
}
