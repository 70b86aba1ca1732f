//! `Service::migrate_queues`: a service's classic queues (or quorum queues declared with other
//! arguments) recreated as it now declares them, while a publisher keeps publishing, without
//! losing a message; on a real RabbitMQ (`AMQP_URL`, default the local broker) and on the
//! in-memory broker, which must behave the same. Each test works in a namespace of its own
//! and deletes every queue and exchange it created.
#![cfg(all(feature = "testing", feature = "amqp"))]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use event_manager::envelope::{
    ATTEMPTS_HEADER, DEAD_LETTER_KIND_HEADER, DeadLetterKind, ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
};
use event_manager::message::{Message, Properties};
use event_manager::topology::{MIGRATING_SUFFIX, Migrated};
use event_manager::transport::{QueueKind, QueueSpec, Transport};
use event_manager::{Bus, ConsumeError, RetryPolicy, Service, TopologyError};

use common::{ORDER, Order, amqp_url, unique_namespace};
use tokio::sync::mpsc;

/// Events in the classic queue before the migration, and published during it.
const BEFORE: u64 = 300;
const DURING: u64 = 300;
/// Dead letters in the dead-letter queue, and retries in the retry queue.
const DEAD: usize = 3;
const RETRIED: usize = 2;

async fn rabbitmq() -> Bus {
    Bus::connect(&amqp_url())
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ is required for this test and could not be reached: {e}")
        })
        .with_namespace(unique_namespace("mig"))
}

fn memory() -> Bus {
    Bus::in_memory().with_namespace(unique_namespace("mig"))
}

/// The service `billing` of `kind` (`None`: the default, quorum), bound to the order
/// exchange, handing the message id of every order it handles to `seen`.
fn billing(
    bus: &Bus,
    kind: Option<QueueKind>,
    seen: Option<mpsc::UnboundedSender<String>>,
) -> Service {
    let mut service = bus.service("billing");
    service.retry(RetryPolicy::new(
        3,
        vec![Duration::from_millis(200), Duration::from_secs(1)],
    ));
    if let Some(kind) = kind {
        service.queue_kind(kind);
    }
    service.bind(ORDER, "order.v1.*").expect("a valid pattern");
    service.on(Order::SUBMIT, move |_: Order, delivery| {
        let seen = seen.clone();
        async move {
            if let (Some(seen), Some(id)) = (seen, delivery.message_id()) {
                let _ = seen.send(id.to_owned());
            }
            Ok(())
        }
    });
    service
}

fn transport(bus: &Bus) -> &std::sync::Arc<dyn Transport> {
    event_manager::testing::transport(bus)
}

/// Puts a message straight into `queue` through the default exchange, as the service does
/// with a retry or a dead letter, and returns its message id.
async fn put(bus: &Bus, queue: &str, id: String, headers: &[(&'static str, &str)]) -> String {
    let mut properties = Properties {
        message_id: Some(id.clone()),
        content_type: Some("application/json".into()),
        persistent: true,
        ..Properties::default()
    };
    properties.headers.insert("event-version", "1.0.0");
    properties.headers.insert(
        ORIGINAL_EXCHANGE_HEADER,
        bus.topology().exchange_name(ORDER),
    );
    properties
        .headers
        .insert(ORIGINAL_ROUTING_KEY_HEADER, "order.v1.submit");
    for (name, value) in headers {
        properties.headers.insert(*name, value.to_string());
    }
    transport(bus)
        .publish(Message {
            exchange: "".into(),
            routing_key: queue.to_owned().into(),
            body: serde_json::to_vec(&Order { id: 7 }).expect("json").into(),
            properties,
        })
        .await
        .expect("put a message in a queue");
    id
}

/// Publishes orders `range` with publisher confirms, pausing between them so that they span
/// the migration; every publish must be routed and confirmed.
async fn publish(bus: Bus, range: std::ops::Range<u64>, pause: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    for id in range {
        let published = bus
            .publish(Order::SUBMIT, &Order { id })
            .await
            .unwrap_or_else(|e| panic!("publish of order {id} during the migration: {e}"));
        assert!(published.routed, "order {id} was not routed");
        ids.push(published.message_id);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    ids
}

/// Whether `error` is a mismatch on the argument `on`, or on any with `None`.
fn is_mismatch(error: &ConsumeError, on: Option<&str>) -> bool {
    matches!(error, ConsumeError::Topology(TopologyError::Mismatch { argument, .. })
        if on.is_none_or(|on| on == argument))
}

/// The queue types RabbitMQ reports (`rabbitmqctl list_queues name type`), by name.
fn rabbitmq_queue_types() -> HashMap<String, String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "--quiet",
            "--no-table-headers",
            "name",
            "type",
        ])
        .output()
        .expect("run rabbitmqctl");
    assert!(output.status.success(), "rabbitmqctl: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect()
}

/// Waits until `seen` gave every id of `expected`; returns how many deliveries it gave.
async fn await_all(
    seen: &mut mpsc::UnboundedReceiver<String>,
    expected: &BTreeSet<String>,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut handled = BTreeSet::new();
    let mut deliveries = 0;
    while !expected.is_subset(&handled) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, seen.recv()).await {
            Ok(Some(id)) => {
                deliveries += 1;
                handled.insert(id);
            }
            _ => panic!(
                "lost {} of {} events after the migration, e.g. {:?}",
                expected.difference(&handled).count(),
                expected.len(),
                expected.difference(&handled).next()
            ),
        }
    }
    // Nothing handled that was never published.
    assert!(
        handled.is_subset(expected),
        "{:?}",
        handled.difference(expected).next()
    );
    deliveries
}

