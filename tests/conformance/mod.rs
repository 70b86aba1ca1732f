//! The conformance suite: written once against the transport-neutral API, run on the
//! in-memory broker (`tests/memory.rs`) and on RabbitMQ (`tests/rabbitmq.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use event_manager::envelope::{self, ReceivedVersion};
use event_manager::transport::{QueueKind, QueueSpec};
use event_manager::{Delivery, Entity, HandlerError, PublishError, RetryPolicy, TopologyError};
use event_manager_examples::{ORDER, Order, OrderSubmittedV2};

use crate::common::{Env, recorder};

mod delivery;
pub use delivery::*;

/// Generates one `#[tokio::test]` per conformance case for the environment `$env`.
#[macro_export]
macro_rules! conformance_suite {
    ($env:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                use futures_util::FutureExt;
                let env = $env.await;
                let result = std::panic::AssertUnwindSafe(conformance::$case(&env))
                    .catch_unwind()
                    .await;
                env.cleanup().await;
                if let Err(panic) = result {
                    std::panic::resume_unwind(panic);
                }
            }
        )*
    };
}

/// Every case, for the macro: on RabbitMQ (`tests/rabbitmq.rs`).
#[macro_export]
macro_rules! all_conformance_cases {
    ($env:expr) => {
        $crate::shared_conformance_cases!($env);
        $crate::with_harnessed_cases!(conformance_suite!($env;));
    };
}

/// The cases both suites run as they are. The in-memory suite (`tests/memory.rs`) runs its
/// own versions of the others ([`with_harnessed_cases`]), written with the test harness
/// (`event_manager::testing::Harness`), with the same assertions.
#[macro_export]
macro_rules! shared_conformance_cases {
    ($env:expr) => {
        $crate::conformance_suite!($env;
            round_trip_through_wildcard_binding,
            competing_consumers_share_a_queue,
            unroutable_publish_is_an_error,
            headerless_message_is_accepted,
            celery_task_messages_are_handled_beside_native_ones,
            redeclaring_is_idempotent,
            argument_mismatch_is_a_named_error,
            several_callbacks_for_one_event_all_run,
            malformed_body_is_dead_lettered_at_once,
            oversized_body_is_dead_lettered_at_once,
            routing_key_without_callback_is_dead_lettered,
            panicking_callback_does_not_stop_the_consumer,
            upcaster_handles_v1_and_v2_in_one_callback,
            newer_minor_with_extra_field_is_accepted,
            headerless_message_is_versioned_by_routing_key,
            shutdown_lets_running_callbacks_finish,
            quorum_is_the_default_and_classic_opt_in,
            past_the_delivery_limit_a_delivery_is_dead_lettered,
            wrong_version_header_is_dead_lettered_at_once,
            namespaces_keep_tenants_apart,
            every_callback_runs_to_completion_when_one_fails,
            panicking_decoder_is_dead_lettered_and_the_consumer_keeps_running,
            panicking_upcaster_is_dead_lettered_and_the_consumer_keeps_running,
            callback_panicking_before_its_future_is_retried,
            replay_ends_even_when_the_replayed_messages_fail_again,
            huge_attempts_header_means_the_attempts_are_used_up,
            deleted_dead_letter_queue_is_declared_again,
            publish_declares_a_deleted_exchange_again,
            running_service_declares_its_topology_again,
            over_long_names_and_ids_are_refused_alike,
            oversized_headers_are_refused_alike,
            a_dropped_delivery_goes_back_to_its_queue,
            a_requeued_message_keeps_its_expiry,
            declarations_rabbitmq_refuses_are_refused_alike,
            headers_come_back_equal_to_what_was_sent,
            requeued_messages_come_back_in_the_order_rabbitmq_gives,
            per_message_expiration_applies_alike,
        );
    };
}

/// Calls `$callback!(<args> <cases>)` with the cases `tests/memory.rs` runs through the test
/// harness: there, `harnessed::<case>` must exist for each (a missing one fails to compile).
#[macro_export]
macro_rules! with_harnessed_cases {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback!($($args)*
            fan_out_to_two_services,
            failing_twice_then_succeeding_is_handled_once_on_attempt_3,
            always_failing_callback_ends_in_the_dead_letter_queue,
            permanent_error_is_dead_lettered_at_once,
            replayed_dead_letter_is_delivered_again,
            v1_only_consumer_dead_letters_v2_as_unsupported_version,
            message_ids_are_stable_across_retries,
            dual_published_event_is_handled_once_per_service,
        );
    };
}

fn ok() -> Result<(), HandlerError> {
    Ok(())
}

pub async fn round_trip_through_wildcard_binding(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.on(Order::SUBMIT, move |order: Order, ctx: Delivery| {
        let rec = rec.clone();
        async move {
            rec.record((order, ctx.routing_key().to_owned(), ctx.attempt()));
            ok()
        }
    });
    let running = billing.start().await.unwrap();
    let order = Order::sample(1);
    let published = order.submit(&env.bus).await.unwrap();
    assert_eq!(published.routing_key, "order.v1.submit");
    assert!(!published.message_id.is_empty());
    let got = seen.take(1).await;
    assert_eq!(got[0], (order, "order.v1.submit".to_owned(), 1));
    running.shutdown().await.unwrap();
}

pub async fn fan_out_to_two_services(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.bind(ORDER, "order.*.submit").unwrap();
    let r = rec.clone();
    billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
        let r = r.clone();
        async move {
            r.record(format!("billing {} {}", ctx.routing_key(), o.id));
            ok()
        }
    });
    let mut logistics = env.service("logistics");
    logistics.bind(ORDER, "order.#").unwrap();
    for event in [Order::SUBMIT, Order::CHARGEBACK] {
        let r = rec.clone();
        logistics.on(event, move |o: Order, ctx: Delivery| {
            let r = r.clone();
            async move {
                r.record(format!("logistics {} {}", ctx.routing_key(), o.id));
                ok()
            }
        });
    }
    let b = billing.start().await.unwrap();
    let l = logistics.start().await.unwrap();
    Order::sample(7).submit(&env.bus).await.unwrap();
    Order::sample(7).chargeback(&env.bus).await.unwrap();
    let mut got = seen.take(3).await;
    got.sort();
    assert_eq!(
        got,
        [
            "billing order.v1.submit 7",
            "logistics order.v1.chargeback 7",
            "logistics order.v1.submit 7"
        ]
    );
    seen.quiet(Duration::from_millis(200)).await;
    b.shutdown().await.unwrap();
    l.shutdown().await.unwrap();
}

