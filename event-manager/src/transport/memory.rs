//! The embedded broker: RabbitMQ's topic exchange semantics in one process.
//!
//! What it does like RabbitMQ: durable-style named queues that outlive their consumers, topic
//! exchanges routing with [`BindingPattern::matches`], the default exchange routing to the
//! queue named by the key, fan-out to every bound queue (one copy per queue, however many of
//! its bindings match), round-robin between competing consumers limited by prefetch, manual
//! ack and reject, requeue with `redelivered` set, unsettled deliveries returned to the queue
//! when a consumer goes away, per-queue message TTL with dead-letter exchange and routing key,
//! `mandatory` publishes failing when no queue takes them, and named errors when a queue or
//! exchange is re-declared with different settings.
//!
//! Where it differs: nothing survives the process (durability is only a flag that must match
//! on re-declaration), confirms are immediate, and a message expires on its TTL even when it
//! is not at the head of the queue (RabbitMQ expires from the head; with one TTL per queue,
//! as the retry queues use, the order is the same).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use async_trait::async_trait;
use rustc_hash::FxHashMap as HashMap;
use tokio::sync::mpsc;

use super::{DeadLetterTarget, Incoming, QueueSpec, Settler, Subscription, Transport};
use crate::error::{ConsumeError, Entity, PublishError, TopologyError};
use crate::message::Message;
use crate::routing::BindingPattern;

/// An in-process broker with RabbitMQ's topic semantics. Cloning gives another handle to the
/// same broker, so several [`crate::Bus`]es (services) can share it.
///
/// ```
/// use event_manager::{Bus, transport::InMemoryBroker};
///
/// let broker = InMemoryBroker::new();
/// let order_service = Bus::with_transport(broker.clone()).with_app_id("order");
/// let billing_service = Bus::with_transport(broker).with_app_id("billing");
/// # let _ = (order_service, billing_service);
/// ```
#[derive(Clone, Default)]
pub struct InMemoryBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for InMemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryBroker").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    exchanges: HashMap<String, ExchangeState>,
    queues: HashMap<String, Arc<Queue>>,
}

struct ExchangeState {
    durable: bool,
    bindings: Vec<(BindingPattern, Arc<Queue>)>,
}

struct Queue {
    spec: QueueSpec,
    broker: Weak<Inner>,
    state: Mutex<QueueState>,
}

struct Ready {
    message: Arc<Message>,
    redelivered: bool,
    seq: u64,
}

type Delivery = (Arc<Message>, bool, u64);

struct Consumer {
    id: u64,
    tx: mpsc::UnboundedSender<Delivery>,
    prefetch: usize,
    in_flight: usize,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Ready>,
    unacked: HashMap<u64, (u64, Arc<Message>)>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    next_tag: u64,
    next_seq: u64,
    next_consumer_id: u64,
    deleted: bool,
}

/// Consumer id used for `basic.get` deliveries.
const GETTER: u64 = 0;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the broker state half-updated in a way that
    // matters more than stopping; keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn queue_entity(name: &str) -> Entity {
    Entity::Queue(name.to_owned())
}

fn exchange_entity(name: &str) -> Entity {
    Entity::Exchange(name.to_owned())
}

impl InMemoryBroker {
    /// A new, empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        lock(&self.inner.state).queues.get(name).cloned()
    }
}

