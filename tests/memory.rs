//! The conformance suite on the in-memory broker. Most cases run as written for both brokers;
//! those of `with_harnessed_cases!` run here in the versions below, written with the test
//! harness (`event_manager::testing::Harness`): the same assertions, without channels,
//! timeouts and polling ("nothing more arrives" becomes "the system is idle, and this is all
//! that arrived").

mod common;
mod conformance;

shared_conformance_cases!(common::Env::memory());
with_harnessed_cases!(harnessed_suite!());
// Their versions for any broker run on RabbitMQ.
with_harnessed_cases!(used_elsewhere!());

/// One test per harnessed case, calling `harnessed::<case>`.
#[macro_export]
macro_rules! harnessed_suite {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                harnessed::$case().await;
            }
        )*
    };
}

/// Marks conformance cases this suite does not run as used.
#[macro_export]
macro_rules! used_elsewhere {
    ($($case:ident),* $(,)?) => {
        const _: () = {
            let _ = ($(conformance::$case,)*);
        };
    };
}

/// The harnessed versions of conformance cases.
mod harnessed {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use event_manager::envelope::{self, DeadLetterKind};
    use event_manager::testing::Harness;
    use event_manager::{Delivery, HandlerError, RetryPolicy, Service};
    use event_manager_examples::{ORDER, Order, OrderSubmittedV2};

    use crate::common::test_policy;

    /// Long enough for anything these cases wait for, on a loaded machine.
    const IDLE: Duration = Duration::from_secs(10);

    /// What callbacks saw, in order.
    struct Seen<T>(Arc<Mutex<Vec<T>>>);

    impl<T> Clone for Seen<T> {
        fn clone(&self) -> Self {
            Self(self.0.clone())
        }
    }

    impl<T: Clone> Seen<T> {
        fn new() -> Self {
            Self(Arc::default())
        }

        fn record(&self, value: T) {
            self.0.lock().unwrap().push(value);
        }

        fn all(&self) -> Vec<T> {
            self.0.lock().unwrap().clone()
        }
    }

    /// A service on the harness with the fast retry policy of the conformance suite.
    fn service(harness: &Harness, queue: &str) -> Service {
        let mut service = harness.bus().service(queue);
        service.retry(test_policy());
        service
    }

