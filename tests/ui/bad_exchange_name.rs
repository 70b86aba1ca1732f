use event_manager::{Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const ORDER: Exchange = Exchange::topic("order");

// The exchange name itself is checked when the constant is evaluated.
const BAD: Exchange = Exchange::topic("order.events");

#[derive(Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = BAD, version = "1.0.0", events(submit))]
pub struct Order {
    pub id: u64,
}

fn main() {}
