//! Broker benchmark: raw `lapin` against event-manager's typed API, in one run, against the
//! same RabbitMQ, with the same settings (durable topic exchange, a queue bound with
//! `order.*.submit`, ~100-byte JSON bodies, persistent messages, publisher confirms,
//! pipelined publishes, prefetch and manual acks).
//!
//! ```text
//! cargo run --release --example bench -- --messages 100000
//! cargo run --release --example bench -- --drain 1000000   # consumer memory while draining
//! ```
//!
//! The raw publisher runs twice: with a bare body, and with the same properties and headers
//! as the typed API sends (the wire contract's version and CloudEvents headers), built per
//! message as a hand-written publisher of that contract would. The ratios compare against
//! the latter, so they measure the typed layer and not the size of the envelope.
//!
//! Prints each figure, the client CPU time per message of each side, and, last,
//! `ratio publish=<typed/raw> consume=<typed/raw>`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use event_manager::service::delete_service_queues;
use event_manager::{Bus, Event, Exchange, RetryPolicy};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
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
    /// Messages per throughput phase.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Publishes awaiting their confirm at once.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Consumer prefetch.
    #[arg(long, default_value_t = 1000)]
    prefetch: u16,
    /// Rate of the end-to-end latency phase, messages per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Duration of the end-to-end latency phase, seconds.
    #[arg(long, default_value_t = 5)]
    latency_seconds: u64,
    /// Rounds of the raw/typed comparison, run in A-B-B-A order; figures are averaged.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Instead of the comparison: publish this many messages, then drain them with a typed
    /// consumer and report its resident memory along the way.
    #[arg(long)]
    drain: Option<u64>,
}