pub async fn competing_consumers_share_a_queue(env: &Env) {
    let queue = env.queue("shared");
    let (rec, mut seen) = recorder();
    let mut running = Vec::new();
    for worker in 0..2u32 {
        let mut service = env.bus.service(queue.clone());
        service.retry(crate::common::test_policy());
        service.bind(ORDER, "order.*.submit").unwrap();
        service.prefetch(1).concurrency(1);
        let r = rec.clone();
        service.on(Order::SUBMIT, move |o: Order, _| {
            let r = r.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                r.record((worker, o.id));
                ok()
            }
        });
        running.push(service.start().await.unwrap());
    }
    for id in 0..20 {
        Order::sample(id).submit(&env.bus).await.unwrap();
    }
    let got = seen.take(20).await;
    let mut ids: Vec<u64> = got.iter().map(|(_, id)| *id).collect();
    ids.sort();
    assert_eq!(
        ids,
        (0..20).collect::<Vec<_>>(),
        "each message exactly once"
    );
    for worker in 0..2 {
        assert!(
            got.iter().any(|(w, _)| *w == worker),
            "worker {worker} got nothing: {got:?}"
        );
    }
    seen.quiet(Duration::from_millis(200)).await;
    for r in running {
        r.shutdown().await.unwrap();
    }
}

pub async fn unroutable_publish_is_an_error(env: &Env) {
    // No queue is bound at all in this namespace.
    let err = Order::sample(1).chargeback(&env.bus).await.unwrap_err();
    match err {
        PublishError::Unroutable {
            exchange,
            routing_key,
        } => {
            assert_eq!(exchange, env.order_exchange());
            assert_eq!(routing_key, "order.v1.chargeback");
        }
        other => panic!("expected Unroutable, got {other:?}"),
    }
    // A queue bound to submit only does not make chargeback routable.
    let mut billing = env.service("billing");
    billing.on(Order::SUBMIT, |_: Order, _| async { ok() });
    let running = billing.start().await.unwrap();
    assert!(matches!(
        Order::sample(1).chargeback(&env.bus).await,
        Err(PublishError::Unroutable { .. })
    ));
    Order::sample(1).submit(&env.bus).await.unwrap();
    running.shutdown().await.unwrap();
}

/// A message of `{}` to `queue` through the default exchange, without headers.
fn to_queue(queue: &str) -> event_manager::message::Message {
    event_manager::message::Message {
        exchange: "".into(),
        routing_key: queue.to_owned().into(),
        body: Vec::from(&b"{}"[..]).into(),
        properties: Default::default(),
    }
}

/// AMQP carries names and ids as short strings of at most 255 bytes. A longer one is a named
/// error on both transports, before anything is sent: RabbitMQ's transport cut them before,
/// so an unroutable publish with a long message id came back `Ok` (its return no longer
/// matched) and the wait queues of a long service name could share one cut name.
pub async fn over_long_names_and_ids_are_refused_alike(env: &Env) {
    use event_manager::PublishOptions;
    let long_id = PublishOptions {
        message_id: Some("i".repeat(300)),
        ..Default::default()
    };
    // Unroutable (nothing is bound in this namespace) and routable alike.
    let unroutable = env
        .bus
        .publish_with(Order::CHARGEBACK, &Order::sample(1), &long_id)
        .await;
    assert!(
        matches!(&unroutable, Err(PublishError::TooLong { field, len: 300, .. }) if field == "message id"),
        "{unroutable:?}"
    );
    let mut billing = env.service("billing");
    billing.on(Order::SUBMIT, |_: Order, _| async { ok() });
    let running = billing.start().await.unwrap();
    let routable = env
        .bus
        .publish_with(Order::SUBMIT, &Order::sample(2), &long_id)
        .await;
    assert!(
        matches!(&routable, Err(PublishError::TooLong { len: 300, .. })),
        "{routable:?}"
    );
    running.shutdown().await.unwrap();

    // A service whose wait queues would get names over 255 bytes fails to start, naming
    // the queue, before it declares anything.
    // A name whose queue on the broker, and its `.dlq` and `.retried` queues, fit in 255
    // bytes, but not its wait queues (`.wait.50ms`). The length depends on the test's
    // namespace, which holds the process id: a fixed length failed with short ones.
    let base = "s".repeat(255 - ".retried".len() - env.broker_queue("").len());
    let mut long = env.service(&base);
    long.on(Order::SUBMIT, |_: Order, _| async { ok() });
    let queue = long.queue().to_owned();
    assert!(queue.len() <= 255, "the service queue itself fits");
    match long.start().await {
        Err(event_manager::ConsumeError::Config { reason, .. }) => {
            assert!(
                reason.contains(".wait.") && reason.contains("at most 255"),
                "{reason}"
            );
        }
        other => panic!("expected a config error, got {:?}", other.map(|_| ())),
    }
    let declared = env.transport().queue_len(&queue).await;
    assert!(
        matches!(&declared, Err(TopologyError::NotFound { .. })),
        "{declared:?}"
    );

    // A header name nested in a table is a short string too.
    let mut message = to_queue(&queue);
    message.properties.headers.insert(
        "outer",
        event_manager::message::HeaderValue::Array(vec![
            event_manager::message::HeaderValue::Table(vec![(
                "n".repeat(256),
                event_manager::message::HeaderValue::Int(1),
            )]),
        ]),
    );
    let nested = env.transport().publish(message).await;
    assert!(
        matches!(&nested, Err(PublishError::TooLong { field, len: 256, .. }) if field.starts_with("header name `nnn")),
        "{nested:?}"
    );
    // A table naming an entry twice is refused alike: an AMQP field table holds a name once.
    let mut message = to_queue(&queue);
    let entry = |v| {
        (
            "twice".to_owned(),
            event_manager::message::HeaderValue::Int(v),
        )
    };
    message.properties.headers.insert(
        "table",
        event_manager::message::HeaderValue::Table(vec![entry(1), entry(2)]),
    );
    let twice = env.transport().publish(message).await;
    assert!(
        matches!(&twice, Err(PublishError::DuplicateHeader { name, .. }) if name == "twice"),
        "{twice:?}"
    );

    // The transport refuses such a name itself.
    let name = "q".repeat(256);
    let refused = env
        .transport()
        .declare_queue(&QueueSpec::durable(&name))
        .await;
    assert!(
        matches!(&refused, Err(TopologyError::NameTooLong { len: 256, .. })),
        "{refused:?}"
    );
}

