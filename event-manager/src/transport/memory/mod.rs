//! The embedded broker: RabbitMQ's topic exchange semantics in one process.
//!
//! What it does like RabbitMQ: durable-style named queues that outlive their consumers, topic
//! exchanges routing exactly as [`BindingPattern::matches`] says (through a trie of the
//! patterns' words, as RabbitMQ does, so that a publish costs the same with one binding or
//! ten thousand), the default exchange routing to the
//! queue named by the key, fan-out to every bound queue (one copy per queue, however many of
//! its bindings match), round-robin between competing consumers limited by prefetch, manual
//! ack and reject, requeue with `redelivered` set (a classic queue puts a message back at its
//! place; a quorum queue serves the messages handed back first when it has a delivery limit,
//! else puts them behind the messages ready), unsettled deliveries returned to the queue
//! when a consumer goes away, per-queue message TTL with dead-letter exchange and routing key,
//! `mandatory` publishes failing when no queue takes them, and named errors when a queue or
//! exchange is re-declared with different settings. A message expires at the head of its
//! queue once its TTL is over, and keeps its expiry when it is handed back.
//!
//! Where it differs: nothing survives the process (durability is only a flag that must match
//! on re-declaration), and confirms are immediate.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use rustc_hash::FxHashMap as HashMap;

use super::{DeadLetterTarget, Incoming, QueueKind, QueueSpec, Settler, Subscription, Transport};
use crate::envelope::BROKER_DEATH_REASON_HEADER;
use crate::error::{ConsumeError, Entity, PublishError, TopologyError};
use crate::message::{DEFAULT_FRAME_MAX, Message};
use crate::routing::BindingPattern;
use crate::routing::trie::TopicTrie;

mod bindings;
mod delivery;

pub(crate) use delivery::MemoryAcker;
use delivery::MemorySubscription;

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

/// Up to this many bindings, an exchange matches each in turn; beyond, it walks its trie.
/// Both give the same queues; the list is quicker for a handful of patterns.
const FEW_BINDINGS: usize = 8;

struct ExchangeState {
    durable: bool,
    /// Every binding, in the order they were made.
    bindings: Vec<(BindingPattern, Arc<Queue>)>,
    /// The queues bound with each pattern, to find a binding made before.
    by_pattern: HashMap<BindingPattern, Vec<Arc<Queue>>>,
    /// The same bindings as a trie of words, which routing walks beyond [`FEW_BINDINGS`]:
    /// the cost of a publish does not grow with the number of bindings.
    trie: TopicTrie<Arc<Queue>>,
}

impl ExchangeState {
    fn new(durable: bool) -> Self {
        Self {
            durable,
            bindings: Vec::new(),
            by_pattern: HashMap::default(),
            trie: TopicTrie::new(),
        }
    }

    /// Binds `queue` with `pattern`; binding twice is a no-op.
    fn bind(&mut self, pattern: &BindingPattern, queue: &Arc<Queue>) {
        let queues = self.by_pattern.entry(pattern.clone()).or_default();
        if !queues.iter().any(|q| Arc::ptr_eq(q, queue)) {
            queues.push(queue.clone());
            self.bindings.push((pattern.clone(), queue.clone()));
            self.trie.insert(pattern, queue.clone());
        }
    }

    /// Calls `visit` with the queue of every binding that matches `key`.
    fn for_each_match<'s>(&'s self, key: &str, mut visit: impl FnMut(&'s Arc<Queue>)) {
        if self.bindings.len() <= FEW_BINDINGS {
            for (pattern, queue) in &self.bindings {
                if pattern.matches(key) {
                    visit(queue);
                }
            }
        } else {
            self.trie.for_each_match(key, visit);
        }
    }
}

struct Queue {
    spec: QueueSpec,
    broker: Weak<Inner>,
    state: Mutex<QueueState>,
}