/// Puts `message` in every queue that takes it (once per queue, however many of its bindings
/// match); hands it back when no queue does.
fn route(inner: &Arc<Inner>, message: Message) -> Result<Option<Message>, TopologyError> {
    // Most events go to one queue: keep the first target out of the vector, which then
    // allocates only for fan-out.
    let mut first: Option<Arc<Queue>> = None;
    let mut more: Vec<Arc<Queue>> = Vec::new();
    {
        let state = lock(&inner.state);
        if message.exchange.is_empty() {
            first = state.queues.get(message.routing_key.as_ref()).cloned();
        } else {
            let exchange = state
                .exchanges
                .get(message.exchange.as_ref())
                .ok_or_else(|| TopologyError::NotFound {
                    entity: exchange_entity(&message.exchange),
                })?;
            for (pattern, queue) in &exchange.bindings {
                if !pattern.matches(&message.routing_key) {
                    continue;
                }
                match &first {
                    None => first = Some(queue.clone()),
                    Some(f) if Arc::ptr_eq(f, queue) => {}
                    Some(_) if more.iter().any(|q| Arc::ptr_eq(q, queue)) => {}
                    Some(_) => more.push(queue.clone()),
                }
            }
        }
    }
    let Some(first) = first else {
        return Ok(Some(message));
    };
    let message = Arc::new(message);
    first.enqueue(message.clone());
    for queue in more {
        queue.enqueue(message.clone());
    }
    Ok(None)
}

impl Queue {
    fn enqueue(self: &Arc<Self>, message: Arc<Message>) {
        let seq = {
            let mut state = lock(&self.state);
            if state.deleted {
                return;
            }
            let seq = state.next_seq;
            state.next_seq += 1;
            state.ready.push_back(Ready {
                message,
                redelivered: false,
                seq,
            });
            state.dispatch();
            seq
        };
        if let Some(ttl) = self.spec.message_ttl {
            let queue = Arc::downgrade(self);
            tokio::spawn(async move {
                tokio::time::sleep(ttl).await;
                if let Some(queue) = queue.upgrade() {
                    queue.expire(seq);
                }
            });
        }
    }

    fn expire(&self, seq: u64) {
        let expired = {
            let mut state = lock(&self.state);
            let at = state.ready.iter().position(|r| r.seq == seq);
            at.and_then(|at| state.ready.remove(at))
        };
        if let Some(expired) = expired {
            self.dead_letter(&expired.message);
        }
    }

    fn dead_letter(&self, message: &Message) {
        let (Some(target), Some(broker)) = (&self.spec.dead_letter, self.broker.upgrade()) else {
            return;
        };
        let DeadLetterTarget {
            exchange,
            routing_key,
            ..
        } = target;
        let mut copy = message.clone();
        copy.exchange = Cow::Owned(exchange.clone());
        if let Some(key) = routing_key {
            copy.routing_key = Cow::Owned(key.clone());
        }
        // As in RabbitMQ, a dead letter that no queue takes is dropped.
        let _ = route(&broker, copy);
    }

    fn settle(&self, tag: u64, outcome: Settle) {
        let dead = {
            let mut state = lock(&self.state);
            let Some((consumer, message)) = state.unacked.remove(&tag) else {
                return;
            };
            if let Some(c) = state.consumers.iter_mut().find(|c| c.id == consumer) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
            let dead = match outcome {
                Settle::Ack => None,
                Settle::Requeue => {
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    state.ready.push_front(Ready {
                        message,
                        redelivered: true,
                        seq,
                    });
                    None
                }
                Settle::Reject => Some(message),
            };
            state.dispatch();
            dead
        };
        if let Some(message) = dead {
            self.dead_letter(&message);
        }
    }

    fn remove_consumer(&self, id: u64) {
        lock(&self.state).consumers.retain(|c| c.id != id);
    }
}

enum Settle {
    Ack,
    Requeue,
    Reject,
}

