//! Transports move [`Message`]s between the bus and a broker. They never see a Rust event
//! type, only bytes and metadata.
//!
//! Two implementations ship with the crate:
//!
//! * [`InMemoryBroker`]: an embedded broker with RabbitMQ's topic semantics, the default when
//!   no broker URL is given; made for tests and single-process use.
//! * [`AmqpTransport`]: RabbitMQ through `lapin`, with publisher confirms, `mandatory`
//!   publishes and automatic connection recovery.
//!
//! Both honour the same contract, checked by one conformance suite run against each:
//! confirmed publishes, unroutable publishes are errors, fan-out to every bound queue,
//! competing consumers on one queue, manual ack/reject, per-queue message TTL with a
//! dead-letter exchange and routing key, and named errors on conflicting re-declarations.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{ConsumeError, PublishError, TopologyError};
use crate::message::Message;
use crate::routing::BindingPattern;

#[cfg(feature = "amqp")]
mod amqp;
mod memory;
#[cfg(feature = "amqp")]
mod tls;
pub mod urls;

#[cfg(feature = "amqp")]
pub use amqp::{
    AmqpOptions, AmqpTransport, CONFIRM_TIMEOUT_ENV, DEFAULT_HEARTBEAT, GIVE_UP_AFTER_ENV,
    ReconnectPolicy, SHUFFLE_URLS_ENV,
};
pub use memory::InMemoryBroker;
#[cfg(feature = "amqp")]
pub use tls::TlsOptions;

/// The queue type, for transports that have several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueKind {
    /// A classic queue (the default).
    #[default]
    Classic,
    /// A replicated quorum queue (RabbitMQ 3.8 and later).
    Quorum,
}

/// Where messages go when they expire or are rejected without requeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterTarget {
    /// The dead-letter exchange; the empty string is the default exchange.
    pub exchange: String,
    /// The routing key to use instead of the message's own.
    pub routing_key: Option<String>,
    /// On a quorum queue, RabbitMQ's `at-least-once` dead-letter strategy: a message leaves
    /// the queue only once the target queue confirmed it (the queue then also refuses
    /// publishes when full, `x-overflow: reject-publish`). Classic queues dead-letter
    /// at-most-once whatever this says: a target that refuses the message loses it.
    pub at_least_once: bool,
}

/// A queue to declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue name.
    pub name: String,
    /// Whether the queue survives a broker restart.
    pub durable: bool,
    /// Classic or quorum.
    pub kind: QueueKind,
    /// Messages older than this are dead-lettered (`x-message-ttl`).
    pub message_ttl: Option<Duration>,
    /// Where expired or rejected messages go (`x-dead-letter-exchange` / `-routing-key`).
    pub dead_letter: Option<DeadLetterTarget>,
    /// On a quorum queue, how many times a message may be handed back (requeued, or
    /// unsettled when its consumer went away) before the queue dead-letters it, or drops it
    /// without [`QueueSpec::dead_letter`] (`x-delivery-limit`). `None` leaves it to the
    /// broker: unlimited before RabbitMQ 4, 20 since. Classic queues have no such limit.
    pub delivery_limit: Option<u32>,
}

