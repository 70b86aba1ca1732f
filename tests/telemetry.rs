//! Metrics and health, in memory and on RabbitMQ: the counters add up to what happened
//! (published, confirmed, unroutable, nacked, consumed, handled, retried, dead-lettered), the
//! in-flight gauge comes back to 0, and a running service reports itself healthy until it has
//! no consumer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use event_manager::telemetry::metrics as names;
use event_manager::{
    Bus, Delivery, Event, Exchange, HandlerResultExt, PublishOptions, Service, Unroutable,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use common::{Env, test_policy};

const METERED: Exchange = Exchange::topic("metered");

/// A payment; `fail` says how it fails: 0 never, 1 once (retried), 2 always and permanently.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = METERED, version = "1.0.0", events(paid))]
pub struct Payment {
    pub id: u64,
    pub fail: u8,
}

/// The process-wide recorder of this test binary, installed once.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("no other recorder in this binary");
        snapshotter
    })
}

/// The sum of a counter over the series whose labels include every pair of `labels`.
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    series(name, labels)
        .into_iter()
        .map(|v| match v {
            Value::Counter(n) => n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// The value of a gauge (the one series matching `labels`).
fn gauge(name: &str, labels: &[(&str, &str)]) -> f64 {
    match series(name, labels).as_slice() {
        [Value::Gauge(v)] => *v,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

/// How many samples a histogram holds over the series matching `labels`.
fn samples(name: &str, labels: &[(&str, &str)]) -> usize {
    series(name, labels)
        .into_iter()
        .map(|v| match v {
            Value::Histogram(n) => n,
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

/// A series' total so far.
#[derive(Debug)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(usize),
}

fn series(name: &str, labels: &[(&str, &str)]) -> Vec<Value> {
    // A snapshot drains counters and histograms: keep the totals of every snapshot.
    type Totals = Vec<(String, Vec<(String, String)>, DebugValue)>;
    static TOTALS: Mutex<Totals> = Mutex::new(Vec::new());
    let mut totals = TOTALS.lock().unwrap();
    for (key, _, _, value) in snapshotter().snapshot().into_vec() {
        let series_name = key.key().name().to_owned();
        let series_labels: Vec<(String, String)> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let found = totals
            .iter_mut()
            .find(|(n, l, _)| *n == series_name && *l == series_labels);
        match (found, value) {
            (Some((_, _, DebugValue::Counter(total))), DebugValue::Counter(n)) => *total += n,
            (Some((_, _, DebugValue::Histogram(total))), DebugValue::Histogram(s)) => {
                total.extend(s)
            }
            (Some((_, _, total)), value) => *total = value,
            (None, value) => totals.push((series_name, series_labels, value)),
        }
    }
    totals
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| match v {
            DebugValue::Counter(n) => Value::Counter(*n),
            DebugValue::Gauge(g) => Value::Gauge(g.into_inner()),
            DebugValue::Histogram(s) => Value::Histogram(s.len()),
        })
        .collect()
}

/// A service on `env` counting payments: `fail` 1 fails once, `fail` 2 fails permanently.
fn payments(env: &Env, base: &str, calls: Arc<AtomicU32>) -> Service {
    let mut service = env.service(base);
    service.retry(test_policy());
    service.on(Payment::PAID, move |p: Payment, d: Delivery| {
        let calls = calls.clone();
        async move {
            calls.fetch_add(1, Ordering::Relaxed);
            match p.fail {
                1 if d.attempt() == 1 => Err("the ledger is busy".into()),
                2 => Err(std::io::Error::other("card refused")).permanent(),
                _ => Ok(()),
            }
        }
    });
    service
}

/// Publishes 5 good payments, one failing once and one failing permanently, then checks every
/// counter of the service's queue.
async fn counters_add_up(env: Env) {
    // The publish counters are per event, and both brokers' tests publish the same event:
    // one at a time, so that each sees only its own publishes.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE_AT_A_TIME.lock().await;
    snapshotter();
    let calls = Arc::new(AtomicU32::new(0));
    let running = payments(&env, "payments", calls.clone())
        .start()
        .await
        .unwrap();
    let queue = env.broker_queue(&env.queue("payments"));
    let event = Payment::PAID.contract().routing_key();
    let before_sent = counter(names::SENT, &[("event", event)]);
    let before_confirmed = counter(names::CONFIRMED, &[("event", event)]);
    for id in 0..5 {
        Payment { id, fail: 0 }.paid(&env.bus).await.unwrap();
    }
    Payment { id: 5, fail: 1 }.paid(&env.bus).await.unwrap();
    Payment { id: 6, fail: 2 }.paid(&env.bus).await.unwrap();

    let on_queue = [("event", event), ("queue", queue.as_str())];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while counter(names::HANDLED, &on_queue) < 6 || counter(names::DEAD_LETTERED, &on_queue) < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handled {} dead-lettered {}",
            counter(names::HANDLED, &on_queue),
            counter(names::DEAD_LETTERED, &on_queue)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Sent and confirmed count every publish of the bus for this event (other tests of this
    // binary use other events).
    assert_eq!(counter(names::SENT, &[("event", event)]) - before_sent, 7);
    assert_eq!(
        counter(names::CONFIRMED, &[("event", event)]) - before_confirmed,
        7
    );
    // 7 deliveries plus the retry of payment 5.
    assert_eq!(counter(names::CONSUMED, &on_queue), 8);
    assert_eq!(counter(names::HANDLED, &on_queue), 6);
    assert_eq!(counter(names::RETRIED, &on_queue), 1);
    assert_eq!(
        counter(
            names::DEAD_LETTERED,
            &[
                ("event", event),
                ("queue", queue.as_str()),
                ("reason", "permanent-error")
            ]
        ),
        1
    );
    assert_eq!(samples(names::PROCESS_DURATION, &on_queue), 8);
    assert_eq!(gauge(names::IN_FLIGHT, &[("queue", queue.as_str())]), 0.0);
    assert_eq!(calls.load(Ordering::Relaxed), 8);

    let health = running.health();
    assert!(health.is_healthy(), "{health:?}");
    assert_eq!(health.queue, queue);
    assert!(health.connected && health.consuming);
    let last = health.last_delivery.expect("a delivery was taken");
    assert!(SystemTime::now().duration_since(last).unwrap() < Duration::from_secs(30));
    let error = health
        .last_error
        .expect("the permanent failure is the last error");
    assert!(error.contains("card refused"), "{error}");

    // No consumer, no health: a stopped service is reported unhealthy.
    let probe = running.health_probe();
    running.shutdown().await.unwrap();
    let after = probe.health();
    assert!(!after.consuming && !after.is_healthy(), "{after:?}");
    let exchange = env.bus.topology().exchange_name(METERED);
    let _ = env.transport().delete_exchange(&exchange).await;
    env.cleanup().await;
}

#[tokio::test]
async fn counters_add_up_in_memory() {
    counters_add_up(Env::memory().await).await;
}

#[tokio::test]
async fn counters_add_up_on_rabbitmq() {
    counters_add_up(Env::rabbitmq().await).await;
}

const LONELY: Exchange = Exchange::topic("metered_lonely");

/// An event nobody is bound to.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = LONELY, version = "1.0.0", events(noticed))]
pub struct Notice {
    pub id: u64,
}

#[tokio::test]
async fn unroutable_and_nacked_publishes_are_counted() {
    snapshotter();
    let event = Notice::NOTICED.contract().routing_key();
    let of_event = [("event", event)];
    let env = Env::rabbitmq().await;
    let before = (
        counter(names::SENT, &of_event),
        counter(names::CONFIRMED, &of_event),
        counter(names::UNROUTABLE, &of_event),
        counter(names::NACKED, &of_event),
    );
    let ignore = PublishOptions {
        unroutable: Some(Unroutable::Ignore),
        ..PublishOptions::default()
    };
    env.bus
        .publish_with(Notice::NOTICED, &Notice { id: 1 }, &ignore)
        .await
        .unwrap();
    // The default policy fails the publish; the broker still confirmed it.
    Notice { id: 2 }.noticed(&env.bus).await.unwrap_err();
    assert_eq!(counter(names::SENT, &of_event) - before.0, 2);
    assert_eq!(counter(names::CONFIRMED, &of_event) - before.1, 2);
    assert_eq!(counter(names::UNROUTABLE, &of_event) - before.2, 2);
    assert_eq!(counter(names::NACKED, &of_event) - before.3, 0);
    assert!(samples(names::PUBLISH_DURATION, &of_event) >= 2);

    // A publish that fails (here: the connection is closed) is counted as nacked.
    let exchange = env.bus.topology().exchange_name(LONELY);
    env.transport().delete_exchange(&exchange).await.unwrap();
    env.bus.close().await;
    Notice { id: 3 }.noticed(&env.bus).await.unwrap_err();
    assert_eq!(counter(names::NACKED, &of_event) - before.3, 1);
    assert!(!env.bus.is_connected());
}

#[tokio::test]
async fn a_service_on_a_closed_connection_is_unhealthy() {
    snapshotter();
    let env = Env::rabbitmq().await;
    // The service has a connection of its own, closed under it; the test's one cleans up.
    let own = Bus::connect(&common::amqp_url())
        .await
        .unwrap()
        .with_namespace(&env.namespace);
    let mut service = own.service(env.queue("closing"));
    service.retry(test_policy());
    service.on(Payment::PAID, |_: Payment, _| async { Ok(()) });
    let running = service.start().await.unwrap();
    assert!(running.health().is_healthy());
    own.close().await;
    let health = running.health();
    assert!(!health.connected && !health.is_healthy(), "{health:?}");
    let _ = running.shutdown().await;
    let exchange = env.bus.topology().exchange_name(METERED);
    let _ = env.transport().delete_exchange(&exchange).await;
    env.cleanup().await;
}