/// A message in a queue, or handed to a consumer (a delivery).
struct Ready {
    message: Arc<Message>,
    /// How many times it was handed back (requeued) before: redelivered when not 0.
    returns: u32,
    /// When it expires, in a queue with a time to live: kept across requeues, as RabbitMQ
    /// does.
    expires: Option<Instant>,
    /// Its place in the queue, in the order messages came in: a classic queue puts a
    /// message handed back at its place.
    seq: u64,
}

impl Ready {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

/// A message handed to a consumer.
type Delivery = Ready;

struct Consumer {
    id: u64,
    /// Handed to this consumer, not yet taken by its subscription (at most the prefetch).
    handed: VecDeque<Delivery>,
    /// The subscription's task, waiting for [`Consumer::handed`] to fill.
    waker: Option<Waker>,
    prefetch: usize,
    /// Handed and not settled yet.
    in_flight: usize,
}

/// A queue's messages and consumers. Settled deliveries need no record here: each
/// [`MemoryAcker`] holds its message until it is settled (or requeues it when dropped).
#[derive(Default)]
struct QueueState {
    ready: VecDeque<Ready>,
    consumers: Vec<Consumer>,
    next_consumer: usize,
    next_consumer_id: u64,
    next_seq: u64,
    /// How many messages at the head of `ready` were handed back: a quorum queue with a
    /// delivery limit serves them first, in the order they came back.
    returned_first: usize,
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

    /// Publishes `message` and settles it at once, as [`Transport::publish`] does without
    /// its cooperative yield: for a caller that yields itself (the bus), without the boxed
    /// future of the trait method.
    pub(crate) fn publish_now(&self, message: Message) -> Result<(), PublishError> {
        message.check_short_strings()?;
        let size = message.properties.header_frame_size();
        if size > DEFAULT_FRAME_MAX {
            return Err(PublishError::HeadersTooLarge {
                exchange: message.exchange.into_owned(),
                routing_key: message.routing_key.into_owned(),
                size,
                limit: DEFAULT_FRAME_MAX,
            });
        }
        match route(&self.inner, message)? {
            Some(unrouted) => Err(PublishError::Unroutable {
                exchange: unrouted.exchange.into_owned(),
                routing_key: unrouted.routing_key.into_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// How often a dead letter that no queue took is routed again, under the at-least-once
/// strategy.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

/// Routes the dead letter `copy` of queue `source` again every [`DEAD_LETTER_RETRY`] until a
/// queue takes it: RabbitMQ's at-least-once dead-lettering keeps such a message in its quorum
/// queue until the target takes it. It is gone with its source queue (or the broker), as
/// there, even when a queue of the same name is declared again.
fn dead_letter_later(broker: Weak<Inner>, source: Weak<Queue>, copy: Message) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime to route a dead letter again later; dropped");
        return;
    };
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(DEAD_LETTER_RETRY).await;
            let Some(broker) = broker.upgrade() else {
                return;
            };
            let gone = source
                .upgrade()
                .is_none_or(|queue| lock(&queue.state).deleted);
            if gone {
                return;
            }
            if let Ok(None) = route(&broker, copy.clone()) {
                return;
            }
        }
    });
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
            exchange.for_each_match(&message.routing_key, |queue| match &first {
                None => first = Some(queue.clone()),
                Some(f) if Arc::ptr_eq(f, queue) => {}
                Some(_) => more.push(queue.clone()),
            });
            // A queue bound with several matching patterns takes one copy.
            if more.len() > 1 {
                more.sort_unstable_by_key(Arc::as_ptr);
                more.dedup_by(|a, b| Arc::ptr_eq(a, b));
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
        // The shorter of the queue's time to live and the message's own (`expiration`).
        let ttl = match (self.spec.message_ttl, message.expiration()) {
            (Some(queue), Some(own)) => Some(queue.min(own)),
            (queue, own) => queue.or(own),
        };
        let now = ttl.map(|_| Instant::now());
        let expired = {
            let mut state = lock(&self.state);
            if state.deleted {
                return;
            }
            let seq = state.next_seq;
            state.next_seq += 1;
            state.ready.push_back(Ready {
                message,
                returns: 0,
                expires: now.zip(ttl).map(|(now, ttl)| now + ttl),
                seq,
            });
            // Handed to a consumer at once if one has room, even with a time to live of 0,
            // as RabbitMQ does.
            state.dispatch(now)
        };
        self.dead_letter_expired(expired);
        let Some(ttl) = ttl else {
            return;
        };
        // Without a runtime there is no timer: expired messages are then found when they
        // are taken (`get`) or handed back.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let queue = Arc::downgrade(self);
        runtime.spawn(async move {
            tokio::time::sleep(ttl).await;
            if let Some(queue) = queue.upgrade() {
                queue.expire_due();
            }
        });
    }