impl QueueSpec {
    /// A durable classic queue with no TTL and no dead-lettering.
    pub fn durable(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            durable: true,
            kind: QueueKind::Classic,
            message_ttl: None,
            dead_letter: None,
            delivery_limit: None,
        }
    }

    /// Fails as RabbitMQ does for a queue it refuses to declare whatever exists: a reserved
    /// name ([`Entity::check_declarable`]), or a quorum queue that is not durable.
    pub(crate) fn check_declarable(&self) -> Result<(), TopologyError> {
        let entity = crate::error::Entity::Queue(self.name.clone());
        entity.check_declarable()?;
        if self.kind == QueueKind::Quorum && !self.durable {
            return Err(TopologyError::Refused {
                entity,
                detail: "invalid property 'non-durable': a quorum queue is always durable".into(),
            });
        }
        Ok(())
    }

    /// Describes how `self` differs from `other` as (argument, detail), if it does.
    pub(crate) fn difference(&self, other: &Self) -> Option<(&'static str, String)> {
        if self.durable != other.durable {
            return Some((
                "durable",
                format!("declared {} but exists {}", self.durable, other.durable),
            ));
        }
        if self.kind != other.kind {
            return Some((
                "x-queue-type",
                format!("declared {:?} but exists {:?}", self.kind, other.kind),
            ));
        }
        if self.message_ttl != other.message_ttl {
            return Some((
                "x-message-ttl",
                format!(
                    "declared {:?} but exists {:?}",
                    self.message_ttl, other.message_ttl
                ),
            ));
        }
        let dlx = |s: &Self| s.dead_letter.as_ref().map(|d| d.exchange.clone());
        if dlx(self) != dlx(other) {
            return Some((
                "x-dead-letter-exchange",
                format!("declared {:?} but exists {:?}", dlx(self), dlx(other)),
            ));
        }
        let strategy = |s: &Self| s.dead_letter.as_ref().is_some_and(|d| d.at_least_once);
        if self.kind == QueueKind::Quorum && strategy(self) != strategy(other) {
            return Some((
                "x-dead-letter-strategy",
                format!(
                    "declared at-least-once {} but exists {}",
                    strategy(self),
                    strategy(other)
                ),
            ));
        }
        if self.kind == QueueKind::Quorum && self.delivery_limit != other.delivery_limit {
            return Some((
                "x-delivery-limit",
                format!(
                    "declared {:?} but exists {:?}",
                    self.delivery_limit, other.delivery_limit
                ),
            ));
        }
        let dlrk = |s: &Self| s.dead_letter.as_ref().and_then(|d| d.routing_key.clone());
        if dlrk(self) != dlrk(other) {
            return Some((
                "x-dead-letter-routing-key",
                format!("declared {:?} but exists {:?}", dlrk(self), dlrk(other)),
            ));
        }
        None
    }
}

/// A message delivered to a consumer, to be acknowledged or rejected exactly once. Dropping it
/// unsettled hands it back to its queue at once (on RabbitMQ a `basic.nack` with requeue;
/// outside a Tokio runtime, a `basic.get` delivery goes back when its channel closes).
pub struct Incoming {
    /// The message.
    pub message: Arc<Message>,
    /// Whether the broker delivered it before (AMQP `redelivered`).
    pub redelivered: bool,
    settler: Settler,
}

/// How a delivery is settled: the built-in transports directly, without a boxed future per
/// delivery; other transports through their [`Acker`].
pub(crate) enum Settler {
    Memory(memory::MemoryAcker),
    #[cfg(feature = "amqp")]
    Amqp(amqp::AmqpAcker),
    Custom(Box<dyn Acker>),
}

impl Incoming {
    /// Wraps a message and the way to settle it. For transport implementations.
    pub fn new(message: Arc<Message>, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        Self::with_settler(message, redelivered, Settler::Custom(acker))
    }

    pub(crate) fn with_settler(message: Arc<Message>, redelivered: bool, settler: Settler) -> Self {
        Self {
            message,
            redelivered,
            settler,
        }
    }

    /// Acknowledges the message: the broker forgets it.
    ///
    /// On RabbitMQ a consumer's acknowledgements are coalesced: this returns once the
    /// acknowledgement is recorded on its channel's ordered path, and the frame (one
    /// `basic.ack multiple` for a run of handled deliveries) leaves within a few
    /// milliseconds. One that never leaves (the process dies first) only makes the broker
    /// deliver the message again. It is an error once the channel recovered since the
    /// delivery: the broker delivers it again.
    pub async fn ack(self) -> Result<(), ConsumeError> {
        match self.settler {
            Settler::Memory(acker) => acker.ack(),
            #[cfg(feature = "amqp")]
            Settler::Amqp(acker) => acker.ack().await,
            Settler::Custom(acker) => acker.ack().await,
        }
    }

