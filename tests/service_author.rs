//! What a service author meets, on the in-memory broker: an event nobody is bound to yet, errors
//! that say retry or don't (`anyhow`, boxed errors, `.permanent()?`), a bare `Ok(())`, and a
//! service's queues read and cleaned up from code.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use event_manager::envelope::DeadLetterKind;
use event_manager::{
    Bus, Delivery, Event, Exchange, HandlerError, HandlerResultExt, PublishError, PublishOptions,
    RetryPolicy, Unroutable,
};
use event_manager_examples::{ORDER, Order};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const INVENTORY: Exchange = Exchange::topic("inventory");

/// Stock reserved for an order; rolled out before any consumer exists.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = INVENTORY, version = "1.0.0", events(reserved))]
pub struct Reservation {
    /// The order the stock is reserved for.
    pub order: u64,
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy::new(3, vec![Duration::from_millis(10)])
}

/// Waits until `queue` of the bus's service `service` holds `n` dead letters.
async fn dead_letters(
    bus: &Bus,
    service: &str,
    n: usize,
) -> Vec<event_manager::topology::DeadLetter> {
    let queues = bus.service(service).queues();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let letters = queues.dead_letters(100).await.unwrap();
        if letters.len() >= n {
            return letters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} dead letter(s), expected {n}",
            letters.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_event_nobody_is_bound_to_follows_its_unroutable_policy() {
    let bus = Bus::in_memory();
    // The default is an error: an event that must reach someone is not lost silently.
    let err = Reservation { order: 1 }.reserved(&bus).await.unwrap_err();
    assert!(matches!(err, PublishError::Unroutable { .. }), "{err:?}");

    // Rolled out before its consumers: logged and counted, not an error.
    let rollout = bus.with_unroutable(Reservation::RESERVED, Unroutable::Log);
    let published = Reservation { order: 2 }.reserved(&rollout).await.unwrap();
    assert!(!published.routed);
    assert_eq!(rollout.unroutable_count(), 1);

    // A publish may choose its own policy, over the bus's.
    let strict = PublishOptions {
        unroutable: Some(Unroutable::Error),
        ..PublishOptions::default()
    };
    let err = rollout
        .publish_with(Reservation::RESERVED, &Reservation { order: 3 }, &strict)
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unroutable { .. }), "{err:?}");
    let quiet = PublishOptions {
        unroutable: Some(Unroutable::Ignore),
        ..PublishOptions::default()
    };
    let published = bus
        .publish_with(Reservation::RESERVED, &Reservation { order: 4 }, &quiet)
        .await
        .unwrap();
    assert!(!published.routed);

    // Once a consumer is bound, the same publish is routed.
    let mut audit = bus.service("audit_inventory");
    audit.on(Reservation::RESERVED, |_: Reservation, _| async { Ok(()) });
    audit.declare().await.unwrap();
    assert!(
        Reservation { order: 5 }
            .reserved(&rollout)
            .await
            .unwrap()
            .routed
    );
}