/// The whole scenario: a classic service with events, retries and dead letters; the quorum
/// release refused with advice naming the migration; the migration while a publisher
/// publishes; the quorum service handling every event; nothing left to migrate after.
async fn classic_to_quorum(bus: Bus, rabbitmq: bool) {
    let classic = billing(&bus, Some(QueueKind::Classic), None);
    classic
        .declare()
        .await
        .expect("declare the classic service");
    let queues = classic.queues();
    let mut expected: BTreeSet<String> = publish(bus.clone(), 0..BEFORE, Duration::ZERO)
        .await
        .into_iter()
        .collect();
    let mut dead = BTreeSet::new();
    for n in 0..DEAD {
        let kind = [
            (DEAD_LETTER_KIND_HEADER, "permanent-error"),
            (ATTEMPTS_HEADER, "1"),
        ];
        dead.insert(put(&bus, queues.dead_letter_queue(), format!("dead-{n}"), &kind).await);
    }
    for n in 0..RETRIED {
        let id = format!("retry-{n}");
        expected.insert(put(&bus, queues.retried_queue(), id, &[(ATTEMPTS_HEADER, "1")]).await);
    }

    // The quorum release (the default kind) is refused, and told how to migrate.
    let (tx, mut seen) = mpsc::unbounded_channel();
    let quorum = billing(&bus, None, Some(tx));
    let refused = quorum.declare().await.expect_err("classic queues exist");
    // RabbitMQ names the first argument that differs (for the service queue its dead-letter
    // exchange), the in-memory broker the queue type.
    let on_type = (!rabbitmq).then_some("x-queue-type");
    assert!(is_mismatch(&refused, on_type), "{refused:?}");
    let text = refused.to_string();
    if !rabbitmq {
        let precise = "exists as a classic queue but the service declares a quorum queue";
        assert!(text.contains(precise), "{text}");
    }
    for hint in [
        "classic queue",
        "quorum queue",
        "cannot change in place",
        "migrate_queues",
        "queues migrate --service billing",
        "QueueKind::Classic",
    ] {
        assert!(text.contains(hint), "`{hint}` missing from: {text}");
    }
    let Err(not_started) = billing(&bus, None, None).start().await else {
        panic!("the quorum service started over classic queues");
    };
    assert!(is_mismatch(&not_started, on_type), "{not_started:?}");

    // Migrated while a publisher goes on publishing.
    let pause = Duration::from_millis(if rabbitmq { 2 } else { 0 });
    let publisher = tokio::spawn(publish(bus.clone(), BEFORE..BEFORE + DURING, pause));
    if rabbitmq {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let migrated = quorum.migrate_queues().await.expect("migrate");
    expected.extend(publisher.await.expect("the publisher task"));
    let by_queue: HashMap<&str, &Migrated> =
        migrated.iter().map(|m| (m.queue.as_str(), m)).collect();
    assert_eq!(migrated.len(), queues.names().len(), "{migrated:?}");
    for name in queues.names() {
        let entry = by_queue
            .get(name)
            .unwrap_or_else(|| panic!("{name} not migrated: {migrated:?}"));
        assert!(entry.argument.is_some(), "{entry:?}");
        if !rabbitmq {
            assert_eq!(entry.argument.as_deref(), on_type, "{entry:?}");
        }
    }
    assert!(by_queue[queues.queue()].moved >= BEFORE, "{migrated:?}");
    assert_eq!(by_queue[queues.dead_letter_queue()].moved, DEAD as u64);
    assert_eq!(by_queue[queues.retried_queue()].moved, RETRIED as u64);

    // Every queue is a quorum queue now, and no temporary queue is left.
    for name in queues.names() {
        let temporary = format!("{name}{MIGRATING_SUFFIX}");
        assert!(
            matches!(
                transport(&bus).queue_len(&temporary).await,
                Err(TopologyError::NotFound { .. })
            ),
            "{temporary} left behind"
        );
    }
    if rabbitmq {
        let types = rabbitmq_queue_types();
        for name in queues.names() {
            assert_eq!(
                types.get(name).map(String::as_str),
                Some("quorum"),
                "{name}: {types:?}"
            );
        }
    }
    let as_classic = billing(&bus, Some(QueueKind::Classic), None)
        .declare()
        .await;
    assert!(
        matches!(&as_classic, Err(e) if is_mismatch(e, on_type)),
        "{as_classic:?}"
    );

    // The quorum service handles every event: those queued before, the retries, and those
    // published during the migration; none lost.
    let running = quorum.start().await.expect("the quorum service starts");
    let deliveries = await_all(&mut seen, &expected).await;
    running.shutdown().await.expect("shutdown");
    let duplicates = deliveries - expected.len();
    assert!(duplicates <= 10, "{duplicates} duplicates");

    // The dead letters are still there, as they were.
    let letters = queues.dead_letters(100).await.expect("read dead letters");
    let ids: BTreeSet<String> = letters
        .iter()
        .filter_map(|l| l.message_id().map(str::to_owned))
        .collect();
    assert_eq!(ids, dead);
    for letter in &letters {
        assert_eq!(letter.kind(), Some(DeadLetterKind::PermanentError));
        assert_eq!(letter.routing_key(), "order.v1.submit");
        assert_eq!(letter.attempts(), 1);
    }

    // Nothing left to migrate.
    let again = billing(&bus, None, None)
        .migrate_queues()
        .await
        .expect("migrate again");
    assert!(again.is_empty(), "{again:?}");
    cleanup(&bus, &queues).await;
}

async fn cleanup(bus: &Bus, queues: &event_manager::topology::ServiceQueues) {
    for name in queues.names() {
        let _ = transport(bus)
            .delete_queue(&format!("{name}{MIGRATING_SUFFIX}"))
            .await;
    }
    let _ = queues.delete().await;
    let _ = transport(bus)
        .delete_exchange(&bus.topology().exchange_name(ORDER))
        .await;
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classic_queues_move_to_quorum_on_rabbitmq_without_losing_a_message() {
    classic_to_quorum(rabbitmq().await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn classic_queues_move_to_quorum_in_memory_without_losing_a_message() {
    classic_to_quorum(memory(), false).await;
}

/// Quorum queues declared with another delivery limit are recreated too; the others are
/// left alone.
async fn another_delivery_limit(bus: Bus) {
    let mut before = billing(&bus, None, None);
    before.delivery_limit(10);
    before.declare().await.expect("declare with a limit of 10");
    let queues = before.queues();
    let expected: BTreeSet<String> = publish(bus.clone(), 0..20, Duration::ZERO)
        .await
        .into_iter()
        .collect();

    let (tx, mut seen) = mpsc::unbounded_channel();
    let after = billing(&bus, None, Some(tx));
    let refused = after.declare().await.expect_err("another delivery limit");
    assert!(
        is_mismatch(&refused, Some("x-delivery-limit")),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("migrate_queues"), "{refused}");
    let migrated = after.migrate_queues().await.expect("migrate");
    let names: BTreeSet<&str> = migrated.iter().map(|m| m.queue.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([queues.queue(), queues.retried_queue()]),
        "{migrated:?}"
    );
    assert!(
        migrated
            .iter()
            .all(|m| m.argument.as_deref() == Some("x-delivery-limit"))
    );
    assert_eq!(migrated.iter().map(|m| m.moved).sum::<u64>(), 20);

    let running = after.start().await.expect("start");
    await_all(&mut seen, &expected).await;
    running.shutdown().await.expect("shutdown");
    let again = billing(&bus, None, None).migrate_queues().await;
    assert!(again.expect("again").is_empty());
    cleanup(&bus, &queues).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_with_another_delivery_limit_are_recreated_on_rabbitmq() {
    another_delivery_limit(rabbitmq().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_with_another_delivery_limit_are_recreated_in_memory() {
    another_delivery_limit(memory()).await;
}

/// A migration interrupted after the queue was recreated leaves messages in
/// `<queue>.migrating`, bound to the exchange: running it again moves them back.
async fn interrupted(bus: Bus) {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let service = billing(&bus, None, Some(tx));
    service.declare().await.expect("declare");
    let queues = service.queues();
    let temporary = format!("{}{MIGRATING_SUFFIX}", queues.queue());
    let mut spec = QueueSpec::durable(&temporary);
    spec.kind = QueueKind::Quorum;
    transport(&bus)
        .declare_queue(&spec)
        .await
        .expect("temporary queue");
    let exchange = bus.topology().exchange_name(ORDER);
    let pattern = event_manager::BindingPattern::parse("order.v1.*").expect("pattern");
    transport(&bus)
        .bind(&temporary, &exchange, &pattern)
        .await
        .expect("bind");
    let mut expected = BTreeSet::new();
    for n in 0..5 {
        expected.insert(put(&bus, &temporary, format!("parked-{n}"), &[]).await);
    }

    let migrated = service
        .migrate_queues()
        .await
        .expect("finish the migration");
    assert_eq!(migrated.len(), 1, "{migrated:?}");
    assert_eq!(migrated[0].queue, queues.queue());
    assert_eq!(migrated[0].argument, None);
    assert_eq!(migrated[0].moved, 5);
    assert!(matches!(
        transport(&bus).queue_len(&temporary).await,
        Err(TopologyError::NotFound { .. })
    ));
    // The temporary queue's binding went with it: one copy per publish.
    expected.extend(publish(bus.clone(), 0..3, Duration::ZERO).await);
    let running = service.start().await.expect("start");
    assert_eq!(await_all(&mut seen, &expected).await, expected.len());
    running.shutdown().await.expect("shutdown");
    let again = billing(&bus, None, None).migrate_queues().await;
    assert!(again.expect("again").is_empty());
    cleanup(&bus, &queues).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_is_finished_by_running_it_again_on_rabbitmq() {
    interrupted(rabbitmq().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_is_finished_by_running_it_again_in_memory() {
    interrupted(memory()).await;
}

/// `Transport::unbind` on RabbitMQ: the binding goes (a publish it took is unroutable), and
/// unbinding what is not bound, or a queue or exchange that does not exist, is no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbinding_on_rabbitmq_removes_the_binding_and_missing_ones_are_fine() {
    let bus = rabbitmq().await;
    let queues = bus.service("unbound").queues();
    let (queue, exchange) = (queues.queue(), bus.topology().exchange_name(ORDER));
    bus.topology()
        .declare_exchange(ORDER)
        .await
        .expect("exchange");
    let amqp = transport(&bus);
    amqp.declare_queue(&QueueSpec::durable(queue))
        .await
        .expect("queue");
    let pattern = event_manager::BindingPattern::parse("order.v1.*").expect("pattern");
    amqp.bind(queue, &exchange, &pattern).await.expect("bind");
    publish(bus.clone(), 0..1, Duration::ZERO).await;
    amqp.unbind(queue, &exchange, &pattern)
        .await
        .expect("unbind");
    let unroutable = bus.publish(Order::SUBMIT, &Order { id: 1 }).await;
    assert!(
        matches!(
            unroutable,
            Err(event_manager::PublishError::Unroutable { .. })
        ),
        "{unroutable:?}"
    );
    assert_eq!(amqp.queue_len(queue).await.expect("len"), 1);
    amqp.unbind(queue, &exchange, &pattern)
        .await
        .expect("not bound");
    amqp.unbind("no-such-queue-here", &exchange, &pattern)
        .await
        .expect("no queue");
    amqp.unbind(queue, "no-such-exchange-here", &pattern)
        .await
        .expect("no exchange");
    // The topology channel still works after the refusals.
    assert_eq!(amqp.queue_len(queue).await.expect("len"), 1);
    cleanup(&bus, &queues).await;
}