    /// Rejects the message; with `requeue` the broker delivers it again, otherwise it is
    /// dead-lettered by the queue's policy or dropped. On RabbitMQ it takes the same ordered
    /// path as [`Incoming::ack`], as a frame of its own.
    pub async fn reject(self, requeue: bool) -> Result<(), ConsumeError> {
        match self.settler {
            Settler::Memory(acker) => acker.reject(requeue),
            #[cfg(feature = "amqp")]
            Settler::Amqp(acker) => acker.reject(requeue).await,
            Settler::Custom(acker) => acker.reject(requeue).await,
        }
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("routing_key", &self.message.routing_key)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

/// Settles one delivery. Implemented by transports.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Acknowledges the delivery.
    async fn ack(&self) -> Result<(), ConsumeError>;
    /// Rejects the delivery, requeueing it or not.
    async fn reject(&self, requeue: bool) -> Result<(), ConsumeError>;
}

/// A stream of deliveries from one queue.
#[async_trait]
pub trait Subscription: Send {
    /// Polls for the next delivery, as [`futures_util::Stream::poll_next`] does: `Ready(None)`
    /// once the subscription has ended for good (cancelled, queue deleted, or connection lost
    /// beyond recovery). The consume loop polls it directly, so a delivery costs no boxed
    /// future.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>>;
    /// The next delivery; `None` once the subscription has ended for good.
    async fn next(&mut self) -> Option<Incoming> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
    /// Stops new deliveries. Deliveries not yet returned by [`Subscription::next`] go back to
    /// the queue; those already returned can still be settled. Dropping the subscription
    /// closes it: whatever is still unsettled then goes back to the queue.
    async fn cancel(&mut self);
    /// Why the subscription ended by itself (queue deleted, connection given up), once
    /// [`Subscription::poll_next`] returned `Ready(None)` without a cancel.
    fn end_reason(&self) -> Option<String> {
        None
    }
}

/// A broker connection as the bus uses it.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Declares a topic exchange; a no-op when it exists with the same settings.
    async fn declare_exchange(&self, name: &str, durable: bool) -> Result<(), TopologyError>;
    /// Declares a queue; a no-op when it exists with the same settings.
    async fn declare_queue(&self, queue: &QueueSpec) -> Result<(), TopologyError>;
    /// Binds `queue` to `exchange` with a topic pattern; binding twice is a no-op.
    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        pattern: &BindingPattern,
    ) -> Result<(), TopologyError>;
    /// Removes the binding of `queue` to `exchange` with `pattern`; a no-op when there is no
    /// such binding (or queue, or exchange). Used to move a queue's bindings when
    /// [`Service::migrate_queues`](crate::Service::migrate_queues) recreates it. The default
    /// refuses: a transport without it cannot migrate queues.
    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        pattern: &BindingPattern,
    ) -> Result<(), TopologyError> {
        Err(TopologyError::Refused {
            entity: crate::error::Entity::binding(queue, exchange, pattern),
            detail: "this transport cannot remove bindings".to_owned(),
        })
    }
    /// Deletes a queue and its messages; a no-op when it does not exist.
    async fn delete_queue(&self, queue: &str) -> Result<(), TopologyError>;
    /// Deletes an exchange; a no-op when it does not exist.
    async fn delete_exchange(&self, exchange: &str) -> Result<(), TopologyError>;
    /// The number of messages ready for delivery in `queue`.
    async fn queue_len(&self, queue: &str) -> Result<u64, TopologyError>;
    /// Publishes `message` with `mandatory` set and returns once the broker confirmed it.
    async fn publish(&self, message: Message) -> Result<(), PublishError>;
    /// Starts consuming from `queue` with at most `prefetch` unsettled deliveries.
    async fn subscribe(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, ConsumeError>;
    /// Takes one message from `queue`, if any (AMQP `basic.get`).
    async fn get(&self, queue: &str) -> Result<Option<Incoming>, ConsumeError>;
    /// Closes the connection; later calls fail.
    async fn close(&self);
    /// Whether the connection to the broker is up now: false while it is being
    /// re-established, and once it was given up or closed.
    fn is_connected(&self) -> bool {
        true
    }
    /// Why the transport gave up for good (a reconnect policy's `give_up_after` passed), once
    /// it has: it then fails every operation. `None` while it works or still reconnects.
    fn failure(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A transport's own acker, recording how each delivery was settled.
    struct Recording(Arc<Mutex<Vec<&'static str>>>);

    #[async_trait]
    impl Acker for Recording {
        async fn ack(&self) -> Result<(), ConsumeError> {
            self.0.lock().unwrap().push("ack");
            Ok(())
        }

        async fn reject(&self, requeue: bool) -> Result<(), ConsumeError> {
            self.0
                .lock()
                .unwrap()
                .push(if requeue { "requeue" } else { "reject" });
            Ok(())
        }
    }

    fn incoming(log: &Arc<Mutex<Vec<&'static str>>>) -> Incoming {
        let message = Message {
            exchange: "order".into(),
            routing_key: "order.v1.submit".into(),
            body: Vec::from(&b"{}"[..]).into(),
            properties: Default::default(),
        };
        Incoming::new(Arc::new(message), false, Box::new(Recording(log.clone())))
    }

    #[tokio::test]
    async fn custom_ackers_settle_their_deliveries() {
        let log = Arc::new(Mutex::new(Vec::new()));
        incoming(&log).ack().await.unwrap();
        incoming(&log).reject(true).await.unwrap();
        incoming(&log).reject(false).await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["ack", "requeue", "reject"]);
    }
}