    /// Dead-letters the messages at the head of the queue whose time to live is over, as
    /// RabbitMQ does: a message behind one that has not expired waits until it is at the
    /// head (whenever the head is taken, expired messages behind it go too).
    fn expire_due(self: &Arc<Self>) {
        let now = Instant::now();
        let expired = lock(&self.state).expired_heads(|at| at <= now);
        self.dead_letter_expired(expired);
    }

    fn dead_letter_expired(self: &Arc<Self>, expired: Vec<Ready>) {
        for ready in expired {
            self.dead_letter(&ready.message, "expired");
        }
    }

    /// Hands `message` to the queue's dead-letter target, if any, marked as RabbitMQ marks
    /// the first death: `x-first-death-reason` (`expired`, `rejected`, `delivery_limit`),
    /// `-queue` and `-exchange`.
    fn dead_letter(self: &Arc<Self>, message: &Message, reason: &'static str) {
        let (Some(target), Some(broker)) = (&self.spec.dead_letter, self.broker.upgrade()) else {
            return;
        };
        let DeadLetterTarget {
            exchange,
            routing_key,
            at_least_once,
        } = target;
        let mut copy = message.clone();
        // As RabbitMQ does, so that it does not expire again where it goes.
        copy.properties.expiration = None;
        let headers = &mut copy.properties.headers;
        if headers.get(BROKER_DEATH_REASON_HEADER).is_none() {
            headers.insert(BROKER_DEATH_REASON_HEADER, reason);
            headers.insert("x-first-death-queue", self.spec.name.clone());
            headers.insert("x-first-death-exchange", message.exchange.to_string());
        }
        copy.exchange = Cow::Owned(exchange.clone());
        if let Some(key) = routing_key {
            copy.routing_key = Cow::Owned(key.clone());
        }
        if *at_least_once && self.spec.kind == QueueKind::Quorum {
            if !matches!(route(&broker, copy.clone()), Ok(None)) {
                dead_letter_later(Arc::downgrade(&broker), Arc::downgrade(self), copy);
            }
        } else {
            // As in RabbitMQ, an at-most-once dead letter that no queue takes is dropped.
            let _ = route(&broker, copy);
        }
    }