/// Headers that do not fit in one AMQP frame (128 KiB, RabbitMQ's default `frame_max`) are a
/// named error on both transports, nothing sent; the in-memory broker used to take them, so
/// a test passed with a message RabbitMQ refuses.
pub async fn oversized_headers_are_refused_alike(env: &Env) {
    use event_manager::message::HeaderValue;
    let queue = env.raw_queue("big_headers");
    env.transport()
        .declare_queue(&QueueSpec::durable(&queue))
        .await
        .unwrap();
    let message = |header_bytes: usize| {
        let mut message = to_queue(&queue);
        message
            .properties
            .headers
            .insert("big", HeaderValue::from("h".repeat(header_bytes)));
        message
    };
    let refused = env.transport().publish(message(140_000)).await;
    assert!(
        matches!(&refused, Err(PublishError::HeadersTooLarge { size, limit: 131_072, .. }) if *size > 140_000),
        "{refused:?}"
    );
    env.transport().publish(message(100_000)).await.unwrap();
    assert_eq!(env.transport().queue_len(&queue).await.unwrap(), 1);
}

/// A message's own time to live (its `expiration` property) applies on both transports: it
/// expires and is dead-lettered without it. An expiration that is not a number of
/// milliseconds is refused before anything is sent; RabbitMQ's transport re-sent it 20
/// times (the broker closing the channel each time) before failing, and the in-memory broker
/// took it and ignored the property.
pub async fn per_message_expiration_applies_alike(env: &Env) {
    use event_manager::transport::DeadLetterTarget;
    let (queue, target) = (env.raw_queue("expiring"), env.raw_queue("expired"));
    let transport = env.transport();
    transport
        .declare_queue(&QueueSpec::durable(&target))
        .await
        .unwrap();
    let mut spec = QueueSpec::durable(&queue);
    spec.dead_letter = Some(DeadLetterTarget {
        exchange: String::new(),
        routing_key: Some(target.clone()),
        at_least_once: false,
    });
    transport.declare_queue(&spec).await.unwrap();
    let mut bad = to_queue(&queue);
    bad.properties.expiration = Some("abc".into());
    let refused = transport.publish(bad).await;
    assert!(
        matches!(&refused, Err(PublishError::InvalidExpiration { expiration, .. }) if expiration == "abc"),
        "{refused:?}"
    );
    let mut short = to_queue(&queue);
    short.properties.expiration = Some("100".into());
    transport.publish(short).await.unwrap();
    let dead = env.take(&target).await;
    assert_eq!(dead.properties.expiration, None);
    assert_eq!(
        dead.properties.headers.get_str("x-first-death-reason"),
        Some("expired")
    );
    assert_eq!(transport.queue_len(&queue).await.unwrap(), 0);
}

/// Messages handed back come again in the order RabbitMQ (3.10) gives them: a classic queue
/// puts each back at its place; a quorum queue serves them first, in the order they came
/// back, when it has a delivery limit (as service queues have), and behind the messages
/// ready without one. The in-memory broker put each at the head, so that two handed back
/// came in reverse order.
pub async fn requeued_messages_come_back_in_the_order_rabbitmq_gives(env: &Env) {
    for (kind, limit) in [
        (QueueKind::Classic, None),
        (QueueKind::Quorum, None),
        (QueueKind::Quorum, Some(10)),
    ] {
        let name = format!("requeue_order_{kind:?}_{}", limit.is_some()).to_lowercase();
        let queue = env.raw_queue(&name);
        let transport = env.transport();
        let mut spec = QueueSpec::durable(&queue);
        spec.kind = kind;
        spec.delivery_limit = limit;
        transport.declare_queue(&spec).await.unwrap();
        for i in 0..4 {
            let mut message = to_queue(&queue);
            message.body = i.to_string().into_bytes().into();
            transport.publish(message).await.unwrap();
        }
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(env.get_within(&queue).await);
        }
        let first = taken.remove(0);
        let third = taken.remove(1);
        let second = taken.remove(0);
        first.reject(true).await.unwrap();
        third.reject(true).await.unwrap();
        second.reject(true).await.unwrap();
        let mut order = Vec::new();
        for _ in 0..4 {
            let incoming = env.get_within(&queue).await;
            order.push(String::from_utf8_lossy(&incoming.message.body).into_owned());
            incoming.ack().await.unwrap();
        }
        let expected = match (kind, limit) {
            (QueueKind::Classic, _) => ["0", "1", "2", "3"],
            (QueueKind::Quorum, Some(_)) => ["0", "2", "1", "3"],
            (QueueKind::Quorum, None) => ["3", "0", "2", "1"],
        };
        assert_eq!(order, expected, "{kind:?}, delivery limit {limit:?}");
    }
}

