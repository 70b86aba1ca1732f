//! Moving a service's queues to a new declaration without losing a message
//! ([`Service::migrate_queues`](crate::Service::migrate_queues)).
//!
//! A queue's type and arguments cannot change in place: a queue declared otherwise (say
//! classic, where the service now declares quorum queues) is recreated, its messages parked
//! in a temporary queue `<queue>.migrating` meanwhile.
//!
//! 1. Each queue of the service is looked at: one whose declaration the broker refuses as a
//!    [`TopologyError::Mismatch`] is to move; so is one with a `<queue>.migrating` left over
//!    by an interrupted run.
//! 2. Each queue to move is emptied into its temporary queue (a plain durable queue of the
//!    new kind), wait queues first, so that no wait queue hands a retry on to a retry queue
//!    that is being recreated. The temporary queue of the service queue is bound with every
//!    binding of the service before the old queue is unbound: a publish always finds one of
//!    them. Then every message is moved (`basic.get`, published through the default
//!    exchange with a publisher confirm, acknowledged once confirmed) and the old queue is
//!    deleted once empty, looked at again after a pause for publishes still on their way
//!    inside the broker; what arrived meanwhile is moved first.
//! 3. The service's topology is declared (its queues with the new declaration, exchanges,
//!    bindings), each temporary queue unbound, emptied into its queue the same way and
//!    deleted once empty.
//!
//! A crash anywhere leaves every message in the old queue, a temporary queue or the new
//! queue: running the migration again finishes the job. Delivery is at-least-once: a
//! message can be duplicated by a publish racing the switch of bindings, or by a crash
//! between the confirm of its copy and the acknowledgement of the original.

use std::borrow::Cow;
use std::time::Duration;

use futures_util::future::join_all;

use super::ServiceTopology;
use crate::bus::Bus;
use crate::envelope::{self, ORIGINAL_EXCHANGE_HEADER, ORIGINAL_ROUTING_KEY_HEADER};
use crate::error::{ConsumeError, TopologyError};
use crate::message::Message;
use crate::routing::BindingPattern;
use crate::transport::{Incoming, QueueSpec};

/// The suffix of the temporary queue a queue's messages wait in while it is recreated:
/// `<queue>.migrating`.
pub const MIGRATING_SUFFIX: &str = ".migrating";

/// How many messages are moved at once: taken, published with their confirms awaited
/// together, then acknowledged.
const BATCH: usize = 64;

/// How long an emptied queue is left before its last look and deletion: a publish routed to
/// it just before its bindings moved (or a retry its wait queue handed on) may still be on
/// its way to it inside the broker.
const SETTLE: Duration = Duration::from_millis(100);

/// One queue [`Service::migrate_queues`](crate::Service::migrate_queues) recreated with its
/// new declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migrated {
    /// The queue, as named on the broker.
    pub queue: String,
    /// The argument its old declaration differed in, as the broker named it (e.g.
    /// `x-queue-type`, `x-delivery-limit`); `None` when the run only finished an interrupted
    /// migration: the queue was declared as it should be and its `<queue>.migrating` left
    /// over.
    pub argument: Option<String>,
    /// How many messages were put into the new queue: those the old queue held, and those
    /// published to the service while it was being recreated.
    pub moved: u64,
}

/// One queue to move.
struct Move {
    /// The queue as it is to be declared.
    spec: QueueSpec,
    /// Where its messages wait meanwhile.
    temporary: String,
    /// The argument that differed; `None` when only a temporary queue is left to empty.
    argument: Option<String>,
    /// Whether it is the service queue, which takes the bindings.
    bound: bool,
}

