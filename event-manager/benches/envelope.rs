//! Envelope encode (payload → AMQP message with properties and headers) and decode.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use event_manager::{Event, Exchange, envelope};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const ORDER: Exchange = Exchange::topic("order");

/// About 100 bytes of JSON, like the broker benchmarks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.2.0", events(submit))]
struct Order {
    id: u64,
    customer: String,
    sku: String,
    quantity: u32,
    unit_price_cents: u64,
}

fn sample() -> Order {
    Order {
        id: 123_456,
        customer: "customer-42".into(),
        sku: "sku-7".into(),
        quantity: 3,
        unit_price_cents: 1999,
    }
}

fn envelope(c: &mut Criterion) {
    let order = sample();
    let message = envelope::encode(Order::SUBMIT, &order, "bench").expect("encodes");
    let mut group = c.benchmark_group("envelope");
    group.bench_function("encode", |b| {
        b.iter(|| envelope::encode(Order::SUBMIT, black_box(&order), "bench"))
    });
    group.bench_function("decode", |b| {
        b.iter(|| envelope::decode::<Order>(black_box(&message)))
    });
    group.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