/// Headers, nested tables included, come back equal to what was sent, though RabbitMQ hands
/// them back sorted by name: a test comparing them passed in memory and failed on RabbitMQ.
pub async fn headers_come_back_equal_to_what_was_sent(env: &Env) {
    use event_manager::message::HeaderValue;
    let queue = env.raw_queue("header_order");
    let transport = env.transport();
    transport
        .declare_queue(&QueueSpec::durable(&queue))
        .await
        .unwrap();
    let mut sent = to_queue(&queue);
    sent.properties.headers.insert("zulu", "last");
    sent.properties.headers.insert(
        "alpha",
        HeaderValue::Table(vec![
            ("yankee".to_owned(), HeaderValue::Int(1)),
            ("bravo".to_owned(), HeaderValue::Bool(true)),
        ]),
    );
    sent.properties.headers.insert("mike", HeaderValue::Int(7));
    transport.publish(sent.clone()).await.unwrap();
    let got = env.take(&queue).await;
    assert_eq!(got.properties.headers, sent.properties.headers);
    assert_eq!(got.body, sent.body);
}

/// Declarations RabbitMQ refuses are refused in memory too, with the same error: a quorum
/// queue that is not durable, and names in the reserved `amq.` namespace. The in-memory
/// broker took them, so a test passed with a topology RabbitMQ refuses.
pub async fn declarations_rabbitmq_refuses_are_refused_alike(env: &Env) {
    let transport = env.transport();
    let refused = |result: Result<(), TopologyError>, what: &str| match result {
        Err(TopologyError::Refused { detail, .. }) => detail,
        other => panic!("{what}: {other:?}"),
    };
    let mut transient_quorum = QueueSpec::durable(env.raw_queue("transient_quorum"));
    transient_quorum.kind = QueueKind::Quorum;
    transient_quorum.durable = false;
    let detail = refused(
        transport.declare_queue(&transient_quorum).await,
        "a transient quorum queue",
    );
    assert!(detail.contains("non-durable"), "{detail}");
    let reserved = QueueSpec::durable(format!("amq.{}", env.raw_queue("reserved")));
    let detail = refused(transport.declare_queue(&reserved).await, "an amq. queue");
    assert!(detail.contains("reserved prefix"), "{detail}");
    let exchange = format!("amq.{}", env.raw_queue("x"));
    let detail = refused(
        transport.declare_exchange(&exchange, true).await,
        "an amq. exchange",
    );
    assert!(detail.contains("reserved prefix"), "{detail}");
    let detail = refused(
        transport.declare_exchange("", true).await,
        "the default exchange",
    );
    assert!(detail.contains("default exchange"), "{detail}");
    // The predeclared topic exchange may be declared; nothing is bound to the default one.
    transport.declare_exchange("amq.topic", true).await.unwrap();
    let queue = env.raw_queue("plain_for_default");
    transport
        .declare_queue(&QueueSpec::durable(&queue))
        .await
        .unwrap();
    let pattern = event_manager::BindingPattern::parse("order.#").unwrap();
    let detail = refused(
        transport.bind(&queue, "", &pattern).await,
        "a binding to the default exchange",
    );
    assert!(detail.contains("default exchange"), "{detail}");
}

/// A message handed back after its time to live is dead-lettered as expired: RabbitMQ keeps
/// a message's expiry across requeues. The in-memory broker gave a requeued message a new
/// identity, which its expiry timer never found: it never expired.
pub async fn a_requeued_message_keeps_its_expiry(env: &Env) {
    use event_manager::transport::DeadLetterTarget;
    let (source, target) = (env.raw_queue("ttl_source"), env.raw_queue("ttl_target"));
    let transport = env.transport();
    transport
        .declare_queue(&QueueSpec::durable(&target))
        .await
        .unwrap();
    let mut spec = QueueSpec::durable(&source);
    spec.message_ttl = Some(Duration::from_millis(300));
    spec.dead_letter = Some(DeadLetterTarget {
        exchange: String::new(),
        routing_key: Some(target.clone()),
        at_least_once: false,
    });
    transport.declare_queue(&spec).await.unwrap();
    transport.publish(to_queue(&source)).await.unwrap();
    let incoming = env.get_within(&source).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    incoming.reject(true).await.unwrap();
    let dead = env.take(&target).await;
    assert_eq!(
        dead.properties.headers.get_str("x-first-death-reason"),
        Some("expired"),
        "{:?}",
        dead.properties.headers
    );
    assert_eq!(transport.queue_len(&source).await.unwrap(), 0);
}

/// A Celery task message from a Python `event_manager` (protocol 2, as Celery 5.7 sends it)
/// and one of ours on the same queue: both handled, the Celery one by its task id.
pub async fn celery_task_messages_are_handled_beside_native_ones(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
        let rec = rec.clone();
        async move {
            rec.record((o.id, ctx.message_id().map(str::to_owned)));
            ok()
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    let task_id = "2f0c2a3e-5b4e-4d6a-9c1e-3f7a8b9c0d1e";
    let body = br#"[[], {"instance": {"id": 31, "customer": "py", "lines": []}}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
    let headers = [
        ("lang", "py"),
        ("task", "order.v1.submit"),
        ("id", task_id),
        ("root_id", task_id),
        ("argsrepr", "()"),
        ("kwargsrepr", "{'instance': {...}}"),
        ("origin", "gen42@python"),
    ];
    env.publish_raw("order.v1.submit", body, &headers)
        .await
        .unwrap();
    Order::sample(32).submit(&env.bus).await.unwrap();
    let mut got = seen.take(2).await;
    got.sort();
    assert_eq!(got[0], (31, Some(task_id.to_owned())));
    assert_eq!(got[1].0, 32);
    // A Celery task message without the `instance` argument cannot be read: dead-lettered.
    let bad = br#"[[], {"order": {"id": 33}}, {}]"#;
    env.publish_raw(
        "order.v1.submit",
        bad,
        &[("task", "order.v1.submit"), ("id", "x")],
    )
    .await
    .unwrap();
    let dead = env.take(&env.dlq(&queue)).await;
    assert_eq!(
        dead.properties
            .headers
            .get_str(envelope::DEAD_LETTER_KIND_HEADER),
        Some("undecodable")
    );
    running.shutdown().await.unwrap();
}

pub async fn headerless_message_is_accepted(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
        let rec = rec.clone();
        async move {
            rec.record((
                o.id,
                ctx.version().clone(),
                ctx.message_id().map(str::to_owned),
            ));
            ok()
        }
    });
    let running = billing.start().await.unwrap();
    let body = br#"{"id": 99, "customer": "py", "lines": []}"#;
    env.publish_raw("order.v1.submit", body, &[]).await.unwrap();
    let got = seen.take(1).await;
    // A foreign publisher that set no message id: no id, rather than an empty one that would
    // make every such message a duplicate of the first.
    assert_eq!(got[0], (99, ReceivedVersion::Major(1), None));
    running.shutdown().await.unwrap();
}

