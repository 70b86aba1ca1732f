//! Conformance cases for delivery under faults: namespaces, callbacks that fail or panic,
//! replays, broken attempt counts, and topology deleted from outside while services run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use event_manager::{Delivery, Event, HandlerError, PublishError, RetryPolicy, envelope};
use event_manager_examples::{ORDER, Order, OrderSubmittedV2};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::ok;
use crate::common::{Env, recorder, test_policy};

/// An event whose decoder panics on `"explode": true`: a stand-in for a buggy hand-written
/// `Deserialize`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.0.0", events(probe))]
pub struct Probe {
    pub id: u64,
    pub explode: bool,
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            id: u64,
            explode: bool,
        }
        let raw = Raw::deserialize(deserializer)?;
        assert!(!raw.explode, "the probe decoder exploded");
        Ok(Self {
            id: raw.id,
            explode: raw.explode,
        })
    }
}

/// The reason header of the next dead letter of service `queue`, after checking its kind.
async fn next_dead_letter_reason(
    env: &Env,
    queue: &str,
    kind: envelope::DeadLetterKind,
) -> (String, Option<i64>) {
    let dead = env.take(&env.dlq(queue)).await;
    let h = &dead.properties.headers;
    let reason = h.get_str(envelope::DEAD_LETTER_REASON_HEADER).unwrap();
    assert_eq!(envelope::DeadLetterKind::of(&dead), Some(kind), "{reason}");
    (reason.to_owned(), h.get_int(envelope::ATTEMPTS_HEADER))
}

pub async fn namespaces_keep_tenants_apart(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut buses = Vec::new();
    let mut running = Vec::new();
    for tenant in ["tenant_a", "tenant_b"] {
        let bus = env.tenant(tenant);
        let mut service = bus.service(env.queue("billing_parcel"));
        service.retry(test_policy());
        let r = rec.clone();
        service.on(Order::SUBMIT, move |o: Order, _| {
            let r = r.clone();
            async move {
                r.record((tenant, o.id));
                ok()
            }
        });
        running.push(service.start().await.unwrap());
        buses.push(bus);
    }
    assert_ne!(
        buses[0].topology().queue_name("billing_parcel"),
        buses[1].topology().queue_name("billing_parcel")
    );
    for id in 0..10 {
        Order::sample(id).submit(&buses[0]).await.unwrap();
    }
    let got = seen.take(10).await;
    assert!(got.iter().all(|(t, _)| *t == "tenant_a"), "{got:?}");
    seen.quiet(Duration::from_millis(200)).await;
    for r in running {
        r.shutdown().await.unwrap();
    }
}

