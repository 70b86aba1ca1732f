//! In-memory broker, publish → callback: one iteration is one event published and handled,
//! with 1 and with 10 queues bound, on a single-threaded runtime (one core). And routing
//! alone: one iteration is one publish to an exchange with 1 or 10 000 bindings, one queue
//! taking the message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use event_manager::message::Message;
use event_manager::transport::{InMemoryBroker, QueueSpec, Transport};
use event_manager::{BindingPattern, Bus, Event, Exchange};
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
                Ok(())
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

/// An exchange `order` with queue `target` bound with `order.*.submit` and `others` more
/// queues bound with patterns `order.v1.submit` does not match (literal, `*` and `#`).
async fn routing_broker(others: usize) -> InMemoryBroker {
    let broker = InMemoryBroker::new();
    let transient = |name: &str| {
        let mut spec = QueueSpec::durable(name);
        spec.durable = false;
        spec
    };
    broker
        .declare_exchange("order", false)
        .await
        .expect("declared");
    broker
        .declare_queue(&transient("target"))
        .await
        .expect("declared");
    let target = BindingPattern::parse("order.*.submit").expect("valid");
    broker
        .bind("target", "order", &target)
        .await
        .expect("bound");
    for i in 0..others {
        let name = format!("other{i}");
        broker
            .declare_queue(&transient(&name))
            .await
            .expect("declared");
        let pattern = match i % 3 {
            0 => format!("order.v1.e{i}"),
            1 => format!("order.*.e{i}"),
            _ => format!("t{i}.#"),
        };
        let pattern = BindingPattern::parse(&pattern).expect("valid");
        broker.bind(&name, "order", &pattern).await.expect("bound");
    }
    broker
}

fn memory_routing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let message = Message {
        exchange: "order".into(),
        routing_key: "order.v1.submit".into(),
        body: Vec::from(&b"{\"id\":1}"[..]).into(),
        properties: Default::default(),
    };
    let mut group = c.benchmark_group("memory_route");
    for bindings in [1usize, 10_000] {
        let broker = runtime.block_on(routing_broker(bindings - 1));
        group.bench_function(format!("{bindings}_bindings"), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        broker.publish(message.clone()).await.expect("routed");
                    }
                    let elapsed = started.elapsed();
                    // Empty the queue for the next sample.
                    broker.delete_queue("target").await.expect("deleted");
                    let mut spec = QueueSpec::durable("target");
                    spec.durable = false;
                    broker.declare_queue(&spec).await.expect("declared");
                    let target = BindingPattern::parse("order.*.submit").expect("valid");
                    broker
                        .bind("target", "order", &target)
                        .await
                        .expect("bound");
                    elapsed
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = memory_broker, memory_routing
}
criterion_main!(benches);
