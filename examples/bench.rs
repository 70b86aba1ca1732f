//! Benchmark harness: event-manager's typed API against the best hand-written baseline of
//! each path, in one run, in alternating order (A-B-B-A-A-B-B-A over four rounds, averaged),
//! so that neither side always meets a fresher broker or a warmer machine.
//!
//! ```text
//! cargo run --release --example bench                       # every comparison, about 2 minutes
//! cargo run --release --example bench -- --drain 1000000    # consumer memory while draining
//! ```
//!
//! The comparisons, each printed as a ratio on the last lines:
//!
//! * **consume**: a typed service (prefetch 1000) against the best raw lapin consumer
//!   (prefetch 1000, decoding each body, `basic.ack` with `multiple = true` every 100
//!   messages), both draining a queue of the same persistent ~100-byte messages with the
//!   same envelope;
//! * **publish**: `bus.publish` against raw lapin with the same window of confirms in flight
//!   and the same envelope (the wire contract's properties and headers, built per message as
//!   a hand-written publisher of that contract would), and both against the broker's
//!   no-confirm ceiling (raw lapin without confirm mode, timed until a synchronous call on
//!   the same channel returns, which the broker answers only after routing every publish);
//! * **memory**: the in-memory broker's publish → typed callback against a bare loop (serde
//!   JSON encode, one tokio mpsc hop, decode) in this process, on one thread;
//! * **routing**: a publish to an in-memory exchange with 10 000 bindings against one with a
//!   single binding, the same one queue taking the message.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use event_manager::message::Message;
use event_manager::transport::{InMemoryBroker, QueueKind, QueueSpec, Transport};
use event_manager::{BindingPattern, Bus, Event, Exchange};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

const BENCH: Exchange = Exchange::topic("bench");

/// About 100 bytes of JSON.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = BENCH, version = "1.0.0", events(submit))]
struct BenchOrder {
    id: u64,
    sent_at_ns: u64,
    customer: String,
    sku: String,
    quantity: u32,
    unit_price_cents: u64,
}

