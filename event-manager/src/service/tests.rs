//! Unit tests of the consume loop with a transport that misbehaves on purpose: a cancel that
//! never completes (a connection blocked by a memory alarm) and a dead-letter queue that
//! refuses messages (negative confirms).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::bus::Bus;
use crate::error::{ConsumeError, PublishError, TopologyError};
use crate::message::Message;
use crate::routing::BindingPattern;
use crate::transport::{InMemoryBroker, Incoming, QueueSpec, Subscription, Transport};

use crate::test_probe::{PING, Probe};

/// The in-memory broker, with faults.
#[derive(Clone, Default)]
struct Faulty {
    broker: InMemoryBroker,
    /// Whether a subscription's cancel never completes.
    stuck_cancel: bool,
    /// How many more publishes to a dead-letter queue get a negative confirm.
    refuse_dead_letters: Arc<AtomicU32>,
    /// How many deliveries subscriptions handed out.
    delivered: Arc<AtomicUsize>,
    /// Whether queue declarations fail (a broker refusing them).
    refuse_declares: Arc<std::sync::atomic::AtomicBool>,
    faults: Faults,
}

struct FaultySubscription {
    inner: Box<dyn Subscription>,
    stuck_cancel: bool,
    delivered: Arc<AtomicUsize>,
    faults: Faults,
}

/// Faults switched on while a service runs.
#[derive(Clone, Default)]
struct Faults {
    /// Subscriptions panic when polled.
    panic_on_poll: Arc<std::sync::atomic::AtomicBool>,
    /// The transport gave up for good: every publish fails, subscriptions end, subscribing
    /// fails.
    dead: Arc<std::sync::atomic::AtomicBool>,
    /// Moves to wait and dead-letter queues (publishes to the default exchange) get a
    /// negative confirm.
    refuse_forwards: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl Subscription for FaultySubscription {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        assert!(
            !self.faults.panic_on_poll.load(Ordering::SeqCst),
            "a subscription that panics"
        );
        if self.faults.dead.load(Ordering::SeqCst) {
            return Poll::Ready(None);
        }
        let next = self.inner.poll_next(cx);
        if let Poll::Ready(Some(_)) = &next {
            self.delivered.fetch_add(1, Ordering::SeqCst);
        }
        next
    }

    async fn cancel(&mut self) {
        if self.stuck_cancel {
            std::future::pending::<()>().await;
        }
        self.inner.cancel().await;
    }
}

#[async_trait]
impl Transport for Faulty {
    async fn declare_exchange(&self, name: &str, durable: bool) -> Result<(), TopologyError> {
        self.broker.declare_exchange(name, durable).await
    }
    async fn declare_queue(&self, queue: &QueueSpec) -> Result<(), TopologyError> {
        if self.refuse_declares.load(Ordering::SeqCst) {
            return Err(TopologyError::Refused {
                entity: crate::Entity::Queue(queue.name.clone()),
                detail: "refused by the test".into(),
            });
        }
        self.broker.declare_queue(queue).await
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
        self.broker.delete_queue(queue).await
    }
    async fn delete_exchange(&self, exchange: &str) -> Result<(), TopologyError> {
        self.broker.delete_exchange(exchange).await
    }
    async fn queue_len(&self, queue: &str) -> Result<u64, TopologyError> {
        self.broker.queue_len(queue).await
    }
    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        if self.faults.dead.load(Ordering::SeqCst) {
            return Err(PublishError::Connection {
                exchange: message.exchange.into_owned(),
                routing_key: message.routing_key.into_owned(),
                detail: "gave up".into(),
                source: None,
            });
        }
        if message.exchange.is_empty() && self.faults.refuse_forwards.load(Ordering::SeqCst) {
            return Err(PublishError::Nacked {
                exchange: String::new(),
                routing_key: message.routing_key.into_owned(),
            });
        }
        let to_dlq = message.exchange.is_empty() && message.routing_key.ends_with(".dlq");
        let refuse = |n: u32| (n > 0).then(|| n - 1);
        if to_dlq
            && self
                .refuse_dead_letters
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, refuse)
                .is_ok()
        {
            return Err(PublishError::Nacked {
                exchange: String::new(),
                routing_key: message.routing_key.into_owned(),
            });
        }
        self.broker.publish(message).await
    }
    async fn subscribe(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, ConsumeError> {
        if self.faults.dead.load(Ordering::SeqCst) {
            return Err(ConsumeError::Connection {
                queue: queue.to_owned(),
                detail: "gave up".into(),
                source: None,
            });
        }
        Ok(Box::new(FaultySubscription {
            inner: self.broker.subscribe(queue, prefetch).await?,
            stuck_cancel: self.stuck_cancel,
            delivered: self.delivered.clone(),
            faults: self.faults.clone(),
        }))
    }
    async fn get(&self, queue: &str) -> Result<Option<Incoming>, ConsumeError> {
        self.broker.get(queue).await
    }
    async fn close(&self) {}
    fn failure(&self) -> Option<String> {
        self.faults
            .dead
            .load(Ordering::SeqCst)
            .then(|| "gave up".to_owned())
    }
}

