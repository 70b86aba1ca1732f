//! An inventory service, written as a newcomer would after reading the README: it consumes
//! `order.*.submit`, reserves stock and publishes `inventory.v1.reserved`, an event nobody
//! consumes yet. Out of stock is a business rule (permanent: dead-lettered at once); a
//! failing store would be transient (retried).
//!
//! `cargo run --example inventory_service` runs it on the in-memory broker with a few orders;
//! with `AMQP_URL` set it runs on RabbitMQ.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::{Bus, Delivery, Event, Exchange, HandlerResultExt, Unroutable};
use event_manager_examples::{ORDER, Order};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The exchange of the inventory domain.
pub const INVENTORY: Exchange = Exchange::topic("inventory");

/// Stock reserved for an order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = INVENTORY, version = "1.0.0", events(reserved))]
pub struct Reservation {
    /// The order the stock is reserved for.
    pub order: u64,
    /// The units reserved per SKU.
    pub units: Vec<(String, u32)>,
}

/// Units in stock per SKU.
#[derive(Default)]
struct Stock(Mutex<HashMap<String, u32>>);

impl Stock {
    /// Takes what `order` needs, all or nothing.
    fn reserve(&self, order: &Order) -> Result<Reservation, String> {
        let mut stock = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for line in &order.lines {
            let have = stock.get(&line.sku).copied().unwrap_or(0);
            if have < line.quantity {
                return Err(format!(
                    "{} × {} wanted, {have} in stock",
                    line.quantity, line.sku
                ));
            }
        }
        let mut units = Vec::new();
        for line in &order.lines {
            *stock.entry(line.sku.clone()).or_default() -= line.quantity;
            units.push((line.sku.clone(), line.quantity));
        }
        Ok(Reservation {
            order: order.id,
            units,
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `inventory.v1.reserved` is new: nobody is bound to it yet, and that is fine.
    let bus = Bus::from_env()
        .await?
        .with_app_id("inventory")
        .with_unroutable(Reservation::RESERVED, Unroutable::Log);
    let stock = Arc::new(Stock::default());
    stock
        .0
        .lock()
        .unwrap()
        .extend((0..13).map(|n| (format!("sku-{n}"), 3)));

    let mut inventory = bus.service("inventory_order");
    inventory.bind(ORDER, "order.*.submit")?;
    let reserved = Arc::new(AtomicUsize::new(0));
    let (publisher, shelf, count) = (bus.clone(), stock.clone(), reserved.clone());
    inventory.on(Order::SUBMIT, move |order: Order, delivery: Delivery| {
        let (bus, stock, count) = (publisher.clone(), shelf.clone(), count.clone());
        async move {
            let reservation = stock.reserve(&order).permanent()?; // out of stock: no retry
            reservation.reserved(&bus).await?; // a failed publish: retried
            println!(
                "reserved order {} (message {:?})",
                order.id,
                delivery.message_id()
            );
            count.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let queues = inventory.queues();
    let running = inventory.start().await?;

    // A few orders, each of another product; the larger ones find too little on the shelf.
    let orders = [1, 2, 3, 4, 5];
    for id in orders {
        Order::sample(id).submit(&bus).await?;
    }
    let mut dead = Vec::new();
    for _ in 0..250 {
        dead = queues.dead_letters(10).await?;
        if dead.len() + reserved.load(Ordering::SeqCst) == orders.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.shutdown().await?;
    for letter in &dead {
        println!(
            "dead letter {:?}: {:?}, {}",
            letter.message_id(),
            letter.kind(),
            letter.reason().unwrap_or("")
        );
    }
    println!(
        "{} reservation(s) published with no consumer yet",
        bus.unroutable_count()
    );
    queues.delete().await?;
    Ok(())
}