#[tokio::test]
async fn a_handler_publishing_a_new_event_is_not_retried_for_want_of_its_consumers() {
    let bus = Bus::in_memory();
    let publisher = bus.with_unroutable(Reservation::RESERVED, Unroutable::Log);
    let attempts = Arc::new(AtomicU32::new(0));
    let mut inventory = bus.service("inventory_order");
    inventory.retry(fast_retry());
    inventory.bind(ORDER, "order.*.submit").unwrap();
    let (seen, publisher2) = (attempts.clone(), publisher.clone());
    inventory.on(Order::SUBMIT, move |order: Order, _| {
        let (seen, bus) = (seen.clone(), publisher2.clone());
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            Reservation { order: order.id }.reserved(&bus).await?;
            Ok(())
        }
    });
    let running = inventory.start().await.unwrap();
    Order::sample(1).submit(&bus).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while publisher.unroutable_count() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler did not publish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    running.shutdown().await.unwrap();
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "handled once, not retried"
    );
    let queues = bus.service("inventory_order").queues();
    assert!(queues.dead_letters(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn anyhow_and_boxed_errors_retry_and_permanent_ones_dead_letter_at_once() {
    let bus = Bus::in_memory();
    let mut billing = bus.service("billing_order");
    billing.retry(fast_retry());
    billing.bind(ORDER, "order.*.submit").unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    billing.on(Order::SUBMIT, move |order: Order, ctx: Delivery| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            match order.id {
                // `?` on anyhow::Error: retryable.
                1 => Err(anyhow::anyhow!("payment gateway down"))?,
                // `?` on a boxed error: retryable.
                2 => {
                    let boxed: Box<dyn std::error::Error + Send + Sync> = "ledger locked".into();
                    Err(boxed)?
                }
                // A business rule: permanent, dead-lettered on the first attempt.
                3 => Err::<(), _>(format!("customer {} is blocked", order.customer)).permanent()?,
                _ => {}
            }
            assert!(ctx.message_id().is_some());
            Ok(())
        }
    });
    let running = billing.start().await.unwrap();
    for id in 1..=3 {
        Order::sample(id).submit(&bus).await.unwrap();
    }
    let letters = dead_letters(&bus, "billing_order", 3).await;
    running.shutdown().await.unwrap();
    let by_order = |id: u64| {
        letters
            .iter()
            .find(|l| l.decode::<Order>().unwrap().id == id)
            .unwrap_or_else(|| panic!("order {id} not dead-lettered"))
    };
    for id in [1, 2] {
        let letter = by_order(id);
        assert_eq!(letter.kind(), Some(DeadLetterKind::HandlerFailed));
        assert_eq!(letter.attempts(), 3);
    }
    let blocked = by_order(3);
    assert_eq!(blocked.kind(), Some(DeadLetterKind::PermanentError));
    assert_eq!(blocked.attempts(), 1);
    assert!(
        blocked.reason().unwrap().contains("is blocked"),
        "{:?}",
        blocked.reason()
    );
    assert_eq!(blocked.routing_key(), "order.v1.submit");
    assert_eq!(attempts.load(Ordering::SeqCst), 3 + 3 + 1);
}

#[tokio::test]
async fn a_service_lists_reads_replays_and_deletes_its_queues() {
    let bus = Bus::in_memory().with_namespace("authors");
    let mut billing = bus.service("billing_order");
    billing.retry(fast_retry());
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.on(Order::SUBMIT, |_: Order, _| async {
        Err(HandlerError::permanent("refused"))
    });
    let queues = billing.queues();
    assert_eq!(
        queues.names(),
        [
            "authors.billing_order",
            "authors.billing_order.retried",
            "authors.billing_order.dlq",
            "authors.billing_order.wait.10ms",
        ]
    );
    let running = billing.start().await.unwrap();
    Order::sample(9).submit(&bus).await.unwrap();
    let letters = dead_letters(&bus, "billing_order", 1).await;
    running.shutdown().await.unwrap();
    assert_eq!(letters[0].kind(), Some(DeadLetterKind::PermanentError));
    // Reading did not remove it.
    let lengths = queues.lengths().await.unwrap();
    assert!(
        lengths.contains(&("authors.billing_order.dlq".to_owned(), 1)),
        "{lengths:?}"
    );
    assert_eq!(queues.replay_dead_letters(10).await.unwrap(), 1);
    let lengths = queues.lengths().await.unwrap();
    assert!(
        lengths.contains(&("authors.billing_order".to_owned(), 1)),
        "{lengths:?}"
    );
    assert!(
        lengths.contains(&("authors.billing_order.dlq".to_owned(), 0)),
        "{lengths:?}"
    );
    queues.delete().await.unwrap();
    assert!(queues.lengths().await.is_err(), "the queues are gone");
}
