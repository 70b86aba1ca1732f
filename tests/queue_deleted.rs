//! A service whose queue is deleted from outside declares it again and goes on consuming, on
//! the in-memory broker and on RabbitMQ; so does one whose retry queue is deleted, without
//! its consumer of the other queue holding messages nobody reads.

mod common;

use std::time::Duration;

use event_manager::Delivery;
use event_manager_examples::{ORDER, Order};

use common::{Env, Records, recorder};

/// The billing service, taking orders and recording their ids.
fn recording_billing(env: &Env) -> (event_manager::Service, Records<u64>) {
    let (rec, seen) = recorder();
    let mut billing = env.service("billing");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.on(Order::SUBMIT, move |order: Order, _: Delivery| {
        let rec = rec.clone();
        async move {
            rec.record(order.id);
            Ok(())
        }
    });
    (billing, seen)
}

async fn service_queue_deleted_from_outside_is_declared_again(env: Env) {
    let (billing, mut seen) = recording_billing(&env);
    let queue = env.bus.topology().queue_name(billing.queue());
    let running = billing.start().await.unwrap();
    Order::sample(1).submit(&env.bus).await.unwrap();
    assert_eq!(seen.take(1).await, [1]);

    env.transport().delete_queue(&queue).await.unwrap();
    // The queue and its binding come back within a few seconds; until then a publish is
    // unroutable (an error, not a silent drop).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut id = 2;
    loop {
        match Order::sample(id).submit(&env.bus).await {
            Ok(_) => break,
            Err(event_manager::PublishError::Unroutable { .. }) => {}
            Err(other) => panic!("unexpected publish error: {other}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue was not declared again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        id += 1;
    }
    assert_eq!(seen.take(1).await, [id]);
    running.shutdown().await.unwrap();
    env.cleanup().await;
}

/// The service consumes its queue and `<queue>.retried` as one subscription. When the broker
/// cancels the second (deleted from outside), the consumer of the first used to stay
/// registered beside the new one, taking its share of the messages up to the prefetch and
/// holding them unread until shutdown.
async fn retry_queue_deleted_from_outside_leaves_nothing_held(env: Env) {
    let (mut billing, mut seen) = recording_billing(&env);
    billing.prefetch(10);
    let queue = env.bus.topology().queue_name(billing.queue());
    let retried = format!("{queue}.retried");
    let running = billing.start().await.unwrap();
    env.transport().delete_queue(&retried).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.transport().queue_len(&retried).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retry queue was not declared again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Consuming anew follows the declaration.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in 0..100 {
        Order::sample(id).submit(&env.bus).await.unwrap();
    }
    let mut ids = seen.take(100).await;
    ids.sort_unstable();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
    assert_eq!(env.transport().queue_len(&queue).await.unwrap(), 0);
    running.shutdown().await.unwrap();
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_queue_deleted_in_memory() {
    retry_queue_deleted_from_outside_leaves_nothing_held(Env::memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_queue_deleted_on_rabbitmq() {
    retry_queue_deleted_from_outside_leaves_nothing_held(Env::rabbitmq().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory() {
    service_queue_deleted_from_outside_is_declared_again(Env::memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq() {
    service_queue_deleted_from_outside_is_declared_again(Env::rabbitmq().await).await;
}