/// Publishes a body that does not decode: it is to be dead-lettered at once.
async fn publish_undecodable(bus: &Bus) {
    let message = Message {
        exchange: "probe".into(),
        routing_key: "probe.v1.ping".into(),
        body: Vec::from(&b"not json"[..]).into(),
        properties: Default::default(),
    };
    bus.transport().publish(message).await.unwrap();
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period_when_the_cancel_never_completes() {
    let faulty = Faulty {
        stuck_cancel: true,
        ..Faulty::default()
    };
    let bus = Bus::with_transport(faulty.clone());
    let mut service = bus.service("stuck");
    service.shutdown_grace(Duration::from_millis(300));
    let (started, mut callback_started) = tokio::sync::mpsc::unbounded_channel();
    service.on(PING, move |_: Probe, _| {
        let started = started.clone();
        async move {
            let _ = started.send(());
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
    });
    let running = service.start().await.unwrap();
    bus.publish(PING, &Probe { id: 1 }).await.unwrap();
    callback_started.recv().await.unwrap();

    let began = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), running.shutdown())
        .await
        .expect("shutdown hangs on a cancel that never completes")
        .unwrap();
    let took = began.elapsed();
    assert!(took < Duration::from_millis(800), "shutdown took {took:?}");
    // The unfinished message was handed back to the broker, not lost.
    assert_eq!(faulty.broker.queue_len("stuck").await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn refused_dead_letter_is_held_unacknowledged_until_the_broker_takes_it() {
    let faulty = Faulty::default();
    faulty.refuse_dead_letters.store(4, Ordering::SeqCst);
    let bus = Bus::with_transport(faulty.clone());
    let mut service = bus.service("held");
    service.on(PING, |_: Probe, _| async { Ok(()) });
    let running = service.start().await.unwrap();
    publish_undecodable(&bus).await;
    let began = Instant::now();
    wait_for("the dead letter", async || {
        faulty.broker.queue_len("held.dlq").await.unwrap() == 1
    })
    .await;
    // Four refusals, retried after 1 s, 2 s, 4 s and 8 s; never redelivered meanwhile.
    assert!(
        began.elapsed() >= Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(faulty.refuse_dead_letters.load(Ordering::SeqCst), 0);
    assert_eq!(faulty.delivered.load(Ordering::SeqCst), 1);
    assert_eq!(faulty.broker.queue_len("held").await.unwrap(), 0);
    running.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn held_message_goes_back_to_its_queue_when_the_service_stops() {
    let faulty = Faulty::default();
    faulty.refuse_dead_letters.store(u32::MAX, Ordering::SeqCst);
    let bus = Bus::with_transport(faulty.clone());
    let mut service = bus.service("held");
    service.on(PING, |_: Probe, _| async { Ok(()) });
    let running = service.start().await.unwrap();
    publish_undecodable(&bus).await;
    // A minute of refusals: held all along, not requeued and redelivered in a loop.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let refused = u32::MAX - faulty.refuse_dead_letters.load(Ordering::SeqCst);
    assert!((5..=8).contains(&refused), "refused {refused} times");
    assert_eq!(faulty.delivered.load(Ordering::SeqCst), 1);

    let began = Instant::now();
    running.shutdown().await.unwrap();
    assert!(began.elapsed() < Duration::from_secs(1));
    assert_eq!(faulty.broker.queue_len("held").await.unwrap(), 1);
    assert_eq!(faulty.broker.queue_len("held.dlq").await.unwrap(), 0);
}

#[tokio::test]
async fn no_more_callbacks_run_at_once_than_the_concurrency_when_many_are_ready() {
    const EVENTS: usize = 300;
    let bus = Bus::in_memory();
    let mut service = bus.service("limited");
    // Far more ready than the concurrency, and more than one batch of the consume loop.
    service.prefetch(1000).concurrency(3);
    let running_now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handled = Arc::new(AtomicUsize::new(0));
    let (now, top, done) = (running_now.clone(), most.clone(), handled.clone());
    service.on(PING, move |_: Probe, _| {
        let (now, top, done) = (now.clone(), top.clone(), done.clone());
        async move {
            let running = now.fetch_add(1, Ordering::SeqCst) + 1;
            top.fetch_max(running, Ordering::SeqCst);
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            now.fetch_sub(1, Ordering::SeqCst);
            done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    service.declare().await.unwrap();
    for id in 0..EVENTS as u64 {
        bus.publish(PING, &Probe { id }).await.unwrap();
    }
    let running = service.start().await.unwrap();
    wait_for("every event", async || {
        handled.load(Ordering::SeqCst) == EVENTS
    })
    .await;
    assert_eq!(most.load(Ordering::SeqCst), 3);
    running.shutdown().await.unwrap();
    assert_eq!(bus.transport().queue_len("limited").await.unwrap(), 0);
}

/// After one of a service's two subscriptions ended (its retry queue was deleted), the other
/// one must not keep taking messages that nobody reads: every message published afterwards
/// is handled. The consumer of the ended half used to stay registered on the service queue,
/// taking its share of the deliveries up to the prefetch, unread until shutdown.
#[tokio::test(start_paused = true)]
async fn the_live_half_of_an_ended_subscription_keeps_no_messages() {
    let faulty = Faulty::default();
    let bus = Bus::with_transport(faulty.clone());
    let mut service = bus.service("half");
    service.prefetch(10);
    let handled = Arc::new(AtomicUsize::new(0));
    let count = handled.clone();
    service.on(PING, move |_: Probe, _| {
        count.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    });
    let running = service.start().await.unwrap();
    faulty.broker.delete_queue("half.retried").await.unwrap();
    wait_for("the retry queue declared again", async || {
        faulty.broker.queue_len("half.retried").await.is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in 0..40 {
        bus.publish(PING, &Probe { id }).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled.load(Ordering::SeqCst) < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        handled.load(Ordering::SeqCst),
        40,
        "messages held by the consumer of the ended subscription"
    );
    running.shutdown().await.unwrap();
}

/// Consuming anew after a subscription ended must not hold up the service: a shutdown
/// meanwhile ends within its grace period. It used to wait for the five attempts to consume
/// anew (a second apart) to fail.
#[tokio::test]
async fn shutdown_is_not_held_up_by_consuming_anew() {
    let faulty = Faulty::default();
    let bus = Bus::with_transport(faulty.clone());
    let mut service = bus.service("anew");
    service.shutdown_grace(Duration::from_millis(300));
    service.on(PING, |_: Probe, _| async { Ok(()) });
    let running = service.start().await.unwrap();
    faulty.refuse_declares.store(true, Ordering::SeqCst);
    faulty.broker.delete_queue("anew.retried").await.unwrap();
    // The service is now trying to consume anew, and failing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown hangs");
    let took = began.elapsed();
    assert!(took < Duration::from_millis(1500), "shutdown took {took:?}");
    assert!(stopped.is_ok(), "{stopped:?}");
}

/// A grace period too long for a deadline (`Duration::MAX`) used to overflow the clock and
/// panic at shutdown; it is taken as a year.
#[tokio::test]
async fn a_shutdown_grace_of_duration_max_does_not_overflow() {
    let bus = Bus::in_memory();
    let mut service = bus.service("graceful");
    service.shutdown_grace(Duration::MAX);
    service.on(PING, |_: Probe, _| async { Ok(()) });
    let running = service.start().await.unwrap();
    running.shutdown().await.unwrap();
}

/// A panic in the consume loop itself (here: in the subscription) ends the service; its
/// health must say so. It used to go on reporting it consuming.
#[tokio::test]
async fn a_panicking_consume_loop_is_reported_as_not_consuming() {
    let faulty = Faulty::default();
    let bus = Bus::with_transport(faulty.clone());
    let mut service = bus.service("panicky");
    service.on(PING, |_: Probe, _| async { Ok(()) });
    let running = service.start().await.unwrap();
    let probe = running.health_probe();
    assert!(probe.health().consuming);
    faulty.faults.panic_on_poll.store(true, Ordering::SeqCst);
    bus.publish(PING, &Probe { id: 1 }).await.unwrap();
    wait_for("the loop to end", async || !probe.health().consuming).await;
    let health = probe.health();
    assert!(!health.is_healthy(), "{health:?}");
    assert!(running.stopped().await.is_err());
}

/// A service whose callbacks hold every concurrency slot with messages they cannot move
/// (an outage) must still fail once the transport gives up for good, so that its process
/// exits: the held moves used to be tried for ever, the subscription's end was never looked
/// at, and the run never returned.
#[tokio::test(start_paused = true)]
async fn a_service_with_every_slot_held_fails_when_the_transport_gives_up() {
    let faulty = Faulty::default();
    let bus = Bus::with_transport(faulty.clone());
    let mut service = bus.service("held_slots");
    service.concurrency(2);
    service.on(PING, |_: Probe, _| async {
        Err(crate::HandlerError::retry(
            "fails, so that the message is moved",
        ))
    });
    let running = service.start().await.unwrap();
    // The moves to the wait queue fail (an outage): both slots hold a message.
    faulty.faults.refuse_forwards.store(true, Ordering::SeqCst);
    for id in 0..2 {
        bus.publish(PING, &Probe { id }).await.unwrap();
    }
    wait_for("both slots held", async || {
        faulty.delivered.load(Ordering::SeqCst) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Then the transport gives up.
    faulty.faults.dead.store(true, Ordering::SeqCst);
    let ended = tokio::time::timeout(Duration::from_secs(3600), running.stopped()).await;
    let result = ended.expect("the service never failed after the transport gave up");
    assert!(
        matches!(&result, Err(ConsumeError::Connection { .. })),
        "{result:?}"
    );
}