pub async fn redeclaring_is_idempotent(env: &Env) {
    for _ in 0..2 {
        let mut billing = env.bus.service(env.queue("billing"));
        billing.retry(crate::common::test_policy());
        billing.bind(ORDER, "order.*.submit").unwrap();
        billing.bind(ORDER, "order.*.submit").unwrap();
        billing.on(Order::SUBMIT, |_: Order, _| async { ok() });
        billing.start().await.unwrap().shutdown().await.unwrap();
    }
    let spec = QueueSpec::durable(env.raw_queue("plain"));
    env.transport().declare_queue(&spec).await.unwrap();
    env.transport().declare_queue(&spec).await.unwrap();
    let name = env.order_exchange();
    env.transport().declare_exchange(&name, true).await.unwrap();
    env.transport().declare_exchange(&name, true).await.unwrap();
}

pub async fn argument_mismatch_is_a_named_error(env: &Env) {
    let name = env.raw_queue("ttl");
    let mut spec = QueueSpec::durable(&name);
    spec.message_ttl = Some(Duration::from_secs(1));
    env.transport().declare_queue(&spec).await.unwrap();
    spec.message_ttl = Some(Duration::from_secs(2));
    let err = env.transport().declare_queue(&spec).await.unwrap_err();
    match &err {
        TopologyError::Mismatch {
            entity, argument, ..
        } => {
            assert_eq!(entity, &Entity::Queue(name.clone()), "{err}");
            assert_eq!(argument, "x-message-ttl");
        }
        other => panic!("expected Mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("x-message-ttl"));
    // The transport stays usable after the refusal.
    spec.message_ttl = Some(Duration::from_secs(1));
    env.transport().declare_queue(&spec).await.unwrap();

    let exchange = env.order_exchange();
    env.transport()
        .declare_exchange(&exchange, true)
        .await
        .unwrap();
    let err = env
        .transport()
        .declare_exchange(&exchange, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TopologyError::Mismatch { argument, .. } if argument == "durable"),
        "{err:?}"
    );
}

pub async fn several_callbacks_for_one_event_all_run(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    for name in ["first", "second"] {
        let r = rec.clone();
        billing.on(Order::SUBMIT, move |o: Order, _| {
            let r = r.clone();
            async move {
                r.record(format!("{name} {}", o.id));
                ok()
            }
        });
    }
    let running = billing.start().await.unwrap();
    Order::sample(3).submit(&env.bus).await.unwrap();
    let mut got = seen.take(2).await;
    got.sort();
    assert_eq!(got, ["first 3", "second 3"]);
    running.shutdown().await.unwrap();
}

pub async fn failing_twice_then_succeeding_is_handled_once_on_attempt_3(env: &Env) {
    let (rec, mut seen) = recorder();
    let calls = Arc::new(AtomicU32::new(0));
    let mut billing = env.service("billing");
    let c = calls.clone();
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
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    Order::sample(5).submit(&env.bus).await.unwrap();
    assert_eq!(seen.take(1).await, [(5, 3)]);
    seen.quiet(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let dlq = env.dlq(&queue);
    assert_eq!(env.transport().queue_len(&dlq).await.unwrap(), 0);
    running.shutdown().await.unwrap();
}

pub async fn always_failing_callback_ends_in_the_dead_letter_queue(env: &Env) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut billing = env.service("billing");
    let c = calls.clone();
    billing.on(Order::SUBMIT, move |_: Order, _| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::retry("card declined by the test"))
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    let published = Order::sample(6).submit(&env.bus).await.unwrap();
    let dead = env.take(&env.dlq(&queue)).await;
    let h = &dead.properties.headers;
    let reason = h.get_str(envelope::DEAD_LETTER_REASON_HEADER).unwrap();
    assert!(reason.contains("gave up after 3 attempt(s)"), "{reason}");
    assert_eq!(
        envelope::DeadLetterKind::of(&dead),
        Some(envelope::DeadLetterKind::HandlerFailed)
    );
    assert!(reason.contains("card declined by the test"), "{reason}");
    assert_eq!(h.get_int(envelope::ATTEMPTS_HEADER), Some(3));
    assert_eq!(
        h.get_str(envelope::ORIGINAL_EXCHANGE_HEADER),
        Some(env.order_exchange().as_str())
    );
    assert_eq!(
        h.get_str(envelope::ORIGINAL_ROUTING_KEY_HEADER),
        Some("order.v1.submit")
    );
    assert!(h.get_str(envelope::FAILED_AT_HEADER).is_some());
    assert_eq!(h.get_str(envelope::VERSION_HEADER), Some("1.2.0"));
    assert_eq!(
        dead.properties.message_id.as_deref(),
        Some(published.message_id.as_str())
    );
    let body: Order = serde_json::from_slice(&dead.body).unwrap();
    assert_eq!(body, Order::sample(6));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    running.shutdown().await.unwrap();
}

pub async fn permanent_error_is_dead_lettered_at_once(env: &Env) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut billing = env.service("billing");
    let c = calls.clone();
    billing.on(Order::SUBMIT, move |_: Order, _| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Err(HandlerError::permanent("customer is blocked"))
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    Order::sample(8).submit(&env.bus).await.unwrap();
    let dead = env.take(&env.dlq(&queue)).await;
    let h = &dead.properties.headers;
    assert!(
        h.get_str(envelope::DEAD_LETTER_REASON_HEADER)
            .unwrap()
            .contains("customer is blocked")
    );
    assert_eq!(
        envelope::DeadLetterKind::of(&dead),
        Some(envelope::DeadLetterKind::PermanentError)
    );
    assert_eq!(h.get_int(envelope::ATTEMPTS_HEADER), Some(1));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    running.shutdown().await.unwrap();
}

async fn never_called_service(
    env: &Env,
    bind: &str,
    max_body: Option<usize>,
) -> (String, event_manager::RunningService, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut billing = env.service("billing");
    billing.bind(ORDER, bind).unwrap();
    if let Some(limit) = max_body {
        billing.max_body_bytes(limit);
    }
    let c = calls.clone();
    billing.on(Order::SUBMIT, move |_: Order, _| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            ok()
        }
    });
    let queue = billing.queue().to_owned();
    (queue, billing.start().await.unwrap(), calls)
}