impl BenchOrder {
    fn new(id: u64) -> Self {
        Self {
            id,
            sent_at_ns: now_ns(),
            customer: "customer-0042".into(),
            sku: "sku-000007".into(),
            quantity: 3,
            unit_price_cents: 1999,
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[derive(Parser)]
struct Args {
    /// Messages per broker throughput phase.
    #[arg(long, default_value_t = 50_000)]
    messages: u64,
    /// Publishes awaiting their confirm at once.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Consumer prefetch.
    #[arg(long, default_value_t = 1000)]
    prefetch: u16,
    /// The raw consumer acknowledges with `multiple` every this many messages.
    #[arg(long, default_value_t = 100)]
    ack_every: u64,
    /// Events per in-memory phase.
    #[arg(long, default_value_t = 300_000)]
    memory_events: u64,
    /// Publishes per routing phase.
    #[arg(long, default_value_t = 200_000)]
    routing_publishes: u64,
    /// Bindings of the large exchange of the routing phases.
    #[arg(long, default_value_t = 10_000)]
    bindings: usize,
    /// Rate of the end-to-end latency phase, messages per second (0: no latency phase).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Duration of the end-to-end latency phase, seconds.
    #[arg(long, default_value_t = 3)]
    latency_seconds: u64,
    /// Rounds of each comparison, run in A-B-B-A order; figures are averaged.
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Only the in-process comparisons (memory, routing): no broker needed.
    #[arg(long)]
    in_process: bool,
    /// Instead of the comparisons: publish this many messages, then drain them with a typed
    /// consumer (prefetch `--prefetch`) and report its resident memory along the way.
    #[arg(long)]
    drain: Option<u64>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The order of the two sides in `round`: A-B, then B-A.
fn sides(round: u32) -> [bool; 2] {
    [!round.is_multiple_of(2), round.is_multiple_of(2)]
}

struct Names {
    exchange: String,
    queue: String,
}

fn names(tag: &str) -> Names {
    let unique = format!("bench-{}-{tag}", std::process::id());
    Names {
        exchange: format!("{unique}.bench"),
        queue: format!("{unique}.queue"),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(label: &str, count: u64, elapsed: Duration, mut latencies: Vec<Duration>) -> f64 {
    let rate = count as f64 / elapsed.as_secs_f64();
    latencies.sort();
    if latencies.is_empty() {
        println!("{label:<44} {rate:>10.0} msg/s");
    } else {
        println!(
            "{label:<44} {rate:>10.0} msg/s   p50 {:>8.2?}   p99 {:>8.2?}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99)
        );
    }
    rate
}

/// CPU time used by this process so far (all threads, user and system), from
/// `/proc/self/stat`; zero where that file does not exist.
fn cpu_time() -> Duration {
    /// Linux reports it in clock ticks of 1/100 s.
    const TICKS_PER_SECOND: u64 = 100;
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the whole line.
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

/// Client CPU time per message, in microseconds, of a phase that started at `before`.
fn cpu_per_message(before: Duration, count: u64) -> f64 {
    cpu_time().saturating_sub(before).as_secs_f64() * 1e6 / count.max(1) as f64
}

// ------------------------------------------------------------------------------------------
// In process: the in-memory broker against a bare loop, and routing with many bindings.
// ------------------------------------------------------------------------------------------

/// The baseline of the in-memory broker: encode with serde_json, one hop through a tokio
/// mpsc channel (bounded like a prefetch window) to a consumer task, decode there.
async fn bare_loop(events: u64) -> Duration {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1000);
    let consumer = tokio::spawn(async move {
        let mut handled = 0u64;
        while let Some(body) = rx.recv().await {
            let order: BenchOrder = serde_json::from_slice(&body).expect("decodes");
            std::hint::black_box(order);
            handled += 1;
        }
        handled
    });
    let order = BenchOrder::new(1);
    let started = Instant::now();
    for _ in 0..events {
        let body = serde_json::to_vec(&order).expect("encodes");
        tx.send(body).await.expect("consumer alive");
    }
    drop(tx);
    let handled = consumer.await.expect("consumer ran");
    let elapsed = started.elapsed();
    assert_eq!(handled, events);
    elapsed
}

/// The typed path on the in-memory broker: `order.submit(&bus)` → a service's typed callback
/// (prefetch and concurrency 1000), until every event was handled.
async fn typed_memory(events: u64) -> Duration {
    let bus = Bus::in_memory().with_app_id("bench");
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let mut service = bus.service("memory");
    service
        .bind(BENCH, "bench.*.submit")
        .expect("valid pattern");
    service.prefetch(1000).concurrency(1000);
    let (counter, finished) = (handled.clone(), done.clone());
    service.on(BenchOrder::SUBMIT, move |order: BenchOrder, _| {
        let (counter, finished) = (counter.clone(), finished.clone());
        async move {
            std::hint::black_box(order);
            if counter.fetch_add(1, Ordering::Relaxed) + 1 == events {
                finished.notify_one();
            }
            Ok(())
        }
    });
    let running = service.start().await.expect("starts");
    let order = BenchOrder::new(1);
    // The first publish declares the exchange; every event is counted all the same.
    let started = Instant::now();
    for _ in 0..events {
        order.submit(&bus).await.expect("published");
    }
    done.notified().await;
    let elapsed = started.elapsed();
    running.shutdown().await.expect("shuts down");
    elapsed
}

/// An in-memory broker with exchange `bench` and queue `target` bound with
/// `bench.*.submit`, plus `others` queues each bound with a pattern of its own that
/// `bench.v1.submit` does not match: literal, `*` and `#` patterns in equal parts.
async fn routing_broker(others: usize) -> InMemoryBroker {
    let broker = InMemoryBroker::new();
    broker
        .declare_exchange("bench", false)
        .await
        .expect("declared");
    let mut target = QueueSpec::durable("target");
    target.durable = false;
    broker.declare_queue(&target).await.expect("declared");
    let pattern = BindingPattern::parse("bench.*.submit").expect("valid");
    broker
        .bind("target", "bench", &pattern)
        .await
        .expect("bound");
    for i in 0..others {
        let name = format!("other{i}");
        let mut spec = QueueSpec::durable(&name);
        spec.durable = false;
        broker.declare_queue(&spec).await.expect("declared");
        let text = match i % 3 {
            0 => format!("bench.v1.e{i}"),
            1 => format!("bench.*.e{i}"),
            _ => format!("t{i}.#"),
        };
        let pattern = BindingPattern::parse(&text).expect("valid");
        broker.bind(&name, "bench", &pattern).await.expect("bound");
    }
    broker
}

/// Publishes `count` messages with routing key `bench.v1.submit`; the time per publish.
async fn routing_run(broker: &InMemoryBroker, count: u64) -> Duration {
    let message = Message {
        exchange: Cow::Borrowed("bench"),
        routing_key: Cow::Borrowed("bench.v1.submit"),
        body: serde_json::to_vec(&BenchOrder::new(1))
            .expect("encodes")
            .into(),
        properties: Default::default(),
    };
    let started = Instant::now();
    for _ in 0..count {
        broker.publish(message.clone()).await.expect("routed");
    }
    let elapsed = started.elapsed();
    // Empty the queue for the next run: delete it and bind it again.
    broker.delete_queue("target").await.expect("deleted");
    let mut target = QueueSpec::durable("target");
    target.durable = false;
    broker.declare_queue(&target).await.expect("declared");
    let pattern = BindingPattern::parse("bench.*.submit").expect("valid");
    broker
        .bind("target", "bench", &pattern)
        .await
        .expect("bound");
    elapsed / count.max(1) as u32
}

struct InProcess {
    bare: Vec<f64>,
    typed: Vec<f64>,
    one_binding_ns: Vec<f64>,
    many_bindings_ns: Vec<f64>,
}

/// The in-process comparisons, on a single-threaded runtime of their own.
fn in_process(args: &Args) -> InProcess {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut result = InProcess {
            bare: Vec::new(),
            typed: Vec::new(),
            one_binding_ns: Vec::new(),
            many_bindings_ns: Vec::new(),
        };
        let events = args.memory_events;
        // Warm-up of both sides (allocator, code), not counted.
        bare_loop(events / 10).await;
        typed_memory(events / 10).await;
        for round in 0..args.rounds.max(1) {
            for typed in sides(round) {
                if typed {
                    let elapsed = typed_memory(events).await;
                    result.typed.push(report(
                        &format!("memory: typed publish → callback (round {round})"),
                        events,
                        elapsed,
                        Vec::new(),
                    ));
                } else {
                    let elapsed = bare_loop(events).await;
                    result.bare.push(report(
                        &format!("memory: bare encode → mpsc → decode (round {round})"),
                        events,
                        elapsed,
                        Vec::new(),
                    ));
                }
            }
        }
        let one = routing_broker(0).await;
        let many = routing_broker(args.bindings.saturating_sub(1)).await;
        let count = args.routing_publishes;
        // Warm-up of both, as long as a measured run (the queue grows as much).
        routing_run(&one, count).await;
        routing_run(&many, count).await;
        for round in 0..args.rounds.max(1) {
            for large in sides(round) {
                let (broker, label, into) = if large {
                    (&many, args.bindings, &mut result.many_bindings_ns)
                } else {
                    (&one, 1, &mut result.one_binding_ns)
                };
                let per = routing_run(broker, count).await;
                println!(
                    "{:<44} {:>10.0} ns/publish",
                    format!("routing: {label} binding(s) (round {round})"),
                    per.as_nanos() as f64
                );
                into.push(per.as_nanos() as f64);
            }
        }
        result
    })
}

// ------------------------------------------------------------------------------------------
// RabbitMQ: raw lapin against the typed API.
// ------------------------------------------------------------------------------------------

async fn raw_topology(channel: &Channel, n: &Names) -> lapin::Result<()> {
    channel
        .exchange_declare(
            n.exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            n.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            n.queue.as_str().into(),
            n.exchange.as_str().into(),
            "bench.*.submit".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

async fn raw_cleanup(channel: &Channel, n: &Names) -> lapin::Result<()> {
    channel
        .queue_delete(n.queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    channel
        .exchange_delete(n.exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
}

/// The properties a hand-written lapin publisher of the same wire contract sends: the AMQP
/// properties and the version and CloudEvents headers, built per message.
fn envelope_properties(id: u64) -> BasicProperties {
    let message_id = format!("bench-{id}");
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("x-event-version", "1.0.0".to_owned()),
        ("cloudEvents_specversion", "1.0".to_owned()),
        ("cloudEvents_id", message_id.clone()),
        ("cloudEvents_type", "bench.v1.submit".to_owned()),
        ("cloudEvents_source", "bench".to_owned()),
        ("cloudEvents_time", "2026-11-22T00:00:00Z".to_owned()),
        (
            "cloudEvents_dataschema",
            "urn:event-manager:schema:bench.v1.submit".to_owned(),
        ),
    ] {
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
    }
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(message_id.into())
        .with_timestamp(now_ns() / 1_000_000_000)
        .with_type("bench.v1.submit".into())
        .with_app_id("bench".into())
        .with_headers(headers)
}

fn publish_options() -> BasicPublishOptions {
    BasicPublishOptions {
        mandatory: true,
        immediate: false,
    }
}

/// Raw lapin: pipelined confirmed persistent mandatory publishes with the envelope, up to
/// `window` awaiting their confirm; latency per message.
async fn raw_publish(
    channel: &Channel,
    n: &Names,
    count: u64,
    window: usize,
) -> Result<(Duration, Vec<Duration>), Box<dyn std::error::Error>> {
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for id in 0..count {
        if in_flight.len() >= window
            && let Some(result) = in_flight.next().await
        {
            latencies.push(result?);
        }
        let body = serde_json::to_vec(&BenchOrder::new(id))?;
        let sent = Instant::now();
        let confirm = channel
            .basic_publish(
                n.exchange.as_str().into(),
                "bench.v1.submit".into(),
                publish_options(),
                &body,
                envelope_properties(id),
            )
            .await?;
        in_flight.push(async move {
            match confirm.await? {
                Confirmation::Ack(None) => Ok(sent.elapsed()),
                other => Err(format!("not confirmed: {other:?}").into()),
            }
        });
    }
    while let Some(result) = in_flight.next().await {
        latencies.push(result.map_err(|e: Box<dyn std::error::Error>| e)?);
    }
    Ok((started.elapsed(), latencies))
}

/// The broker's ceiling without confirms: the same publishes on a channel without confirm
/// mode, timed until a synchronous call on that channel returns (the broker handles a
/// channel's methods in order, so it has routed every publish by then). The queue is purged
/// afterwards.
async fn raw_publish_unconfirmed(
    connection: &Connection,
    n: &Names,
    count: u64,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let channel = connection.create_channel().await?;
    let started = Instant::now();
    for id in 0..count {
        let body = serde_json::to_vec(&BenchOrder::new(id))?;
        channel
            .basic_publish(
                n.exchange.as_str().into(),
                "bench.v1.submit".into(),
                publish_options(),
                &body,
                envelope_properties(id),
            )
            .await?;
    }
    channel
        .queue_declare(
            n.queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let elapsed = started.elapsed();
    channel
        .queue_purge(n.queue.as_str().into(), QueuePurgeOptions::default())
        .await?;
    channel.close(200, "OK".into()).await?;
    Ok(elapsed)
}

/// The best raw lapin consumer: prefetch, decode each body, `basic.ack` with `multiple` every
/// `ack_every` messages (from this loop only, so acks leave in order).
async fn raw_consume(
    connection: &Connection,
    n: &Names,
    count: u64,
    prefetch: u16,
    ack_every: u64,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            n.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let multiple = BasicAckOptions { multiple: true };
    let started = Instant::now();
    let mut seen = 0;
    let mut last_tag = None;
    while seen < count {
        let Some(delivery) = consumer.next().await else {
            return Err("consumer ended".into());
        };
        let delivery = delivery?;
        let order: BenchOrder = serde_json::from_slice(&delivery.data)?;
        std::hint::black_box(order);
        seen += 1;
        last_tag = Some(delivery.delivery_tag);
        if seen.is_multiple_of(ack_every.max(1)) {
            channel.basic_ack(delivery.delivery_tag, multiple).await?;
            last_tag = None;
        }
    }
    if let Some(tag) = last_tag {
        channel.basic_ack(tag, multiple).await?;
    }
    let elapsed = started.elapsed();
    channel.close(200, "OK".into()).await?;
    Ok(elapsed)
}

/// Typed publish: the same window of `bus.publish` futures.
async fn typed_publish(
    bus: &Bus,
    count: u64,
    window: usize,
) -> Result<(Duration, Vec<Duration>), Box<dyn std::error::Error>> {
    let mut in_flight = FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(count as usize);
    let started = Instant::now();
    for id in 0..count {
        if in_flight.len() >= window
            && let Some(result) = in_flight.next().await
        {
            latencies.push(result?);
        }
        in_flight.push(async move {
            let sent = Instant::now();
            BenchOrder::new(id).submit(bus).await?;
            Ok::<_, event_manager::PublishError>(sent.elapsed())
        });
    }
    while let Some(result) = in_flight.next().await {
        latencies.push(result?);
    }
    Ok((started.elapsed(), latencies))
}

/// Typed consume: a service with a callback, until `count` messages were handled.
async fn typed_consume(
    bus: &Bus,
    queue: &str,
    count: u64,
    prefetch: u16,
    on_progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let handled = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let on_progress = Arc::new(on_progress);
    let mut service = bus.service(queue);
    service.bind(BENCH, "bench.*.submit")?;
    // A classic queue, as the raw side declares: the comparison is of the clients, on the
    // same kind of queue (quorum queues, the services' default, cost the broker more).
    service
        .queue_kind(QueueKind::Classic)
        .prefetch(prefetch)
        .concurrency(usize::from(prefetch));
    let (h, d) = (handled.clone(), done.clone());
    service.on(BenchOrder::SUBMIT, move |order: BenchOrder, _| {
        let (h, d, p) = (h.clone(), d.clone(), on_progress.clone());
        async move {
            std::hint::black_box(order);
            let n = h.fetch_add(1, Ordering::Relaxed) + 1;
            p(n);
            if n == count {
                d.notify_one();
            }
            Ok(())
        }
    });
    let started = Instant::now();
    let running = service.start().await?;
    done.notified().await;
    let elapsed = started.elapsed();
    running.shutdown().await?;
    Ok(elapsed)
}

/// End-to-end latency at a fixed rate, typed on both ends.
async fn latency_typed(
    bus: &Bus,
    queue: &str,
    rate: u64,
    seconds: u64,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut service = bus.service(queue);
    service.bind(BENCH, "bench.*.submit")?;
    service.queue_kind(QueueKind::Classic);
    service.on(BenchOrder::SUBMIT, move |o: BenchOrder, _| {
        let tx = tx.clone();
        async move {
            tx.send(Duration::from_nanos(now_ns().saturating_sub(o.sent_at_ns)))
                .ok();
            Ok(())
        }
    });
    let running = service.start().await?;
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            for id in 0..total {
                ticker.tick().await;
                let bus = bus.clone();
                pending.push(async move { BenchOrder::new(id).submit(&bus).await });
                while let Some(Some(r)) = futures_util::FutureExt::now_or_never(pending.next()) {
                    r?;
                }
            }
            while let Some(r) = pending.next().await {
                r?;
            }
            Ok::<_, event_manager::PublishError>(())
        })
    };
    let mut latencies = Vec::with_capacity(total as usize);
    while (latencies.len() as u64) < total {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(l)) => latencies.push(l),
            _ => return Err("latency phase stalled".into()),
        }
    }
    publisher.await??;
    running.shutdown().await?;
    Ok(latencies)
}

/// End-to-end latency at a fixed rate, raw lapin on both ends (ack per message).
async fn latency_raw(
    connection: &Connection,
    n: &Names,
    rate: u64,
    seconds: u64,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let consume_channel = connection.create_channel().await?;
    consume_channel
        .basic_qos(100, BasicQosOptions::default())
        .await?;
    let mut consumer = consume_channel
        .basic_consume(
            n.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let publish_channel = connection.create_channel().await?;
    publish_channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let total = rate * seconds;
    let exchange = n.exchange.clone();
    let publisher = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
        let mut pending = FuturesUnordered::new();
        for id in 0..total {
            let properties = envelope_properties(id);
            ticker.tick().await;
            let body = serde_json::to_vec(&BenchOrder::new(id)).unwrap_or_default();
            let confirm = publish_channel
                .basic_publish(
                    exchange.as_str().into(),
                    "bench.v1.submit".into(),
                    publish_options(),
                    &body,
                    properties,
                )
                .await?;
            pending.push(confirm);
            while let Some(Some(r)) = futures_util::FutureExt::now_or_never(pending.next()) {
                r?;
            }
        }
        while let Some(r) = pending.next().await {
            r?;
        }
        Ok::<_, lapin::Error>(())
    });
    let mut latencies = Vec::with_capacity(total as usize);
    while (latencies.len() as u64) < total {
        let delivery = match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
            Ok(Some(d)) => d?,
            _ => return Err("latency phase stalled".into()),
        };
        let order: BenchOrder = serde_json::from_slice(&delivery.data)?;
        latencies.push(Duration::from_nanos(
            now_ns().saturating_sub(order.sent_at_ns),
        ));
        delivery.ack(BasicAckOptions::default()).await?;
    }
    publisher.await??;
    consume_channel.close(200, "OK".into()).await?;
    Ok(latencies)
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn drain(args: &Args, url: &str, count: u64) -> Result<(), Box<dyn std::error::Error>> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let bus = Bus::connect(url)
        .await?
        .with_namespace(format!("drain-{}", std::process::id()));
    // The service name; on the broker the bus's namespace prefixes it.
    let queue = "queue";
    let n = Names {
        exchange: bus.topology().exchange_name(BENCH),
        queue: bus.topology().queue_name(queue),
    };
    raw_topology(&channel, &n).await?;
    let (elapsed, _) = raw_publish(&channel, &n, count, args.window).await?;
    println!("published {count} in {:.1} s", elapsed.as_secs_f64());
    let before = rss_kib("VmRSS:");
    println!(
        "consumer RSS before draining: {before} KiB (peak so far {} KiB, the publisher's)",
        rss_kib("VmHWM:")
    );
    let step = (count / 10).max(1);
    let peak = Arc::new(AtomicU64::new(0));
    let peak_in = peak.clone();
    let elapsed = typed_consume(&bus, queue, count, args.prefetch, move |handled| {
        if handled.is_multiple_of(1000) {
            peak_in.fetch_max(rss_kib("VmRSS:"), Ordering::Relaxed);
        }
        if handled.is_multiple_of(step) {
            println!("handled {handled:>8}: RSS {} KiB", rss_kib("VmRSS:"));
        }
    })
    .await?;
    report(
        &format!("typed consume (drain, prefetch {})", args.prefetch),
        count,
        elapsed,
        Vec::new(),
    );
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "consumer RSS after draining: {} KiB; highest RSS seen while draining {peak} KiB, \
         {} KiB above the start, {:.0} KiB per 1000 of prefetch",
        rss_kib("VmRSS:"),
        peak.saturating_sub(before),
        peak.saturating_sub(before) as f64 * 1000.0 / f64::from(args.prefetch.max(1))
    );
    bus.service(queue).queues().delete().await?;
    raw_cleanup(&channel, &n).await?;
    bus.close().await;
    connection.close(200, "OK".into()).await?;
    Ok(())
}