impl QueueState {
    /// Hands ready messages to consumers with room, round-robin.
    fn dispatch(&mut self) {
        while !self.ready.is_empty() && !self.consumers.is_empty() {
            let n = self.consumers.len();
            let Some(index) = (0..n).map(|i| (self.next_consumer + i) % n).find(|&i| {
                let c = &self.consumers[i];
                c.prefetch == 0 || c.in_flight < c.prefetch
            }) else {
                return;
            };
            let Some(ready) = self.ready.pop_front() else {
                return;
            };
            let tag = self.next_tag;
            self.next_tag += 1;
            let consumer = &mut self.consumers[index];
            if consumer
                .tx
                .send((ready.message.clone(), ready.redelivered, tag))
                .is_err()
            {
                // The subscription is gone: put the message back and forget the consumer.
                self.ready.push_front(ready);
                self.consumers.remove(index);
                continue;
            }
            consumer.in_flight += 1;
            let id = consumer.id;
            self.unacked.insert(tag, (id, ready.message));
            self.next_consumer = (index + 1) % n;
        }
    }
}

/// Settles one delivery of the in-memory broker; a delivery dropped unsettled is requeued.
pub(crate) struct MemoryAcker {
    queue: Arc<Queue>,
    tag: u64,
    settled: bool,
}

impl MemoryAcker {
    fn new(queue: Arc<Queue>, tag: u64) -> Self {
        Self {
            queue,
            tag,
            settled: false,
        }
    }

    fn settle(&mut self, outcome: Settle) {
        if !std::mem::replace(&mut self.settled, true) {
            self.queue.settle(self.tag, outcome);
        }
    }

    /// Acknowledges the delivery; the broker forgets it.
    pub(crate) fn ack(mut self) -> Result<(), ConsumeError> {
        self.settle(Settle::Ack);
        Ok(())
    }

    /// Rejects the delivery, requeueing it or dead-lettering it by the queue's policy.
    pub(crate) fn reject(mut self, requeue: bool) -> Result<(), ConsumeError> {
        self.settle(if requeue {
            Settle::Requeue
        } else {
            Settle::Reject
        });
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        // Never lose a delivery that nobody settled.
        self.settle(Settle::Requeue);
    }
}

struct MemorySubscription {
    queue: Arc<Queue>,
    consumer: u64,
    rx: mpsc::UnboundedReceiver<Delivery>,
    cancelled: bool,
}

impl MemorySubscription {
    fn cancel_now(&mut self) {
        if !self.cancelled {
            self.cancelled = true;
            self.queue.remove_consumer(self.consumer);
            self.rx.close();
            // Handed to this consumer but never returned by `next`: back to the queue.
            while let Ok((_, _, tag)) = self.rx.try_recv() {
                self.queue.settle(tag, Settle::Requeue);
            }
        }
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        self.cancel_now();
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        if self.cancelled {
            return Poll::Ready(None);
        }
        self.rx.poll_recv(cx).map(|delivery| {
            let (message, redelivered, tag) = delivery?;
            Some(Incoming::with_settler(
                message,
                redelivered,
                Settler::Memory(MemoryAcker::new(self.queue.clone(), tag)),
            ))
        })
    }

    async fn cancel(&mut self) {
        self.cancel_now();
    }
}

#[async_trait]
impl Transport for InMemoryBroker {
    async fn declare_exchange(&self, name: &str, durable: bool) -> Result<(), TopologyError> {
        let mut state = lock(&self.inner.state);
        match state.exchanges.get(name) {
            Some(existing) if existing.durable != durable => Err(TopologyError::Mismatch {
                entity: exchange_entity(name),
                argument: "durable".into(),
                detail: format!("declared {durable} but exists {}", existing.durable),
            }),
            Some(_) => Ok(()),
            None => {
                state.exchanges.insert(
                    name.to_owned(),
                    ExchangeState {
                        durable,
                        bindings: Vec::new(),
                    },
                );
                Ok(())
            }
        }
    }

