//! Migrating `order.v1.submit` to `order.v2.submit` without breaking anyone.
//!
//! The order service dual-publishes every order as v1 and v2 (one logical event, one message
//! id, confirmed as one operation). An old billing service knows only v1; a new billing
//! service takes v2, and v1 through an upcaster. Both are bound to `order.*.submit`, and each
//! handles every order exactly once: a service that receives both copies handles the highest
//! major it knows and acknowledges the other. Finally a legacy producer still publishing v1
//! only shows the upcaster at work. Runs on the in-memory broker, or on RabbitMQ when
//! `AMQP_URL` is set: `cargo run --example migration`.

use std::time::Duration;

use event_manager::{Bus, Delivery};
use event_manager_examples::{ORDER, Order, OrderSubmittedV2};
use tokio::sync::mpsc;

const ORDERS: u64 = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bus = Bus::from_env().await?;
    // A private namespace, so the example never mixes with other runs on a shared broker.
    let namespace = format!("migration-{}", std::process::id());
    let bus = bus.with_namespace(&namespace);
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();

    // Queue names carry the bus's namespace on the broker.
    let old_queue = "old_billing_order";
    let mut old_billing = bus.with_app_id("old-billing").service(old_queue);
    old_billing.bind(ORDER, "order.*.submit")?;
    let t = tx.clone();
    old_billing.on(Order::SUBMIT, move |order: Order, ctx: Delivery| {
        let t = t.clone();
        async move {
            t.send(format!(
                "old billing handled order {} from {} (v1 type)",
                order.id,
                ctx.routing_key()
            ))
            .ok();
            Ok(())
        }
    });

    let new_queue = "new_billing_order";
    let mut new_billing = bus.with_app_id("new-billing").service(new_queue);
    new_billing.bind(ORDER, "order.*.submit")?;
    let t = tx.clone();
    new_billing
        .on(
            OrderSubmittedV2::SUBMIT,
            move |order: OrderSubmittedV2, ctx: Delivery| {
                let t = t.clone();
                async move {
                    t.send(format!(
                        "new billing handled order {} from {} (v2 type, {})",
                        order.id,
                        ctx.routing_key(),
                        order.currency
                    ))
                    .ok();
                    Ok(())
                }
            },
        )
        .upcast_from(Order::SUBMIT);

    let old_billing = old_billing.start().await?;
    let new_billing = new_billing.start().await?;

    let producer = bus.with_app_id("order");
    for id in 1..=ORDERS {
        let v2 = OrderSubmittedV2 {
            currency: "USD".into(),
            ..Order::sample(id).into()
        };
        let v1 = Order::from(v2.clone());
        producer
            .publish_versions()
            .version(Order::SUBMIT, &v1)?
            .version(OrderSubmittedV2::SUBMIT, &v2)?
            .send()
            .await?;
        println!("order service dual-published order {id} as order.v1.submit and order.v2.submit");
    }
    let legacy = bus.with_app_id("legacy-order");
    Order::sample(100).submit(&legacy).await?;
    println!("legacy producer published order 100 as order.v1.submit only");

    // Each service handles each dual-published order once; new billing upcasts order 100.
    let expected = 2 * ORDERS as usize + 2;
    let mut lines = Vec::new();
    while lines.len() < expected {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(line)) => lines.push(line),
            _ => return Err(format!("expected {expected} handled events, got {lines:?}").into()),
        }
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        return Err(format!("an event was handled twice: {extra}").into());
    }
    lines.sort();
    for line in &lines {
        println!("{line}");
    }
    old_billing.shutdown().await?;
    new_billing.shutdown().await?;
    for queue in [old_queue, new_queue] {
        bus.service(queue).queues().delete().await?;
    }
    event_manager::testing::transport(&bus)
        .delete_exchange(&bus.topology().exchange_name(ORDER))
        .await?;
    bus.close().await;
    Ok(())
}
