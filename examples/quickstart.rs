//! The e-commerce quickstart, in one process with the in-memory broker.
//!
//! An order service publishes `order.v1.submit` and `order.v1.chargeback`; a billing service
//! binds `order.*.submit`; a logistics service binds `order.#`. Run with
//! `cargo run --example quickstart`.

use std::convert::Infallible;

use event_manager::transport::InMemoryBroker;
use event_manager::{Bus, Delivery};
use event_manager_examples::{ORDER, Order};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = InMemoryBroker::new();
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<String>();

    // Billing: queue `billing_order`, bound to `order.*.submit`.
    let billing_bus = Bus::with_transport(broker.clone()).with_app_id("billing");
    let mut billing = billing_bus.service("billing_order");
    billing.bind(ORDER, "order.*.submit")?;
    let tx = seen_tx.clone();
    billing.on(Order::SUBMIT, move |order: Order, ctx: Delivery| {
        let tx = tx.clone();
        async move {
            let line = format!(
                "billing   received {} for order {} ({} cents)",
                ctx.routing_key(),
                order.id,
                order.total_cents()
            );
            tx.send(line).ok();
            Ok::<_, Infallible>(())
        }
    });

    // Logistics: queue `logistics_order`, bound to `order.#`.
    let logistics_bus = Bus::with_transport(broker.clone()).with_app_id("logistics");
    let mut logistics = logistics_bus.service("logistics_order");
    logistics.bind(ORDER, "order.#")?;
    for event in [Order::SUBMIT, Order::CHARGEBACK] {
        let tx = seen_tx.clone();
        logistics.on(event, move |order: Order, ctx: Delivery| {
            let tx = tx.clone();
            async move {
                let line = format!(
                    "logistics received {} for order {}",
                    ctx.routing_key(),
                    order.id
                );
                tx.send(line).ok();
                Ok::<_, Infallible>(())
            }
        });
    }

    let billing = billing.start().await?;
    let logistics = logistics.start().await?;

    // The order service publishes; each publish returns once the broker took it.
    let orders = Bus::with_transport(broker).with_app_id("order");
    let order = Order::sample(42);
    order.submit(&orders).await?;
    order.chargeback(&orders).await?;
    println!("order     published order.v1.submit and order.v1.chargeback for order 42");

    // Billing sees the submit only; logistics sees both.
    let mut lines = Vec::new();
    while lines.len() < 3 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), seen_rx.recv()).await {
            Ok(Some(line)) => lines.push(line),
            _ => return Err("an expected event did not arrive within 5 s".into()),
        }
    }
    lines.sort();
    for line in &lines {
        println!("{line}");
    }
    billing.shutdown().await?;
    logistics.shutdown().await?;
    Ok(())
}
