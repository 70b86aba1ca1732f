use event_manager::{Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const ORDER: Exchange = Exchange::topic("order");

// `SUBMIT` is refused at its name, and only there: both names would make the constant
// `Order::SUBMIT`, which must not add an error of its own at the derive, nor at the uses of
// the lower-case spelling below.
#[derive(Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.0.0", events(SUBMIT, submit))]
pub struct Order {
    pub id: u64,
}

fn uses(order: Order, bus: &event_manager::Bus) {
    let _ = Order::SUBMIT;
    let _ = order.submit(bus);
}

fn main() {}
