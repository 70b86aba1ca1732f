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
