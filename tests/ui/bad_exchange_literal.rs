use event_manager::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// An exchange written as a string literal is checked at the literal.
#[derive(Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = "order.events", version = "1.0.0", events(submit))]
pub struct Order {
    pub id: u64,
}

// So is the length of the routing keys it makes.
#[derive(Serialize, Deserialize, JsonSchema, Event)]
#[event(
    exchange = "shop_exchange_exchange_exchange_exchange_exchange_exchange_exchange_exchange_exchange_exchange_exchange_exchange_",
    version = "1.0.0",
    events(submitted_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid_and_paid)
)]
pub struct Long {
    pub id: u64,
}

fn main() {}
