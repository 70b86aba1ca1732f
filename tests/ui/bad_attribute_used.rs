use event_manager::{Bus, Event, EventDef, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const ORDER: Exchange = Exchange::topic("order");

// Only the attribute's errors are reported, not one at every use of `Order`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1", events(submit, chargeback))]
pub struct Order {
    pub id: u64,
}

async fn publish(bus: &Bus) -> Result<(), Box<dyn std::error::Error>> {
    let submit: EventDef<Order> = Order::SUBMIT;
    assert_eq!(submit.routing_key(), Order::CHARGEBACK.routing_key());
    Order { id: 1 }.submit(bus).await?;
    Order { id: 1 }.chargeback(bus).await?;
    let mut billing = bus.service("billing");
    billing.bind(ORDER, "order.#")?;
    billing.on(Order::SUBMIT, |order: Order, _ctx| async move {
        println!("{order:?}");
        Ok(())
    });
    let _ = <Order as Event>::EVENTS;
    Ok(())
}

fn main() {
    let _ = publish;
}