    /// Settles a delivery. A requeue past the queue's delivery limit dead-letters it
    /// instead, as RabbitMQ's quorum queues do, and so does a requeue past its time to live
    /// (as expired).
    fn settle(self: &Arc<Self>, consumer: u64, delivery: Ready, outcome: Settle) {
        let Ready {
            message,
            returns,
            expires,
            seq,
        } = delivery;
        let (dead, expired) = {
            let mut state = lock(&self.state);
            if state.deleted {
                return;
            }
            if let Some(c) = state.consumers.iter_mut().find(|c| c.id == consumer) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
            let dead = match outcome {
                Settle::Ack => None,
                Settle::Requeue => {
                    let returns = returns.saturating_add(1);
                    let limit = match self.spec.kind {
                        QueueKind::Quorum => self.spec.delivery_limit,
                        QueueKind::Classic => None,
                    };
                    let back = Ready {
                        message,
                        returns,
                        expires,
                        seq,
                    };
                    if limit.is_some_and(|limit| returns > limit) {
                        Some((back.message, "delivery_limit"))
                    } else if back.expired(Instant::now()) {
                        Some((back.message, "expired"))
                    } else {
                        match (self.spec.kind, limit) {
                            // At its place, as RabbitMQ's classic queues do.
                            (QueueKind::Classic, _) => {
                                let at = state.ready.partition_point(|r| r.seq < seq);
                                state.ready.insert(at, back);
                            }
                            // Ahead of the messages ready, behind those handed back before,
                            // as RabbitMQ's quorum queues with a delivery limit do.
                            (QueueKind::Quorum, Some(_)) => {
                                let at = state.returned_first;
                                state.ready.insert(at, back);
                                state.returned_first += 1;
                            }
                            // Behind the messages ready, as they do without one.
                            (QueueKind::Quorum, None) => state.ready.push_back(back),
                        }
                        None
                    }
                }
                Settle::Reject => Some((message, "rejected")),
            };
            (dead, state.dispatch(None))
        };
        if let Some((message, reason)) = dead {
            self.dead_letter(&message, reason);
        }
        self.dead_letter_expired(expired);
    }

    /// Removes a consumer; returns what was handed to it and not taken yet.
    fn remove_consumer(&self, id: u64) -> VecDeque<Delivery> {
        let mut state = lock(&self.state);
        match state.consumers.iter().position(|c| c.id == id) {
            Some(index) => {
                let consumer = state.consumers.remove(index);
                if state.next_consumer >= state.consumers.len() {
                    state.next_consumer = 0;
                }
                consumer.handed
            }
            None => VecDeque::new(),
        }
    }

    /// Moves what was handed to consumer `id` into `into`; without anything, remembers
    /// `waker` to be woken when something comes. `None` once the consumer is gone (its
    /// queue was deleted).
    fn take_handed(&self, id: u64, into: &mut VecDeque<Delivery>, waker: &Waker) -> Option<()> {
        let mut state = lock(&self.state);
        let consumer = state.consumers.iter_mut().find(|c| c.id == id)?;
        if consumer.handed.is_empty() {
            match &mut consumer.waker {
                Some(w) if w.will_wake(waker) => {}
                slot => *slot = Some(waker.clone()),
            }
        } else {
            std::mem::swap(into, &mut consumer.handed);
        }
        Some(())
    }
}

enum Settle {
    Ack,
    Requeue,
    Reject,
}

impl QueueState {
    /// Takes the message at the head.
    fn pop_ready(&mut self) -> Option<Ready> {
        self.returned_first = self.returned_first.saturating_sub(1);
        self.ready.pop_front()
    }

    /// Takes the messages at the head that `is_over` says expired, to be dead-lettered once
    /// the lock is released.
    #[must_use]
    fn expired_heads(&mut self, is_over: impl Fn(Instant) -> bool) -> Vec<Ready> {
        let mut expired = Vec::new();
        while self
            .ready
            .front()
            .and_then(|r| r.expires)
            .is_some_and(&is_over)
        {
            expired.extend(self.pop_ready());
        }
        expired
    }

