//! The transport of a [`Harness`](super::Harness): the in-memory broker, with every publish
//! recorded, every delivery tracked until it is settled, and faults injected on demand.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use async_trait::async_trait;
use rustc_hash::FxHashMap as HashMap;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::records::{PublishFault, PublishOutcome, Sent};
use crate::error::{ConsumeError, PublishError, TopologyError};
use crate::message::Message;
use crate::routing::BindingPattern;
use crate::transport::{Acker, InMemoryBroker, Incoming, QueueSpec, Subscription, Transport};

/// Why the subscriptions ended by [`State::drop_connection`] ended.
pub(super) const DROPPED: &str = "connection lost (dropped by the test harness)";

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding a lock must not hide its own failure behind a
    // poisoned-lock panic in the harness.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the harness knows, shared by its transport, subscriptions and deliveries.
#[derive(Default)]
pub(super) struct State {
    /// Every publish, in the order it was made; the outcome is `None` while it runs.
    sent: Mutex<Vec<(Arc<Message>, Option<PublishOutcome>)>>,
    /// The queues declared through the harness, by name.
    queues: Mutex<HashMap<String, QueueSpec>>,
    subscriptions: Mutex<Vec<Weak<SubscriptionState>>>,
    deliveries: Mutex<Vec<Weak<Slot>>>,
    /// Faults for the next publishes of events (to a named exchange).
    event_faults: Mutex<VecDeque<PublishFault>>,
    /// Faults for the next publishes through the default exchange (retries, dead letters).
    forward_faults: Mutex<VecDeque<PublishFault>>,
    /// How long each delivery is held before its consumer gets it.
    delay: Mutex<Duration>,
    /// Counts publishes, deliveries and settlements: unchanged between two looks, nothing
    /// moved through the harness in between.
    epoch: AtomicU64,
    /// Woken at every change of `epoch`.
    activity: Notify,
}

/// What one queue holds or has handed out, for [`State::activity`].
#[derive(Debug, Clone, Default)]
pub(super) struct Activity {
    pub(super) ready: u64,
    pub(super) handed: usize,
    pub(super) unsettled: usize,
}

