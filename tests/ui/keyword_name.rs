use event_manager::{Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const ORDER: Exchange = Exchange::topic("order");

#[derive(Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.0.0", events(submit, match))]
pub struct Order {
    pub id: u64,
}

#[derive(Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.0.0", name = "fn")]
pub struct Refund {
    pub id: u64,
}

fn main() {}
