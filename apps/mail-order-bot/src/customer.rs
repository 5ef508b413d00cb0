//! [`CustomerHeader`]: a source wrapper that puts the `customer` header (the normalised
//! sender address) on every task the mailbox produces, so a pool configured with
//! `[workers] concurrency_key = "customer"` and `per_key = 1` runs one customer's orders
//! one at a time, across every instance sharing the queue.
//!
//! Only the message header is read (`parse_message(.., headers_only)`), the same
//! normalisation the handler uses for the order's customer; a message without a sender
//! gets no header and is not limited per customer.

use std::sync::Arc;

use async_trait::async_trait;
use runtime_contracts::{
    HealthContributor, PublishOutcome, QueueError, SourceAcknowledger, SourceError, SourceStatus,
    StopSignal, Task, TaskSink, TaskSource,
};

use crate::domain::parse_message;

/// The task header that carries the customer's address.
pub const CUSTOMER_HEADER: &str = "customer";

/// Wraps a mailbox source; everything but the tasks' header passes through.
pub struct CustomerHeader {
    inner: Arc<dyn TaskSource>,
}

impl CustomerHeader {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn TaskSource>) -> Self {
        CustomerHeader { inner }
    }
}

/// Adds the header to `task` when its sender is known.
pub fn tag(task: &mut Task) {
    let customer = parse_message(&task.payload, true).customer;
    if !customer.is_empty() {
        task.headers.insert(CUSTOMER_HEADER, customer);
    }
}

struct Tagging {
    sink: Arc<dyn TaskSink>,
}

#[async_trait]
impl TaskSink for Tagging {
    async fn publish(&self, mut task: Task) -> Result<PublishOutcome, QueueError> {
        tag(&mut task);
        self.sink.publish(task).await
    }

    async fn publish_batch(&self, mut tasks: Vec<Task>) -> Result<Vec<PublishOutcome>, QueueError> {
        tasks.iter_mut().for_each(tag);
        self.sink.publish_batch(tasks).await
    }
}

#[async_trait]
impl TaskSource for CustomerHeader {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &str {
        self.inner.kind()
    }

    async fn run(
        &self,
        sink: Arc<dyn TaskSink>,
        stop: Arc<dyn StopSignal>,
    ) -> Result<(), SourceError> {
        self.inner.run(Arc::new(Tagging { sink }), stop).await
    }

    fn status(&self) -> SourceStatus {
        self.inner.status()
    }

    fn health(&self) -> Option<Arc<dyn HealthContributor>> {
        self.inner.health()
    }

    fn acknowledger(&self) -> Option<Arc<dyn SourceAcknowledger>> {
        self.inner.acknowledger()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normalised_sender_becomes_the_header() {
        let mut task = Task::new(
            "order",
            b"From: Anna Mueller <Anna.Mueller@X.example>\r\nSubject: PO 1\r\n\r\nA-1 x 2\r\n"
                .to_vec(),
        );
        tag(&mut task);
        assert_eq!(
            task.headers.get(CUSTOMER_HEADER),
            Some("anna.mueller@x.example")
        );
        let mut anonymous = Task::new("order", b"Subject: hi\r\n\r\nbody".to_vec());
        tag(&mut anonymous);
        assert_eq!(anonymous.headers.get(CUSTOMER_HEADER), None);
    }
}