    pub async fn fan_out_to_two_services() {
        let harness = Harness::new();
        let seen = Seen::new();
        let mut billing = service(&harness, "billing");
        billing.bind(ORDER, "order.*.submit").unwrap();
        let r = seen.clone();
        billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
            let r = r.clone();
            async move {
                r.record(format!("billing {} {}", ctx.routing_key(), o.id));
                Ok(())
            }
        });
        let mut logistics = service(&harness, "logistics");
        logistics.bind(ORDER, "order.#").unwrap();
        for event in [Order::SUBMIT, Order::CHARGEBACK] {
            let r = seen.clone();
            logistics.on(event, move |o: Order, ctx: Delivery| {
                let r = r.clone();
                async move {
                    r.record(format!("logistics {} {}", ctx.routing_key(), o.id));
                    Ok(())
                }
            });
        }
        let b = billing.start().await.unwrap();
        let l = logistics.start().await.unwrap();
        Order::sample(7).submit(harness.bus()).await.unwrap();
        Order::sample(7).chargeback(harness.bus()).await.unwrap();
        harness.idle(IDLE).await.unwrap();
        // Idle: these are all that arrived.
        let mut got = seen.all();
        got.sort();
        assert_eq!(
            got,
            [
                "billing order.v1.submit 7",
                "logistics order.v1.chargeback 7",
                "logistics order.v1.submit 7"
            ]
        );
        b.shutdown().await.unwrap();
        l.shutdown().await.unwrap();
    }

    pub async fn failing_twice_then_succeeding_is_handled_once_on_attempt_3() {
        let harness = Harness::new();
        let seen = Seen::new();
        let calls = Arc::new(AtomicU32::new(0));
        let mut billing = service(&harness, "billing");
        let (rec, c) = (seen.clone(), calls.clone());
        billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
            let (rec, c) = (rec.clone(), c.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < 2 {
                    return Err(HandlerError::retry("payment provider unavailable"));
                }
                rec.record((o.id, ctx.attempt()));
                Ok(())
            }
        });
        let running = billing.start().await.unwrap();
        Order::sample(5).submit(harness.bus()).await.unwrap();
        harness.idle(IDLE).await.unwrap();
        assert_eq!(seen.all(), [(5, 3)]);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let attempts: Vec<u32> = harness
            .retries("billing")
            .iter()
            .map(|r| r.attempts())
            .collect();
        assert_eq!(attempts, [1, 2]);
        assert!(harness.dead_letters("billing").await.is_empty());
        running.shutdown().await.unwrap();
    }

    pub async fn always_failing_callback_ends_in_the_dead_letter_queue() {
        let harness = Harness::new();
        let calls = Arc::new(AtomicU32::new(0));
        let mut billing = service(&harness, "billing");
        let c = calls.clone();
        billing.on(Order::SUBMIT, move |_: Order, _| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::retry("card declined by the test"))
            }
        });
        let running = billing.start().await.unwrap();
        let published = Order::sample(6).submit(harness.bus()).await.unwrap();
        harness.idle(IDLE).await.unwrap();
        let dead = harness.dead_letters("billing").await;
        assert_eq!(dead.len(), 1);
        let dead = &dead[0];
        let reason = dead.reason().unwrap();
        assert!(reason.contains("gave up after 3 attempt(s)"), "{reason}");
        assert_eq!(dead.kind(), Some(DeadLetterKind::HandlerFailed));
        assert!(reason.contains("card declined by the test"), "{reason}");
        assert_eq!(dead.attempts(), 3);
        assert_eq!(dead.exchange(), "order");
        assert_eq!(dead.routing_key(), "order.v1.submit");
        assert!(dead.failed_at().is_some());
        assert_eq!(
            dead.message()
                .properties
                .headers
                .get_str(envelope::VERSION_HEADER),
            Some("1.2.0")
        );
        assert_eq!(dead.message_id(), Some(published.message_id.as_str()));
        assert_eq!(dead.decode::<Order>().unwrap(), Order::sample(6));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        running.shutdown().await.unwrap();
    }

    pub async fn permanent_error_is_dead_lettered_at_once() {
        let harness = Harness::new();
        let calls = Arc::new(AtomicU32::new(0));
        let mut billing = service(&harness, "billing");
        let c = calls.clone();
        billing.on(Order::SUBMIT, move |_: Order, _| {
            let c = c.clone();
            async move {
                c.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::permanent("customer is blocked"))
            }
        });
        let running = billing.start().await.unwrap();
        Order::sample(8).submit(harness.bus()).await.unwrap();
        harness.idle(IDLE).await.unwrap();
        let dead = harness.dead_letters("billing").await;
        assert_eq!(dead.len(), 1);
        assert!(dead[0].reason().unwrap().contains("customer is blocked"));
        assert_eq!(dead[0].kind(), Some(DeadLetterKind::PermanentError));
        assert_eq!(dead[0].attempts(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(harness.retries("billing").is_empty());
        running.shutdown().await.unwrap();
    }

    pub async fn replayed_dead_letter_is_delivered_again() {
        let harness = Harness::new();
        let seen = Seen::new();
        let fixed = Arc::new(AtomicBool::new(false));
        let mut billing = service(&harness, "billing");
        billing.retry(RetryPolicy::no_retry());
        let (rec, f) = (seen.clone(), fixed.clone());
        billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
            let (rec, f) = (rec.clone(), f.clone());
            async move {
                if !f.load(Ordering::SeqCst) {
                    return Err(HandlerError::retry("bug not fixed yet"));
                }
                rec.record((o.id, ctx.attempt()));
                Ok(())
            }
        });
        let queues = billing.queues();
        let running = billing.start().await.unwrap();
        Order::sample(21).submit(harness.bus()).await.unwrap();
        harness.idle(IDLE).await.unwrap();
        assert_eq!(
            harness.dead_letters("billing").await.len(),
            1,
            "dead-lettered"
        );
        fixed.store(true, Ordering::SeqCst);
        let moved = queues.replay_dead_letters(100).await.unwrap();
        assert_eq!(moved, 1);
        harness.idle(IDLE).await.unwrap();
        assert_eq!(seen.all(), [(21, 1)]);
        assert!(harness.dead_letters("billing").await.is_empty());
        running.shutdown().await.unwrap();
    }

    pub async fn v1_only_consumer_dead_letters_v2_as_unsupported_version() {
        let harness = Harness::new();
        let seen = Seen::new();
        let mut billing = service(&harness, "old_billing");
        billing.bind(ORDER, "order.*.submit").unwrap();
        let rec = seen.clone();
        billing.on(Order::SUBMIT, move |o: Order, _| {
            let rec = rec.clone();
            async move {
                rec.record(o.id);
                Ok(())
            }
        });
        let running = billing.start().await.unwrap();
        let v2: OrderSubmittedV2 = Order::sample(4).into();
        v2.submit(harness.bus()).await.unwrap();
        Order::sample(5).submit(harness.bus()).await.unwrap();
        harness.idle(IDLE).await.unwrap();
        // Idle: only the v1 order reached the callback.
        assert_eq!(seen.all(), [5]);
        let dead = harness.dead_letters("old_billing").await;
        assert_eq!(dead.len(), 1);
        let reason = dead[0].reason().unwrap();
        assert!(reason.starts_with("unsupported version"), "{reason}");
        assert_eq!(dead[0].kind(), Some(DeadLetterKind::UnsupportedVersion));
        assert!(reason.contains("order.v1.submit"), "{reason}");
        assert_eq!(dead[0].attempts(), 1);
        running.shutdown().await.unwrap();
    }

    pub async fn message_ids_are_stable_across_retries() {
        let harness = Harness::new();
        let seen = Seen::new();
        let mut billing = service(&harness, "billing");
        let rec = seen.clone();
        billing.on(Order::SUBMIT, move |_: Order, ctx: Delivery| {
            let rec = rec.clone();
            async move {
                rec.record((
                    ctx.message_id().expect("our events carry an id").to_owned(),
                    ctx.attempt(),
                ));
                if ctx.attempt() < 2 {
                    return Err(HandlerError::retry("once more"));
                }
                Ok(())
            }
        });
        let running = billing.start().await.unwrap();
        let published = Order::sample(61).submit(harness.bus()).await.unwrap();
        harness.idle(IDLE).await.unwrap();
        assert_eq!(
            seen.all(),
            [
                (published.message_id.clone(), 1),
                (published.message_id.clone(), 2)
            ]
        );
        let retries = harness.retries("billing");
        assert_eq!(retries.len(), 1);
        assert_eq!(retries[0].message_id(), Some(published.message_id.as_str()));
        running.shutdown().await.unwrap();
    }

    pub async fn dual_published_event_is_handled_once_per_service() {
        let harness = Harness::new();
        let seen = Seen::new();
        // Old billing knows v1 only, and is bound to every major.
        let mut old = service(&harness, "old_billing");
        old.bind(ORDER, "order.*.submit").unwrap();
        let r = seen.clone();
        old.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
            let r = r.clone();
            async move {
                r.record(format!("old {} {}", ctx.routing_key(), o.id));
                Ok(())
            }
        });
        // New billing takes v2, and v1 through the upcaster.
        let mut new = service(&harness, "new_billing");
        new.bind(ORDER, "order.*.submit").unwrap();
        let r = seen.clone();
        new.on(
            OrderSubmittedV2::SUBMIT,
            move |o: OrderSubmittedV2, ctx: Delivery| {
                let r = r.clone();
                async move {
                    r.record(format!("new {} {} {}", ctx.routing_key(), o.id, o.currency));
                    Ok(())
                }
            },
        )
        .upcast_from(Order::SUBMIT);
        let (old, new) = (old.start().await.unwrap(), new.start().await.unwrap());

        let v1 = Order::sample(9);
        let v2 = OrderSubmittedV2 {
            currency: "USD".into(),
            ..v1.clone().into()
        };
        let published = harness
            .bus()
            .publish_versions()
            .version(Order::SUBMIT, &v1)
            .unwrap()
            .version(OrderSubmittedV2::SUBMIT, &v2)
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].message_id, published[1].message_id);
        harness.idle(IDLE).await.unwrap();
        // Idle: each service handled one copy, and nothing else arrived.
        let mut got = seen.all();
        got.sort();
        assert_eq!(got, ["new order.v2.submit 9 USD", "old order.v1.submit 9"]);
        for queue in ["old_billing", "new_billing"] {
            assert!(harness.dead_letters(queue).await.is_empty(), "{queue}");
        }
        old.shutdown().await.unwrap();
        new.shutdown().await.unwrap();
    }
}
