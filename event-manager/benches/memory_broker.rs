//! In-memory broker, publish → callback: one iteration is one event published and handled,
//! with 1 and with 10 queues bound, on a single-threaded runtime (one core).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use event_manager::{Bus, Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

const ORDER: Exchange = Exchange::topic("order");

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.2.0", events(submit))]
struct Order {
    id: u64,
    customer: String,
    sku: String,
    quantity: u32,
    unit_price_cents: u64,
}

/// Publishes `events` events to `queues` bound services and waits until every callback ran.
async fn run(queues: usize, events: u64) -> Duration {
    let bus = Bus::in_memory();
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let target = events * queues as u64;
    let mut running = Vec::new();
    for q in 0..queues {
        let mut service = bus.service(format!("bench_{q}"));
        service
            .bind(ORDER, "order.*.submit")
            .expect("valid pattern");
        service.prefetch(1000).concurrency(1000);
        let (handled, done) = (handled.clone(), done.clone());
        service.on(Order::SUBMIT, move |_: Order, _| {
            let (handled, done) = (handled.clone(), done.clone());
            async move {
                if handled.fetch_add(1, Ordering::Relaxed) + 1 == target {
                    done.notify_one();
                }
                Ok::<_, Infallible>(())
            }
        });
        running.push(service.start().await.expect("starts"));
    }
    let order = Order {
        id: 1,
        customer: "customer-42".into(),
        sku: "sku-7".into(),
        quantity: 3,
        unit_price_cents: 1999,
    };
    let started = Instant::now();
    for _ in 0..events {
        order.submit(&bus).await.expect("published");
    }
    done.notified().await;
    let elapsed = started.elapsed();
    for r in running {
        r.shutdown().await.expect("shuts down");
    }
    elapsed
}

fn memory_broker(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("memory_publish_to_callback");
    for queues in [1usize, 10] {
        group.throughput(Throughput::Elements(queues as u64));
        group.bench_function(format!("{queues}_queues"), |b| {
            b.iter_custom(|iters| runtime.block_on(run(queues, iters)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = memory_broker
}
criterion_main!(benches);
