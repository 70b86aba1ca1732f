//! The e-commerce quickstart, in one process with the in-memory broker.
//!
//! An order service publishes `order.v1.submit` and `order.v1.chargeback`; a billing service
//! binds `order.*.submit`; a logistics service binds `order.#`. Run with
//! `cargo run --example quickstart`.
//!
//! The three services share the in-memory broker of the test harness
//! (`event_manager::testing`, the `testing` feature), which knows when every event has been
//! handled. A deployed service connects with `Bus::from_env()` instead and consumes until
//! it is told to stop: `service.run_until(signal).await`.

use std::time::Duration;

use event_manager::testing::Harness;
use event_manager::{Delivery, HandlerError};
use event_manager_examples::{ORDER, Order};

/// Billing's callback: charges the order.
async fn charge(order: Order, delivery: Delivery) -> Result<(), HandlerError> {
    println!(
        "billing   received {} for order {} ({} cents)",
        delivery.routing_key(),
        order.id,
        order.total_cents()
    );
    Ok(())
}

/// Logistics' callback: ships the order, or takes it back.
async fn ship(order: Order, delivery: Delivery) -> Result<(), HandlerError> {
    println!(
        "logistics received {} for order {}",
        delivery.routing_key(),
        order.id
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let harness = Harness::new();

    // Billing: queue `billing_order`, bound to `order.*.submit`.
    let billing_bus = harness.bus().with_app_id("billing");
    let mut billing = billing_bus.service("billing_order");
    billing.bind(ORDER, "order.*.submit")?;
    billing.on(Order::SUBMIT, charge);

    // Logistics: queue `logistics_order`, bound to `order.#`.
    let logistics_bus = harness.bus().with_app_id("logistics");
    let mut logistics = logistics_bus.service("logistics_order");
    logistics.bind(ORDER, "order.#")?;
    logistics.on(Order::SUBMIT, ship);
    logistics.on(Order::CHARGEBACK, ship);

    let billing = billing.start().await?;
    let logistics = logistics.start().await?;

    // The order service publishes; each publish returns once the broker took it.
    let orders = harness.bus().with_app_id("order");
    let order = Order::sample(42);
    println!("order     publishes order.v1.submit and order.v1.chargeback for order 42");
    order.submit(&orders).await?;
    order.chargeback(&orders).await?;

    // Billing gets the submit only; logistics gets both. Wait until both services have
    // handled everything, then stop them.
    harness.idle(Duration::from_secs(5)).await?;
    billing.shutdown().await?;
    logistics.shutdown().await?;
    Ok(())
}