impl ServiceTopology {
    /// Recreates every queue of the service whose declaration differs, without losing a
    /// message, as the module documentation describes.
    pub(crate) async fn migrate(&self) -> Result<Vec<Migrated>, ConsumeError> {
        let bus = self.bus();
        let bindings: Vec<(String, BindingPattern)> = self
            .bindings()
            .map(|(exchange, pattern)| (exchange, pattern.clone()))
            .collect();
        let moves = self.moves().await?;
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        // Wait queues first: they hand retries on to the retry queue when their TTL is over.
        let (waits, others): (Vec<&Move>, Vec<&Move>) = moves
            .iter()
            .filter(|m| m.argument.is_some())
            .partition(|m| m.spec.message_ttl.is_some());
        for step in waits.into_iter().chain(others) {
            empty_into_temporary(bus, step, &bindings).await?;
        }
        self.declare().await?;
        let mut report = Vec::with_capacity(moves.len());
        for step in moves {
            if step.bound {
                for (exchange, pattern) in &bindings {
                    bus.transport()
                        .unbind(&step.temporary, exchange, pattern)
                        .await?;
                }
            }
            let moved = move_then_delete(bus, &step.temporary, &step.spec.name).await?;
            report.push(Migrated {
                queue: step.spec.name,
                argument: step.argument,
                moved,
            });
        }
        Ok(report)
    }

    /// The queues to move: those that exist with another declaration, and those with a
    /// temporary queue left over. Creates nothing.
    async fn moves(&self) -> Result<Vec<Move>, ConsumeError> {
        let transport = self.bus().transport();
        let mut moves = Vec::new();
        for spec in self.queue_specs() {
            let temporary = format!("{}{MIGRATING_SUFFIX}", spec.name);
            let argument = if exists(self.bus(), &spec.name).await? {
                match transport.declare_queue(&spec).await {
                    Ok(()) => None,
                    Err(TopologyError::Mismatch { argument, .. }) => Some(argument),
                    Err(error) => return Err(error.into()),
                }
            } else {
                None
            };
            if argument.is_some() || exists(self.bus(), &temporary).await? {
                moves.push(Move {
                    bound: spec.name == self.queue(),
                    spec,
                    temporary,
                    argument,
                });
            }
        }
        Ok(moves)
    }
}

