//! A service whose queue is deleted from outside declares it again and goes on consuming, on
//! the in-memory broker and on RabbitMQ.

mod common;

use std::time::Duration;

use event_manager::Delivery;
use event_manager_examples::{ORDER, Order};

use common::{Env, recorder};

async fn service_queue_deleted_from_outside_is_declared_again(env: Env) {
    let (rec, mut seen) = recorder();
    let mut billing = env.service("billing");
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.on(Order::SUBMIT, move |order: Order, _: Delivery| {
        let rec = rec.clone();
        async move {
            rec.record(order.id);
            Ok(())
        }
    });
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory() {
    service_queue_deleted_from_outside_is_declared_again(Env::memory().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq() {
    service_queue_deleted_from_outside_is_declared_again(Env::rabbitmq().await).await;
}