    /// Hands ready messages to consumers with room, round-robin; returns the ones it found
    /// at the head expired (before `now`, else before the clock reads) instead, to be
    /// dead-lettered once the lock is released.
    #[must_use]
    fn dispatch(&mut self, mut now: Option<Instant>) -> Vec<Ready> {
        let mut expired = Vec::new();
        while !self.ready.is_empty() && !self.consumers.is_empty() {
            let n = self.consumers.len();
            let Some(index) = (0..n).map(|i| (self.next_consumer + i) % n).find(|&i| {
                let c = &self.consumers[i];
                c.prefetch == 0 || c.in_flight < c.prefetch
            }) else {
                break;
            };
            let Some(ready) = self.pop_ready() else {
                break;
            };
            if let Some(at) = ready.expires
                && at < *now.get_or_insert_with(Instant::now)
            {
                expired.push(ready);
                continue;
            }
            let consumer = &mut self.consumers[index];
            consumer.handed.push_back(ready);
            consumer.in_flight += 1;
            if let Some(waker) = consumer.waker.take() {
                waker.wake();
            }
            self.next_consumer = (index + 1) % n;
        }
        // What is at the head now may have expired while it waited behind another.
        if self.ready.front().is_some_and(|r| r.expires.is_some()) {
            let now = *now.get_or_insert_with(Instant::now);
            expired.extend(self.expired_heads(|at| at < now));
        }
        expired
    }
}

#[async_trait]
impl Transport for InMemoryBroker {
    async fn declare_exchange(&self, name: &str, durable: bool) -> Result<(), TopologyError> {
        exchange_entity(name).check_declarable()?;
        let mut state = lock(&self.inner.state);
        match state.exchanges.get(name) {
            Some(existing) if existing.durable != durable => Err(TopologyError::Mismatch {
                entity: exchange_entity(name),
                argument: "durable".into(),
                detail: format!("declared {durable} but exists {}", existing.durable),
            }),
            Some(_) => Ok(()),
            None => {
                state
                    .exchanges
                    .insert(name.to_owned(), ExchangeState::new(durable));
                Ok(())
            }
        }
    }

    async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), TopologyError> {
        spec.check_declarable()?;
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
        crate::error::Entity::binding(queue, exchange, pattern).check_declarable()?;
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
        ex.bind(pattern, &target);
        Ok(())
    }

    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        pattern: &BindingPattern,
    ) -> Result<(), TopologyError> {
        bindings::unbind(&self.inner, queue, exchange, pattern)
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TopologyError> {
        let removed = {
            let mut state = lock(&self.inner.state);
            let removed = state.queues.remove(queue);
            if let Some(q) = &removed {
                for ex in state.exchanges.values_mut() {
                    ex.unbind_all(q);
                }
            }
            removed
        };
        if let Some(q) = removed {
            let consumers = {
                let mut state = lock(&q.state);
                state.deleted = true;
                state.ready.clear();
                state.returned_first = 0;
                std::mem::take(&mut state.consumers)
            };
            // Their subscriptions end.
            for consumer in consumers {
                if let Some(waker) = consumer.waker {
                    waker.wake();
                }
            }
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
        self.publish_now(message)
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
        let (consumer, expired) = {
            let mut state = lock(&q.state);
            let id = state.next_consumer_id;
            state.next_consumer_id += 1;
            state.consumers.push(Consumer {
                id,
                handed: VecDeque::new(),
                waker: None,
                prefetch: usize::from(prefetch),
                in_flight: 0,
            });
            (id, state.dispatch(None))
        };
        q.dead_letter_expired(expired);
        Ok(Box::new(MemorySubscription {
            queue: q,
            consumer,
            taken: VecDeque::new(),
            cancelled: false,
        }))
    }

    async fn get(&self, queue: &str) -> Result<Option<Incoming>, ConsumeError> {
        let q = self.queue(queue).ok_or_else(|| {
            ConsumeError::Topology(TopologyError::NotFound {
                entity: queue_entity(queue),
            })
        })?;
        let now = Instant::now();
        let (ready, expired) = {
            let mut state = lock(&q.state);
            let mut expired = state.expired_heads(|at| at <= now);
            let ready = state.pop_ready();
            // Those that expired behind it go with it.
            expired.extend(state.expired_heads(|at| at <= now));
            (ready, expired)
        };
        q.dead_letter_expired(expired);
        let Some(ready) = ready else {
            return Ok(None);
        };
        Ok(Some(Incoming::with_settler(
            ready.message.clone(),
            ready.returns > 0,
            Settler::Memory(MemoryAcker::new(q, GETTER, ready)),
        )))
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests;