/// Figures of every round of the broker comparisons, and client CPU per message.
#[derive(Default)]
struct Broker {
    raw_publish: Vec<f64>,
    typed_publish: Vec<f64>,
    unconfirmed: Vec<f64>,
    raw_consume: Vec<f64>,
    typed_consume: Vec<f64>,
    cpu_raw_publish: Vec<f64>,
    cpu_typed_publish: Vec<f64>,
    cpu_raw_consume: Vec<f64>,
    cpu_typed_consume: Vec<f64>,
}

async fn broker(args: &Args, url: &str) -> Result<Broker, Box<dyn std::error::Error>> {
    let count = args.messages;
    println!(
        "broker: {count} messages per phase, window {}, prefetch {}, persistent, confirms, \
         mandatory; raw consumer acks every {}",
        args.window, args.prefetch, args.ack_every
    );
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let raw = names("raw");
    raw_topology(&channel, &raw).await?;

    let bus = Bus::connect(url)
        .await?
        .with_app_id("bench")
        .with_namespace(format!("bench-{}", std::process::id()));
    // The bus's namespace makes the queue name unique on the broker.
    let typed_queue = "typed".to_owned();
    let mut declare = bus.service(&typed_queue);
    declare.bind(BENCH, "bench.*.submit")?;
    declare.queue_kind(QueueKind::Classic);
    declare.on(BenchOrder::SUBMIT, |_: BenchOrder, _| async { Ok(()) });
    declare.declare().await?;

    let mut b = Broker::default();
    for round in 0..args.rounds.max(1) {
        for typed in sides(round) {
            if typed {
                let cpu = cpu_time();
                let (elapsed, latencies) = typed_publish(&bus, count, args.window).await?;
                b.cpu_typed_publish.push(cpu_per_message(cpu, count));
                b.typed_publish.push(report(
                    &format!("event-manager publish (round {round})"),
                    count,
                    elapsed,
                    latencies,
                ));
                let cpu = cpu_time();
                let elapsed =
                    typed_consume(&bus, &typed_queue, count, args.prefetch, |_| {}).await?;
                b.cpu_typed_consume.push(cpu_per_message(cpu, count));
                b.typed_consume.push(report(
                    &format!("event-manager consume (round {round})"),
                    count,
                    elapsed,
                    Vec::new(),
                ));
            } else {
                let elapsed = raw_publish_unconfirmed(&connection, &raw, count).await?;
                b.unconfirmed.push(report(
                    &format!("raw lapin publish, no confirms (round {round})"),
                    count,
                    elapsed,
                    Vec::new(),
                ));
                let cpu = cpu_time();
                let (elapsed, latencies) = raw_publish(&channel, &raw, count, args.window).await?;
                b.cpu_raw_publish.push(cpu_per_message(cpu, count));
                b.raw_publish.push(report(
                    &format!("raw lapin publish (round {round})"),
                    count,
                    elapsed,
                    latencies,
                ));
                let cpu = cpu_time();
                let elapsed =
                    raw_consume(&connection, &raw, count, args.prefetch, args.ack_every).await?;
                b.cpu_raw_consume.push(cpu_per_message(cpu, count));
                b.raw_consume.push(report(
                    &format!("raw lapin consume, best (round {round})"),
                    count,
                    elapsed,
                    Vec::new(),
                ));
            }
        }
    }

    if args.rate > 0 {
        let latencies = latency_raw(&connection, &raw, args.rate, args.latency_seconds).await?;
        let n = latencies.len() as u64;
        report(
            &format!("raw lapin end-to-end @{}/s", args.rate),
            n,
            Duration::from_secs(args.latency_seconds),
            latencies,
        );
        let latencies = latency_typed(&bus, &typed_queue, args.rate, args.latency_seconds).await?;
        let n = latencies.len() as u64;
        report(
            &format!("event-manager end-to-end @{}/s", args.rate),
            n,
            Duration::from_secs(args.latency_seconds),
            latencies,
        );
    }

    raw_cleanup(&channel, &raw).await?;
    bus.service(&typed_queue).queues().delete().await?;
    event_manager::testing::transport(&bus)
        .delete_exchange(&bus.topology().exchange_name(BENCH))
        .await?;
    bus.close().await;
    connection.close(200, "OK".into()).await?;
    Ok(b)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let url = std::env::var("AMQP_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    if let Some(count) = args.drain {
        return drain(&args, &url, count).await;
    }
    let started = Instant::now();
    // The in-process comparisons first, on a thread and runtime of their own (one thread).
    let local = std::thread::scope(|s| s.spawn(|| in_process(&args)).join())
        .map_err(|_| "the in-process phases panicked")?;
    let remote = if args.in_process {
        None
    } else {
        Some(broker(&args, &url).await?)
    };

    println!();
    println!(
        "memory msg/s: bare {} (mean {:.0}), typed {} (mean {:.0})",
        list(&local.bare),
        mean(&local.bare),
        list(&local.typed),
        mean(&local.typed)
    );
    println!(
        "routing ns/publish: 1 binding {} (mean {:.0}), {} bindings {} (mean {:.0})",
        list(&local.one_binding_ns),
        mean(&local.one_binding_ns),
        args.bindings,
        list(&local.many_bindings_ns),
        mean(&local.many_bindings_ns)
    );
    if let Some(b) = &remote {
        println!(
            "broker msg/s: raw publish {} (mean {:.0}), typed publish {} (mean {:.0}), \
             no-confirm ceiling {} (mean {:.0})",
            list(&b.raw_publish),
            mean(&b.raw_publish),
            list(&b.typed_publish),
            mean(&b.typed_publish),
            list(&b.unconfirmed),
            mean(&b.unconfirmed)
        );
        println!(
            "broker msg/s: raw consume {} (mean {:.0}), typed consume {} (mean {:.0})",
            list(&b.raw_consume),
            mean(&b.raw_consume),
            list(&b.typed_consume),
            mean(&b.typed_consume)
        );
        println!(
            "client CPU µs/msg: raw publish {:.1}, typed publish {:.1}, raw consume {:.1}, \
             typed consume {:.1}",
            mean(&b.cpu_raw_publish),
            mean(&b.cpu_typed_publish),
            mean(&b.cpu_raw_consume),
            mean(&b.cpu_typed_consume)
        );
    }
    println!("whole run: {:.0} s", started.elapsed().as_secs_f64());
    if let Some(b) = &remote {
        println!(
            "ratio consume typed/raw-best = {:.2} (target >= 0.95)",
            mean(&b.typed_consume) / mean(&b.raw_consume)
        );
        println!(
            "ratio publish typed/raw = {:.2} (target >= 0.95); confirmed/no-confirm ceiling: \
             raw {:.2}, typed {:.2}",
            mean(&b.typed_publish) / mean(&b.raw_publish),
            mean(&b.raw_publish) / mean(&b.unconfirmed),
            mean(&b.typed_publish) / mean(&b.unconfirmed)
        );
    }
    println!(
        "ratio memory typed/bare = {:.2} (target >= 0.75)",
        mean(&local.typed) / mean(&local.bare)
    );
    println!(
        "ratio routing {} bindings/1 binding = {:.2} (target <= 2)",
        args.bindings,
        mean(&local.many_bindings_ns) / mean(&local.one_binding_ns)
    );
    Ok(())
}
