//! [`ServiceQueues`]: the queues one service owns on the broker, to list, inspect, replay and
//! delete; and [`DeadLetter`], one message read from its dead-letter queue.

use std::sync::Arc;
use std::time::Duration;

use super::names;
use crate::bus::Bus;
use crate::envelope::{self, DeadLetterKind};
use crate::error::{ConsumeError, TopologyError};
use crate::message::{HeaderValue, Message};

/// The queues of one service on the broker, with their broker-side (namespaced) names: the
/// service queue, the queue retries come back through, one wait queue per retry delay, and
/// the dead-letter queue. Get it from [`Service::queues`](crate::Service::queues).
///
/// ```standalone_crate
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use event_manager::Bus;
///
/// let bus = Bus::in_memory().with_namespace("test7");
/// let billing = bus.service("billing_order");
/// billing.declare().await?;
///
/// let queues = billing.queues();
/// assert_eq!(queues.queue(), "test7.billing_order");
/// assert_eq!(queues.dead_letter_queue(), "test7.billing_order.dlq");
/// assert_eq!(queues.names().len(), 3 + queues.wait_queues().len());
/// for (name, ready) in queues.lengths().await? {
///     println!("{name}: {ready} ready");
/// }
/// assert!(queues.dead_letters(10).await?.is_empty());
/// assert_eq!(queues.replay_dead_letters(100).await?, 0);
/// queues.delete().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceQueues {
    bus: Bus,
    queue: String,
    retried: String,
    dead_letters: String,
    waits: Vec<(Duration, String)>,
}

impl ServiceQueues {
    /// The queues of the service named `service` (not namespaced) whose retries wait for
    /// `delays`.
    pub(crate) fn new(bus: &Bus, service: &str, delays: &[Duration]) -> Self {
        let queue = bus.queue_name(service);
        Self {
            bus: bus.clone(),
            retried: names::retried_queue(&queue),
            dead_letters: names::dead_letter_queue(&queue),
            waits: delays
                .iter()
                .map(|delay| (*delay, names::wait_queue(&queue, *delay)))
                .collect(),
            queue,
        }
    }

    /// The service queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The dead-letter queue (`<queue>.dlq`).
    pub fn dead_letter_queue(&self) -> &str {
        &self.dead_letters
    }

    /// The queue the wait queues hand retries back to (`<queue>.retried`), consumed beside
    /// the service queue.
    pub fn retried_queue(&self) -> &str {
        &self.retried
    }

    /// The wait queues (`<queue>.wait.<ms>ms`), one per distinct retry delay, shortest first.
    pub fn wait_queues(&self) -> Vec<&str> {
        self.waits.iter().map(|(_, name)| name.as_str()).collect()
    }

    /// The wait queue for `delay`.
    pub(crate) fn wait_queue(&self, delay: Duration) -> String {
        names::wait_queue(&self.queue, delay)
    }

    pub(crate) fn delays(&self) -> impl Iterator<Item = (Duration, &str)> {
        self.waits.iter().map(|(d, name)| (*d, name.as_str()))
    }

    pub(crate) fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Every queue of the service: the service queue, the retried queue, the dead-letter
    /// queue, then the wait queues.
    pub fn names(&self) -> Vec<&str> {
        let mut all = vec![
            self.queue.as_str(),
            self.retried.as_str(),
            self.dead_letters.as_str(),
        ];
        all.extend(self.wait_queues());
        all
    }

    /// How many messages each queue of [`ServiceQueues::names`] holds ready for delivery.
    /// Fails with [`TopologyError`] when one of them does not exist.
    pub async fn lengths(&self) -> Result<Vec<(String, u64)>, TopologyError> {
        let transport = self.bus.transport();
        let mut lengths = Vec::new();
        for name in self.names() {
            lengths.push((name.to_owned(), transport.queue_len(name).await?));
        }
        Ok(lengths)
    }

