//! Dead letters on a real RabbitMQ keep every header type and property of the original.

mod common;

use event_manager::envelope::{DEAD_LETTER_REASON_HEADER, ORIGINAL_EXPIRATION_HEADER};
use event_manager::message::{HeaderValue, Message, Properties};
use event_manager::{HandlerError, RetryPolicy};
use event_manager_examples::{ORDER, Order};

use common::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_keeps_every_header_type_and_property() {
    let env = Env::rabbitmq().await;
    let mut billing = env.service("billing");
    billing.retry(RetryPolicy::no_retry());
    billing.bind(ORDER, "order.v1.submit").unwrap();
    billing.on(Order::SUBMIT, |_: Order, _| async {
        Err(HandlerError::permanent(std::io::Error::other("refused")))
    });
    let queue = env.bus.topology().queue_name(billing.queue());
    let running = billing.start().await.unwrap();

    let mut properties = Properties {
        content_type: Some("application/json".into()),
        content_encoding: Some("utf-8".into()),
        message_id: Some("dl-fidelity-1".into()),
        reply_to: Some("replies".into()),
        expiration: Some("600000".into()),
        priority: Some(3),
        persistent: true,
        ..Properties::default()
    };
    let headers = [
        ("weight", HeaderValue::Float(2.5)),
        ("blob", HeaderValue::Bytes(vec![0u8, 159, 255].into())),
        (
            "tags",
            HeaderValue::Array(vec![HeaderValue::Str("a".into()), HeaderValue::Int(2)]),
        ),
        (
            "meta",
            HeaderValue::Table(vec![
                ("k".to_owned(), HeaderValue::Int(1)),
                ("t".to_owned(), HeaderValue::Timestamp(1_700_000_000)),
            ]),
        ),
        (
            "price",
            HeaderValue::Decimal {
                scale: 2,
                value: 1999,
            },
        ),
    ];
    for (name, value) in headers.clone() {
        properties.headers.insert(name, value);
    }
    env.bus.topology().declare_exchange(ORDER).await.unwrap();
    let body = serde_json::to_vec(&Order::sample(1)).unwrap();
    env.transport()
        .publish(Message {
            exchange: env.order_exchange().into(),
            routing_key: "order.v1.submit".into(),
            body: body.into(),
            properties,
        })
        .await
        .unwrap();

    let dead = env.take(&format!("{queue}.dlq")).await;
    running.shutdown().await.unwrap();
    env.cleanup().await;
    let p = &dead.properties;
    assert_eq!(p.message_id.as_deref(), Some("dl-fidelity-1"));
    assert_eq!(p.content_encoding.as_deref(), Some("utf-8"));
    assert_eq!(p.reply_to.as_deref(), Some("replies"));
    assert_eq!(p.priority, Some(3));
    assert_eq!(p.expiration, None, "a dead letter must not expire");
    assert_eq!(
        p.headers.get_str(ORIGINAL_EXPIRATION_HEADER),
        Some("600000")
    );
    assert!(p.headers.get_str(DEAD_LETTER_REASON_HEADER).is_some());
    for (name, value) in headers {
        assert_eq!(p.headers.get(name), Some(&value), "header {name}");
    }
}

/// A quorum wait queue with RabbitMQ's at-least-once dead-letter strategy is accepted by the
/// broker and hands its messages to the target queue when their TTL is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_wait_queue_with_at_least_once_dead_lettering_hands_messages_on() {
    use event_manager::transport::{DeadLetterTarget, QueueKind, QueueSpec};
    let env = Env::rabbitmq().await;
    let target = env.queue("target");
    let wait = env.queue("wait");
    let mut target_spec = QueueSpec::durable(&target);
    target_spec.kind = QueueKind::Quorum;
    env.transport().declare_queue(&target_spec).await.unwrap();
    let mut wait_spec = QueueSpec::durable(&wait);
    wait_spec.kind = QueueKind::Quorum;
    wait_spec.message_ttl = Some(std::time::Duration::from_millis(100));
    wait_spec.dead_letter = Some(DeadLetterTarget {
        exchange: String::new(),
        routing_key: Some(target.clone()),
        at_least_once: true,
    });
    env.transport().declare_queue(&wait_spec).await.unwrap();
    // Declaring again with the same arguments is a no-op.
    env.transport().declare_queue(&wait_spec).await.unwrap();
    env.transport()
        .publish(Message {
            exchange: "".into(),
            routing_key: wait.clone().into(),
            body: b"{}".to_vec().into(),
            properties: Properties {
                message_id: Some("alo-1".into()),
                ..Properties::default()
            },
        })
        .await
        .unwrap();
    let moved = env.take(&target).await;
    let _ = env.transport().delete_queue(&wait).await;
    let _ = env.transport().delete_queue(&target).await;
    env.cleanup().await;
    assert_eq!(moved.properties.message_id.as_deref(), Some("alo-1"));
}

/// A quorum service retries through quorum wait queues (at-least-once dead-lettering back to
/// the service queue) and dead-letters into a quorum dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_service_retries_through_at_least_once_wait_queues() {
    use event_manager::transport::QueueKind;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let env = Env::rabbitmq().await;
    let mut billing = env.service("quorum_retry");
    billing.queue_kind(QueueKind::Quorum);
    billing.bind(ORDER, "order.v1.submit").unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = calls.clone();
    billing.on(
        Order::SUBMIT,
        move |order: Order, ctx: event_manager::Delivery| {
            let seen = seen.clone();
            let tx = tx.clone();
            async move {
                if order.id == 2 || seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(HandlerError::retry(std::io::Error::other("not yet")));
                }
                tx.send((order.id, ctx.attempt())).ok();
                Ok(())
            }
        },
    );
    let queue = env.bus.topology().queue_name(billing.queue());
    let running = billing.start().await.unwrap();
    Order::sample(1).submit(&env.bus).await.unwrap();
    let handled = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await;
    // Order 2 always fails: three attempts, then the quorum dead-letter queue.
    Order::sample(2).submit(&env.bus).await.unwrap();
    let dead = env.take(&format!("{queue}.dlq")).await;
    running.shutdown().await.unwrap();
    env.cleanup().await;
    assert_eq!(
        handled.ok().flatten(),
        Some((1, 2)),
        "handled on the second attempt"
    );
    assert_eq!(dead.properties.headers.get_int("attempts"), Some(3));
}
