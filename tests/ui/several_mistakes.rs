use event_manager::{Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const ORDER: Exchange = Exchange::topic("order");

// An unknown key does not stop parsing: the bad version and the keyword after it are
// reported too.
#[derive(Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, durable = true, version = "1.x", events(submit, type))]
pub struct Order {
    pub id: u64,
}

// A key with a parenthesized value is skipped as a whole; a value of the wrong kind is
// reported at the value.
#[derive(Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, retries(1, 2), version = 1, name = "self")]
pub struct Refund {
    pub id: u64,
}

fn main() {}
