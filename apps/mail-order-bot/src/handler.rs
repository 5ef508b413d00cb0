//! The order handler: one task = one raw email.
//!
//! Steps, each in its own child span: `parse order` (MIME and the outcome rules, on a
//! blocking thread so a 25 MiB message never stalls the async workers), `save order`
//! (idempotent by message identity). Mapping to the runtime:
//!
//! | what happened | handler returns | mailbox |
//! |---|---|---|
//! | accepted, stored (or stored before) | `Ok(())` | `\Seen` / processed folder |
//! | rejected, stored (or stored before) | `Ok(())`, tag `rejected` | `\Seen` / rejected folder |
//! | store unreachable | `TaskError::Unavailable` (no attempt used) | untouched |
//! | store failed otherwise | `TaskError::Retry` (an attempt) | untouched |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use runtime_contracts::{Task, TaskContext, TaskError, TaskHandler};
use tracing::{debug, info, warn};

use crate::domain::{Catalog, OVERSIZE_HEADER, Order, process_message_until};
use crate::store::{OrderStore, SaveResult};

/// The outcome tag of a rejected order (the contracts' shared tag); the mailbox source
/// files such messages in its rejected folder.
pub use runtime_contracts::REJECTED_TAG;

/// Turns order-email tasks into stored orders.
pub struct OrderHandler {
    store: OrderStore,
    catalog: RwLock<Arc<Catalog>>,
    max_message_bytes: u64,
}

impl std::fmt::Debug for OrderHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderHandler")
            .field("store", &self.store)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl OrderHandler {
    /// A handler saving into `store`, pricing from `catalog`, rejecting messages over
    /// `max_message_bytes` as `too_large`.
    pub fn new(store: OrderStore, catalog: Catalog, max_message_bytes: u64) -> Self {
        OrderHandler {
            store,
            catalog: RwLock::new(Arc::new(catalog)),
            max_message_bytes,
        }
    }

    /// Swaps the catalog (after a configuration reload); tasks already running keep the
    /// one they started with.
    pub fn replace_catalog(&self, catalog: Catalog) {
        if let Ok(mut slot) = self.catalog.write() {
            *slot = Arc::new(catalog);
        }
    }

    fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Parses and evaluates one raw message off the async threads.
    pub async fn evaluate(&self, task: &Task) -> Result<Order, TaskError> {
        let payload = task.payload.clone();
        let catalog = self.catalog();
        let max = self.max_message_bytes;
        let reported_size = task
            .headers
            .get(OVERSIZE_HEADER)
            .map(|v| v.trim().parse::<u64>().unwrap_or(u64::MAX));
        // Dropping this future (the task timed out or was cut off) sets the flag, and the
        // blocking parse stops soon after instead of burning a core for minutes.
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = Arc::clone(&cancel.0);
        let parsed = tokio::task::spawn_blocking(move || {
            process_message_until(&payload, &catalog, max, reported_size, &flag)
        })
        .await
        .map_err(|e| TaskError::retry(format!("order parsing did not finish: {e}")))?;
        parsed.ok_or_else(|| TaskError::retry("order parsing was cancelled"))
    }
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl TaskHandler for OrderHandler {
    async fn handle(&self, task: &Task, ctx: &TaskContext<'_>) -> Result<(), TaskError> {
        let parse_span = ctx.child_span("parse order");
        parse_span.set_attribute("message.bytes", (task.payload.len() as i64).into());
        let order = match self.evaluate(task).await {
            Ok(order) => order,
            Err(error) => {
                parse_span.set_error(error.reason());
                return Err(error);
            }
        };
        parse_span.set_attribute("order.status", order.status.as_str().into());
        if let Some(reason) = &order.reason {
            parse_span.set_attribute("order.reason", reason.to_string().into());
        }
        parse_span.end();

        let save_span = ctx.child_span("save order");
        save_span.set_attribute("db.system", self.store.backend().into());
        let saved = match self.store.save(&order).await {
            Ok(saved) => saved,
            Err(error) => {
                save_span.set_error(&error.to_string());
                if error.is_unavailable() {
                    warn!(%error, "order store unavailable");
                    return Err(TaskError::unavailable(error));
                }
                warn!(%error, "saving order failed");
                return Err(TaskError::retry(error));
            }
        };
        save_span.set_attribute("order.new", (saved == SaveResult::Inserted).into());
        save_span.end();

        // No task id here: the worker's `task` span around this handler carries it, and
        // every line logged inside names the span's fields.
        match saved {
            SaveResult::Inserted => info!(
                message_id = %order.message_id,
                customer = %order.customer,
                status = order.status.as_str(),
                reason = order.reason.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                total_cents = order.total_cents,
                "order stored"
            ),
            SaveResult::AlreadyExists => debug!(
                message_id = %order.message_id,
                "order already stored"
            ),
        }
        if !order.is_accepted() {
            ctx.tag_outcome(REJECTED_TAG);
        }
        Ok(())
    }
}