pub async fn malformed_body_is_dead_lettered_at_once(env: &Env) {
    let (queue, running, calls) = never_called_service(env, "order.*.submit", None).await;
    env.publish_raw("order.v1.submit", b"{not json", &[])
        .await
        .unwrap();
    env.publish_raw("order.v1.submit", br#"{"id": "not a number"}"#, &[])
        .await
        .unwrap();
    // Not UTF-8 (Latin-1 "é"), as a misconfigured producer might send.
    env.publish_raw(
        "order.v1.submit",
        b"{\"id\": 1, \"customer\": \"\xe9\"}",
        &[],
    )
    .await
    .unwrap();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let dead = env.take(&env.dlq(&queue)).await;
        let h = &dead.properties.headers;
        let reason = h.get_str(envelope::DEAD_LETTER_REASON_HEADER).unwrap();
        assert!(reason.contains("does not decode"), "{reason}");
        assert_eq!(
            envelope::DeadLetterKind::of(&dead),
            Some(envelope::DeadLetterKind::Undecodable)
        );
        assert_eq!(h.get_int(envelope::ATTEMPTS_HEADER), Some(1));
        reasons.push(reason.to_owned());
    }
    assert!(
        reasons.iter().any(|r| r.contains("not UTF-8")),
        "{reasons:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    running.shutdown().await.unwrap();
}

pub async fn oversized_body_is_dead_lettered_at_once(env: &Env) {
    let (queue, running, calls) = never_called_service(env, "order.*.submit", Some(64)).await;
    let order = Order {
        customer: "x".repeat(200),
        ..Order::sample(1)
    };
    order.submit(&env.bus).await.unwrap();
    let dead = env.take(&env.dlq(&queue)).await;
    let reason = dead
        .properties
        .headers
        .get_str(envelope::DEAD_LETTER_REASON_HEADER)
        .unwrap()
        .to_owned();
    assert!(reason.contains("exceeds the limit of 64 bytes"), "{reason}");
    assert_eq!(
        envelope::DeadLetterKind::of(&dead),
        Some(envelope::DeadLetterKind::TooLarge)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    running.shutdown().await.unwrap();
}

pub async fn routing_key_without_callback_is_dead_lettered(env: &Env) {
    let (queue, running, calls) = never_called_service(env, "order.#", None).await;
    Order::sample(2).chargeback(&env.bus).await.unwrap();
    let dead = env.take(&env.dlq(&queue)).await;
    let reason = dead
        .properties
        .headers
        .get_str(envelope::DEAD_LETTER_REASON_HEADER)
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("no callback for routing key `order.v1.chargeback`"),
        "{reason}"
    );
    assert_eq!(
        envelope::DeadLetterKind::of(&dead),
        Some(envelope::DeadLetterKind::NoCallback)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    running.shutdown().await.unwrap();
}

pub async fn panicking_callback_does_not_stop_the_consumer(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
        let rec = rec.clone();
        async move {
            if o.id == 13 && ctx.attempt() == 1 {
                panic!("unlucky order");
            }
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

pub async fn replayed_dead_letter_is_delivered_again(env: &Env) {
    let (rec, mut seen) = recorder();
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut billing = env.service("billing");
    billing.retry(RetryPolicy::no_retry());
    let f = fixed.clone();
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
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    Order::sample(21).submit(&env.bus).await.unwrap();
    let dlq = env.dlq(&queue);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.transport().queue_len(&dlq).await.unwrap() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fixed.store(true, Ordering::SeqCst);
    let moved = env
        .bus
        .service(queue.as_str())
        .queues()
        .replay_dead_letters(100)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    assert_eq!(seen.take(1).await, [(21, 1)]);
    assert_eq!(env.transport().queue_len(&dlq).await.unwrap(), 0);
    running.shutdown().await.unwrap();
}

/// What the upcasting billing service saw: id, currency, routing key, version.
type Upcasted = (u64, String, String, ReceivedVersion);

/// A billing service bound to `order.*.submit` with one v2 callback that also takes v1
/// through the `From<Order>` upcaster.
fn upcasting_billing(env: &Env) -> (event_manager::Service, crate::common::Records<Upcasted>) {
    let (rec, seen) = recorder();
    let mut billing = env.service("billing");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing
        .on(
            OrderSubmittedV2::SUBMIT,
            move |o: OrderSubmittedV2, ctx: Delivery| {
                let rec = rec.clone();
                async move {
                    let key = ctx.routing_key().to_owned();
                    rec.record((o.id, o.currency, key, ctx.version().clone()));
                    ok()
                }
            },
        )
        .upcast_from(Order::SUBMIT);
    (billing, seen)
}

pub async fn upcaster_handles_v1_and_v2_in_one_callback(env: &Env) {
    let (billing, mut seen) = upcasting_billing(env);
    let running = billing.start().await.unwrap();
    Order::sample(1).submit(&env.bus).await.unwrap();
    let v2 = OrderSubmittedV2 {
        currency: "USD".into(),
        ..Order::sample(2).into()
    };
    v2.submit(&env.bus).await.unwrap();
    let mut got: Vec<_> = seen
        .take(2)
        .await
        .into_iter()
        .map(|(id, currency, key, _)| (id, currency, key))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (1, "EUR".to_owned(), "order.v1.submit".to_owned()),
            (2, "USD".to_owned(), "order.v2.submit".to_owned())
        ]
    );
    running.shutdown().await.unwrap();
}

pub async fn v1_only_consumer_dead_letters_v2_as_unsupported_version(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("old_billing");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.on(Order::SUBMIT, move |o: Order, _| {
        let rec = rec.clone();
        async move {
            rec.record(o.id);
            ok()
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    let v2: OrderSubmittedV2 = Order::sample(4).into();
    v2.submit(&env.bus).await.unwrap();
    Order::sample(5).submit(&env.bus).await.unwrap();
    assert_eq!(seen.take(1).await, [5]);
    let dead = env.take(&env.dlq(&queue)).await;
    let h = &dead.properties.headers;
    let reason = h.get_str(envelope::DEAD_LETTER_REASON_HEADER).unwrap();
    assert!(reason.starts_with("unsupported version"), "{reason}");
    assert_eq!(
        envelope::DeadLetterKind::of(&dead),
        Some(envelope::DeadLetterKind::UnsupportedVersion)
    );
    assert!(reason.contains("order.v1.submit"), "{reason}");
    assert_eq!(h.get_int(envelope::ATTEMPTS_HEADER), Some(1));
    seen.quiet(Duration::from_millis(200)).await;
    running.shutdown().await.unwrap();
}

pub async fn newer_minor_with_extra_field_is_accepted(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
        let rec = rec.clone();
        async move {
            rec.record((o.id, ctx.version().clone()));
            ok()
        }
    });
    let running = billing.start().await.unwrap();
    let body = br#"{"id": 31, "customer": "c", "lines": [], "gift_wrap": true}"#;
    env.publish_raw(
        "order.v1.submit",
        body,
        &[(envelope::VERSION_HEADER, "1.4.0")],
    )
    .await
    .unwrap();
    assert_eq!(
        seen.take(1).await,
        [(31, ReceivedVersion::Full(semver::Version::new(1, 4, 0)))]
    );
    running.shutdown().await.unwrap();
}

pub async fn headerless_message_is_versioned_by_routing_key(env: &Env) {
    let (billing, mut seen) = upcasting_billing(env);
    let running = billing.start().await.unwrap();
    let v2 = br#"{"id": 41, "customer": "c", "lines": [], "currency": "CHF"}"#;
    env.publish_raw("order.v2.submit", v2, &[]).await.unwrap();
    let v1 = br#"{"id": 42, "customer": "c", "lines": []}"#;
    env.publish_raw("order.v1.submit", v1, &[]).await.unwrap();
    let mut got = seen.take(2).await;
    got.sort_by_key(|g| g.0);
    assert_eq!(
        got,
        [
            (
                41,
                "CHF".to_owned(),
                "order.v2.submit".to_owned(),
                ReceivedVersion::Major(2)
            ),
            (
                42,
                "EUR".to_owned(),
                "order.v1.submit".to_owned(),
                ReceivedVersion::Major(1)
            )
        ]
    );
    running.shutdown().await.unwrap();
}

pub async fn shutdown_lets_running_callbacks_finish(env: &Env) {
    let (rec, mut seen) = recorder();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Arc::new(std::sync::Mutex::new(Some(started_tx)));
    let mut billing = env.service("billing");
    billing.on(Order::SUBMIT, move |o: Order, _| {
        let (rec, started) = (rec.clone(), started_tx.clone());
        async move {
            if let Some(tx) = started.lock().unwrap().take() {
                let _ = tx.send(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            rec.record(o.id);
            ok()
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    Order::sample(51).submit(&env.bus).await.unwrap();
    started_rx.await.unwrap();
    running.shutdown().await.unwrap();
    assert_eq!(seen.take(1).await, [51]);
    // Acknowledged before the subscription closed: nothing left, nothing dead-lettered.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        env.transport()
            .queue_len(&env.broker_queue(&queue))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        env.transport().queue_len(&env.dlq(&queue)).await.unwrap(),
        0
    );
}

pub async fn message_ids_are_stable_across_retries(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
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
    let published = Order::sample(61).submit(&env.bus).await.unwrap();
    let got = seen.take(2).await;
    assert_eq!(
        got,
        [
            (published.message_id.clone(), 1),
            (published.message_id.clone(), 2)
        ]
    );
    running.shutdown().await.unwrap();
}

pub async fn dual_published_event_is_handled_once_per_service(env: &Env) {
    let (rec, mut seen) = recorder();
    // Old billing knows v1 only, and is bound to every major.
    let mut old = env.service("old_billing");
    old.bind(ORDER, "order.*.submit").unwrap();
    let r = rec.clone();
    old.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
        let r = r.clone();
        async move {
            r.record(format!("old {} {}", ctx.routing_key(), o.id));
            ok()
        }
    });
    // New billing takes v2, and v1 through the upcaster.
    let mut new = env.service("new_billing");
    new.bind(ORDER, "order.*.submit").unwrap();
    let r = rec.clone();
    new.on(
        OrderSubmittedV2::SUBMIT,
        move |o: OrderSubmittedV2, ctx: Delivery| {
            let r = r.clone();
            async move {
                r.record(format!("new {} {} {}", ctx.routing_key(), o.id, o.currency));
                ok()
            }
        },
    )
    .upcast_from(Order::SUBMIT);
    let old_queue = old.queue().to_owned();
    let new_queue = new.queue().to_owned();
    let (old, new) = (old.start().await.unwrap(), new.start().await.unwrap());

    let v1 = Order::sample(9);
    let v2 = OrderSubmittedV2 {
        currency: "USD".into(),
        ..v1.clone().into()
    };
    let published = env
        .bus
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
    let mut got = seen.take(2).await;
    got.sort();
    assert_eq!(got, ["new order.v2.submit 9 USD", "old order.v1.submit 9"]);
    seen.quiet(Duration::from_millis(300)).await;
    for queue in [old_queue, new_queue] {
        let dlq = env.dlq(&queue);
        assert_eq!(env.transport().queue_len(&dlq).await.unwrap(), 0, "{dlq}");
    }
    old.shutdown().await.unwrap();
    new.shutdown().await.unwrap();
}

pub async fn quorum_is_the_default_and_classic_opt_in(env: &Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("quorum_billing");
    billing.on(Order::SUBMIT, move |o: Order, _| {
        let rec = rec.clone();
        async move {
            rec.record(o.id);
            ok()
        }
    });
    let queue = billing.queue().to_owned();
    let running = billing.start().await.unwrap();
    Order::sample(71).submit(&env.bus).await.unwrap();
    assert_eq!(seen.take(1).await, [71]);
    running.shutdown().await.unwrap();
    // The queue exists as a quorum queue: declaring it classic is a named mismatch (RabbitMQ
    // names the first argument that differs, the in-memory broker the queue type).
    let err = env
        .transport()
        .declare_queue(&QueueSpec::durable(env.broker_queue(&queue)))
        .await
        .unwrap_err();
    assert!(matches!(&err, TopologyError::Mismatch { .. }), "{err:?}");
    let mut quorum = QueueSpec::durable(env.raw_queue("plain_quorum"));
    quorum.kind = QueueKind::Quorum;
    env.transport().declare_queue(&quorum).await.unwrap();
    let err = env
        .transport()
        .declare_queue(&QueueSpec::durable(quorum.name.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TopologyError::Mismatch { argument, .. } if argument == "x-queue-type"),
        "{err:?}"
    );
    // Classic is an opt-in: the service's queues are then classic.
    let mut classic = env.service("classic_billing");
    classic.queue_kind(QueueKind::Classic);
    classic.declare().await.unwrap();
    let queue = classic.queue().to_owned();
    env.transport()
        .declare_queue(&QueueSpec::durable(env.broker_queue(&queue)))
        .await
        .unwrap();
}

/// A delivery handed back unsettled more times than the delivery limit goes to the
/// dead-letter queue (RabbitMQ: `x-first-death-reason: delivery_limit`), not lost.
/// A delivery dropped unsettled, from `get` and from a subscription, goes back to its queue
/// at once, on both transports. On RabbitMQ it used to stay unacknowledged until its channel
/// closed: for a `get`, as long as the transport lived, and for a subscription, one place of
/// its prefetch taken for as long.
pub async fn a_dropped_delivery_goes_back_to_its_queue(env: &Env) {
    let mut billing = env.service("dropping_billing");
    billing.on(Order::SUBMIT, |_: Order, _| async { ok() });
    billing.declare().await.unwrap();
    let queue = env.broker_queue(billing.queue());
    Order::sample(81).submit(&env.bus).await.unwrap();
    drop(env.get_within(&queue).await);
    let again = env.get_within(&queue).await;
    assert!(again.redelivered);
    drop(again);
    let mut subscription = env.transport().subscribe(&queue, 1).await.unwrap();
    for round in 0..2 {
        let next = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the dropped delivery never came back"))
            .expect("a delivery");
        assert!(next.redelivered, "round {round}");
        if round == 1 {
            next.ack().await.unwrap();
        }
    }
    subscription.cancel().await;
    assert_eq!(env.transport().queue_len(&queue).await.unwrap(), 0);
}

pub async fn past_the_delivery_limit_a_delivery_is_dead_lettered(env: &Env) {
    let mut billing = env.service("limited_billing");
    billing.delivery_limit(2);
    billing.on(Order::SUBMIT, |_: Order, _| async { ok() });
    billing.declare().await.unwrap();
    let queue = env.broker_queue(billing.queue());
    Order::sample(72).submit(&env.bus).await.unwrap();
    // Three deliveries handed back: the third return is past the limit of 2.
    for returned in 1..=3 {
        let incoming = env.get_within(&queue).await;
        assert_eq!(incoming.redelivered, returned > 1, "delivery {returned}");
        incoming.reject(true).await.unwrap();
    }
    let dead = env.take(&env.dlq(billing.queue())).await;
    let letter_kind = envelope::DeadLetterKind::of(&dead);
    assert_eq!(
        letter_kind,
        Some(envelope::DeadLetterKind::DeliveryLimit),
        "{:?}",
        dead.properties.headers
    );
    assert_eq!(env.transport().queue_len(&queue).await.unwrap(), 0);
}

pub async fn wrong_version_header_is_dead_lettered_at_once(env: &Env) {
    let (queue, running, calls) = never_called_service(env, "order.*.submit", None).await;
    let body = br#"{"id": 1, "customer": "c", "lines": []}"#;
    env.publish_raw(
        "order.v1.submit",
        body,
        &[(envelope::VERSION_HEADER, "2.0.0")],
    )
    .await
    .unwrap();
    env.publish_raw(
        "order.v1.submit",
        body,
        &[(envelope::VERSION_HEADER, "latest")],
    )
    .await
    .unwrap();
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let dead = env.take(&env.dlq(&queue)).await;
        let h = &dead.properties.headers;
        assert_eq!(h.get_int(envelope::ATTEMPTS_HEADER), Some(1));
        assert_eq!(
            envelope::DeadLetterKind::of(&dead),
            Some(envelope::DeadLetterKind::BadEnvelope)
        );
        reasons.push(
            h.get_str(envelope::DEAD_LETTER_REASON_HEADER)
                .unwrap()
                .to_owned(),
        );
    }
    reasons.sort();
    assert!(reasons[1].contains("says major 2"), "{reasons:?}");
    assert!(
        reasons[0].contains("`latest` is not a semver version"),
        "{reasons:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    running.shutdown().await.unwrap();
}
