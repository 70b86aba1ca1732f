//! What a service owns on the broker, declared: its queue, wait queues, dead-letter queue,
//! the exchanges it reads from and its bindings. Declared when the service starts, again when
//! a forward finds a queue missing, and every topology-refresh interval while it runs.

use std::time::Duration;

use super::queues::ServiceQueues;
use crate::bus::Bus;
use crate::contract::Exchange;
use crate::error::{ConsumeError, PublishError, TopologyError};
use crate::message::Message;
use crate::routing::BindingPattern;
use crate::transport::{DeadLetterTarget, QueueKind, QueueSpec, Subscription};

/// The broker-side topology of one service, with every name already namespaced.
pub(crate) struct ServiceTopology {
    queues: ServiceQueues,
    kind: QueueKind,
    bindings: Vec<(Exchange, BindingPattern)>,
}

impl ServiceTopology {
    /// The topology of a service with `queues` of `kind`, bound by `bindings`.
    pub(crate) fn new(
        queues: ServiceQueues,
        kind: QueueKind,
        bindings: Vec<(Exchange, BindingPattern)>,
    ) -> Self {
        Self {
            queues,
            kind,
            bindings,
        }
    }

    /// The service queue on the broker.
    pub(crate) fn queue(&self) -> &str {
        self.queues.queue()
    }

    /// Its dead-letter queue.
    pub(crate) fn dead_letter_queue(&self) -> &str {
        self.queues.dead_letter_queue()
    }

    /// The wait queue for `delay`, one of the retry policy's delays.
    pub(crate) fn wait_queue(&self, delay: Duration) -> String {
        self.queues.wait_queue(delay)
    }

    pub(crate) fn bus(&self) -> &Bus {
        self.queues.bus()
    }

    fn spec(&self, name: &str) -> QueueSpec {
        let mut spec = QueueSpec::durable(name);
        spec.kind = self.kind;
        spec
    }

    /// Declares all of it; idempotent. Exchanges are declared on the broker even when the bus
    /// declared them before, so that one deleted from outside comes back.
    pub(crate) async fn declare(&self) -> Result<(), TopologyError> {
        let transport = self.bus().transport();
        transport.declare_queue(&self.spec(self.queue())).await?;
        // A quorum service gets quorum wait, retry and dead-letter queues, and its wait
        // queues hand messages on with the at-least-once strategy. Retries go to a queue of
        // their own, never through the service queue, so that a length limit on the service
        // queue cannot refuse (classic: drop) them.
        transport
            .declare_queue(&self.spec(self.dead_letter_queue()))
            .await?;
        transport
            .declare_queue(&self.spec(self.queues.retried_queue()))
            .await?;
        for (delay, name) in self.queues.delays() {
            let mut wait = self.spec(name);
            wait.message_ttl = Some(delay);
            wait.dead_letter = Some(DeadLetterTarget {
                exchange: String::new(),
                routing_key: Some(self.queues.retried_queue().to_owned()),
                at_least_once: self.kind == QueueKind::Quorum,
            });
            transport.declare_queue(&wait).await?;
        }
        let mut exchanges: Vec<Exchange> = Vec::new();
        for (exchange, pattern) in &self.bindings {
            if !exchanges.contains(exchange) {
                self.bus().redeclare_exchange(*exchange).await?;
                exchanges.push(*exchange);
            }
            transport
                .bind(self.queue(), &self.bus().exchange_name(*exchange), pattern)
                .await?;
        }
        Ok(())
    }

    /// Subscribes to the service queue and to the queue its retries come back through.
    pub(crate) async fn subscribe(
        &self,
        prefetch: u16,
    ) -> Result<[Box<dyn Subscription>; 2], ConsumeError> {
        let transport = self.bus().transport();
        let own = transport.subscribe(self.queue(), prefetch).await?;
        let retried = transport
            .subscribe(self.queues.retried_queue(), prefetch)
            .await?;
        Ok([own, retried])
    }

    /// Publishes `message`, addressed to one of the service's queues through the default
    /// exchange, and returns once the broker confirmed it.
    pub(crate) async fn forward(&self, message: Message) -> Result<(), PublishError> {
        self.bus().send(message).await
    }
}