    async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), TopologyError> {
        let mut state = lock(&self.inner.state);
        if let Some(existing) = state.queues.get(&spec.name) {
            return match spec.difference(&existing.spec) {
                Some((argument, detail)) => Err(TopologyError::Mismatch {
                    entity: queue_entity(&spec.name),
                    argument: argument.into(),
                    detail,
                }),
                None => Ok(()),
            };
        }
        let queue = Arc::new(Queue {
            spec: spec.clone(),
            broker: Arc::downgrade(&self.inner),
            state: Mutex::new(QueueState {
                next_consumer_id: GETTER + 1,
                ..QueueState::default()
            }),
        });
        state.queues.insert(spec.name.clone(), queue);
        Ok(())
    }

    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        pattern: &BindingPattern,
    ) -> Result<(), TopologyError> {
        let mut state = lock(&self.inner.state);
        let target = state
            .queues
            .get(queue)
            .cloned()
            .ok_or_else(|| TopologyError::NotFound {
                entity: queue_entity(queue),
            })?;
        let ex = state
            .exchanges
            .get_mut(exchange)
            .ok_or_else(|| TopologyError::NotFound {
                entity: exchange_entity(exchange),
            })?;
        if !ex
            .bindings
            .iter()
            .any(|(p, q)| p == pattern && Arc::ptr_eq(q, &target))
        {
            ex.bindings.push((pattern.clone(), target));
        }
        Ok(())
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TopologyError> {
        let removed = {
            let mut state = lock(&self.inner.state);
            let removed = state.queues.remove(queue);
            if let Some(q) = &removed {
                for ex in state.exchanges.values_mut() {
                    ex.bindings.retain(|(_, target)| !Arc::ptr_eq(target, q));
                }
            }
            removed
        };
        if let Some(q) = removed {
            let mut state = lock(&q.state);
            state.deleted = true;
            state.ready.clear();
            state.unacked.clear();
            state.consumers.clear();
        }
        Ok(())
    }

    async fn delete_exchange(&self, exchange: &str) -> Result<(), TopologyError> {
        lock(&self.inner.state).exchanges.remove(exchange);
        Ok(())
    }

    async fn queue_len(&self, queue: &str) -> Result<u64, TopologyError> {
        let q = self.queue(queue).ok_or_else(|| TopologyError::NotFound {
            entity: queue_entity(queue),
        })?;
        Ok(lock(&q.state).ready.len() as u64)
    }

    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        // Publishing never waits here: take part in tokio's cooperative scheduling so a tight
        // publish loop lets consumers on the same thread run.
        tokio::task::consume_budget().await;
        match route(&self.inner, message)? {
            Some(unrouted) => Err(PublishError::Unroutable {
                exchange: unrouted.exchange.into_owned(),
                routing_key: unrouted.routing_key.into_owned(),
            }),
            None => Ok(()),
        }
    }

    async fn subscribe(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, ConsumeError> {
        let q = self.queue(queue).ok_or_else(|| {
            ConsumeError::Topology(TopologyError::NotFound {
                entity: queue_entity(queue),
            })
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let consumer = {
            let mut state = lock(&q.state);
            let id = state.next_consumer_id;
            state.next_consumer_id += 1;
            state.consumers.push(Consumer {
                id,
                tx,
                prefetch: usize::from(prefetch),
                in_flight: 0,
            });
            state.dispatch();
            id
        };
        Ok(Box::new(MemorySubscription {
            queue: q,
            consumer,
            rx,
            cancelled: false,
        }))
    }

    async fn get(&self, queue: &str) -> Result<Option<Incoming>, ConsumeError> {
        let q = self.queue(queue).ok_or_else(|| {
            ConsumeError::Topology(TopologyError::NotFound {
                entity: queue_entity(queue),
            })
        })?;
        let (message, redelivered, tag) = {
            let mut state = lock(&q.state);
            let Some(ready) = state.ready.pop_front() else {
                return Ok(None);
            };
            let tag = state.next_tag;
            state.next_tag += 1;
            state.unacked.insert(tag, (GETTER, ready.message.clone()));
            (ready.message, ready.redelivered, tag)
        };
        Ok(Some(Incoming::with_settler(
            message,
            redelivered,
            Settler::Memory(MemoryAcker::new(q, tag)),
        )))
    }

    async fn close(&self) {}
}