pub async fn every_callback_runs_to_completion_when_one_fails(env: &Env) {
    let (rec, mut seen) = recorder();
    let calls = Arc::new(AtomicU32::new(0));
    let mut billing = env.service("billing");
    let c = calls.clone();
    billing.on(Order::SUBMIT, move |_: Order, _| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::retry("the first callback failed at once"))
        }
    });
    billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
        let rec = rec.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            rec.record((o.id, ctx.attempt()));
            Err(HandlerError::permanent("the second callback refused"))
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    Order::sample(4).submit(&env.bus).await.unwrap();
    // The second callback completed although the first had failed already; the outcome is
    // the first error, made permanent by the second: dead-lettered after one attempt.
    assert_eq!(seen.take(1).await, [(4, 1)]);
    let (reason, attempts) =
        next_dead_letter_reason(env, &queue, envelope::DeadLetterKind::PermanentError).await;
    assert!(
        reason.contains("the first callback failed at once"),
        "{reason}"
    );
    assert!(reason.starts_with("permanent error"), "{reason}");
    assert_eq!(attempts, Some(1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    seen.quiet(Duration::from_millis(200)).await;
    running.shutdown().await.unwrap();
}

pub async fn panicking_decoder_is_dead_lettered_and_the_consumer_keeps_running(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.on(Probe::PROBE, move |p: Probe, _| {
        let rec = rec.clone();
        async move {
            rec.record(p.id);
            ok()
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    for (id, explode) in [(1, true), (2, false)] {
        let probe = Probe { id, explode };
        env.bus.publish(Probe::PROBE, &probe).await.unwrap();
    }
    assert_eq!(seen.take(1).await, [2]);
    let (reason, attempts) =
        next_dead_letter_reason(env, &queue, envelope::DeadLetterKind::Panicked).await;
    assert!(reason.contains("panicked while decoding"), "{reason}");
    assert!(reason.contains("the probe decoder exploded"), "{reason}");
    assert_eq!(attempts, Some(1));
    running.shutdown().await.unwrap();
}

pub async fn panicking_upcaster_is_dead_lettered_and_the_consumer_keeps_running(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing
        .on(OrderSubmittedV2::SUBMIT, move |o: OrderSubmittedV2, _| {
            let rec = rec.clone();
            async move {
                rec.record(o.id);
                ok()
            }
        })
        .upcast_with(Order::SUBMIT, |o: Order| {
            assert_ne!(o.id, 13, "the upcaster exploded");
            o.into()
        });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    Order::sample(13).submit(&env.bus).await.unwrap();
    Order::sample(14).submit(&env.bus).await.unwrap();
    assert_eq!(seen.take(1).await, [14]);
    let (reason, attempts) =
        next_dead_letter_reason(env, &queue, envelope::DeadLetterKind::Panicked).await;
    assert!(reason.contains("panicked while upcasting"), "{reason}");
    assert!(reason.contains("the upcaster exploded"), "{reason}");
    assert_eq!(attempts, Some(1));
    running.shutdown().await.unwrap();
}

pub async fn callback_panicking_before_its_future_is_retried(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
        assert!(
            o.id != 13 || ctx.attempt() > 1,
            "panicked before returning its future"
        );
        let rec = rec.clone();
        async move {
            rec.record((o.id, ctx.attempt()));
            ok()
        }
    });
    let running = billing.start().await.unwrap();
    Order::sample(13).submit(&env.bus).await.unwrap();
    Order::sample(14).submit(&env.bus).await.unwrap();
    let mut got = seen.take(2).await;
    got.sort();
    assert_eq!(got, [(13, 2), (14, 1)]);
    running.shutdown().await.unwrap();
}

pub async fn replay_ends_even_when_the_replayed_messages_fail_again(env: &Env) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut billing = env.service("billing");
    billing.retry(RetryPolicy::no_retry());
    let c = calls.clone();
    billing.on(Order::SUBMIT, move |_: Order, _| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::retry("the bug is not fixed"))
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    for id in 0..3 {
        Order::sample(id).submit(&env.bus).await.unwrap();
    }
    let dlq = env.dlq(&queue);
    env.wait_for_len(&dlq, 3).await;
    let moved = tokio::time::timeout(
        Duration::from_secs(20),
        env.bus
            .service(queue.as_str())
            .queues()
            .replay_dead_letters(usize::MAX),
    )
    .await
    .expect("the replay does not end")
    .unwrap();
    assert_eq!(moved, 3);
    // Each failed once more and is back in the dead-letter queue, for a later replay.
    env.wait_for_len(&dlq, 3).await;
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    running.shutdown().await.unwrap();
}

pub async fn huge_attempts_header_means_the_attempts_are_used_up(env: &Env) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut billing = env.service("billing");
    let c = calls.clone();
    billing.on(Order::SUBMIT, move |_: Order, _| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::retry("still failing"))
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    let body = br#"{"id": 1, "customer": "c", "lines": []}"#;
    for attempts in ["4294967295", "99999999999"] {
        let headers = [(envelope::ATTEMPTS_HEADER, attempts)];
        env.publish_raw("order.v1.submit", body, &headers)
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let (reason, attempts) =
            next_dead_letter_reason(env, &queue, envelope::DeadLetterKind::HandlerFailed).await;
        assert!(
            reason.contains("gave up after 4294967295 attempt(s)"),
            "{reason}"
        );
        assert_eq!(attempts, Some(i64::from(u32::MAX)));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    running.shutdown().await.unwrap();
}

pub async fn deleted_dead_letter_queue_is_declared_again(env: &Env) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut billing = env.service("billing");
    let c = calls.clone();
    billing.on(Order::SUBMIT, move |_: Order, _| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            ok()
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    let dlq = env.dlq(&queue);
    env.transport().delete_queue(&dlq).await.unwrap();
    for id in 0..3 {
        let body = format!("poison {id}");
        env.publish_raw("order.v1.submit", body.as_bytes(), &[])
            .await
            .unwrap();
    }
    env.wait_for_len(&dlq, 3).await;
    env.wait_for_len(&env.broker_queue(&queue), 0).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    running.shutdown().await.unwrap();
}

pub async fn publish_declares_a_deleted_exchange_again(env: &Env) {
    let mut billing = env.service("billing");
    billing.on(Order::SUBMIT, |_: Order, _| async { ok() });
    billing.declare().await.unwrap();
    let queue = env.broker_queue(billing.queue());
    Order::sample(1).submit(&env.bus).await.unwrap();
    env.transport()
        .delete_exchange(&env.order_exchange())
        .await
        .unwrap();
    // The binding died with the exchange: unroutable, but never "exchange does not exist".
    match Order::sample(2).submit(&env.bus).await {
        Ok(_) | Err(PublishError::Unroutable { .. }) => {}
        Err(other) => panic!("expected Ok or Unroutable, got {other:?}"),
    }
    billing.declare().await.unwrap();
    Order::sample(3).submit(&env.bus).await.unwrap();
    let mut ids = Vec::new();
    while ids.last() != Some(&3) {
        let message = env.take(&queue).await;
        ids.push(serde_json::from_slice::<Order>(&message.body).unwrap().id);
    }
    assert!(ids.starts_with(&[1]), "{ids:?}");
}

pub async fn running_service_declares_its_topology_again(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.topology_refresh(Duration::from_millis(200));
    billing.on(Order::SUBMIT, move |o: Order, _| {
        let rec = rec.clone();
        async move {
            rec.record(o.id);
            ok()
        }
    });
    let running = billing.start().await.unwrap();
    Order::sample(1).submit(&env.bus).await.unwrap();
    assert_eq!(seen.take(1).await, [1]);
    env.transport()
        .delete_exchange(&env.order_exchange())
        .await
        .unwrap();
    let deleted = tokio::time::Instant::now();
    let mut id = 2;
    loop {
        match Order::sample(id).submit(&env.bus).await {
            Ok(_) => break,
            Err(PublishError::Unroutable { .. }) => {}
            Err(other) => panic!("expected Ok or Unroutable, got {other:?}"),
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(1),
            "the service did not bind its queue again within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        id += 1;
    }
    assert_eq!(seen.take(1).await, [id]);
    running.shutdown().await.unwrap();
}
