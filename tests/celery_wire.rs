//! An exchange marked Celery-wire publishes its events as Celery task messages (protocol 2),
//! which a service of ours reads back; on the in-memory broker and on RabbitMQ.

mod common;

use std::time::Duration;

use event_manager::envelope::celery::{INSTANCE_KWARG, TASK_HEADER, TASK_ID_HEADER};
use event_manager::message::HeaderValue;
use event_manager::transport::QueueSpec;
use event_manager::{Bus, Delivery, Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A domain whose consumers are Celery workers.
const LEGACY: Exchange = Exchange::topic("legacy").celery();

/// A payment as the Python side defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = LEGACY, version = "1.0.0", events(settle))]
pub struct Payment {
    /// The payment id.
    pub id: u64,
    /// The amount.
    pub amount: f64,
}

async fn published_as_a_celery_task(bus: Bus) {
    let raw = event_manager::testing::transport(&bus);
    let queue = bus.topology().queue_name("celery_worker");
    raw.declare_queue(&QueueSpec::durable(&queue))
        .await
        .unwrap();
    let exchange = bus.topology().exchange_name(LEGACY);
    bus.topology().declare_exchange(LEGACY).await.unwrap();
    raw.bind(&queue, &exchange, &"legacy.*.settle".parse().unwrap())
        .await
        .unwrap();

    let published = Payment {
        id: 5,
        amount: 12.5,
    }
    .settle(&bus)
    .await
    .unwrap();
    let incoming = loop {
        if let Some(incoming) = raw.get(&queue).await.unwrap() {
            break incoming;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let message = incoming.message.clone();
    incoming.ack().await.unwrap();
    let p = &message.properties;
    let h = &p.headers;
    assert_eq!(h.get_str(TASK_HEADER), Some("legacy.v1.settle"));
    assert_eq!(
        h.get_str(TASK_ID_HEADER),
        Some(published.message_id.as_str())
    );
    assert_eq!(
        p.correlation_id.as_deref(),
        Some(published.message_id.as_str())
    );
    assert_eq!(
        published.message_id.len(),
        36,
        "a UUID: {}",
        published.message_id
    );
    assert_eq!(h.get_str("lang"), Some("py"));
    assert_eq!(h.get_str("root_id"), Some(published.message_id.as_str()));
    assert_eq!(h.get("parent_id"), Some(&HeaderValue::Void));
    assert_eq!(h.get_int("retries"), Some(0));
    assert_eq!(h.get_str("argsrepr"), Some("()"));
    assert!(h.get_str("kwargsrepr").unwrap().contains("12.5"));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.content_encoding.as_deref(), Some("utf-8"));
    let body: serde_json::Value = serde_json::from_slice(&message.body).unwrap();
    assert_eq!(body[0], serde_json::json!([]));
    assert_eq!(
        body[1][INSTANCE_KWARG],
        serde_json::json!({"id": 5, "amount": 12.5})
    );
    assert_eq!(
        body[2],
        serde_json::json!({"callbacks": null, "errbacks": null, "chain": null, "chord": null})
    );
    raw.delete_queue(&queue).await.unwrap();

    // A service of ours reads it back.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut settle = bus.service("settlement");
    settle.on(Payment::SETTLE, move |p: Payment, d: Delivery| {
        let tx = tx.clone();
        async move {
            tx.send((p, d.message_id().map(str::to_owned))).ok();
            Ok(())
        }
    });
    let queues = settle.queues();
    let running = settle.start().await.unwrap();
    let sent = Payment { id: 6, amount: 1.0 }.settle(&bus).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, (Payment { id: 6, amount: 1.0 }, Some(sent.message_id)));
    running.shutdown().await.unwrap();
    queues.delete().await.unwrap();
    raw.delete_exchange(&exchange).await.unwrap();
}

#[tokio::test]
async fn in_memory() {
    published_as_a_celery_task(Bus::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rabbitmq() {
    let bus = Bus::connect(&common::amqp_url())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is required for this test: {e}"))
        .with_namespace(common::unique("celery"));
    published_as_a_celery_task(bus.clone()).await;
    bus.close().await;
}
