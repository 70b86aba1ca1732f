//! The test harness (`event_manager::testing::Harness`) on the services of a small shop:
//! typed read-back of what was published, waiting until the system is idle (cascades
//! included), dead letters and retries, and injected faults.
//!
//! The paused clock (a 30 s backoff in virtual time) needs tokio's `test-util` feature, which
//! this package's tokio does not enable: see the unit tests of `event_manager::testing` and
//! the examples of `Harness::retries`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::envelope::{self, DeadLetterKind};
use event_manager::testing::{Harness, PublishFault, PublishOutcome};
use event_manager::{
    Bus, Delivery, Event, Exchange, HandlerError, PublishError, PublishOptions, RetryPolicy,
    Unroutable,
};
use event_manager_examples::{ORDER, Order};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const INVOICE: Exchange = Exchange::topic("invoice");

/// An invoice billing issues for every submitted order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = INVOICE, version = "1.0.0", events(issued))]
pub struct Invoice {
    /// The order invoiced.
    pub order: u64,
    /// The amount, in cents.
    pub cents: u64,
}

/// Long enough for anything these tests wait for on a loaded machine.
const IDLE: Duration = Duration::from_secs(10);

/// Short retries, so that retry tests take milliseconds.
fn fast_retry() -> RetryPolicy {
    RetryPolicy::new(
        3,
        vec![Duration::from_millis(20), Duration::from_millis(40)],
    )
}

/// What callbacks saw, in order.
#[derive(Clone)]
struct Seen<T>(Arc<Mutex<Vec<T>>>);

impl<T> Default for Seen<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T: Clone> Seen<T> {
    fn push(&self, value: T) {
        self.0.lock().unwrap().push(value);
    }

    fn all(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}

/// Billing: invoices every submitted order, through `bus`.
fn billing(bus: &Bus) -> event_manager::Service {
    let mut billing = bus.service("billing_order");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.retry(fast_retry());
    let publisher = bus.with_app_id("billing");
    billing.on(Order::SUBMIT, move |order: Order, _| {
        let bus = publisher.clone();
        async move {
            let invoice = Invoice {
                order: order.id,
                cents: order.total_cents(),
            };
            invoice.issued(&bus).await?;
            Ok(())
        }
    });
    billing
}

/// Mail: sends every invoice, failing the first attempt of each when `flaky`.
fn mail(bus: &Bus, sent: &Seen<(u64, u32)>, flaky: bool) -> event_manager::Service {
    let mut mail = bus.service("mail_invoice");
    mail.retry(fast_retry());
    let sent = sent.clone();
    mail.on(
        Invoice::ISSUED,
        move |invoice: Invoice, delivery: Delivery| {
            let sent = sent.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if flaky && delivery.attempt() == 1 {
                    return Err(HandlerError::retry("mail server busy"));
                }
                sent.push((invoice.order, delivery.attempt()));
                Ok(())
            }
        },
    );
    mail
}

