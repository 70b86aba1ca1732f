//! Publishing on a real RabbitMQ under load: every publish is told its own fate.

mod common;

use event_manager::PublishError;
use event_manager_examples::{ORDER, Order};
use futures_util::{StreamExt, stream};

use common::Env;

/// Declares a service bound to `order.v1.submit` only (`order.v1.chargeback` stays
/// unroutable) and returns its queue's name on the broker.
async fn declare_billing(env: &Env) -> String {
    let mut billing = env.service("billing");
    billing.bind(ORDER, "order.v1.submit").unwrap();
    billing.on(Order::SUBMIT, |_: Order, _| async { Ok(()) });
    billing.declare().await.unwrap();
    env.bus.topology().queue_name(billing.queue())
}

/// 20 000 confirmed publishes with 1 000 in flight, every seventh to an event no queue is
/// bound to. A `basic.return` carries no delivery tag, so a library that trusts lapin's
/// pairing reports some routable publishes unroutable and drops some unroutable ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unroutable_publishes_are_each_reported_for_themselves() {
    let env = Env::rabbitmq().await;
    let queue = declare_billing(&env).await;

    let total = 20_000u64;
    let outcomes: Vec<(bool, Result<(), PublishError>)> = stream::iter(0..total)
        .map(|id| {
            let bus = &env.bus;
            async move {
                let order = Order::sample(id);
                let unroutable = id % 7 == 0;
                let result = if unroutable {
                    order.chargeback(bus).await.map(drop)
                } else {
                    order.submit(bus).await.map(drop)
                };
                (unroutable, result)
            }
        })
        .buffer_unordered(1000)
        .collect()
        .await;

    let mut routable_failed = 0;
    let mut unroutable_ok = 0;
    let mut other_errors = Vec::new();
    let mut routed = 0u64;
    for (unroutable, result) in outcomes {
        match (unroutable, result) {
            (false, Ok(())) => routed += 1,
            (true, Err(PublishError::Unroutable { .. })) => {}
            (false, Err(PublishError::Unroutable { .. })) => routable_failed += 1,
            (true, Ok(())) => unroutable_ok += 1,
            (_, Err(e)) => other_errors.push(e.to_string()),
        }
    }
    let in_queue = env.transport().queue_len(&queue).await.unwrap();
    env.cleanup().await;
    assert!(
        other_errors.is_empty(),
        "unexpected errors: {other_errors:?}"
    );
    assert_eq!(
        (routable_failed, unroutable_ok),
        (0, 0),
        "misreported: routable reported unroutable, unroutable reported confirmed"
    );
    assert_eq!(routed, total - total.div_ceil(7));
    assert_eq!(in_queue, routed, "every routable publish reached the queue");
}

/// A publish to an exchange that does not exist makes the broker close the publisher's
/// channel; only that publish fails (with `NotFound`), the others in flight on the same
/// channel are re-sent on a new one, with their message id, and confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_error_fails_only_the_publish_that_caused_it() {
    use event_manager::TopologyError;
    use event_manager::message::Message;

    let env = Env::rabbitmq().await;
    let queue = declare_billing(&env).await;
    let missing = format!("{}.no-such-exchange", env.namespace);

    let total = 2_000u64;
    let outcomes: Vec<(bool, Result<(), PublishError>)> = stream::iter(0..total)
        .map(|id| {
            let env = &env;
            let missing = &missing;
            async move {
                if id % 100 == 50 {
                    let message = Message {
                        exchange: missing.clone().into(),
                        routing_key: "order.v1.submit".into(),
                        body: b"{}".to_vec().into(),
                        properties: Default::default(),
                    };
                    (true, env.transport().publish(message).await)
                } else {
                    (false, Order::sample(id).submit(&env.bus).await.map(drop))
                }
            }
        })
        .buffer_unordered(500)
        .collect()
        .await;
    // Publishes in flight when the broker closed the channel are re-sent: some arrive twice
    // (at-least-once), always with their message id.
    let mut ids = std::collections::HashSet::new();
    let mut copies = 0u64;
    while let Some(incoming) = env.transport().get(&queue).await.unwrap() {
        ids.insert(incoming.message.properties.message_id.clone().unwrap());
        copies += 1;
        incoming.ack().await.unwrap();
    }
    env.cleanup().await;
    eprintln!("{copies} copies of {} distinct messages", ids.len());
    let mut routed = 0u64;
    for (to_missing, result) in outcomes {
        match (to_missing, result) {
            (true, Err(PublishError::Topology(TopologyError::NotFound { .. }))) => {}
            (false, Ok(())) => routed += 1,
            (to_missing, other) => {
                panic!("publish to the missing exchange {to_missing}: unexpected {other:?}")
            }
        }
    }
    assert_eq!(routed, total - total / 100);
    assert_eq!(ids.len() as u64, routed, "every confirmed publish arrived");
}

/// A queue at its length limit with `reject-publish` refuses a publish (a negative confirm),
/// as a quorum queue does while its leader moves to another node. The publisher sends the
/// refused message again, with its message id, until the queue takes it; a message refused
/// for longer than 15 s fails with `Nacked`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_is_sent_again_with_its_message_id() {
    use std::time::{Duration, Instant};

    use event_manager::message::{Message, Properties};
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable, ShortString};

    let env = Env::rabbitmq().await;
    let queue = env.raw_queue("refusing");
    let connection = lapin::Connection::connect(&common::amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    // A classic queue: it refuses exactly past its limit (a quorum queue only some time
    // after it went over it).
    let mut arguments = FieldTable::default();
    arguments.insert(ShortString::from("x-max-length"), AMQPValue::LongInt(1));
    arguments.insert(
        ShortString::from("x-overflow"),
        AMQPValue::LongString("reject-publish".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, arguments)
        .await
        .unwrap();
    let message = |id: &str| Message {
        // The default exchange routes to the queue named by the routing key.
        exchange: "".into(),
        routing_key: queue.clone().into(),
        body: b"{}".to_vec().into(),
        properties: Properties {
            message_id: Some(id.to_owned()),
            ..Default::default()
        },
    };

    env.transport().publish(message("first")).await.unwrap();
    let transport = env.transport().clone();
    let second = tokio::spawn({
        let message = message("second");
        async move { transport.publish(message).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    if second.is_finished() {
        panic!("the refused publish ended early: {:?}", second.await);
    }
    let first = env.take(&queue).await;
    assert_eq!(first.properties.message_id.as_deref(), Some("first"));
    tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("confirmed once the queue had room")
        .unwrap()
        .expect("the re-sent publish is confirmed");
    let again = env.take(&queue).await;
    assert_eq!(again.properties.message_id.as_deref(), Some("second"));

    // Full for good: refused for 15 s, then `Nacked`.
    env.transport().publish(message("third")).await.unwrap();
    let started = Instant::now();
    let refused = env.transport().publish(message("fourth")).await;
    let waited = started.elapsed();
    let _ = connection.close(200, "OK".into()).await;
    env.cleanup().await;
    assert!(
        matches!(refused, Err(PublishError::Nacked { .. })),
        "{refused:?}"
    );
    assert!(
        waited >= Duration::from_secs(10),
        "re-sent for a while before failing, not {waited:?}"
    );
}
