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
    delivery_limit: u32,
    bindings: Vec<(Exchange, BindingPattern)>,
}

/// The delivery limit of a quorum dead-letter queue: listing its messages hands each back
/// once, and RabbitMQ 4 would otherwise drop them after 20 listings.
const DEAD_LETTER_QUEUE_DELIVERY_LIMIT: u32 = 1_000_000;

impl ServiceTopology {
    /// The topology of a service with `queues` of `kind`, bound by `bindings`; on quorum
    /// queues a delivery handed back more than `delivery_limit` times is dead-lettered.
    pub(crate) fn new(
        queues: ServiceQueues,
        kind: QueueKind,
        delivery_limit: u32,
        bindings: Vec<(Exchange, BindingPattern)>,
    ) -> Self {
        Self {
            queues,
            kind,
            delivery_limit,
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

    /// A queue the service consumes (its own and the retry queue): on quorum queues, a
    /// delivery handed back more than the delivery limit goes to the dead-letter queue,
    /// at-least-once.
    fn consumed_spec(&self, name: &str) -> QueueSpec {
        let mut spec = self.spec(name);
        if self.kind == QueueKind::Quorum {
            spec.delivery_limit = Some(self.delivery_limit);
            spec.dead_letter = Some(DeadLetterTarget {
                exchange: String::new(),
                routing_key: Some(self.dead_letter_queue().to_owned()),
                at_least_once: true,
            });
        }
        spec
    }

    /// Every queue of the service as declared, the service queue first.
    pub(crate) fn queue_specs(&self) -> Vec<QueueSpec> {
        let mut dead_letters = self.spec(self.dead_letter_queue());
        if self.kind == QueueKind::Quorum {
            dead_letters.delivery_limit = Some(DEAD_LETTER_QUEUE_DELIVERY_LIMIT);
        }
        let mut specs = vec![
            self.consumed_spec(self.queue()),
            dead_letters,
            self.consumed_spec(self.queues.retried_queue()),
        ];
        for (delay, name) in self.queues.delays() {
            let mut wait = self.spec(name);
            wait.message_ttl = Some(delay);
            wait.dead_letter = Some(DeadLetterTarget {
                exchange: String::new(),
                routing_key: Some(self.queues.retried_queue().to_owned()),
                at_least_once: self.kind == QueueKind::Quorum,
            });
            specs.push(wait);
        }
        specs
    }

    /// The exchanges (broker-side names) and patterns the service queue is bound with.
    pub(crate) fn bindings(&self) -> impl Iterator<Item = (String, &BindingPattern)> {
        self.bindings
            .iter()
            .map(|(exchange, pattern)| (self.bus().exchange_name(*exchange), pattern))
    }

    /// Declares all of it; idempotent. Exchanges are declared on the broker even when the bus
    /// declared them before, so that one deleted from outside comes back.
    pub(crate) async fn declare(&self) -> Result<(), TopologyError> {
        let transport = self.bus().transport();
        // A quorum service gets quorum wait, retry and dead-letter queues, and its wait
        // queues hand messages on with the at-least-once strategy. Retries go to a queue of
        // their own, never through the service queue, so that a length limit on the service
        // queue cannot refuse (classic: drop) them.
        for spec in self.queue_specs() {
            transport.declare_queue(&spec).await?;
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