#[tokio::test]
async fn published_events_read_back_typed_with_ids_and_headers() {
    let harness = Harness::new();
    // Nobody consumes in this test: the order service alone, as its own test would run it.
    let orders = harness
        .bus()
        .with_app_id("order")
        .with_unroutable(Order::SUBMIT, Unroutable::Ignore)
        .with_unroutable(Order::CHARGEBACK, Unroutable::Ignore);
    let first = Order::sample(1).submit(&orders).await.unwrap();
    let options = PublishOptions {
        correlation_id: Some("checkout-2".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        ..PublishOptions::default()
    };
    let second = orders
        .publish_with(Order::SUBMIT, &Order::sample(2), &options)
        .await
        .unwrap();
    Order::sample(3).chargeback(&orders).await.unwrap();

    assert_eq!(
        harness.published(Order::SUBMIT),
        [Order::sample(1), Order::sample(2)]
    );
    assert_eq!(harness.published(Order::CHARGEBACK), [Order::sample(3)]);
    assert!(harness.published(Invoice::ISSUED).is_empty());

    let sent = harness.published_messages(Order::SUBMIT);
    assert_eq!(sent[0].message_id(), Some(first.message_id.as_str()));
    assert_eq!(sent[1].message_id(), Some(second.message_id.as_str()));
    assert_ne!(sent[0].message_id(), sent[1].message_id());
    assert_eq!(sent[1].correlation_id(), Some("checkout-2"));
    assert_eq!(sent[1].app_id(), Some("order"));
    assert_eq!(sent[1].routing_key(), "order.v1.submit");
    assert_eq!(sent[1].exchange(), "order");
    let headers = sent[1].headers();
    assert_eq!(headers.get_str(envelope::VERSION_HEADER), Some("1.2.0"));
    assert_eq!(
        headers.get_str(envelope::cloud_events::ID),
        Some(second.message_id.as_str())
    );
    assert_eq!(
        headers.get_str(envelope::cloud_events::TYPE),
        Some("order.v1.submit")
    );
    assert_eq!(
        headers.get_str(envelope::TRACEPARENT_HEADER),
        options.traceparent.as_deref()
    );
    assert!(sent.iter().all(|s| !s.routed()));

    // A namespaced bus shares the harness's broker and records.
    let tenant = harness.bus().with_namespace("tenant7");
    let mut audit = tenant.service("audit");
    audit.bind(ORDER, "order.#").unwrap();
    audit.declare().await.unwrap();
    Order::sample(4).submit(&tenant).await.unwrap();
    let last = harness.published_messages(Order::SUBMIT).pop().unwrap();
    assert_eq!(last.payload, Order::sample(4));
    assert_eq!(last.exchange(), "tenant7.order");
    assert!(last.routed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_waits_for_the_events_callbacks_publish_in_turn() {
    let harness = Harness::new();
    let sent = Seen::default();
    let billing = billing(harness.bus()).start().await.unwrap();
    let mail = mail(harness.bus(), &sent, false).start().await.unwrap();

    for id in 1..=5 {
        Order::sample(id).submit(harness.bus()).await.unwrap();
    }
    harness.idle(IDLE).await.unwrap();

    // Every order was invoiced, and every invoice mailed, before idle returned.
    let mut mailed: Vec<u64> = sent.all().into_iter().map(|(order, _)| order).collect();
    mailed.sort();
    assert_eq!(mailed, [1, 2, 3, 4, 5]);
    let invoiced = harness.published_messages(Invoice::ISSUED);
    assert_eq!(invoiced.len(), 5);
    assert!(invoiced.iter().all(|i| i.app_id() == Some("billing")));
    assert!(invoiced.iter().all(|i| i.routed()));
    assert!(harness.dead_letters("billing_order").await.is_empty());
    assert!(harness.dead_letters("mail_invoice").await.is_empty());
    billing.shutdown().await.unwrap();
    mail.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_waits_for_retries_of_cascaded_events() {
    let harness = Harness::new();
    let sent = Seen::default();
    let billing = billing(harness.bus()).start().await.unwrap();
    let mail = mail(harness.bus(), &sent, true).start().await.unwrap();

    Order::sample(8).submit(harness.bus()).await.unwrap();
    harness.idle(IDLE).await.unwrap();

    // The invoice failed once, waited in its wait queue, and was mailed on attempt 2.
    assert_eq!(sent.all(), [(8, 2)]);
    let retries = harness.retries("mail_invoice");
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].attempts(), 1);
    assert_eq!(retries[0].delay(), Duration::from_millis(20));
    assert_eq!(retries[0].wait_queue(), "mail_invoice.wait.20ms");
    assert_eq!(retries[0].routing_key(), "invoice.v1.issued");
    assert_eq!(
        retries[0].decode::<Invoice>().unwrap(),
        harness.published(Invoice::ISSUED)[0]
    );
    assert!(harness.retries("billing_order").is_empty());
    billing.shutdown().await.unwrap();
    mail.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_timeout_reports_what_is_pending() {
    let harness = Harness::new();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let mut slow = harness.bus().service("slow_order");
    slow.bind(ORDER, "order.*.submit").unwrap();
    slow.concurrency(1);
    let gate = release.clone();
    slow.on(Order::SUBMIT, move |_: Order, _| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await?;
            Ok(())
        }
    });
    let running = slow.start().await.unwrap();
    // A queue nobody consumes does not count: the dead letters of a service that is gone.
    let mut archive = harness.bus().service("archive_order");
    archive.bind(ORDER, "order.#").unwrap();
    archive.declare().await.unwrap();

    Order::sample(1).submit(harness.bus()).await.unwrap();
    Order::sample(2).submit(harness.bus()).await.unwrap();
    let err = harness
        .idle(Duration::from_millis(100))
        .await
        .expect_err("a callback is blocked");
    assert!(err.waited >= Duration::from_millis(100), "{err:?}");
    let slow_queue = err.queue("slow_order").unwrap_or_else(|| panic!("{err}"));
    assert_eq!(slow_queue.unsettled, 1, "{err}");
    // The second order was prefetched (handed) or is still ready: pending either way.
    assert_eq!(slow_queue.ready + slow_queue.handed as u64, 1, "{err}");
    assert!(err.queue("archive_order").is_none(), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("not idle after"), "{text}");
    assert!(text.contains("`slow_order`"), "{text}");
    assert!(text.contains("1 unsettled"), "{text}");

    // Released, the callbacks finish and the harness settles.
    release.add_permits(2);
    harness.idle(IDLE).await.unwrap();
    assert_eq!(
        harness
            .bus()
            .service("archive_order")
            .queues()
            .lengths()
            .await
            .unwrap()[0],
        ("archive_order".to_owned(), 2)
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_retry_waiting_for_its_delay_is_pending() {
    let harness = Harness::new();
    let mut billing = harness.bus().service("billing_order");
    billing.retry(RetryPolicy::new(2, vec![Duration::from_secs(3600)]));
    billing.on(Order::SUBMIT, |_: Order, _| async {
        Err(HandlerError::retry("payment provider down"))
    });
    let running = billing.start().await.unwrap();
    Order::sample(1).submit(harness.bus()).await.unwrap();
    let err = harness.idle(Duration::from_millis(200)).await.unwrap_err();
    let wait = err
        .queue("billing_order.wait.3600000ms")
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!((wait.ready, wait.unsettled), (1, 0), "{err}");
    assert!(err.to_string().contains("1 ready"), "{err}");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn dead_letters_read_back_with_their_kind_and_attempts() {
    let harness = Harness::new();
    let mut billing = harness.bus().service("billing_order");
    billing.retry(fast_retry());
    billing.on(Order::SUBMIT, |order: Order, _| async move {
        match order.id {
            1 => Err(HandlerError::retry("card declined")),
            2 => Err(HandlerError::permanent("customer is blocked")),
            _ => Ok(()),
        }
    });
    let running = billing.start().await.unwrap();
    let declined = Order::sample(1).submit(harness.bus()).await.unwrap();
    let blocked = Order::sample(2).submit(harness.bus()).await.unwrap();
    Order::sample(3).submit(harness.bus()).await.unwrap();
    // A foreign publisher's body that does not decode.
    let raw = event_manager::testing::transport(harness.bus());
    raw.publish(event_manager::message::Message {
        exchange: "order".into(),
        routing_key: "order.v1.submit".into(),
        body: b"{not json".to_vec().into(),
        properties: Default::default(),
    })
    .await
    .unwrap();
    harness.idle(IDLE).await.unwrap();

    let dead = harness.dead_letters("billing_order").await;
    let summary: Vec<(Option<DeadLetterKind>, u32)> =
        dead.iter().map(|d| (d.kind(), d.attempts())).collect();
    assert_eq!(
        summary,
        [
            (Some(DeadLetterKind::PermanentError), 1),
            (Some(DeadLetterKind::Undecodable), 1),
            (Some(DeadLetterKind::HandlerFailed), 3),
        ]
    );
    assert_eq!(dead[0].message_id(), Some(blocked.message_id.as_str()));
    assert!(
        dead[0].reason().unwrap().contains("customer is blocked"),
        "{:?}",
        dead[0].reason()
    );
    assert_eq!(dead[2].message_id(), Some(declined.message_id.as_str()));
    assert_eq!(dead[2].decode::<Order>().unwrap(), Order::sample(1));
    assert!(dead[2].reason().unwrap().contains("card declined"));
    // Reading them leaves them there.
    assert_eq!(harness.dead_letters("billing_order").await.len(), 3);
    // The declined order was retried twice before.
    let retries: Vec<(Option<String>, u32)> = harness
        .retries("billing_order")
        .iter()
        .map(|r| (r.message_id().map(str::to_owned), r.attempts()))
        .collect();
    let id = Some(declined.message_id.clone());
    assert_eq!(retries, [(id.clone(), 1), (id, 2)]);
    assert!(harness.dead_letters("nobody").await.is_empty());
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn injected_publish_faults_fail_the_next_publishes() {
    let harness = Harness::new();
    let mut billing = harness.bus().service("billing_order");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.declare().await.unwrap();

    harness.fail_next_publishes(2, PublishFault::Nack);
    harness.fail_next_publishes(1, PublishFault::Unroutable);
    let bus = harness.bus();
    for _ in 0..2 {
        let err = Order::sample(1).submit(bus).await.unwrap_err();
        assert!(
            matches!(&err, PublishError::Nacked { exchange, routing_key }
                if exchange == "order" && routing_key == "order.v1.submit"),
            "{err:?}"
        );
    }
    let err = Order::sample(1).submit(bus).await.unwrap_err();
    assert!(matches!(err, PublishError::Unroutable { .. }), "{err:?}");
    Order::sample(1).submit(bus).await.unwrap();

    let outcomes: Vec<PublishOutcome> = harness.sent().into_iter().map(|s| s.outcome).collect();
    assert_eq!(
        outcomes,
        [
            PublishOutcome::Injected(PublishFault::Nack),
            PublishOutcome::Injected(PublishFault::Nack),
            PublishOutcome::Injected(PublishFault::Unroutable),
            PublishOutcome::Routed,
        ]
    );
    // Only the publish the broker took counts as published, and only it reached the queue.
    assert_eq!(harness.published(Order::SUBMIT), [Order::sample(1)]);
    assert_eq!(billing.queues().lengths().await.unwrap()[0].1, 1);
}

#[tokio::test]
async fn a_callback_whose_publish_is_refused_is_retried() {
    let harness = Harness::new();
    let sent = Seen::default();
    let mut billing = billing(harness.bus());
    let attempts = Seen::default();
    let log = attempts.clone();
    // A second callback, to see on which attempt billing succeeds.
    billing.on(Order::SUBMIT, move |_: Order, delivery: Delivery| {
        let log = log.clone();
        async move {
            log.push(delivery.attempt());
            Ok(())
        }
    });
    let billing = billing.start().await.unwrap();
    let mail = mail(harness.bus(), &sent, false).start().await.unwrap();
    // Let the order through, then refuse billing's invoice once (the test runs on one
    // thread: billing has not run yet).
    Order::sample(5)
        .submit(&harness.bus().with_app_id("order"))
        .await
        .unwrap();
    harness.fail_next_publishes(1, PublishFault::Nack);
    harness.idle(IDLE).await.unwrap();
    let invoices = harness.published_messages(Invoice::ISSUED);
    assert_eq!(invoices.len(), 1);
    let refused: Vec<_> = harness
        .sent()
        .into_iter()
        .filter(|s| s.outcome == PublishOutcome::Injected(PublishFault::Nack))
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].message.routing_key, "invoice.v1.issued");
    assert_eq!(attempts.all(), [1, 2]);
    assert_eq!(sent.all(), [(5, 1)]);
    assert_eq!(harness.retries("billing_order").len(), 1);
    billing.shutdown().await.unwrap();
    mail.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dropped_connection_redelivers_what_was_unsettled() {
    let harness = Harness::new();
    let effects = Seen::default();
    let handled = Seen::default();
    let started = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let mut billing = harness.bus().service("billing_order");
    let seen_ids = Arc::new(Mutex::new(HashSet::new()));
    let (effects_log, handled_log) = (effects.clone(), handled.clone());
    let (started_tx, gate) = (started.clone(), release.clone());
    billing.on(Order::SUBMIT, move |order: Order, delivery: Delivery| {
        let (effects, handled) = (effects_log.clone(), handled_log.clone());
        let (started, gate, seen_ids) = (started_tx.clone(), gate.clone(), seen_ids.clone());
        async move {
            handled.push((order.id, delivery.redelivered()));
            if !delivery.redelivered() {
                started.notify_one();
                gate.notified().await;
            }
            // Idempotent: the side effect happens once per message id.
            let id = delivery.message_id().unwrap().to_owned();
            if seen_ids.lock().unwrap().insert(id) {
                effects.push(order.id);
            }
            Ok(())
        }
    });
    let running = billing.start().await.unwrap();
    Order::sample(9).submit(harness.bus()).await.unwrap();
    started.notified().await;

    assert_eq!(harness.drop_connection(), 2); // the service queue and its retry queue
    // Consuming anew, the service gets the message again while the first callback still runs.
    let pending = harness.idle(Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(
        pending.queue("billing_order").map(|q| q.unsettled),
        Some(1),
        "{pending}"
    );
    release.notify_one();
    harness.idle(IDLE).await.unwrap();
    assert_eq!(handled.all(), [(9, false), (9, true)]);
    assert_eq!(effects.all(), [9]);
    // Nothing left, nothing dead-lettered; the service runs on.
    assert!(harness.dead_letters("billing_order").await.is_empty());
    Order::sample(10).submit(harness.bus()).await.unwrap();
    release.notify_one();
    harness.idle(IDLE).await.unwrap();
    assert_eq!(effects.all(), [9, 10]);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn delayed_deliveries_arrive_late() {
    let harness = Harness::new();
    let arrived = Seen::default();
    let mut billing = harness.bus().service("billing_order");
    let log = arrived.clone();
    billing.on(Order::SUBMIT, move |order: Order, _| {
        let log = log.clone();
        async move {
            log.push((order.id, tokio::time::Instant::now()));
            Ok(())
        }
    });
    let running = billing.start().await.unwrap();
    harness.delay_deliveries(Duration::from_millis(200));
    let began = tokio::time::Instant::now();
    Order::sample(1).submit(harness.bus()).await.unwrap();
    Order::sample(2).submit(harness.bus()).await.unwrap();
    let err = harness.idle(Duration::from_millis(50)).await.unwrap_err();
    let queue = err
        .queue("billing_order")
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(queue.handed, 2, "{err}");
    harness.idle(IDLE).await.unwrap();
    let arrived = arrived.all();
    assert_eq!(
        arrived.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [1, 2]
    );
    for (_, at) in &arrived {
        assert!(
            *at - began >= Duration::from_millis(200),
            "{:?}",
            *at - began
        );
    }

    harness.delay_deliveries(Duration::ZERO);
    let began = tokio::time::Instant::now();
    Order::sample(3).submit(harness.bus()).await.unwrap();
    harness.idle(IDLE).await.unwrap();
    assert!(began.elapsed() < Duration::from_millis(200));
    running.shutdown().await.unwrap();
}
