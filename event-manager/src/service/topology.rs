//! What a service owns on the broker: its queue, wait queues, dead-letter queue, the exchanges
//! it reads from and its bindings. Declared when the service starts ([`Service::declare`]),
//! again when a forward finds a queue missing, and every [`Service::topology_check`] interval
//! while it runs.

use std::time::Duration;

use super::Service;
use super::retry::{RetryPolicy, dead_letter_queue_name, retried_queue_name, wait_queue_name};
use crate::bus::Bus;
use crate::contract::Exchange;
use crate::error::{ConsumeError, TopologyError};
use crate::routing::{BindingPattern, RoutingKey};
use crate::transport::{DeadLetterTarget, QueueKind, QueueSpec};

/// The broker-side topology of one service, with every name already namespaced.
pub(crate) struct Topology {
    pub(crate) bus: Bus,
    /// The service queue on the broker ([`Bus::queue_name`]).
    pub(crate) queue: String,
    /// Its dead-letter queue.
    pub(crate) dead_letter_queue: String,
    /// Where its wait queues hand retries back to; consumed beside the service queue.
    pub(crate) retried_queue: String,
    pub(crate) kind: QueueKind,
    pub(crate) retry: RetryPolicy,
    pub(crate) bindings: Vec<(Exchange, BindingPattern)>,
}

impl Topology {
    /// The topology of `service`.
    pub(crate) fn of(service: &Service) -> Self {
        let queue = service.bus.queue_name(&service.queue);
        Self {
            bus: service.bus.clone(),
            dead_letter_queue: dead_letter_queue_name(&queue),
            retried_queue: retried_queue_name(&queue),
            queue,
            kind: service.queue_kind,
            retry: service.retry.clone(),
            bindings: all_bindings(service),
        }
    }

    /// The wait queue for `delay`.
    pub(crate) fn wait_queue(&self, delay: Duration) -> String {
        wait_queue_name(&self.queue, delay)
    }

    /// Declares all of it; idempotent. Exchanges are declared on the broker even when the bus
    /// declared them before, so that one deleted from outside comes back.
    pub(crate) async fn declare(&self) -> Result<(), TopologyError> {
        let transport = self.bus.transport();
        let mut queue = QueueSpec::durable(&self.queue);
        queue.kind = self.kind;
        transport.declare_queue(&queue).await?;
        // A quorum service gets quorum wait, retry and dead-letter queues, and its wait
        // queues hand messages on with the at-least-once strategy. Retries go to a queue of
        // their own, never through the service queue, so that a length limit on the service
        // queue cannot refuse (classic: drop) them.
        let mut dead_letters = QueueSpec::durable(&self.dead_letter_queue);
        dead_letters.kind = self.kind;
        transport.declare_queue(&dead_letters).await?;
        let mut retried = QueueSpec::durable(&self.retried_queue);
        retried.kind = self.kind;
        transport.declare_queue(&retried).await?;
        for delay in self.retry.distinct_delays() {
            let mut wait = QueueSpec::durable(self.wait_queue(delay));
            wait.kind = self.kind;
            wait.message_ttl = Some(delay);
            wait.dead_letter = Some(DeadLetterTarget {
                exchange: String::new(),
                routing_key: Some(self.retried_queue.clone()),
                at_least_once: self.kind == QueueKind::Quorum,
            });
            transport.declare_queue(&wait).await?;
        }
        let mut exchanges: Vec<Exchange> = Vec::new();
        for (exchange, pattern) in &self.bindings {
            if !exchanges.contains(exchange) {
                self.bus.redeclare_exchange(*exchange).await?;
                exchanges.push(*exchange);
            }
            transport
                .bind(&self.queue, &self.bus.exchange_name(*exchange), pattern)
                .await?;
        }
        Ok(())
    }
}

/// Every binding to declare: the explicit ones, and an exact one for each callback no explicit
/// pattern covers.
fn all_bindings(service: &Service) -> Vec<(Exchange, BindingPattern)> {
    let mut all = service.bindings.clone();
    for (key, route) in &service.routes {
        let covered = service
            .bindings
            .iter()
            .any(|(e, p)| *e == route.exchange && p.matches(key));
        if !covered && let Ok(key) = RoutingKey::parse(key) {
            all.push((route.exchange, BindingPattern::exact(&key)));
        }
    }
    all
}

impl Service {
    /// Declares the service's queue, bindings, wait and dead-letter queues without consuming.
    /// A publisher can call it for the services it knows about, so that events published
    /// before those services first start are kept in their queues instead of being
    /// unroutable. Declaring is idempotent; the exchanges are declared on the broker again
    /// even when the bus declared them before, so it also repairs a topology deleted from
    /// outside.
    pub async fn declare(&self) -> Result<(), ConsumeError> {
        Topology::of(self).declare().await?;
        Ok(())
    }
}