    /// Reads up to `limit` messages of the dead-letter queue without removing them: each is
    /// fetched and put back (requeued) once all were read, so they are marked redelivered.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, ConsumeError> {
        let transport = self.bus.transport();
        let waiting = transport.queue_len(&self.dead_letters).await?;
        let budget = usize::try_from(waiting).map_or(limit, |waiting| waiting.min(limit));
        let mut held = Vec::with_capacity(budget);
        let mut read = Ok(());
        while held.len() < budget {
            match transport.get(&self.dead_letters).await {
                Ok(Some(incoming)) => held.push(incoming),
                Ok(None) => break,
                Err(error) => {
                    read = Err(error);
                    break;
                }
            }
        }
        let letters = held
            .iter()
            .map(|incoming| DeadLetter {
                message: Arc::clone(&incoming.message),
            })
            .collect();
        for incoming in held {
            incoming.reject(true).await?;
        }
        read.map(|()| letters)
    }

    /// Moves dead letters back to the service queue, each with a fresh set of attempts, and
    /// returns how many were moved. Each one is removed from the dead-letter queue only after
    /// the broker confirmed its re-publication.
    ///
    /// Only the messages in the dead-letter queue when the replay starts are moved, at most
    /// `limit` of them: a replayed message that fails again and comes back while the replay
    /// runs is not replayed a second time, so the replay ends even when the cause of the
    /// failures is not fixed.
    pub async fn replay_dead_letters(&self, limit: usize) -> Result<usize, ConsumeError> {
        let transport = self.bus.transport();
        let waiting = transport.queue_len(&self.dead_letters).await?;
        let budget = usize::try_from(waiting).map_or(limit, |waiting| waiting.min(limit));
        let mut moved = 0;
        while moved < budget {
            let Some(incoming) = transport.get(&self.dead_letters).await? else {
                break;
            };
            let replay = envelope::to_replay(&incoming.message, &self.queue);
            if let Err(source) = self.bus.send(replay).await {
                let _ = incoming.reject(true).await;
                return Err(ConsumeError::Forward {
                    queue: self.queue.clone(),
                    source: Box::new(source),
                });
            }
            incoming.ack().await?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Deletes every queue of the service with the messages it holds. For tests, examples
    /// and decommissioning a service; a running service fails once its queue is gone.
    pub async fn delete(&self) -> Result<(), TopologyError> {
        let transport = self.bus.transport();
        for (_, wait) in &self.waits {
            transport.delete_queue(wait).await?;
        }
        transport.delete_queue(&self.retried).await?;
        transport.delete_queue(&self.dead_letters).await?;
        transport.delete_queue(&self.queue).await
    }
}

/// One message read from a dead-letter queue ([`ServiceQueues::dead_letters`]), with what
/// the service wrote on it: why, after how many attempts, and where it was first published.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    message: Arc<Message>,
}

impl DeadLetter {
    /// The whole message, as it sits in the dead-letter queue.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The message id its publisher set, if any.
    pub fn message_id(&self) -> Option<&str> {
        self.message.properties.message_id.as_deref()
    }

    /// Why it was dead-lettered, as a machine-readable kind; `None` for a message another
    /// tool put there.
    pub fn kind(&self) -> Option<DeadLetterKind> {
        DeadLetterKind::of(&self.message)
    }

    /// Why it was dead-lettered, for people.
    pub fn reason(&self) -> Option<&str> {
        self.header(envelope::DEAD_LETTER_REASON_HEADER)
            .or_else(|| {
                (self.kind() == Some(DeadLetterKind::DeliveryLimit)).then_some(
                    "RabbitMQ dead-lettered it: it was handed back to the queue more times than \
                 the queue's delivery limit (each delivery ended without a settlement, e.g. \
                 the consumer crashed)",
                )
            })
    }

    /// How many attempts were made to handle it.
    pub fn attempts(&self) -> u32 {
        envelope::our_header(&self.message.properties.headers, envelope::ATTEMPTS_HEADER)
            .and_then(HeaderValue::as_int)
            .map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
    }

    /// The exchange it was first published to (the broker-side name).
    pub fn exchange(&self) -> &str {
        envelope::original_exchange(&self.message)
    }

    /// The routing key it was first published with.
    pub fn routing_key(&self) -> &str {
        envelope::original_routing_key(&self.message)
    }

    /// When it was dead-lettered (RFC 3339).
    pub fn failed_at(&self) -> Option<&str> {
        self.header(envelope::FAILED_AT_HEADER)
    }

    /// The payload, decoded as `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        envelope::from_json(&self.message.body)
    }

    fn header(&self, name: &str) -> Option<&str> {
        envelope::our_header(&self.message.properties.headers, name)?.as_str()
    }
}