/// Whether `queue` exists.
async fn exists(bus: &Bus, queue: &str) -> Result<bool, TopologyError> {
    match bus.transport().queue_len(queue).await {
        Ok(_) => Ok(true),
        Err(TopologyError::NotFound { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Moves the messages of the old queue of `step` into its temporary queue, switching the
/// bindings over first, and deletes the old queue.
async fn empty_into_temporary(
    bus: &Bus,
    step: &Move,
    bindings: &[(String, BindingPattern)],
) -> Result<(), ConsumeError> {
    let transport = bus.transport();
    let mut temporary = QueueSpec::durable(&step.temporary);
    temporary.kind = step.spec.kind;
    transport.declare_queue(&temporary).await?;
    if step.bound {
        // Bound to both for a moment (a publish then lands twice), never to neither.
        for (exchange, pattern) in bindings {
            bind_unless_missing(bus, &step.temporary, exchange, pattern).await?;
        }
        for (exchange, pattern) in bindings {
            transport.unbind(&step.spec.name, exchange, pattern).await?;
        }
    }
    move_then_delete(bus, &step.spec.name, &step.temporary).await?;
    Ok(())
}

/// Binds `queue`; a missing exchange is left to the service, which declares it.
async fn bind_unless_missing(
    bus: &Bus,
    queue: &str,
    exchange: &str,
    pattern: &BindingPattern,
) -> Result<(), TopologyError> {
    match bus.transport().bind(queue, exchange, pattern).await {
        Err(TopologyError::NotFound { .. }) => {
            tracing::debug!(%exchange, %queue, "exchange missing: not bound");
            Ok(())
        }
        other => other,
    }
}

/// Moves every message of `from` to `to`, then deletes `from` once it is empty, moving
/// first what arrived meanwhile. Returns how many were moved.
async fn move_then_delete(bus: &Bus, from: &str, to: &str) -> Result<u64, ConsumeError> {
    let transport = bus.transport();
    let mut moved = 0;
    loop {
        moved += move_all(bus, from, to).await?;
        tokio::time::sleep(SETTLE).await;
        if transport.queue_len(from).await? == 0 {
            transport.delete_queue(from).await?;
            tracing::info!(queue = %from, into = %to, moved, "queue emptied and deleted");
            return Ok(moved);
        }
    }
}

/// Moves the messages of `from` to `to` until `from` has none ready; each is acknowledged
/// only once the broker confirmed its copy. Returns how many were moved.
async fn move_all(bus: &Bus, from: &str, to: &str) -> Result<u64, ConsumeError> {
    let transport = bus.transport();
    let mut moved = 0;
    loop {
        let mut batch: Vec<Incoming> = Vec::with_capacity(BATCH);
        let mut taking = Ok(());
        while batch.len() < BATCH {
            match transport.get(from).await {
                Ok(Some(incoming)) => batch.push(incoming),
                Ok(None) => break,
                Err(error) => {
                    taking = Err(error);
                    break;
                }
            }
        }
        if let Err(error) = taking {
            for incoming in batch {
                let _ = incoming.reject(true).await;
            }
            return Err(error);
        }
        if batch.is_empty() {
            return Ok(moved);
        }
        let copies = batch
            .iter()
            .map(|incoming| bus.send(relocated(&incoming.message, to)));
        let confirms = join_all(copies).await;
        let mut failure = None;
        for (incoming, confirm) in batch.into_iter().zip(confirms) {
            let settled = match confirm {
                Ok(()) => incoming.ack().await.map(|()| moved += 1),
                Err(source) => {
                    failure.get_or_insert(ConsumeError::Forward {
                        queue: to.to_owned(),
                        source: Box::new(source),
                    });
                    incoming.reject(true).await
                }
            };
            if let Err(error) = settled {
                failure.get_or_insert(error);
            }
        }
        if let Some(error) = failure {
            return Err(error);
        }
    }
}

/// A copy of `message` addressed to `queue` through the default exchange: the same body,
/// properties and headers, plus the exchange and routing key it was first published with
/// when it does not carry them yet, so that the service still dispatches it by its event.
fn relocated(message: &Message, queue: &str) -> Message {
    let mut copy = message.clone();
    let headers = &mut copy.properties.headers;
    if envelope::our_header(headers, ORIGINAL_ROUTING_KEY_HEADER).is_none() {
        headers.insert(ORIGINAL_EXCHANGE_HEADER, message.exchange.clone());
        headers.insert(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key.clone());
    }
    copy.exchange = Cow::Borrowed("");
    copy.routing_key = Cow::Owned(queue.to_owned());
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relocated_message_keeps_its_event_and_everything_else() {
        let mut message = Message {
            exchange: "ns.order".into(),
            routing_key: "order.v1.submit".into(),
            body: b"{}".to_vec().into(),
            properties: Default::default(),
        };
        message.properties.message_id = Some("m-1".into());
        message.properties.headers.insert("event-version", "1.0.0");
        let parked = relocated(&message, "ns.billing.migrating");
        assert_eq!(
            (&*parked.exchange, &*parked.routing_key),
            ("", "ns.billing.migrating")
        );
        assert_eq!(parked.body, message.body);
        assert_eq!(parked.properties.message_id.as_deref(), Some("m-1"));
        assert_eq!(envelope::original_exchange(&parked), "ns.order");
        assert_eq!(envelope::original_routing_key(&parked), "order.v1.submit");
        assert_eq!(
            parked.properties.headers.get_str("event-version"),
            Some("1.0.0")
        );
        // Moving it back keeps where it was first published.
        let back = relocated(&parked, "ns.billing");
        assert_eq!(&*back.routing_key, "ns.billing");
        assert_eq!(envelope::original_routing_key(&back), "order.v1.submit");
        assert_eq!(back.properties.headers, parked.properties.headers);
    }
}