/// Throughput figures of every round.
#[derive(Default)]
struct Rates {
    raw_publish: Vec<f64>,
    raw_consume: Vec<f64>,
    typed_publish: Vec<f64>,
    typed_consume: Vec<f64>,
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
        println!("{label:<34} {rate:>9.0} msg/s");
    } else {
        println!(
            "{label:<34} {rate:>9.0} msg/s   p50 {:>8.2?}   p99 {:>8.2?}",
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

/// Raw lapin: pipelined confirmed persistent mandatory publishes; latency per message. With
/// `envelope`, each message carries the same properties and headers as a typed publish.
async fn raw_publish(
    channel: &Channel,
    n: &Names,
    count: u64,
    window: usize,
    envelope: bool,
) -> Result<(Duration, Vec<Duration>), Box<dyn std::error::Error>> {
    let bare = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2);
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
        let properties = if envelope {
            envelope_properties(id)
        } else {
            bare.clone()
        };
        let sent = Instant::now();
        let confirm = channel
            .basic_publish(
                n.exchange.as_str().into(),
                "bench.v1.submit".into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &body,
                properties,
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

/// Raw lapin consume: prefetch, manual ack of each message after decoding it.
async fn raw_consume(
    connection: &Connection,
    n: &Names,
    count: u64,
    prefetch: u16,
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
    let started = Instant::now();
    let mut seen = 0;
    while seen < count {
        let Some(delivery) = consumer.next().await else {
            return Err("consumer ended".into());
        };
        let delivery = delivery?;
        let _order: BenchOrder = serde_json::from_slice(&delivery.data)?;
        delivery.ack(BasicAckOptions::default()).await?;
        seen += 1;
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
    service
        .prefetch(prefetch)
        .concurrency(usize::from(prefetch));
    let (h, d) = (handled.clone(), done.clone());
    service.on(BenchOrder::SUBMIT, move |_: BenchOrder, _| {
        let (h, d, p) = (h.clone(), d.clone(), on_progress.clone());
        async move {
            let n = h.fetch_add(1, Ordering::Relaxed) + 1;
            p(n);
            if n == count {
                d.notify_one();
            }
            Ok::<_, Infallible>(())
        }
    });
    let started = Instant::now();
    let running = service.start().await?;
    done.notified().await;
    let elapsed = started.elapsed();
    running.shutdown().await?;
    Ok(elapsed)
}

/// End-to-end latency at a fixed rate, typed on both ends or raw on both ends.
async fn latency_typed(
    bus: &Bus,
    queue: &str,
    rate: u64,
    seconds: u64,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut service = bus.service(queue);
    service.bind(BENCH, "bench.*.submit")?;
    service.on(BenchOrder::SUBMIT, move |o: BenchOrder, _| {
        let tx = tx.clone();
        async move {
            tx.send(Duration::from_nanos(now_ns().saturating_sub(o.sent_at_ns)))
                .ok();
            Ok::<_, Infallible>(())
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
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
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
        exchange: bus.exchange_name(BENCH),
        queue: bus.queue_name(queue),
    };
    raw_topology(&channel, &n).await?;
    let (elapsed, _) = raw_publish(&channel, &n, count, args.window, true).await?;
    println!("published {count} in {:.1} s", elapsed.as_secs_f64());
    let before = rss_kib("VmRSS:");
    println!("consumer RSS before draining: {before} KiB");
    let step = (count / 10).max(1);
    let elapsed = typed_consume(&bus, queue, count, args.prefetch, move |handled| {
        if handled % step == 0 {
            println!(
                "handled {handled:>8}: RSS {} KiB, peak {} KiB",
                rss_kib("VmRSS:"),
                rss_kib("VmHWM:")
            );
        }
    })
    .await?;
    report("typed consume (drain)", count, elapsed, Vec::new());
    println!(
        "consumer RSS after draining: {} KiB, peak {} KiB",
        rss_kib("VmRSS:"),
        rss_kib("VmHWM:")
    );
    delete_service_queues(&bus, queue, &RetryPolicy::default()).await?;
    raw_cleanup(&channel, &n).await?;
    bus.close().await;
    connection.close(200, "OK".into()).await?;
    Ok(())
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
    let count = args.messages;
    println!(
        "{count} messages per phase, window {}, prefetch {}, persistent, confirms, mandatory",
        args.window, args.prefetch
    );

    // Raw lapin.
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let raw = names("raw");
    raw_topology(&channel, &raw).await?;
    let (elapsed, latencies) = raw_publish(&channel, &raw, count, args.window, false).await?;
    report("raw lapin publish, bare body", count, elapsed, latencies);
    let elapsed = raw_consume(&connection, &raw, count, args.prefetch).await?;
    report("raw lapin consume, bare body", count, elapsed, Vec::new());

    // Typed, same broker, same settings.
    let bus = Bus::connect(&url)
        .await?
        .with_namespace(format!("bench-{}", std::process::id()));
    // The bus's namespace makes the queue name unique on the broker.
    let typed_queue = "typed".to_owned();
    let mut declare = bus.service(&typed_queue);
    declare.bind(BENCH, "bench.*.submit")?;
    declare.on(BenchOrder::SUBMIT, |_: BenchOrder, _| async {
        Ok::<_, Infallible>(())
    });
    declare.declare().await?;

    // Rounds in A-B-B-A order, so neither side always runs on a fresher broker.
    let mut rates = Rates::default();
    // Client CPU per message (µs): what each client costs, whatever the broker does.
    let mut cpu_us = Rates::default();
    for round in 0..args.rounds.max(1) {
        for typed in [round % 2 == 1, round % 2 == 0] {
            if typed {
                let cpu = cpu_time();
                let (elapsed, latencies) = typed_publish(&bus, count, args.window).await?;
                cpu_us.typed_publish.push(cpu_per_message(cpu, count));
                rates.typed_publish.push(report(
                    &format!("event-manager publish (round {round})"),
                    count,
                    elapsed,
                    latencies,
                ));
                let cpu = cpu_time();
                let elapsed =
                    typed_consume(&bus, &typed_queue, count, args.prefetch, |_| {}).await?;
                cpu_us.typed_consume.push(cpu_per_message(cpu, count));
                rates.typed_consume.push(report(
                    &format!("event-manager consume (round {round})"),
                    count,
                    elapsed,
                    Vec::new(),
                ));
            } else {
                let cpu = cpu_time();
                let (elapsed, latencies) =
                    raw_publish(&channel, &raw, count, args.window, true).await?;
                cpu_us.raw_publish.push(cpu_per_message(cpu, count));
                rates.raw_publish.push(report(
                    &format!("raw lapin publish, same envelope (round {round})"),
                    count,
                    elapsed,
                    latencies,
                ));
                let cpu = cpu_time();
                let elapsed = raw_consume(&connection, &raw, count, args.prefetch).await?;
                cpu_us.raw_consume.push(cpu_per_message(cpu, count));
                rates.raw_consume.push(report(
                    &format!("raw lapin consume, same envelope (round {round})"),
                    count,
                    elapsed,
                    Vec::new(),
                ));
            }
        }
    }

    // End-to-end latency at a fixed rate.
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

    raw_cleanup(&channel, &raw).await?;
    delete_service_queues(&bus, &typed_queue, &RetryPolicy::default()).await?;
    bus.transport()
        .delete_exchange(&bus.exchange_name(BENCH))
        .await?;
    bus.close().await;
    connection.close(200, "OK".into()).await?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "mean msg/s: raw publish {:.0}, typed publish {:.0}, raw consume {:.0}, typed consume {:.0}",
        mean(&rates.raw_publish),
        mean(&rates.typed_publish),
        mean(&rates.raw_consume),
        mean(&rates.typed_consume)
    );
    println!(
        "client CPU µs/msg: raw publish {:.1}, typed publish {:.1}, raw consume {:.1}, typed consume {:.1}",
        mean(&cpu_us.raw_publish),
        mean(&cpu_us.typed_publish),
        mean(&cpu_us.raw_consume),
        mean(&cpu_us.typed_consume)
    );
    println!(
        "ratio publish={:.2} consume={:.2}",
        mean(&rates.typed_publish) / mean(&rates.raw_publish),
        mean(&rates.typed_consume) / mean(&rates.raw_consume)
    );
    Ok(())
}
