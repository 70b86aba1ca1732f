use event_manager::{Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const ORDER: Exchange = Exchange::topic("order");

// `SUBMIT` is refused at its name, and only there: both names would make the constant
// `Order::SUBMIT`, which must not add an error of its own at the derive.
#[derive(Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.0.0", events(submit, SUBMIT))]
pub struct Order {
    pub id: u64,
}

fn main() {}