impl State {
    /// Something moved: a publish, a delivery, a settlement.
    fn touch(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.activity.notify_waiters();
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub(super) fn activity_notify(&self) -> &Notify {
        &self.activity
    }

    pub(super) fn sent(&self) -> Vec<Sent> {
        lock(&self.sent)
            .iter()
            .filter_map(|(message, outcome)| {
                outcome.clone().map(|outcome| Sent {
                    message: message.clone(),
                    outcome,
                })
            })
            .collect()
    }

    pub(super) fn fail_next(&self, n: usize, fault: PublishFault, forwards: bool) {
        let faults = if forwards {
            &self.forward_faults
        } else {
            &self.event_faults
        };
        lock(faults).extend(std::iter::repeat_n(fault, n));
    }

    pub(super) fn set_delay(&self, delay: Duration) {
        *lock(&self.delay) = delay;
    }

    fn delay(&self) -> Duration {
        *lock(&self.delay)
    }

    fn next_fault(&self, forward: bool) -> Option<PublishFault> {
        let faults = if forward {
            &self.forward_faults
        } else {
            &self.event_faults
        };
        lock(faults).pop_front()
    }

    /// The live subscriptions.
    fn subscriptions(&self) -> Vec<Arc<SubscriptionState>> {
        let mut all = lock(&self.subscriptions);
        all.retain(|s| s.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    }

    /// The deliveries handed out and not dropped yet.
    fn deliveries(&self) -> Vec<Arc<Slot>> {
        let mut all = lock(&self.deliveries);
        all.retain(|d| d.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    }

    /// Wraps a delivery of `queue` so that the harness knows when it is settled.
    fn track(self: &Arc<Self>, queue: &str, incoming: Incoming) -> Incoming {
        let message = incoming.message.clone();
        let redelivered = incoming.redelivered;
        let slot = Arc::new(Slot {
            queue: queue.to_owned(),
            incoming: Mutex::new(Some(incoming)),
            settled: AtomicBool::new(false),
        });
        {
            let mut all = lock(&self.deliveries);
            all.retain(|d| d.strong_count() > 0);
            all.push(Arc::downgrade(&slot));
        }
        self.touch();
        Incoming::new(
            message,
            redelivered,
            Box::new(HarnessAcker {
                slot,
                state: self.clone(),
            }),
        )
    }

    /// Ends every live subscription as a lost connection would, and hands every unsettled
    /// delivery back to its queue; their acks then fail. Returns how many subscriptions ended.
    pub(super) fn drop_connection(&self) -> usize {
        let mut ended = 0;
        for subscription in self.subscriptions() {
            let (inner, buffer, waker) = {
                let mut state = lock(&subscription.inner);
                if state.cancelled || state.ended.is_some() {
                    continue;
                }
                state.ended = Some(DROPPED.to_owned());
                (
                    state.subscription.take(),
                    std::mem::take(&mut state.buffer),
                    state.consumer.take(),
                )
            };
            // The broker forgets the consumer first, so that what goes back to the queue is
            // not handed to it again.
            drop(inner);
            requeue(buffer);
            if let Some(waker) = waker {
                waker.wake();
            }
            ended += 1;
        }
        for slot in self.deliveries() {
            // Dropped unsettled: the broker requeues it, marked redelivered. The callback
            // handling it runs on, and counts as unsettled until it tries to settle it.
            let incoming = lock(&slot.incoming).take();
            drop(incoming);
        }
        self.touch();
        ended
    }

    /// What every queue that counts for idleness holds or has handed out: the queues with a
    /// live consumer and the wait queues of retries, plus any queue with an unsettled
    /// delivery. Queues without anything are left out.
    pub(super) async fn activity(
        &self,
        broker: &InMemoryBroker,
    ) -> std::collections::BTreeMap<String, Activity> {
        let mut all: std::collections::BTreeMap<String, Activity> = Default::default();
        let mut counted: Vec<String> = lock(&self.queues)
            .values()
            .filter(|spec| spec.message_ttl.is_some() && spec.dead_letter.is_some())
            .map(|spec| spec.name.clone())
            .collect();
        for subscription in self.subscriptions() {
            let state = lock(&subscription.inner);
            if state.cancelled || state.ended.is_some() {
                continue;
            }
            let woken = usize::from(subscription.woken.load(Ordering::SeqCst));
            all.entry(subscription.queue.clone()).or_default().handed += state.buffer.len() + woken;
            counted.push(subscription.queue.clone());
        }
        for slot in self.deliveries() {
            if !slot.settled.load(Ordering::SeqCst) {
                all.entry(slot.queue.clone()).or_default().unsettled += 1;
            }
        }
        counted.sort();
        counted.dedup();
        for queue in counted {
            // A queue deleted meanwhile holds nothing.
            if let Ok(ready) = broker.queue_len(&queue).await {
                all.entry(queue).or_default().ready = ready;
            }
        }
        all.retain(|_, a| a.ready > 0 || a.handed > 0 || a.unsettled > 0);
        all
    }
}

/// Drops deliveries not returned yet, last first, so that the broker requeues them in their
/// order (each goes to the head of its queue).
fn requeue(mut buffer: VecDeque<(Incoming, Instant)>) {
    while let Some(last) = buffer.pop_back() {
        drop(last);
    }
}

/// One delivery handed out through the harness.
struct Slot {
    queue: String,
    /// The transport's own delivery, until it is settled (or taken back by a lost connection).
    incoming: Mutex<Option<Incoming>>,
    /// Set once its consumer settled it (or tried to, after a lost connection) or dropped it.
    settled: AtomicBool,
}

/// Settles a delivery of the harness: forwards to the broker's own, then tells the harness.
struct HarnessAcker {
    slot: Arc<Slot>,
    state: Arc<State>,
}

impl HarnessAcker {
    async fn settle(&self, ack: Option<bool>) -> Result<(), ConsumeError> {
        let incoming = lock(&self.slot.incoming).take();
        let Some(incoming) = incoming else {
            self.slot.settled.store(true, Ordering::SeqCst);
            self.state.touch();
            return Err(ConsumeError::Connection {
                queue: self.slot.queue.clone(),
                detail: format!(
                    "{DROPPED}: the delivery cannot be settled; the broker delivers it again"
                ),
                source: None,
            });
        };
        let settled = match ack {
            None => incoming.ack().await,
            Some(requeue) => incoming.reject(requeue).await,
        };
        self.slot.settled.store(true, Ordering::SeqCst);
        self.state.touch();
        settled
    }
}

#[async_trait]
impl Acker for HarnessAcker {
    async fn ack(&self) -> Result<(), ConsumeError> {
        self.settle(None).await
    }

    async fn reject(&self, requeue: bool) -> Result<(), ConsumeError> {
        self.settle(Some(requeue)).await
    }
}

impl Drop for HarnessAcker {
    fn drop(&mut self) {
        // Dropped unsettled: back to the queue, before the harness stops counting it.
        let incoming = lock(&self.slot.incoming).take();
        drop(incoming);
        if !self.slot.settled.swap(true, Ordering::SeqCst) {
            self.state.touch();
        }
    }
}

/// Sets a flag before waking the consumer: the broker handed it something it has not taken.
struct FlagWaker {
    woken: Arc<AtomicBool>,
    consumer: Waker,
}

impl Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.consumer.wake_by_ref();
    }
}

/// One subscription through the harness, shared with it.
struct SubscriptionState {
    queue: String,
    /// The broker woke the consumer and the consumer has not polled since (or never polled).
    woken: Arc<AtomicBool>,
    inner: Mutex<SubscriptionInner>,
}

struct SubscriptionInner {
    /// The broker's subscription, until it ends or is cancelled.
    subscription: Option<Box<dyn Subscription>>,
    /// Taken from the broker's subscription and not returned yet, with when each may be.
    buffer: VecDeque<(Incoming, Instant)>,
    /// Why it ended by itself.
    ended: Option<String>,
    cancelled: bool,
    /// The consumer's waker, to end the subscription from outside.
    consumer: Option<Waker>,
    /// The waker handed to the broker's subscription: the consumer's, behind a flag.
    flag: Option<Waker>,
    /// The timer of a delayed delivery.
    timer: Option<Pin<Box<Sleep>>>,
}

struct HarnessSubscription {
    shared: Arc<SubscriptionState>,
    state: Arc<State>,
}

impl HarnessSubscription {
    fn close(&mut self) {
        let (inner, buffer) = {
            let mut state = lock(&self.shared.inner);
            state.cancelled = true;
            (state.subscription.take(), std::mem::take(&mut state.buffer))
        };
        drop(inner);
        requeue(buffer);
        self.state.touch();
    }
}

impl Drop for HarnessSubscription {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl Subscription for HarnessSubscription {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        let delay = self.state.delay();
        let mut guard = lock(&self.shared.inner);
        let state = &mut *guard;
        if state.cancelled || state.ended.is_some() {
            return Poll::Ready(None);
        }
        if !state
            .consumer
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.consumer = Some(cx.waker().clone());
            state.flag = Some(Waker::from(Arc::new(FlagWaker {
                woken: self.shared.woken.clone(),
                consumer: cx.waker().clone(),
            })));
        }
        self.shared.woken.store(false, Ordering::SeqCst);
        // Take everything the broker handed over, so that the harness sees it.
        let mut ended = None;
        if let (Some(inner), Some(flag)) = (state.subscription.as_mut(), state.flag.as_ref()) {
            let mut inner_cx = Context::from_waker(flag);
            loop {
                match inner.poll_next(&mut inner_cx) {
                    Poll::Ready(Some(incoming)) => {
                        state.buffer.push_back((incoming, Instant::now() + delay));
                    }
                    Poll::Ready(None) => {
                        ended = Some(
                            inner
                                .end_reason()
                                .unwrap_or_else(|| "the subscription ended".to_owned()),
                        );
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if let Some(reason) = ended {
            state.ended = Some(reason);
            let inner = state.subscription.take();
            let buffer = std::mem::take(&mut state.buffer);
            drop(guard);
            drop(inner);
            requeue(buffer);
            self.state.touch();
            return Poll::Ready(None);
        }
        let Some((_, at)) = state.buffer.front() else {
            return Poll::Pending;
        };
        let at = *at;
        if at > Instant::now() {
            let timer = state
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let Some((incoming, _)) = state.buffer.pop_front() else {
            return Poll::Pending;
        };
        // Tracked before the lock is released: [`State::activity`] sees the delivery in the
        // buffer or as unsettled, never in neither.
        let incoming = self.state.track(&self.shared.queue, incoming);
        drop(guard);
        Poll::Ready(Some(incoming))
    }

    async fn cancel(&mut self) {
        let inner = {
            let mut state = lock(&self.shared.inner);
            state.cancelled = true;
            state.subscription.take()
        };
        if let Some(mut inner) = inner {
            inner.cancel().await;
        }
        self.close();
    }

    fn end_reason(&self) -> Option<String> {
        lock(&self.shared.inner).ended.clone()
    }
}

/// The in-memory broker, recorded and with faults.
pub(super) struct HarnessTransport {
    pub(super) broker: InMemoryBroker,
    pub(super) state: Arc<State>,
}

#[async_trait]
impl Transport for HarnessTransport {
    async fn declare_exchange(&self, name: &str, durable: bool) -> Result<(), TopologyError> {
        self.broker.declare_exchange(name, durable).await
    }

    async fn declare_queue(&self, queue: &QueueSpec) -> Result<(), TopologyError> {
        self.broker.declare_queue(queue).await?;
        lock(&self.state.queues)
            .entry(queue.name.clone())
            .or_insert_with(|| queue.clone());
        Ok(())
    }

    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        pattern: &BindingPattern,
    ) -> Result<(), TopologyError> {
        self.broker.bind(queue, exchange, pattern).await
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TopologyError> {
        self.broker.delete_queue(queue).await?;
        lock(&self.state.queues).remove(queue);
        self.state.touch();
        Ok(())
    }

    async fn delete_exchange(&self, exchange: &str) -> Result<(), TopologyError> {
        self.broker.delete_exchange(exchange).await
    }

    async fn queue_len(&self, queue: &str) -> Result<u64, TopologyError> {
        self.broker.queue_len(queue).await
    }

    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        let fault = self.state.next_fault(message.exchange.is_empty());
        // Recorded before it is routed, so that the record of an event comes before the
        // records of what its consumers publish in turn.
        let at = {
            let mut sent = lock(&self.state.sent);
            sent.push((Arc::new(message.clone()), None));
            sent.len() - 1
        };
        let (result, outcome) = match fault {
            Some(fault) => (
                Err(fault.error(&message.exchange, &message.routing_key)),
                PublishOutcome::Injected(fault),
            ),
            None => {
                let result = self.broker.publish(message).await;
                let outcome = match &result {
                    Ok(()) => PublishOutcome::Routed,
                    Err(PublishError::Unroutable { .. }) => PublishOutcome::Unroutable,
                    Err(error) => PublishOutcome::Failed(error.to_string()),
                };
                (result, outcome)
            }
        };
        if let Some(slot) = lock(&self.state.sent).get_mut(at) {
            slot.1 = Some(outcome);
        }
        self.state.touch();
        result
    }

    async fn subscribe(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, ConsumeError> {
        let inner = self.broker.subscribe(queue, prefetch).await?;
        let shared = Arc::new(SubscriptionState {
            queue: queue.to_owned(),
            // The broker may have handed messages over already, without a waker to wake:
            // pending until the consumer first looks.
            woken: Arc::new(AtomicBool::new(true)),
            inner: Mutex::new(SubscriptionInner {
                subscription: Some(inner),
                buffer: VecDeque::new(),
                ended: None,
                cancelled: false,
                consumer: None,
                flag: None,
                timer: None,
            }),
        });
        {
            let mut all = lock(&self.state.subscriptions);
            all.retain(|s| s.strong_count() > 0);
            all.push(Arc::downgrade(&shared));
        }
        self.state.touch();
        Ok(Box::new(HarnessSubscription {
            shared,
            state: self.state.clone(),
        }))
    }

    async fn get(&self, queue: &str) -> Result<Option<Incoming>, ConsumeError> {
        Ok(self
            .broker
            .get(queue)
            .await?
            .map(|incoming| self.state.track(queue, incoming)))
    }

    async fn close(&self) {
        self.broker.close().await;
    }
}
